import Foundation
import XCTest

/// The library examples (`Examples/`, built with the tests) run and succeed: each exits
/// non-zero when its result is wrong (XOR not learned, a gradient check or accuracy too low, a
/// loss that differs from PyTorch's).
final class ExamplesTests: XCTestCase {
    func run(_ name: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
        let dir = CLI.executable.deletingLastPathComponent()
        let url = dir.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            XCTFail("\(name) is not built next to backprop (swift build --build-tests builds every target)")
            return (-1, "")
        }
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testEveryExampleRunsAndSucceeds() throws {
        let expectations: [(String, String)] = [
            ("xor-example", "predictions [0, 1, 1, 0]"),
            ("custom-layer-example", "1.scale"),
            ("lstm-sequence-example", "true\\pred"),
            ("sgd-schedule-example", "test MSE"),
            ("pytorch-import-example", "PyTorch's loss"),
            // Without data it says how to fetch MNIST; with data/mnist present it trains an epoch.
            ("mnist-library-example", "MNIST"),
        ]
        for (name, needle) in expectations {
            let r = try run(name, name == "mnist-library-example" ? ["/nonexistent/mnist"] : [])
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            XCTAssertTrue(r.output.contains(needle), "\(name) should print \(needle): \(r.output)")
        }
    }

    func testExamplesAreShort() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for name in ["xor", "custom-layer", "mnist-library", "lstm-sequence", "sgd-schedule", "pytorch-import"] {
            let text = try String(contentsOf: root.appendingPathComponent("Examples/\(name)-example/main.swift"), encoding: .utf8)
            XCTAssertLessThanOrEqual(text.split(separator: "\n", omittingEmptySubsequences: false).count, 61, name)
        }
    }
}
