import XCTest
import Backprop
@testable import BackpropData

final class BatcherTests: XCTestCase {
    /// 10 examples of 2 × 2 pixels; example i has pixels (10i, 10i+1, 10i+2, 255) and label i % 3.
    func tenExamples() throws -> Dataset {
        var images: [UInt8] = []
        var labels: [UInt8] = []
        for i in 0..<10 {
            let base = UInt8(10 * i)
            images += [base, base + 1, base + 2, 255]
            labels.append(UInt8(i % 3))
        }
        return try Dataset(images: images, labels: labels, rows: 2, columns: 2)
    }

    func epochOrders(_ batcher: inout Batcher, epochs: Int) -> [[Int]] {
        (0..<epochs).map { _ in
            batcher.startEpoch()
            var seen: [Int] = []
            while let batch = batcher.next() { seen += batch.indices }
            return seen
        }
    }

    func testShuffleIsASeededPermutationPerEpoch() throws {
        var rng = SeededGenerator(seed: 9)
        let n = 1000
        let set = try Dataset(images: (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, labels: [UInt8](repeating: 0, count: n), rows: 1, columns: 1)
        var a = try Batcher(set, batchSize: 64, shuffle: true, seed: 1)
        var b = try Batcher(set, batchSize: 64, shuffle: true, seed: 1)
        var c = try Batcher(set, batchSize: 64, shuffle: true, seed: 2)
        let ea = epochOrders(&a, epochs: 3), eb = epochOrders(&b, epochs: 3), ec = epochOrders(&c, epochs: 3)
        XCTAssertEqual(ea, eb, "same seed, same orders")
        for e in 0..<3 {
            XCTAssertEqual(ea[e].sorted(), Array(0..<n), "epoch \(e) is a permutation")
            XCTAssertNotEqual(ea[e], Array(0..<n), "epoch \(e) is shuffled")
            XCTAssertNotEqual(ea[e], ec[e], "another seed, another order")
        }
        XCTAssertNotEqual(ea[0], ea[1]); XCTAssertNotEqual(ea[1], ea[2])
        // An epoch's order depends on (seed, epoch) only: resuming at epoch 2 gives the same batches.
        var resumed = try Batcher(set, batchSize: 64, shuffle: true, seed: 1)
        resumed.startEpoch(2)
        XCTAssertEqual(resumed.order, ea[2])
        // No shuffling: file order.
        var fixed = try Batcher(set, batchSize: 64, shuffle: false)
        XCTAssertEqual(epochOrders(&fixed, epochs: 2), [Array(0..<n), Array(0..<n)])
    }

    func testShuffleIsUniformEnough() {
        // Each of the 6 orders of 3 elements over 6000 shuffles: expected 1000 each; a biased
        // shuffle (e.g. swapping with any position) is off by more than 10%.
        var counts: [[Int]: Int] = [:]
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<6000 {
            var a = [0, 1, 2]
            Batcher.fisherYates(&a, using: &rng)
            counts[a, default: 0] += 1
        }
        XCTAssertEqual(counts.count, 6)
        for (order, k) in counts { XCTAssertTrue((900...1100).contains(k), "\(order): \(k)") }
    }

    func testBatchesHoldTheRightExamplesAndAPartialLastBatch() throws {
        let set = try tenExamples()
        var batcher = try Batcher(set, batchSize: 4, shuffle: true, seed: 7)
        XCTAssertEqual(batcher.batchesPerEpoch, 3)
        var sizes: [Int] = [], shapes: [[Int]] = [], seen: [Int] = []
        var firstStorage: TensorStorage?
        var labelAddress: UnsafePointer<Int32>?
        while let batch = batcher.next() {
            sizes.append(batch.count)
            shapes.append(batch.input.shape)
            seen += batch.indices
            for (r, i) in batch.indices.enumerated() {
                XCTAssertEqual(batch.labels[r], Int32(set.labels[i]))
                for j in 0..<4 {
                    XCTAssertEqual(batch.input[r, j], Float(set.images[i * 4 + j]) / 255)
                }
            }
            // The same buffers every batch: no allocation after the first.
            if let firstStorage { XCTAssertTrue(batch.input.storage === firstStorage) } else { firstStorage = batch.input.storage }
            let address = batch.labels.withUnsafeBufferPointer { $0.baseAddress }
            if let labelAddress { XCTAssertEqual(address, labelAddress) } else { labelAddress = address }
        }
        XCTAssertEqual(sizes, [4, 4, 2])
        XCTAssertEqual(shapes, [[4, 4], [4, 4], [2, 4]])
        XCTAssertEqual(seen.sorted(), Array(0..<10))
        XCTAssertNil(batcher.next(), "the epoch is over")
        // dropLast: only full batches.
        var dropping = try Batcher(set, batchSize: 4, shuffle: false, dropLast: true)
        XCTAssertEqual(dropping.batchesPerEpoch, 2)
        var count = 0
        while let batch = dropping.next() { XCTAssertEqual(batch.count, 4); count += 1 }
        XCTAssertEqual(count, 2)
        // A batch larger than the set: one partial batch.
        var big = try Batcher(set, batchSize: 32, shuffle: false)
        XCTAssertEqual(big.next()?.input.shape, [10, 4])
        XCTAssertNil(big.next())
    }

    func testNormalisationValuesAreExact() throws {
        let set = try Dataset(images: [0, 1, 128, 255], labels: [0], rows: 2, columns: 2)
        func first(_ n: Normalization) throws -> [Float] {
            var b = try Batcher(set, batchSize: 1, shuffle: false, normalization: n)
            return try XCTUnwrap(b.next()).input.scalars
        }
        XCTAssertEqual(try first(.raw), [0, 1, 128, 255])
        XCTAssertEqual(try first(.unit), [0, 1 / Float(255), 128 / Float(255), 1])
        // torchvision: ToTensor (x / 255 in float32) then Normalize ((x − 0.1307) / 0.3081 in float32).
        let m: Float = 0.1307, s: Float = 0.3081
        let mnist = try first(.mnist)
        XCTAssertEqual(mnist, [(0 - m) / s, (1 / Float(255) - m) / s, (128 / Float(255) - m) / s, (1 - m) / s])
        // Hand values (Double): −0.1307/0.3081 = −0.424213…, (1 − 0.1307)/0.3081 = 2.821487…
        XCTAssertEqual(Double(mnist[0]), -0.42421292, accuracy: 1e-6)
        XCTAssertEqual(Double(mnist[3]), 2.82148653, accuracy: 1e-6)
        // The same values for prediction through `apply`.
        var out = [Float](repeating: 0, count: 4)
        out.withUnsafeMutableBufferPointer { Normalization.mnist.apply(set.images, into: $0.baseAddress!) }
        XCTAssertEqual(out, mnist)
    }

    func testLayouts() throws {
        let set = try tenExamples()
        var image = try Batcher(set, batchSize: 3, shuffle: false, layout: .image)
        let batch = try XCTUnwrap(image.next())
        XCTAssertEqual(batch.input.shape, [3, 1, 2, 2])
        XCTAssertEqual(batch.input[1, 0, 1, 0], Float(12) / 255)  // example 1, row 1, column 0 = pixel 2
        var sequence = try Batcher(set, batchSize: 3, shuffle: false, layout: .sequence)
        XCTAssertEqual(sequence.next()?.input.shape, [3, 2, 2])
        XCTAssertEqual(BatchLayout.image.shape(batch: 128, for: set), [128, 1, 2, 2])
    }

    func testInvalidArguments() throws {
        let set = try tenExamples()
        XCTAssertThrowsError(try Batcher(set, batchSize: 0))
        XCTAssertThrowsError(try Batcher(set, batchSize: 1, normalization: .standardized(mean: 0, std: 0)))
        XCTAssertThrowsError(try Dataset(images: [1, 2, 3], labels: [0], rows: 2, columns: 2))
        XCTAssertThrowsError(try set.subset(5..<11))
        let sub = try set.subset(2..<4)
        XCTAssertEqual(sub.labels, [2, 0]); XCTAssertEqual(sub.images, [20, 21, 22, 255, 30, 31, 32, 255])
    }
}

/// The data-parallel split of a global batch: consecutive rows in rank order, the first
/// `rows % ranks` ranks one row more, and the shares together are exactly the unsharded batch.
final class BatcherShardTests: XCTestCase {
    func testShareRangesCoverTheBatchInRankOrder() {
        XCTAssertEqual((0..<4).map { Batcher.shareRange(rows: 10, rank: $0, of: 4) }, [0..<3, 3..<6, 6..<8, 8..<10])
        XCTAssertEqual((0..<3).map { Batcher.shareRange(rows: 2, rank: $0, of: 3) }, [0..<1, 1..<2, 2..<2])
        for rows in 0...20 {
            for ranks in 1...7 {
                let shares = (0..<ranks).map { Batcher.shareRange(rows: rows, rank: $0, of: ranks) }
                XCTAssertEqual(shares.first?.lowerBound, 0)
                XCTAssertEqual(shares.last?.upperBound, rows)
                for (a, b) in zip(shares, shares.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                XCTAssertLessThanOrEqual((shares.map(\.count).max() ?? 0) - (shares.map(\.count).min() ?? 0), 1)
            }
        }
    }

    func testShardedBatchesAreTheSingleProcessBatchesSplit() throws {
        var rng = SeededGenerator(seed: 4)
        let n = 37, f = 4
        let data = try Dataset(images: (0..<(n * f)).map { _ in UInt8(rng.next() % 256) },
                               labels: (0..<n).map { UInt8($0 % 10) }, rows: 2, columns: 2)
        var whole = try Batcher(data, batchSize: 10, shuffle: true, seed: 3)
        whole.startEpoch(2)
        var parts = try (0..<3).map { r -> Batcher in
            var b = try Batcher(data, batchSize: 10, shuffle: true, seed: 3)
            try b.setShard(rank: r, of: 3)
            b.startEpoch(2)
            return b
        }
        while let w = whole.next() {
            var labels: [Int32] = [], values: [Float] = []
            let expected = Array(UnsafeBufferPointer(start: w.input.data, count: w.input.count))
            let wholeLabels = w.labels
            for r in 0..<3 {
                guard let p = parts[r].next() else { return XCTFail("rank \(r) ran out of batches") }
                XCTAssertEqual(p.globalCount, w.count)
                labels += p.labels
                values += Array(UnsafeBufferPointer(start: p.input.data, count: p.input.count))
            }
            XCTAssertEqual(labels, wholeLabels)
            XCTAssertEqual(values, expected)
        }
        for r in 0..<3 { XCTAssertNil(parts[r].next()) }
        XCTAssertThrowsError(try parts[0].setShard(rank: 3, of: 3))
    }
}
