import XCTest
import Backprop
import BackpropMPI

/// The library API in one process (MPI's singleton mode, no mpirun: size 1). The multi-rank
/// behaviour is tested through `mpirun` in BackpropCLITests/DistributedTests.swift.
final class DataParallelTests: XCTestCase {
    func world() throws -> Communicator {
        guard FileManager.default.fileExists(atPath: "/usr/include/x86_64-linux-gnu/mpi/mpi.h")
                || FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h") else {
            throw XCTSkip("Open MPI not installed")
        }
        return try Communicator.initializeWorld()
    }

    func mlp() throws -> Sequential {
        var rng = SeededGenerator(seed: 7)
        return Sequential(try Dense(784, 256, rng: &rng), ReLU(), try Dense(256, 128, rng: &rng), ReLU(),
                          try Dense(128, 10, rng: &rng))
    }

    func testCollectivesOfOneRank() throws {
        let w = try world()
        XCTAssertEqual(w.size, 1)
        XCTAssertEqual(w.rank, 0)
        let t = try Tensor([1, 2, 3], shape: [3])
        try w.allreduce(t, .sum)
        try w.allreduce(t, .average)
        try w.broadcast(t, root: 0)
        try w.barrier()
        XCTAssertEqual(Array(UnsafeBufferPointer(start: t.data, count: 3)), [1, 2, 3])
        XCTAssertEqual(try w.allreduce([1.5, -2], .max), [1.5, -2])
        XCTAssertEqual(try w.allgather(42), [42])
        let r = try w.startAllreduce(t.data, count: 3)
        try r.waitPolitely()
        XCTAssertTrue(r.isComplete)
        XCTAssertThrowsError(try w.broadcast(t, root: 1)) { XCTAssertTrue("\($0)".contains("root 1 is not a rank of 1")) }
    }

    /// Buckets follow backward's order (last layer first); a weight of at least the bucket size
    /// goes alone (reduced in place), the small ones before it share a bucket.
    func testBucketsInBackwardOrder() throws {
        let model = try mlp()
        let ddp = try DataParallel(model, communicator: try world())
        let names = Dictionary(uniqueKeysWithValues: model.namedParameters.map { (ObjectIdentifier($0.parameter), $0.name) })
        let order = ddp.backwardOrder.map { names[ObjectIdentifier($0)] ?? "?" }
        XCTAssertEqual(order, ["4.weight", "4.bias", "2.weight", "2.bias", "0.weight", "0.bias"])
        XCTAssertEqual(ddp.bucketRanges, [0..<4, 4..<5, 5..<6])
        // The first layer's weight and bias are final only when backward ends: reduced by blocking
        // calls; the last layers' bucket overlaps the first layer's backward.
        XCTAssertEqual(ddp.blockingBuckets, 1..<3)
        let leading = Sequential(Flatten(), try mlp())
        let nested = try DataParallel(leading, communicator: try world())
        XCTAssertEqual(nested.blockingBuckets, 0..<nested.bucketRanges.count,
                       "one layer with parameters: all of it is final at the end")
        XCTAssertEqual(try DataParallel(Sequential(Flatten(), model.layers[0], model.layers[1], model.layers[2]),
                                        communicator: try world()).blockingBuckets, 1..<3, "a leading parameter-free layer")
        let whole = try DataParallel(model, communicator: try world(), bucketBytes: 1 << 30)
        XCTAssertEqual(whole.bucketRanges, [0..<6])
        XCTAssertThrowsError(try DataParallel(model, communicator: try world(), bucketBytes: 0))
    }

    /// With one rank the reduced gradients are the plain backward's, bucket by bucket.
    func testGradientsEqualPlainBackwardAndMisuseIsRefused() throws {
        let model = try mlp()
        var rng = SeededGenerator(seed: 3)
        let x = try Tensor((0..<(8 * 784)).map { _ in Float(rng.next() % 100) / 100 }, shape: [8, 784])
        let delta = try Tensor((0..<80).map { _ in Float(rng.next() % 100) / 1000 - 0.05 }, shape: [8, 10])
        model.zeroGrad()
        _ = try model.forward(x)
        _ = try model.backward(delta.copy())
        let expected = model.parameters.map { $0.grad.copy() }
        // Buckets of one parameter (in place) and one bucket of all (packed and unpacked).
        for bucketBytes in [4096, 1 << 30] {
            let ddp = try DataParallel(model, communicator: try world(), bucketBytes: bucketBytes)
            model.zeroGrad()
            _ = try model.forward(x)
            XCTAssertThrowsError(try ddp.waitForGradients())
            _ = try ddp.backward(delta.copy(), weight: 1)
            XCTAssertThrowsError(try ddp.backward(delta.copy(), weight: 1))
            try ddp.waitForGradients()
            for (p, e) in zip(model.parameters, expected) {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: p.grad.data, count: p.grad.count)),
                               Array(UnsafeBufferPointer(start: e.data, count: e.count)))
            }
        }
        let ddp = try DataParallel(model, communicator: try world())
        try ddp.contributeNothing()
        try ddp.waitForGradients()
        XCTAssertTrue(model.parameters.allSatisfy { p in (0..<p.grad.count).allSatisfy { p.grad.data[$0] == 0 } })
    }
}
