import CBLAS
import Foundation

/// The OpenBLAS runtime: which kernels are in use, how many threads, and the one-time fix
/// that makes a program get the fast kernels its CPU supports without any set-up.
///
/// Debian's OpenBLAS is a DYNAMIC_ARCH build that picks its kernel table once, when the
/// library loads. On some AVX-512 machines it picks `Prescott` (SSE3) and runs sgemm 3–5×
/// slower than it could. Before its first BLAS call Backprop compares the chosen core with
/// what `/proc/cpuinfo` says the CPU supports; when the chosen core is weaker it drops the
/// kernel table (`gotoblas_dynamic_quit`), names the right core in `OPENBLAS_CORETYPE`, and
/// selects again (`gotoblas_dynamic_init`), then checks one small product against a plain
/// loop and goes back to the original kernels if it disagrees.
///
/// `OPENBLAS_CORETYPE=Prescott` reproduces the misdetection anywhere: OpenBLAS loads the SSE3
/// kernels and Backprop still replaces them. To run a chosen core on purpose (a benchmark of
/// the slow case), set `BACKPROP_BLAS_CORE=Prescott` or call `BLAS.useCore(_:)`;
/// `BACKPROP_BLAS_CORE=auto` (or unset) is the default.
public enum BLAS {
    /// What the one-time kernel check found and did.
    public struct CoreSelection: Sendable, CustomStringConvertible {
        /// The core OpenBLAS chose by itself (or was told by the user's `OPENBLAS_CORETYPE`).
        public let detected: String
        /// The core in use after the check.
        public let active: String
        /// The best core family the CPU supports, as an OpenBLAS core name.
        public let cpuBest: String
        /// Why the active core is what it is.
        public let reason: String

        public var description: String {
            detected == active ? "\(active) (\(reason))" : "\(active), replacing \(detected) (\(reason))"
        }
    }

    /// Runs the kernel check once; every BLAS and LAPACK call in the engine goes through it first.
    /// Call it yourself before starting threads that use BLAS if you want the check to happen
    /// at a moment you choose.
    @discardableResult
    public static func ensureReady() -> CoreSelection { selection }

    private static let selection: CoreSelection = selectBestCore()

    /// The kernel family in use, as OpenBLAS names it (e.g. `SkylakeX`, `Haswell`, `Prescott`).
    public static var coreName: String {
        ensureReady()
        return currentCoreName()
    }

    /// Threads OpenBLAS uses for one call. Set it before training; `1` is often fastest for
    /// small matrices on a busy machine.
    public static var threadCount: Int {
        get { ensureReady(); return Int(openblas_get_num_threads()) }
        set { ensureReady(); openblas_set_num_threads(Int32(Swift.max(1, newValue))) }
    }

    /// Processors OpenBLAS can see.
    public static var processorCount: Int { Int(openblas_get_num_procs()) }

    /// OpenBLAS's build configuration string.
    public static var configuration: String { String(cString: openblas_get_config()) }

    // MARK: - Core ranking

