#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// A fixed set of worker threads that run the parts of one job alongside the caller, allocating
/// nothing per job.
///
/// Why not `DispatchQueue.concurrentPerform`: it mallocs about five times per call (measured with
/// ordo-one/benchmark's malloc counter), and a training step must allocate nothing once its
/// buffers are sized. Here the threads are created once; a job hands its closure over in a
/// property and wakes the workers with semaphores, which allocate nothing.
///
/// `run` is safe to call from several threads and from inside a job: a caller that finds the pool
/// busy runs every part itself, in order (same results, no deadlock).
///
/// A job is an object, not a closure: handing a non-escaping closure to other threads needs
/// `withoutActuallyEscaping`, which boxes the closure on the heap (a malloc per call, seen in gdb).
public final class WorkerPool: @unchecked Sendable {
    /// One pool for the process: the caller plus `processorCount − 1` workers.
    public static let shared = WorkerPool(threads: BLAS.processorCount)

    /// Parts that run concurrently: the workers plus the calling thread.
    public var threadCount: Int { workers.count + 1 }

    private var workers: [pthread_t] = []   // written only by init
    private let wake: [DispatchSemaphore]
    private let finished = DispatchSemaphore(value: 0)
    // On the heap: a class's stored property has no stable address to hand to pthread.
    private let busy = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    // The job in progress: valid only between the wake-ups and the last `finished` signal.
    private unowned(unsafe) var job: (any ParallelJob)?
    private var jobParts = 0

    /// A pool running up to `threads` parts at once (at least 1; 1 creates no thread).
    public init(threads: Int) {
        let wanted = Swift.max(1, threads)
        wake = (1..<wanted).map { _ in DispatchSemaphore(value: 0) }
        busy.initialize(to: pthread_mutex_t())
        pthread_mutex_init(busy, nil)
        for index in 1..<wanted {
            let context = Unmanaged.passUnretained(self).toOpaque()
            var thread = pthread_t()
            // The pool and the worker's index, handed to the new thread in a small box.
            let box = UnsafeMutablePointer<(UnsafeMutableRawPointer, Int)>.allocate(capacity: 1)
            box.initialize(to: (context, index))
            let status = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                let box = raw.assumingMemoryBound(to: (UnsafeMutableRawPointer, Int).self)
                let (context, index) = box.pointee
                box.deallocate()
                Unmanaged<WorkerPool>.fromOpaque(context).takeUnretainedValue().workerLoop(index)
                return nil
            }, box)
            if status == 0 { workers.append(thread) } else { box.deallocate(); break }
        }
        // If a thread could not be created, the pool runs with those that were (at least the
        // caller). Workers hold the pool unretained and never exit: make pools that live as
        // long as the process (`shared`).
    }

    private func workerLoop(_ index: Int) {
        while true {
            wake[index - 1].wait()
            if index < jobParts, let job { job.runPart(index, of: jobParts) }
            finished.signal()
        }
    }

    /// Calls `job.runPart(k, of: parts)` for k in 0..<parts, up to `threadCount` at a time: part 0
    /// on the calling thread, the others on workers; returns when all have returned. With `parts`
    /// above `threadCount` the extra parts run on the caller afterwards.
    public func run(parts: Int, _ job: any ParallelJob) {
        guard parts > 1, threadCount > 1, pthread_mutex_trylock(busy) == 0 else {
            for k in 0..<Swift.max(0, parts) { job.runPart(k, of: parts) }
            return
        }
        defer { pthread_mutex_unlock(busy) }
        let helpers = Swift.min(parts, threadCount) - 1
        self.job = job
        jobParts = parts
        for w in 0..<helpers { wake[w].signal() }
        job.runPart(0, of: parts)
        for _ in 0..<helpers { finished.wait() }
        self.job = nil
        jobParts = 0
        for k in (helpers + 1)..<parts { job.runPart(k, of: parts) }
    }
}

/// Work that a `WorkerPool` splits into parts. Parts must write disjoint memory.
public protocol ParallelJob: AnyObject {
    func runPart(_ part: Int, of parts: Int)
}
