import XCTest
@testable import Backprop
import BackpropOptim

/// Optimizer steps split a large parameter across threads (ParallelChunks). Each element gets the
/// same arithmetic whatever the split, so one thread and several must give identical bits.
final class ParallelOptimizerTests: XCTestCase {
    override func tearDown() { ParallelChunks.maximumThreads = BLAS.processorCount }

    /// Three steps of `make` on a 200 003-element parameter (odd, so chunk edges fall mid-vector),
    /// with the given thread cap; returns the parameter afterwards.
    private func run(threads: Int, _ make: ([Parameter]) throws -> Optimizer) throws -> [Float] {
        ParallelChunks.maximumThreads = threads
        let n = 200_003
        let p = Parameter(try Tensor((0..<n).map { Float($0 % 97) * 0.01 - 0.4 }, shape: [n]))
        let optimizer = try make([p])
        for step in 0..<3 {
            let g = p.grad.data
            for j in 0..<n { g[j] = Float((j * 31 + step * 7) % 101) * 0.02 - 1 }
            try optimizer.step()
        }
        return p.value.scalars
    }

    private func assertSameBits(_ make: ([Parameter]) throws -> Optimizer, _ name: String) throws {
        let one = try run(threads: 1, make), many = try run(threads: 4, make)
        XCTAssertEqual(one.count, many.count)
        let differing = zip(one, many).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(name): \(differing) elements differ between 1 and 4 threads")
        // The steps did move the parameter (the comparison above is not between two no-ops).
        XCTAssertNotEqual(one[12345], Float(12345 % 97) * 0.01 - 0.4, name)
    }

    func testChunkedStepsEqualOneThread() throws {
        try assertSameBits({ try SGD(parameters: $0, lr: 0.05, momentum: 0.9, weightDecay: 1e-4) }, "SGD")
        try assertSameBits({ try Adam(parameters: $0, lr: 1e-3, weightDecay: 1e-4) }, "Adam")
        try assertSameBits({ try AdamW(parameters: $0, lr: 1e-3) }, "AdamW")
        try assertSameBits({ try RMSProp(parameters: $0, lr: 1e-3, momentum: 0.5, centered: true) }, "RMSProp")
    }

    func testChunksCoverEveryElementOnce() {
        for n in [0, 1, 15, 65_536, 65_537, 200_003] {
            for threads in [1, 2, 3, 8] {
                ParallelChunks.maximumThreads = threads
                let counts = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
                counts.initialize(repeating: 0, count: max(n, 1))
                defer { counts.deallocate() }
                ParallelChunks.run(elements: n, ClosureJob { k, parts in
                    for j in ParallelChunks.range(part: k, of: parts, elements: n) { counts[j] += 1 }
                })
                XCTAssertTrue((0..<n).allSatisfy { counts[$0] == 1 }, "n \(n), threads \(threads)")
            }
        }
    }
}
