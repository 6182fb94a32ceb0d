import Foundation
import XCTest
import Backprop
@testable import BackpropData

/// `TensorDataset`, `DataLoader`, `randomSplit` and `CSV.readTable`.
final class DataLoaderTests: DataTestCase {
    /// 10 samples of shape [2, 3]: sample i holds i*6 …; label i % 3.
    func sequences() throws -> TensorDataset {
        let x = try Tensor((0..<60).map(Float.init), shape: [10, 2, 3])
        return try TensorDataset(features: x, labels: (0..<10).map { $0 % 3 })
    }

    func testTensorDatasetChecksShapes() throws {
        let d = try sequences()
        XCTAssertEqual(d.count, 10)
        XCTAssertEqual(d.sampleShape, [2, 3])
        XCTAssertEqual(d.classCount, 3)
        XCTAssertThrowsError(try TensorDataset(features: [1, 2, 3], sampleShape: [2], labels: [0]))
        XCTAssertThrowsError(try TensorDataset(features: [1, 2], sampleShape: [2], labels: [0, 1]))
        XCTAssertThrowsError(try TensorDataset(features: [1, 2], sampleShape: [2], labels: [-1]))
        XCTAssertThrowsError(try TensorDataset(features: [1, 2], sampleShape: [2], targets: [1, 2, 3]))
        XCTAssertThrowsError(try d.subset([3, 10]))
        XCTAssertEqual(try d.subset(2..<4).features, (12..<24).map(Float.init))
    }

    func testLoaderCoversEachSampleOncePerEpochInBatchesOfTheSampleShape() throws {
        let d = try sequences()
        let loader = try DataLoader(d, batchSize: 4, shuffle: true, seed: 5)
        XCTAssertEqual(loader.count, 3)
        var orders: [[Int]] = []
        for _ in 0..<2 {
            var seen: [Int] = []
            var shapes: [[Int]] = []
            for batch in loader {
                shapes.append(batch.input.shape)
                for (r, i) in batch.indices.enumerated() {
                    XCTAssertEqual(batch.input.data[r * 6], Float(i * 6))
                    XCTAssertEqual(batch.labels[r], Int32(i % 3))
                }
                seen += batch.indices
            }
            XCTAssertEqual(shapes, [[4, 2, 3], [4, 2, 3], [2, 2, 3]])
            XCTAssertEqual(seen.sorted(), Array(0..<10))
            orders.append(seen)
        }
        XCTAssertNotEqual(orders[0], orders[1], "each for loop is a new epoch with its own order")
        XCTAssertNotEqual(orders[0], Array(0..<10))
        // Epoch e is a function of (seed, e): a second loader replays it, as the Batcher's order.
        let again = try DataLoader(d, batchSize: 4, shuffle: true, seed: 5)
        XCTAssertEqual(again.epoch(1).flatMap { Array($0.indices) }, orders[1])
        var batcher = try Batcher(try Dataset(images: [UInt8](repeating: 0, count: 10), labels: [UInt8](repeating: 0, count: 10),
                                              rows: 1, columns: 1), batchSize: 4, shuffle: true, seed: 5)
        batcher.startEpoch(0)
        var batcherOrder: [Int] = []
        while let b = batcher.next() { batcherOrder += b.indices }
        XCTAssertEqual(batcherOrder, orders[0])
    }

    func testDropLastUnshuffledAndBufferReuse() throws {
        let loader = try DataLoader(try sequences(), batchSize: 4, shuffle: false, dropLast: true)
        XCTAssertEqual(loader.count, 2)
        var inputs: [ObjectIdentifier] = []
        var indices: [Int] = []
        for batch in loader {
            inputs.append(ObjectIdentifier(batch.input))
            indices += batch.indices
        }
        XCTAssertEqual(indices, Array(0..<8))
        XCTAssertEqual(Set(inputs).count, 1, "one input buffer for every batch")
        XCTAssertThrowsError(try DataLoader(try sequences(), batchSize: 0))
    }

    func testFloatTargets() throws {
        let x = try Tensor((0..<8).map(Float.init), shape: [4, 2])
        let y = try Tensor([10, 11, 12, 13, 20, 21, 22, 23], shape: [4, 2])
        let loader = try DataLoader(try TensorDataset(features: x, targets: y), batchSize: 3, shuffle: false)
        let batches = Array(loader).map { ($0.targets?.shape ?? [], $0.targets?.scalars ?? [], $0.labels) }
        XCTAssertEqual(batches.count, 2)
        // The buffer is shared: read the last batch's values only.
        XCTAssertEqual(batches[1].0, [1, 2])
        XCTAssertTrue(batches[1].2.isEmpty)
        var it = loader.epoch(0).makeIterator()
        let first = try XCTUnwrap(it.next())
        XCTAssertEqual(first.targets?.scalars, [10, 11, 12, 13, 20, 21])
        XCTAssertEqual(first.count, 3)
    }

    func testImageDatasetGoesThroughTheBatcherPath() throws {
        let images = try Dataset(images: (0..<12).map { UInt8($0 * 20) }, labels: [0, 1, 2], rows: 2, columns: 2)
        let loader = try DataLoader(images, batchSize: 2, shuffle: false, layout: .image, normalization: .raw)
        var it = loader.makeIterator()
        let first = try XCTUnwrap(it.next())
        XCTAssertEqual(first.input.shape, [2, 1, 2, 2])
        XCTAssertEqual(first.input.scalars, (0..<8).map { Float($0 * 20) })
        XCTAssertEqual(first.labels, [0, 1])
        XCTAssertEqual(Array(loader).count, 2)
        let floats = try images.tensorDataset(layout: .sequence, normalization: .raw)
        XCTAssertEqual(floats.sampleShape, [2, 2])
        XCTAssertEqual(floats.labels, [0, 1, 2])
    }

