import Foundation
import XCTest
import Backprop
import BackpropData

/// Runs the built `backprop` executable (it sits next to the test bundle) and captures its output.
struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

enum CLI {
    static var executable: URL {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("backprop")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return Bundle.main.bundleURL.appendingPathComponent("backprop")
    }

    /// This process's environment without Open MPI's own variables: a test earlier in this
    /// process may have started MPI as a singleton (BackpropMPITests), which sets OMPI_*/PMIX_*
    /// variables; a child `mpirun` (or `backprop`) inheriting them takes itself for a rank of that
    /// job and fails at once.
    static var inheritedEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "ORTE_", "OPAL_", "PRTE_"].contains { key.hasPrefix($0) }
        }
    }

    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = CLI.inheritedEnvironment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes before waiting so a chatty process cannot block on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        process.waitUntilExit()
        return CLIResult(status: process.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
    }

    static func fixture(_ name: String) throws -> String {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        guard let url = Bundle.module.url(forResource: parts[0], withExtension: parts.count > 1 ? parts[1] : nil,
                                          subdirectory: "Fixtures") else {
            throw XCTSkip("fixture \(name) missing")
        }
        return url.path
    }
}

/// A temporary folder removed at the end of the test.
final class TempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "backprop-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A tiny MNIST-format data set: 4×4 images of two classes (bright left half or bright right
/// half, with noise), written as the four standard IDX files (gzip) into `dir`.
func writeTinyDataset(into dir: String, train: Int = 300, test: Int = 100, seed: UInt64 = 3) throws {
    var rng = SeededGenerator(seed: seed)
    func images(_ n: Int) -> (pixels: [UInt8], labels: [UInt8]) {
        var pixels: [UInt8] = [], labels: [UInt8] = []
        for _ in 0..<n {
            let label = UInt8(rng.next() % 2)
            labels.append(label)
            for _ in 0..<4 {
                for c in 0..<4 {
                    let bright = (c < 2) == (label == 0)
                    let noise = Int(rng.next() % 60)
                    pixels.append(UInt8(bright ? 195 + noise : noise))
                }
            }
        }
        return (pixels, labels)
    }
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let (p, l) = images(n)
        try IDX.write(IDX.Contents(dimensions: [n, 4, 4], bytes: p), to: "\(dir)/\(prefix)-images-idx3-ubyte.gz", gzip: true)
        try IDX.write(IDX.Contents(dimensions: [n], bytes: l), to: "\(dir)/\(prefix)-labels-idx1-ubyte.gz", gzip: true)
    }
}
