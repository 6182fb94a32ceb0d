import Foundation

/// How many batch slices (one thread each) new `Conv2D`, `MaxPool2D` and recurrent layers use:
/// every processor by default, as the command line does. One line chooses fewer, for every
/// layer built afterwards (`Parallelism.defaultThreads = 1`) or for one model
/// (`model.useThreads(2)`).
///
/// Results are deterministic for a given count: slices write disjoint rows, and weight
/// gradients are summed over slices in slice order. Different counts differ by rounding only;
/// set 1 everywhere to get the same bits on machines with different processor counts.
/// Dense layers' products use OpenBLAS's own threads (`BLAS.threadCount`) instead.
public enum Parallelism {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var stored: Int? = nil

    /// The slice count layers take when built (at least 1). Default: `BLAS.processorCount`.
    public static var defaultThreads: Int {
        get {
            lock.lock()
            defer { lock.unlock() }
            if let stored { return stored }
            let n = Swift.max(1, BLAS.processorCount)
            stored = n
            return n
        }
        set {
            lock.lock()
            stored = Swift.max(1, newValue)
            lock.unlock()
        }
    }
}
