/// Runs a layer's work on contiguous slices of a batch, one per core, with OpenBLAS set to one
/// thread meanwhile (restored after): the per-image or per-step products of convolutional and
/// recurrent layers are too small for BLAS's own threads. Slices must write disjoint memory;
/// reductions over slices are the caller's (in slice order, so results repeat).
///
/// The slices run on `WorkerPool.shared` (concurrentPerform mallocs about five times per call
/// and, on a loaded machine, often ran every slice on the calling thread). The error slots are
/// kept between calls, so running a `SlicedWork` object allocates nothing once sized; the
/// closure form costs the one box `withoutActuallyEscaping` makes per call.
final class BatchSlices {
    private var errors = UnsafeMutableBufferPointer<Error?>.allocate(capacity: 0)
    private let job = SliceJob()
    private let closureWork = ClosureWork()

    deinit { errors.deinitialize().deallocate() }

    /// The number of slices for `items` items with `threads` wanted: at least 1, at most `items`.
    static func count(threads: Int, items: Int) -> Int { max(1, min(threads, items)) }

    /// Slice `k` of `count` over `0..<items`: the range `run` hands to slice `k`.
    static func range(_ k: Int, of count: Int, items n: Int) -> Range<Int> { (k * n / count)..<((k + 1) * n / count) }

    /// Splits `0..<items` into `count` ranges whose sizes differ by at most one and runs
    /// `work.runSlice` on each, concurrently when `count > 1`. The first error thrown by a slice
    /// (in slice order) is rethrown.
    func run(count: Int, items n: Int, _ work: SlicedWork) throws {
        if count <= 1 { return try work.runSlice(0, items: 0..<n) }
        if errors.count < count {
            errors.deinitialize().deallocate()   // only nils: every run clears what it set
            errors = .allocate(capacity: count)
            errors.initialize(repeating: nil)
        }
        let blasThreads = BLAS.threadCount
        if blasThreads != 1 { BLAS.threadCount = 1 }
        defer { if blasThreads != 1 { BLAS.threadCount = blasThreads } }
        job.work = work
        job.items = n
        job.errors = errors
        WorkerPool.shared.run(parts: count, job)
        job.work = nil
        var first: Error?
        for k in 0..<count {
            if first == nil { first = errors[k] }
            errors[k] = nil
        }
        if let first { throw first }
    }

    /// `run` with a closure for the slice's work.
    func run(count: Int, items n: Int, _ body: (_ slice: Int, _ range: Range<Int>) throws -> Void) throws {
        if count <= 1 { return try body(0, 0..<n) }
        try withoutActuallyEscaping(body) { body in
            closureWork.body = body
            defer { closureWork.body = nil }
            try run(count: count, items: n, closureWork)
        }
    }
}

/// Work that `BatchSlices` splits by batch rows. Slices must write disjoint memory.
protocol SlicedWork: AnyObject {
    func runSlice(_ slice: Int, items: Range<Int>) throws
}

/// One `BatchSlices.run` call as a `WorkerPool` job: the slice's range, errors kept per slice.
private final class SliceJob: ParallelJob {
    unowned(unsafe) var work: SlicedWork?
    var items = 0
    var errors = UnsafeMutableBufferPointer<Error?>(start: nil, count: 0)

    func runPart(_ part: Int, of parts: Int) {
        guard let work else { return }
        do { try work.runSlice(part, items: BatchSlices.range(part, of: parts, items: items)) } catch { errors[part] = error }
    }
}

private final class ClosureWork: SlicedWork {
    var body: ((_ slice: Int, _ range: Range<Int>) throws -> Void)?
    func runSlice(_ slice: Int, items: Range<Int>) throws { try body?(slice, items) }
}
