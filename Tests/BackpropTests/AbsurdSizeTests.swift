import Foundation
import XCTest
@testable import Backprop
#if canImport(Glibc)
import Glibc
#endif

/// Files and descriptions that claim absurd sizes are refused before anything that size is
/// allocated (an allocation of 100 GB would abort the process, not throw).
final class AbsurdSizeTests: XCTestCase {
    func temporaryFile(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "backprop-absurd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir + "/" + name
    }

    /// A sparse file of `size` bytes starting with `prefix` (takes no disk space), or skip.
    func sparseFile(_ name: String, size: Int, prefix: [UInt8]) throws -> String {
        let path = try temporaryFile(name)
        try Data(prefix).write(to: URL(fileURLWithPath: path))
        guard truncate(path, off_t(size)) == 0 else { throw XCTSkip("cannot make a sparse \(size)-byte file here") }
        return path
    }

    func assertBadFile(_ body: @autoclosure () throws -> Any, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let BackpropError.badFile(_, _, r) = error else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(r.contains(reason), "'\(r)' lacks '\(reason)'", file: file, line: line)
        }
    }

    func testSafetensorsHeaderLengthOf100GB() {
        var bytes: [UInt8] = []
        let n: UInt64 = 100_000_000_000
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        bytes += Array("{}".utf8)
        assertBadFile(try SafetensorsFile.read(data: bytes, path: "x"), "header length 100000000000 exceeds the 100000000-byte limit")
    }

    func testSafetensorsFileOf100GBIsRefusedBeforeReading() throws {
        // A valid 8-byte header length, then 100 GB of (sparse) zeros.
        let path = try sparseFile("huge.safetensors", size: 100_000_000_000, prefix: [2, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8))
        assertBadFile(try SafetensorsFile.read(path: path), "file is 100000000000 bytes, more than this machine's")
        assertBadFile(try ModelFile.load(path), "more than this machine's")
    }

    func testSafetensorsOffsetsBeyondTheFile() {
        let header = Array("{\"w\":{\"dtype\":\"F32\",\"shape\":[250000000000],\"data_offsets\":[0,1000000000000]}}".utf8)
        var bytes: [UInt8] = []
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i)))) }
        assertBadFile(try SafetensorsFile.read(data: bytes + header, path: "x"), "too large")
    }

    func testArchitectureClaimingTerabytesIsRefused() {
        // 2^20 × 2^20 weights twice: 2^41 parameters (8 TiB of Float32).
        let json = "{\"arch\":\"mlp\",\"layers\":[1048576,1048576,1048576],\"activation\":\"relu\"}"
        assertBadFile(try Architecture(json: json, source: "m"), "more than 1073741824 parameters")
        XCTAssertThrowsError(try Architecture.mlp(sizes: [1 << 20, 1 << 20], activation: .relu).build(seed: 0))
        XCTAssertEqual(Architecture.mlp(sizes: [784, 256, 10], activation: .relu).parameterCount, 784 * 256 + 256 + 256 * 10 + 10)
        XCTAssertNil(Architecture.mlp(sizes: [Int.max, 2], activation: .relu).parameterCount, "overflow is nil, not a trap")
    }

    /// `parameterCount` (used to refuse files before building) equals what `build` allocates,
    /// for every architecture family: an overcount would reject valid model files.
    func testParameterCountMatchesTheBuiltModel() throws {
        let cases: [Architecture] = [
            .mlp(sizes: [5, 7, 3], activation: .tanh), .mlp(sizes: [2, 1], activation: .relu), .lenet(classes: 10),
            .recurrent(kind: .rnn, steps: 4, inputSize: 3, hidden: 5, layers: 2, classes: 4),
            .recurrent(kind: .lstm, steps: 4, inputSize: 3, hidden: 5, layers: 2, classes: 4),
            .recurrent(kind: .gru, steps: 4, inputSize: 6, hidden: 2, layers: 1, classes: 3),
        ]
        for a in cases {
            let built = try a.build(seed: 0).parameters.reduce(0) { $0 + $1.value.count }
            XCTAssertEqual(a.parameterCount, built, a.json)
        }
    }

    /// A model file whose architecture metadata describes a far bigger model than its tensors
    /// hold: refused before the model is built (building [784, 8192, 8192, 10] would allocate 300 MB).
    func testModelFileWhoseArchitectureExceedsItsTensors() throws {
        let path = try temporaryFile("m.safetensors")
        let big = Architecture.mlp(sizes: [784, 8192, 8192, 10], activation: .relu)
        try SafetensorsFile(tensors: ["0.weight": Tensor([1, 2])], metadata: [ModelFile.architectureKey: big.json]).write(to: path)
        assertBadFile(try ModelFile.load(path), "parameters but the file's tensors hold only 2 values")
    }
}
