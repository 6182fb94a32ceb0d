import XCTest
import Dispatch
@testable import Backprop

/// A job from a closure (tests only: a closure job allocates, which the engine's jobs must not).
final class ClosureJob: ParallelJob, @unchecked Sendable {
    let body: (Int, Int) -> Void
    init(_ body: @escaping (_ part: Int, _ parts: Int) -> Void) { self.body = body }
    func runPart(_ part: Int, of parts: Int) { body(part, parts) }
}

/// Hands a value to other threads; the test guarantees they touch disjoint memory.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

final class WorkerPoolTests: XCTestCase {
    /// Counts calls per part into a shared buffer (parts write disjoint slots).
    private func counts(_ pool: WorkerPool, parts: Int) -> [Int] {
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: max(parts, 1))
        slots.initialize(repeating: 0, count: max(parts, 1))
        defer { slots.deallocate() }
        pool.run(parts: parts, ClosureJob { k, _ in slots[k] += 1 })
        return Array(UnsafeBufferPointer(start: slots, count: parts))
    }

    func testEveryPartRunsOnce() {
        let pool = WorkerPool(threads: 3)
        XCTAssertEqual(pool.threadCount, 3)
        for parts in [0, 1, 2, 3, 7] {
            for _ in 0..<50 { XCTAssertEqual(counts(pool, parts: parts), Array(repeating: 1, count: parts), "parts \(parts)") }
        }
    }

    func testPartsRunOnDifferentThreads() {
        let pool = WorkerPool(threads: 2)
        var ids = [pthread_t](repeating: pthread_t(), count: 2)
        ids.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            pool.run(parts: 2, ClosureJob { k, _ in base[k] = pthread_self() })
        }
        XCTAssertEqual(ids[0], pthread_self(), "part 0 runs on the caller")
        XCTAssertNotEqual(ids[1], ids[0], "part 1 runs on the worker")
    }

    func testNestedAndConcurrentCallersFinish() {
        let pool = WorkerPool(threads: 2)
        // A job that runs the pool again from inside: the inner call finds it busy and runs inline.
        let inner = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        inner.initialize(repeating: 0, count: 4)
        defer { inner.deallocate() }
        pool.run(parts: 2, ClosureJob { k, _ in pool.run(parts: 2, ClosureJob { j, _ in inner[k * 2 + j] += 1 }) })
        XCTAssertEqual(Array(UnsafeBufferPointer(start: inner, count: 4)), [1, 1, 1, 1])
        // Four threads using the one pool at once: each call completes with all its parts run.
        let totals = UnsafeMutablePointer<Int>.allocate(capacity: 4 * 8)
        totals.initialize(repeating: 0, count: 32)
        defer { totals.deallocate() }
        let shared = UncheckedSendable((pool, totals))
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for _ in 0..<200 { shared.value.0.run(parts: 8, ClosureJob { k, _ in shared.value.1[caller * 8 + k] += 1 }) }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: totals, count: 32)), Array(repeating: 200, count: 32))
    }
}
