/// Element-wise work (optimizer updates) split across cores in contiguous chunks.
///
/// Why: an optimizer step reads and writes every parameter, its gradient and its state: for the
/// MNIST MLP that is 3 × 0.94 MB per step, more than one core's L2 cache, so one core spends the
/// step waiting on memory while the other sits idle. Two cores halve it. Chunks start at
/// multiples of 16 floats (one 64-byte cache line), so no two threads write the same line, and
/// each element is updated by the same arithmetic whatever the split: results do not depend on
/// the thread count.
public enum ParallelChunks {
    /// Upper bound on the threads used (the CLI sets it from `--threads`). Set it before training,
    /// not while a step runs.
    nonisolated(unsafe) public static var maximumThreads = BLAS.processorCount

    /// Below this many elements per thread the work runs on the calling thread alone (a wake-up
    /// costs about as much as updating ~16 K floats).
    public static let minimumPerThread = 32_768

    /// How many parts to split `n` elements into: 1 when `n` is small.
    public static func parts(elements n: Int) -> Int {
        Swift.max(1, Swift.min(maximumThreads, n / minimumPerThread))
    }

    /// The elements of part `k` of `parts` over `0..<n`: contiguous, starting at multiples of 16,
    /// together covering `0..<n` exactly once.
    @inline(__always)
    public static func range(part k: Int, of parts: Int, elements n: Int) -> Range<Int> {
        let lo = (k * n / parts) & ~15, hi = k + 1 == parts ? n : ((k + 1) * n / parts) & ~15
        return lo..<hi
    }

    /// Runs `job` over `n` elements: `job.runPart(k, of: parts)` for each part, concurrently on
    /// `WorkerPool.shared` when `n` is large; the job finds its elements with `range(part:of:elements:)`.
    public static func run(elements n: Int, _ job: any ParallelJob) {
        WorkerPool.shared.run(parts: parts(elements: n), job)
    }
}