    func testRandomSplitIsDisjointSeededAndComplete() throws {
        let d = try sequences()
        let parts = try d.randomSplit([6, 3, 1], seed: 9)
        XCTAssertEqual(parts.map(\.count), [6, 3, 1])
        let firsts = parts.flatMap { p in (0..<p.count).map { Int(p.features[$0 * 6]) / 6 } }
        XCTAssertEqual(firsts.sorted(), Array(0..<10))
        XCTAssertNotEqual(firsts, Array(0..<10))
        XCTAssertEqual(try d.randomSplit([6, 3, 1], seed: 9).map(\.features), parts.map(\.features))
        XCTAssertThrowsError(try d.randomSplit([6, 3], seed: 9))
        let (a, b) = try d.randomSplit(fraction: 0.8, seed: 1)
        XCTAssertEqual([a.count, b.count], [8, 2])
        let images = try Dataset(images: Array(0..<5), labels: [0, 1, 2, 3, 4], rows: 1, columns: 1)
        let (i1, i2) = try images.randomSplit(fraction: 0.6, seed: 2)
        XCTAssertEqual((i1.labels + i2.labels).sorted(), [0, 1, 2, 3, 4])
        XCTAssertEqual(i1.images, i1.labels)
    }

    // MARK: - CSV of numbers

    func testReadTableFloatsHeaderAndNamedLabel() throws {
        let p = try write("a,b,species,c\r\n5.1, 3.5 ,0,1e-1\n\n4.9,3.0,2,-0.2\n", "iris.csv")
        let d = try CSV.readTable(path: p, target: .labelNamed("species"))
        XCTAssertEqual(d.sampleShape, [3])
        XCTAssertEqual(d.features, [5.1, 3.5, 0.1, 4.9, 3.0, -0.2])
        XCTAssertEqual(d.labels, [0, 2])
        let noHeader = try write("0,1.5,2\n1,2.5,3\n", "plain.csv")
        XCTAssertEqual(try CSV.readTable(path: noHeader).labels, [0, 1])
        let last = try CSV.readTable(path: noHeader, target: .value(column: -1))
        XCTAssertEqual(last.features, [0, 1.5, 1, 2.5])
        XCTAssertEqual(last.targets, .values([2, 3], shape: [1]))
        // A header forced on: the first line is skipped even though it is numeric.
        XCTAssertEqual(try CSV.readTable(path: noHeader, header: true).count, 1)
    }

    /// Random mutations of a valid file (bytes replaced by CSV's own characters, cut short,
    /// lines duplicated) either parse into a consistent data set or give a badFile error naming
    /// the file: never a trap or a wrong count.
    func testReadTableFuzzedParsesOrNamesTheFile() throws {
        let valid = Array("x,y,label\n5.1,-3e-2,0\n4.9,3.0,2\n\n0.5, 7 ,1\r\n".utf8)
        let alphabet = Array("0123456789.,-+eE \t\r\nax".utf8)
        var rng = SeededGenerator(seed: 11)
        var parsed = 0
        for trial in 0..<1500 {
            var bytes = valid
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let i = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 4 {
                case 0: bytes[i] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                case 1: bytes.removeSubrange(i...)
                case 2: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: i)
                default: bytes.remove(at: i)
                }
                if bytes.isEmpty { break }
            }
            let p = try write(bytes, "fuzz-\(trial % 7).csv")
            do {
                let d = try CSV.readTable(path: p, target: .label(column: -1))
                XCTAssertEqual(d.features.count, d.count * d.featureCount)
                XCTAssertEqual(d.labels?.count, d.count)
                parsed += 1
            } catch let BackpropError.badFile(path, _, _) {
                XCTAssertEqual(path, p)
            }
        }
        XCTAssertGreaterThan(parsed, 50, "some mutations stay valid")
    }

    func testReadTableErrorsNameTheFileLineAndCell() throws {
        func expect(_ text: String, _ words: [String], target: CSV.Target = .label(column: 0), classes: Int? = nil,
                    line: UInt = #line) throws {
            let p = try write(text, "bad.csv")
            XCTAssertThrowsError(try CSV.readTable(path: p, target: target, classes: classes), line: line) { error in
                guard case let .badFile(path, _, reason)? = error as? BackpropError else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(path, p, line: line)
                for w in words { XCTAssertTrue(reason.contains(w), "\(w) not in: \(reason)", line: line) }
            }
        }
        try expect("1,2,3\n0,4\n", ["line 2", "2 cells, expected 3"])
        try expect("1,2,3\n0,x,5\n", ["line 2", "cell 2", "'x'", "not a number"])
        try expect("1,2,3\n0,,5\n", ["line 2", "cell 2 is empty"])
        try expect("", ["empty"])
        try expect("a,b,c\n", ["header but no data"])
        try expect("1,2\n7,3\n", ["line 2", "label 7", "3 classes"], classes: 3)
        try expect("1.5,2\n", ["line 1", "label 1.5"])
        try expect("a,b\n1,2\n", ["no column \"z\""], target: .labelNamed("z"))
        try expect("1,2\n", ["column 5"], target: .label(column: 5))
        try expect("0,1\n1,1e999\n", ["line 2", "not a number"])
    }
}
