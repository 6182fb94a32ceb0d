import Backprop
@testable import BackpropTensorBoard
import Foundation
import XCTest

/// The event-file bytes against files written by the `tensorboard` Python package and PyTorch's
/// summary functions (scripts/make-tensorboard-fixtures.py), CRC-32C against the standard
/// vectors, and the writer's behaviour on bad directories, closing and resuming.
final class TensorBoardTests: XCTestCase {
    static let t0 = 1_700_000_000.5

    func fixture(_ name: String) throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil) else {
            throw XCTSkip("fixture \(name) missing")
        }
        return Array(try Data(contentsOf: url))
    }

    func tempDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "tb-test-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// A writer whose file_version record has wall time t0, as the fixtures'.
    func writer(in dir: String) throws -> SummaryWriter {
        try SummaryWriter(logDirectory: dir, fileName: "events.out.tfevents.test", clock: { TensorBoardTests.t0 })
    }

    func written(_ w: SummaryWriter) throws -> [UInt8] {
        try w.close()
        return Array(try Data(contentsOf: URL(fileURLWithPath: w.path)))
    }

    // MARK: CRC-32C

    func testCRC32CStandardVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)      // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
        // Masked as TFRecord (values from tensorboard.summary.writer.record_writer.masked_crc32c).
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
        XCTAssertEqual(CRC32C.masked([UInt8]()), 0xA282_EAD8)
    }

    // MARK: Bytes against the reference

    func testScalarsMatchTensorBoardBytes() throws {
        let w = try writer(in: try tempDirectory())
        try w.addScalar("loss/train", 0.25, step: 3, wallTime: Self.t0 + 1)
        try w.addScalar("zero", 0, step: 0, wallTime: Self.t0 + 2)
        try w.addScalar("big step", -1.5, step: 1 << 40, wallTime: Self.t0 + 3)
        XCTAssertEqual(try written(w), try fixture("scalars.tfevents"))
    }

    func testHistogramsMatchPyTorchBytes() throws {
        let w = try writer(in: try tempDirectory())
        try w.addHistogram("weight/0.weight", try Tensor([-2, -0.5, 0, 0.25, 0.25, 1, 3], shape: [7]), step: 1, wallTime: Self.t0 + 1)
        try w.addHistogram("positive", try Tensor([0.5, 0.75, 4096], shape: [3]), step: 2, wallTime: Self.t0 + 2)
        try w.addHistogram("one value", try Tensor([-1e-13], shape: [1]), step: 3, wallTime: Self.t0 + 3)
        XCTAssertEqual(try written(w), try fixture("histograms.tfevents"))
    }

    func testTextMatchesPyTorchBytes() throws {
        let w = try writer(in: try tempDirectory())
        try w.addText("flags/text_summary", "backprop train --epochs 3 --tensorboard runs/mlp\n\n| a | b |\n|---|---|\n| é | 1 |",
                      step: 0, wallTime: Self.t0 + 1)
        XCTAssertEqual(try written(w), try fixture("text.tfevents"))
    }

    func testModelGraphMatchesGraphDefBytes() throws {
        let model = Sequential(try Dense(4, 3, seed: 1), ReLU())
        var nodes = try ModelGraph.nodes(of: model, input: try Tensor(zeros: [2, 4]))
        XCTAssertEqual(nodes.map(\.name), ["input", "Sequential/Dense[0]/weight", "Sequential/Dense[0]/bias",
                                           "Sequential/Dense[0]/Dense", "Sequential/ReLU[1]/ReLU", "output"])
        nodes.append(GraphNode(name: "no shape", op: "Mul", inputs: ["input", "input"]))
        let w = try writer(in: try tempDirectory())
        try w.addGraph(nodes: nodes, wallTime: Self.t0 + 1)
        XCTAssertEqual(try written(w), try fixture("graph.tfevents"))
    }

    /// A failing comparison must be able to fail: one changed value changes the bytes.
    func testDifferentValueDiffers() throws {
        let w = try writer(in: try tempDirectory())
        try w.addScalar("loss/train", 0.2500001, step: 3, wallTime: Self.t0 + 1)
        try w.addScalar("zero", 0, step: 0, wallTime: Self.t0 + 2)
        try w.addScalar("big step", -1.5, step: 1 << 40, wallTime: Self.t0 + 3)
        XCTAssertNotEqual(try written(w), try fixture("scalars.tfevents"))
    }

    // MARK: Histograms

    func testHistogramSummaryAndBuckets() throws {
        let values: [Float] = [-3, -1, 0, 0, 0.5, 2, .nan, .infinity]
        let h = try XCTUnwrap(Histogram(values))
        XCTAssertEqual(h.num, 6)          // NaN and ∞ left out
        XCTAssertEqual(h.min, -3)
        XCTAssertEqual(h.max, 2)
        XCTAssertEqual(h.sum, -1.5)
        XCTAssertEqual(h.sumSquares, 9 + 1 + 0.25 + 4)
        XCTAssertEqual(h.buckets.reduce(0, +), 6)
        XCTAssertEqual(h.buckets.first, 0)  // the empty bucket on the left, as PyTorch writes
        XCTAssertEqual(h.buckets.count, h.bucketLimits.count)
        XCTAssertLessThanOrEqual(h.bucketLimits[0], -3)  // the left edge of the first value's bin
        XCTAssertGreaterThan(h.bucketLimits.last!, 2)
        XCTAssertTrue(zip(h.bucketLimits, h.bucketLimits.dropFirst()).allSatisfy { $0 < $1 })
        // Each value lies in the bucket whose right edge is the first limit above it.
        for v in [-3.0, -1, 0, 0.5, 2] {
            let i = try XCTUnwrap(h.bucketLimits.firstIndex { $0 > v })
            XCTAssertGreaterThan(h.buckets[i], 0, "value \(v)")
        }
        XCTAssertEqual(h.buckets[try XCTUnwrap(h.bucketLimits.firstIndex { $0 > 0 })], 2)  // the two zeros
        XCTAssertNil(Histogram([Float.nan]))
        XCTAssertEqual(Histogram.defaultEdges.count, 1549)
        XCTAssertEqual(Histogram.defaultEdges[774], 0)
    }

    /// The table-driven bin equals a binary search over the edges (numpy's rule) for values at,
    /// next to and between every edge, zeros, and values beyond ±1e20.
    func testBinningEqualsBinarySearch() {
        let edges = Histogram.defaultEdges
        func reference(_ x: Float) -> Int {
            let v = Double(x)
            guard v >= edges[0], v <= edges[edges.count - 1] else { return -1 }
            if v == edges[edges.count - 1] { return edges.count - 2 }
            var a = 0, b = edges.count - 1  // e[a] ≤ v < e[b]
            while b - a > 1 {
                let m = (a + b) >> 1
                if edges[m] <= v { a = m } else { b = m }
            }
            return a
        }
        var values: [Float] = [0, -0, 1e-12, -1e-12, 1e-13, -1e-13, 1e20, -1e20, 3e20, -3e20,
                               .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude]
        for e in edges {
            let f = Float(e)
            values += [f, f.nextUp, f.nextDown, Float(e * 1.05)]
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20000 { values.append(Float(bitPattern: UInt32.random(in: 0..<0x7F80_0000, using: &rng) | (Bool.random() ? 0x8000_0000 : 0))) }
        var mismatches = 0
        Histogram.positiveEdges.withUnsafeBufferPointer { p in
            Histogram.cellBase.withUnsafeBufferPointer { base in
                for x in values where Histogram.bin(x, positive: p, base: base) != reference(x) {
                    if mismatches < 5 { XCTFail("bin(\(x)) = \(Histogram.bin(x, positive: p, base: base)), expected \(reference(x))") }
                    mismatches += 1
                }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    // MARK: Files

    /// Every record of an event file, checking both CRCs; throws at a truncated record.
    static func records(_ bytes: [UInt8]) throws -> [[UInt8]] {
        struct Truncated: Error {}
        struct BadCRC: Error {}
        func u32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[i + $1]) << (8 * UInt32($1)) } }
        var out: [[UInt8]] = [], i = 0
        while i < bytes.count {
            guard i + 12 <= bytes.count else { throw Truncated() }
            let n = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) })
            guard CRC32C.masked(bytes[i..<(i + 8)]) == u32(i + 8) else { throw BadCRC() }
            guard i + 12 + n + 4 <= bytes.count else { throw Truncated() }
            let data = Array(bytes[(i + 12)..<(i + 12 + n)])
            guard CRC32C.masked(data) == u32(i + 12 + n) else { throw BadCRC() }
            out.append(data)
            i += 16 + n
        }
        return out
    }

    func testFlushWritesWholeRecordsOnly() throws {
        let dir = try tempDirectory()
        let w = try SummaryWriter(logDirectory: dir)
        XCTAssertTrue(URL(fileURLWithPath: w.path).lastPathComponent.hasPrefix("events.out.tfevents."))
        XCTAssertEqual(try Self.records(Array(try Data(contentsOf: URL(fileURLWithPath: w.path)))).count, 1)  // file_version at once
        try w.addScalar("a", 1, step: 1)
        try w.addHistogram("h", try Tensor([1, 2, 3], shape: [3]), step: 1)
        XCTAssertEqual(try Self.records(Array(try Data(contentsOf: URL(fileURLWithPath: w.path)))).count, 1)  // pending
        try w.flush()
        XCTAssertEqual(try Self.records(Array(try Data(contentsOf: URL(fileURLWithPath: w.path)))).count, 3)
        try w.close()
        XCTAssertThrowsError(try w.addScalar("a", 1, step: 2)) { XCTAssertEqual($0 as? TensorBoardError, .closed(path: w.path)) }
        try w.close()  // a second close does nothing
    }

    func testCreatesMissingDirectory() throws {
        let dir = try tempDirectory() + "/runs/mlp"
        let w = try SummaryWriter(logDirectory: dir)
        try w.close()
        XCTAssertTrue(FileManager.default.fileExists(atPath: w.path))
    }

    func testFileInsteadOfDirectoryIsRefused() throws {
        let file = try tempDirectory() + "/plain"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        XCTAssertThrowsError(try SummaryWriter(logDirectory: file)) {
            XCTAssertEqual($0 as? TensorBoardError, .notADirectory(path: file))
        }
        XCTAssertThrowsError(try SummaryWriter(logDirectory: file + "/below")) { error in
            guard case .cannotCreate(let path, _)? = error as? TensorBoardError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, file + "/below")
        }
    }

    func testUnwritableDirectoryIsRefused() throws {
        // /proc refuses new files even to root.
        XCTAssertThrowsError(try SummaryWriter(logDirectory: "/proc")) { error in
            guard case .cannotCreate(let path, _)? = error as? TensorBoardError else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasPrefix("/proc/events.out.tfevents."))
        }
        // The first folder that cannot be made is named, with the system's reason.
        XCTAssertThrowsError(try SummaryWriter(logDirectory: "/proc/backprop-tb/run")) { error in
            XCTAssertEqual("\(error)", "/proc/backprop-tb: cannot create the TensorBoard log: cannot make the folder: No such file or directory")
        }
    }

    func testSecondWriterSortsAfterFirst() throws {
        let dir = try tempDirectory()
        let first = try SummaryWriter(logDirectory: dir)
        try first.close()
        let second = try SummaryWriter(logDirectory: dir)
        try second.close()
        XCTAssertNotEqual(first.path, second.path)
        XCTAssertLessThan(first.path, second.path)
    }

    // MARK: Graphs

    func testRecordedGraphNodes() throws {
        let x = try Variable([1, 2, 3, 4], shape: [2, 2])
        let w = try Variable([1, 0, 0, 1], shape: [2, 2], requiresGrad: true)
        let y = try (x * w) + w
        let nodes = ModelGraph.nodes(of: y)
        XCTAssertEqual(nodes.count, 4)
        XCTAssertEqual(nodes.filter { $0.op == "Parameter" }.count, 1)
        XCTAssertEqual(nodes.filter { $0.op == "Constant" }.count, 1)
        let last = try XCTUnwrap(nodes.last)
        XCTAssertEqual(last.op, y.op)
        XCTAssertEqual(last.outputShape, [2, 2])
        XCTAssertEqual(last.inputs.count, 2)
        // Every input names an earlier node.
        for (i, n) in nodes.enumerated() {
            for input in n.inputs { XCTAssertTrue(nodes[..<i].contains { $0.name == input }, "\(input)") }
        }
    }

    func testRecurrentModelGraphUsesParameterNames() throws {
        let model = try SequenceClassifier(kind: .lstm, inputSize: 3, hiddenSize: 4, classes: 2)
        let nodes = try ModelGraph.nodes(of: model, input: try Tensor(zeros: [2, 5, 3]))
        let parameterNodes = nodes.filter { $0.op == "Parameter" }
        XCTAssertEqual(parameterNodes.map(\.attributes), model.namedParameters.map(\.name))
        XCTAssertTrue(nodes.contains { $0.name.hasPrefix("SequenceClassifier/Dense[fc]/") })
        XCTAssertEqual(nodes.last?.outputShape, [2, 2])
    }
}
