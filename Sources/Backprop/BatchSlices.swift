/// Hands a value to other threads; the caller guarantees that they touch disjoint memory.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs a layer's work on contiguous slices of a batch, one per core, with OpenBLAS set to one
/// thread meanwhile (restored after): the per-image or per-step products of convolutional and
/// recurrent layers are too small for BLAS's own threads. Slices must write disjoint memory;
/// reductions over slices are the caller's (in slice order, so results repeat).
///
/// The slices run on `WorkerPool.shared` (concurrentPerform mallocs about five times per call
/// and, on a loaded machine, often ran every slice on the calling thread). The error slots are
/// kept between calls; the one allocation left per call is the box `withoutActuallyEscaping`
/// makes for the closure (layers on the hot path of a whole network run as `Sequential`
/// stretches instead, which allocate nothing).
final class BatchSlices {
    private var errors = UnsafeMutableBufferPointer<Error?>.allocate(capacity: 0)
    private let job = SliceJob()

    deinit { errors.deinitialize().deallocate() }

    /// The number of slices for `items` items with `threads` wanted: at least 1, at most `items`.
    static func count(threads: Int, items: Int) -> Int { max(1, min(threads, items)) }

    /// Slice `k` of `count` over `0..<items`: the range `run` hands to slice `k`.
    static func range(_ k: Int, of count: Int, items n: Int) -> Range<Int> { (k * n / count)..<((k + 1) * n / count) }

    /// Splits `0..<items` into `count` ranges whose sizes differ by at most one and runs `body`
    /// on each, concurrently when `count > 1`. The first error thrown by a slice is rethrown.
    func run(count: Int, items n: Int, _ body: (_ slice: Int, _ range: Range<Int>) throws -> Void) throws {
        if count <= 1 { return try body(0, 0..<n) }
        if errors.count < count {
            errors.deinitialize().deallocate()   // only nils: every run clears what it set
            errors = .allocate(capacity: count)
            errors.initialize(repeating: nil)
        }
        let blasThreads = BLAS.threadCount
        if blasThreads != 1 { BLAS.threadCount = 1 }
        defer { if blasThreads != 1 { BLAS.threadCount = blasThreads } }
        let slots = errors
        withoutActuallyEscaping(body) { body in
            job.body = body
            job.items = n
            job.errors = slots
            WorkerPool.shared.run(parts: count, job)
            job.body = nil
        }
        var first: Error?
        for k in 0..<count {
            if first == nil { first = slots[k] }
            slots[k] = nil
        }
        if let first { throw first }
    }
}

/// One `BatchSlices.run` call as a `WorkerPool` job.
private final class SliceJob: ParallelJob {
    var body: ((_ slice: Int, _ range: Range<Int>) throws -> Void)?
    var items = 0
    var errors = UnsafeMutableBufferPointer<Error?>(start: nil, count: 0)

    func runPart(_ part: Int, of parts: Int) {
        guard let body else { return }
        do { try body(part, BatchSlices.range(part, of: parts, items: items)) } catch { errors[part] = error }
    }
}
