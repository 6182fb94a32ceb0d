import Foundation
import XCTest
import Backprop
@testable import BackpropData

/// Replays the committed fuzz corpus (Fixtures/corpus/{idx,csv,pgm}: seeds, inputs libFuzzer
/// found interesting, and every input that once crashed a parser) through every data parser.
/// Each file must parse or throw `BackpropError`; a trap would kill the test process.
/// `scripts/fuzz` grows the corpus; see Tests/Fuzz/FuzzMain.swift.
final class CorpusReplayTests: XCTestCase {
    static func corpus(_ kind: String) throws -> [String] {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures folder not bundled")
        }
        let dir = root.appendingPathComponent("corpus/\(kind)").path
        return try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { dir + "/" + $0 }
    }

    /// Runs `body`; returns true when it returned, false when it threw BackpropError, and
    /// records a failure for any other error.
    @discardableResult
    func parsesOrRejects(_ file: String, _ what: String, _ body: () throws -> Void) -> Bool {
        do { try body(); return true } catch is BackpropError { return false } catch {
            XCTFail("\(what) on \(file): not a BackpropError: \(error)")
            return false
        }
    }

    func testEveryCorpusFileParsesOrThrowsBackpropError() throws {
        var files = 0, parsed = 0
        for kind in ["idx", "csv", "pgm"] {
            for file in try CorpusReplayTests.corpus(kind) {
                files += 1
                // Every parser on every file: a CSV file fed to the IDX reader must fail cleanly too.
                if parsesOrRejects(file, "IDX.read", { _ = try IDX.read(path: file, maxBytes: 1 << 20) }) { parsed += 1 }
                parsesOrRejects(file, "IDX.readImages", { _ = try IDX.readImages(path: file, maxBytes: 1 << 20) })
                parsesOrRejects(file, "IDX.readLabels", { _ = try IDX.readLabels(path: file, maxBytes: 1 << 20) })
                if parsesOrRejects(file, "CSV.read", { _ = try CSV.read(path: file, maxBytes: 1 << 20) }) { parsed += 1 }
                parsesOrRejects(file, "CSV.readTable", { _ = try CSV.readTable(path: file, maxBytes: 1 << 20) })
                if parsesOrRejects(file, "PGM.read", { _ = try PGM.read(path: file) }) { parsed += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(files, 30, "the corpus is committed")
        XCTAssertGreaterThanOrEqual(parsed, 9, "the seeds (valid files) parse")
    }

    /// The seeds are valid files: each parses with its own parser (so the replay above really
    /// exercises the success paths, not only the errors).
    func testSeedsParse() throws {
        for file in try CorpusReplayTests.corpus("idx") where file.contains("/seed-") {
            XCTAssertNoThrow(try IDX.read(path: file), file)
        }
        for file in try CorpusReplayTests.corpus("csv") where file.contains("/seed") {
            XCTAssertNoThrow(try CSV.read(path: file), file)
        }
        for file in try CorpusReplayTests.corpus("pgm") where file.contains("/seed-") {
            XCTAssertNoThrow(try PGM.read(path: file), file)
        }
    }
}