    /// Vector-instruction level of a kernel family or CPU: 1 SSE, 2 AVX, 3 AVX2+FMA, 4 AVX-512.
    static func rank(ofCore name: String) -> Int? {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 4
        case "haswell", "zen": return 3
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return 2
        case "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
             "dunnington", "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "bobcat":
            return 1
        default: return nil  // a core this table does not know: leave OpenBLAS's choice alone
        }
    }

    /// The best OpenBLAS core family for a set of `/proc/cpuinfo` flags.
    static func bestCore(forFlags flags: Set<String>) -> (name: String, rank: Int) {
        let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        if avx512.allSatisfy(flags.contains) { return ("SkylakeX", 4) }
        if flags.contains("avx2") && flags.contains("fma") { return ("Haswell", 3) }
        if flags.contains("avx") { return ("Sandybridge", 2) }
        return ("Prescott", 1)
    }

    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }

    /// Whether the core in use has OpenBLAS's small-matrix sgemm kernels (the AVX-512 family:
    /// `SkylakeX`, `CooperLake`, `SapphireRapids`), which `SmallProducts` cuts products for.
    /// Read on every convolution pass: cached, and forgotten when the core changes (`forceCore`).
    public static var hasSmallMatrixKernels: Bool {
        if let known = smallMatrixKernels { return known }
        ensureReady()
        let known = rank(ofCore: currentCoreName()) == 4
        smallMatrixKernels = known
        return known
    }
    nonisolated(unsafe) private static var smallMatrixKernels: Bool?

    static func currentCoreName() -> String {
        guard let p = openblas_get_corename() else { return "Unknown" }
        return String(cString: p)
    }

    /// Drops OpenBLAS's kernel table and selects `name` (no BLAS call may run meanwhile).
    static func forceCore(_ name: String) {
        let previous = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        setenv("OPENBLAS_CORETYPE", name, 1)
        gotoblas_dynamic_quit()
        gotoblas_dynamic_init()
        smallMatrixKernels = nil
        if let previous { setenv("OPENBLAS_CORETYPE", previous, 1) } else { unsetenv("OPENBLAS_CORETYPE") }
    }

    /// Switches OpenBLAS to the kernel family `name` (e.g. `Prescott` to measure the slow case,
    /// `SkylakeX`). Only call it while no BLAS call runs. Throws, and keeps the current kernels,
    /// if OpenBLAS does not know the name or the CPU cannot run it.
    public static func useCore(_ name: String) throws {
        ensureReady()
        try switchCore(to: name)
    }

    static func switchCore(to name: String) throws {
        let before = currentCoreName()
        if let wanted = rank(ofCore: name), wanted > bestCore(forFlags: cpuFlags()).rank {
            throw BackpropError.invalidArgument("BLAS core \(name) needs instructions this CPU lacks (best: \(bestCore(forFlags: cpuFlags()).name))")
        }
        forceCore(name)
        let now = currentCoreName()
        guard now.lowercased() == name.lowercased(), smallProductAgrees() else {
            forceCore(before)
            throw BackpropError.invalidArgument("OpenBLAS could not switch to core \(name) (got \(now)); kept \(before)")
        }
    }

    /// The decision, kept apart from its effect so it can be tested: which core to switch to,
    /// if any, given OpenBLAS's choice, the CPU's flags and `BACKPROP_BLAS_CORE`.
    static func decide(detected: String, flags: Set<String>, override: String?) -> (switchTo: String?, reason: String) {
        let best = bestCore(forFlags: flags)
        if let override, !override.isEmpty, override.lowercased() != "auto" {
            return (override.lowercased() == detected.lowercased() ? nil : override, "BACKPROP_BLAS_CORE=\(override)")
        }
        guard let current = rank(ofCore: detected) else {
            return (nil, "core not in Backprop's table; OpenBLAS's choice kept")
        }
        guard current < best.rank else { return (nil, "OpenBLAS's choice matches the CPU") }
        return (best.name, "CPU supports \(best.name) kernels")
    }

    private static func selectBestCore() -> CoreSelection {
        let detected = currentCoreName()
        let flags = cpuFlags()
        let best = bestCore(forFlags: flags)
        let env = ProcessInfo.processInfo.environment
        var (target, reason) = decide(detected: detected, flags: flags, override: env["BACKPROP_BLAS_CORE"])
        if let forced = env["OPENBLAS_CORETYPE"], !forced.isEmpty { reason += "; OPENBLAS_CORETYPE=\(forced) was set" }
        if let target {
            do { try switchCore(to: target) } catch { reason = "\(error)" }
        }
        limitWorkerSpin()
        return CoreSelection(detected: detected, active: currentCoreName(), cpuBest: best.name, reason: reason)
    }

    // MARK: - Worker spin

    /// The OPENBLAS_THREAD_TIMEOUT the engine sets when the user has not: 2^20 cycles (≈ 0.3 ms)
    /// of spinning before an idle OpenBLAS worker sleeps, instead of OpenBLAS's 2^28 (≈ 0.1 s).
    ///
    /// Why: between two sgemm calls the engine does its own work (bias, activation, loss, the
    /// optimizer) on the calling thread while OpenBLAS's worker spins in sched_yield on the other
    /// core. When the host shares our two cores with another tenant, that spinning competes with
    /// the work itself: measured with sgemm-floor on this machine, the MLP step went from
    /// 1.4–1.8× the sgemm floor to 1.1× in those periods, and stayed at 1.1–1.25× when the
    /// machine was quiet (README, "Performance").
    public static let workerSpinExponent = 20

    /// The worker-spin setting in effect: the user's OPENBLAS_THREAD_TIMEOUT (or GOTO_...) if set,
    /// else `workerSpinExponent`.
    public static var workerSpin: String {
        ensureReady()
        let env = ProcessInfo.processInfo.environment
        if let user = env["OPENBLAS_THREAD_TIMEOUT"] ?? env["GOTO_THREAD_TIMEOUT"] { return "2^\(user) cycles" }
        return "2^\(workerSpinExponent) cycles"
    }

    private static func limitWorkerSpin() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_THREAD_TIMEOUT"] == nil, env["GOTO_THREAD_TIMEOUT"] == nil else { return }
        setenv("OPENBLAS_THREAD_TIMEOUT", String(workerSpinExponent), 0)
        openblas_read_env()
        // The workers read the timeout when they start: restart them (no BLAS call has run yet).
        _ = blas_thread_shutdown_()
        _ = blas_thread_init()
    }

    /// One 13×17·17×11 product through sgemm against a plain loop.
    private static func smallProductAgrees() -> Bool {
        let m = 13, k = 17, n = 11
        let a = (0..<(m * k)).map { Float(($0 * 7) % 11) - 5 }
        let b = (0..<(k * n)).map { Float(($0 * 5) % 13) - 6 }
        var c = [Float](repeating: 0, count: m * n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k { s += a[i * k + p] * b[p * n + j] }
                if s != c[i * n + j] { return false }  // small integers: exact in Float
            }
        }
        return true
    }
}
