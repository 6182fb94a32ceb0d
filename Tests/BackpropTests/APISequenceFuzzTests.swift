import Backprop
import Foundation
import XCTest

/// A short seeded run of `APISequenceFuzzer`: no finding, and every call and refusal reached (so
/// the test fails if the fuzzer stops getting somewhere). Long runs: `scripts/fuzz run api SECONDS`
/// (libFuzzer, AddressSanitizer), or this test with BACKPROP_API_FUZZ_SEQUENCES and
/// BACKPROP_API_FUZZ_SEED set.
final class APISequenceFuzzTests: XCTestCase {
    func testSeededRunHasNoFindingsAndReachesEveryCallAndRefusal() {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["BACKPROP_API_FUZZ_SEQUENCES"].flatMap { Int($0) } ?? 400
        let fuzzer = APISequenceFuzzer()
        var rng = SeededGenerator(seed: environment["BACKPROP_API_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20261130)
        var findings: [String] = []
        for _ in 0..<count {
            let bytes = (0..<160).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            findings += fuzzer.run(bytes)
            if findings.count >= 3 { break }
        }
        let stats = fuzzer.stats
        print(stats.report)
        XCTAssertEqual(findings, [], findings.joined(separator: "\n\n"))
        for call in APISequenceFuzzer.Call.allCases {
            XCTAssertGreaterThan(stats.calls[call] ?? 0, 0, "the run never made the call \(call)")
        }
        for refusal in APISequenceFuzzer.Refusal.allCases where refusal != .other {
            XCTAssertGreaterThan(stats.refusals[refusal] ?? 0, 0, "no invalidUse error for \(refusal)")
        }
        for error in ["invalidUse", "shapeMismatch", "invalidArgument"] {
            XCTAssertGreaterThan(stats.errors[error] ?? 0, 0, "no \(error) error thrown")
        }
        XCTAssertGreaterThan(stats.compared, count * 10, "outcomes compared with a reference")
        XCTAssertGreaterThan(stats.gradientChecks, count / 20, "finite-difference checks of the reference")
        XCTAssertEqual(stats.sequenceHashes.count, stats.sequences, "every sequence distinct")
    }
}
