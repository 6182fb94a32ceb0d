import ArgumentParser
import Backprop
import BackpropOptim
import Foundation

/// `backprop bench-rnn`: where a recurrent training step spends its time. Times one step of the
/// MNIST sequence classifier (28 steps of 28 pixels, batch 128 by default) split into forward,
/// loss, backward and Adam step, and the same matrix products alone, as medians of repeated
/// runs on random data. `--json` prints one object.
struct BenchRecurrent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-rnn",
        abstract: "Time a recurrent training step (forward, backward, optimizer) against its matrix products alone.")

    @Option(help: "Cell: rnn, lstm, gru.") var arch = "lstm"
    @Option(help: "Hidden size.") var hidden = 128
    @Option(help: "Batch size.") var batch = 128
    @Option(help: "Time steps (rows of the image).") var steps = 28
    @Option(help: "Features per step.") var features = 28
    @Option(help: "Timed repetitions (median reported).") var reps = 15
    @Option(help: "OpenBLAS threads (default: OpenBLAS's choice).") var threads: Int?
    @Option(help: "Batch slices run concurrently by the recurrent layer (RecurrentLayer.threads).") var slices = 1
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Skip timing the matrix products alone (for profiling the training step).") var skipProducts = false

    func validate() throws {
        guard ["rnn", "lstm", "gru"].contains(arch) else { throw ValidationError("--arch must be rnn, lstm or gru") }
        guard hidden > 0, batch > 0, steps > 0, features > 0, reps > 0 else { throw ValidationError("sizes must be positive") }
    }

    func run() throws {
        BLAS.ensureReady()
        if let threads { BLAS.threadCount = threads }
        let kind: RecurrentKind = arch == "lstm" ? .lstm : arch == "gru" ? .gru : .rnn
        let model = try SequenceClassifier(kind: kind, inputSize: features, hiddenSize: hidden, classes: 10, seed: 1)
        model.rnn.threads = slices
        model.needsInputGradient = false   // as in training
        var rng = SeededGenerator(seed: 2)
        let x = try Tensor(zeros: [batch, steps, features]); x.fillUniform(0, 1, using: &rng)
        let labels = (0..<batch).map { Int32($0 % 10) }
        let loss = try SoftmaxCrossEntropy()
        let adam = try Adam(parameters: model.parameters)
        var phases: [[Double]] = [[], [], [], [], []]   // forward, loss, backward, step, total
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        func cpu() -> Double {   // CPU seconds of the process: unaffected by other programs' load
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        var cpuTimes: [Double] = []
        for rep in 0...reps {
            let c0 = cpu()
            let t0 = now()
            model.zeroGrad()
            let out = try model.forward(x)
            let t1 = now()
            let (_, delta) = try loss(out, labels: labels)
            let t2 = now()
            _ = try model.backward(delta)
            let t3 = now()
            try adam.step()
            let t4 = now()
            if rep == 0 { continue }  // warm-up
            cpuTimes.append((cpu() - c0) * 1e3)
            for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0].enumerated() { phases[i].append(Double(d) / 1e6) }
        }
        // The floor: the layer's matrix products alone, as the layer issues them (RecurrentLayer:
        // per batch slice, step-major rows, step 0's recurrent products skipped for h_0 = 0, no δ
        // of the data), the slices run concurrently with single-threaded BLAS as in the layer.
        let floor = try ProductFloor(kind: kind, batch: batch, steps: steps, features: features, hidden: hidden,
                                 slices: Swift.max(1, Swift.min(slices, batch)))
        var products: [Double] = []
        for rep in 0..<(skipProducts ? 0 : reps + 1) {
            let t0 = now()
            try floor.run()
            if rep > 0 { products.append(Double(now() - t0) / 1e6) }
        }
        func med(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? .nan : s[s.count / 2] }
        let names = ["forward_ms", "loss_ms", "backward_ms", "step_ms", "total_ms"]
        var result: [String: Double] = [:]
        for (i, n) in names.enumerated() { result[n] = med(phases[i]) }
        if !skipProducts { result["gemm_only_ms"] = med(products) }   // (JSON has no NaN)
        result["cpu_ms"] = med(cpuTimes)
        result["images_per_second"] = Double(batch) / (med(phases[4]) / 1e3)
        result["epoch_seconds_60000"] = 60000 / result["images_per_second"]!
        if json {
            var object: [String: Any] = result
            object["arch"] = arch; object["threads"] = BLAS.threadCount; object["core"] = BLAS.coreName
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("\(arch) H=\(hidden) batch \(batch) × \(steps) steps × \(features), OpenBLAS \(BLAS.coreName), \(BLAS.threadCount) threads, \(slices) slices; medians of \(reps)")
        print(String(format: "forward %.2f ms  loss %.3f ms  backward %.2f ms  step %.3f ms  total %.2f ms   gemms alone %.2f ms (step %.2f× that floor)",
                     result["forward_ms"]!, result["loss_ms"]!, result["backward_ms"]!, result["step_ms"]!,
                     result["total_ms"]!, result["gemm_only_ms"] ?? .nan, result["total_ms"]! / (result["gemm_only_ms"] ?? .nan)))
        print(String(format: "CPU time per step %.2f ms (all threads)", result["cpu_ms"]!))
        print(String(format: "%.0f images/s  →  %.1f s per 60000-image epoch", result["images_per_second"]!,
                     result["epoch_seconds_60000"]!))
    }
}

/// A recurrent layer's matrix products without anything else, for `bench-rnn`'s floor: the same
/// calls `RecurrentLayer` makes for a first stacked layer in training, on buffers of the same
/// shapes, each slice's on its own core (WorkerPool) with OpenBLAS on one thread, as in the layer.
final class ProductFloor: ParallelJob {
    let kind: RecurrentKind
    let batch, steps, features, hidden, slices: Int
    let wih, whh, whhT: Tensor
    let xs, gates, hn, hprev, dgates, dhn, dh, dwihT, dwhh: [Tensor]
    /// One error slot per part: parts run concurrently, so each writes only its own slot (as
    /// `BatchSlices` does); `run` reads them after the pool has returned.
    private let failures: UnsafeMutableBufferPointer<Error?>

    init(kind: RecurrentKind, batch: Int, steps: Int, features: Int, hidden: Int, slices: Int) throws {
        self.kind = kind; self.batch = batch; self.steps = steps; self.features = features; self.hidden = hidden
        self.slices = slices
        let g = kind == .lstm ? 4 : kind == .gru ? 3 : 1, gh = g * hidden
        func zeros(_ shape: Int...) throws -> Tensor { try Tensor(zeros: shape) }
        func perSlice(_ columns: Int, rowsPerSample: Int) throws -> [Tensor] {
            try (0..<slices).map { k in try zeros((batch * (k + 1) / slices - batch * k / slices) * rowsPerSample, columns) }
        }
        wih = try zeros(gh, features); whh = try zeros(gh, hidden); whhT = try zeros(hidden, gh)
        var rng = SeededGenerator(seed: 7)
        for t in [wih, whh, whhT] { t.fillUniform(-0.1, 0.1, using: &rng) }
        xs = try perSlice(features, rowsPerSample: steps); gates = try perSlice(gh, rowsPerSample: steps)
        hn = try perSlice(hidden, rowsPerSample: steps); hprev = try perSlice(hidden, rowsPerSample: steps)
        dgates = try perSlice(gh, rowsPerSample: steps); dhn = try perSlice(hidden, rowsPerSample: steps)
        dh = try perSlice(hidden, rowsPerSample: 1)
        // (δW_ih)ᵀ [F, G·H] for narrow inputs, δW_ih [G·H, F] otherwise, as the layer does
        dwihT = try (0..<slices).map { _ in features < 64 ? try zeros(features, gh) : try zeros(gh, features) }
        dwhh = try (0..<slices).map { _ in try zeros(gh, hidden) }
        for list in [xs, hprev, dgates, dhn] { for t in list { t.fillUniform(-1, 1, using: &rng) } }
        failures = .allocate(capacity: slices)
        failures.initialize(repeating: nil)
    }

    deinit { failures.deinitialize().deallocate() }

    /// Runs every part's products; rethrows the first part's error (in part order), if any.
    func run() throws {
        let saved = BLAS.threadCount
        if slices > 1 { BLAS.threadCount = 1 }
        WorkerPool.shared.run(parts: slices, self)
        if slices > 1 { BLAS.threadCount = saved }
        var first: Error?
        for k in 0..<slices {
            if first == nil { first = failures[k] }
            failures[k] = nil
        }
        if let first { throw first }
    }

    func runPart(_ k: Int, of parts: Int) {
        do { try products(k) } catch { failures[k] = error }
    }

    private func products(_ k: Int) throws {
        let m = batch * (k + 1) / slices - batch * k / slices, t = steps, h = hidden, f = features
        let gru = kind == .gru, gh = whh.shape[0], hw = gru ? 2 * h : gh
        try gemm(Matrix(xs[k]), Matrix(wih), transposeB: true, into: Matrix(gates[k]))
        for step in 1..<Swift.max(1, t) {
            let hPrev = Matrix(hprev[k], offset: step * m * h, rows: m, columns: h)
            try gemm(hPrev, Matrix(whhT, rows: h, columns: hw, stride: gh),
                     into: Matrix(gates[k], offset: step * m * gh, rows: m, columns: hw, stride: gh), beta: 1)
            if gru {
                try gemm(hPrev, Matrix(whhT, offset: 2 * h, rows: h, columns: h, stride: gh),
                         into: Matrix(hn[k], offset: step * m * h, rows: m, columns: h))
            }
        }
        let rows = m * t, narrow = f < 64, block = RecurrentLayer.weightBlockSteps
        func weightHH(_ low: Int, _ high: Int) throws {
            let hPrev = Matrix(hprev[k], offset: low * m * h, rows: (high - low) * m, columns: h)
            try gemm(Matrix(dgates[k], offset: low * m * gh, rows: (high - low) * m, columns: hw, stride: gh), transposeA: true, hPrev,
                     into: Matrix(dwhh[k], rows: hw, columns: h), beta: 1)
            if gru {
                try gemm(Matrix(dhn[k], offset: low * m * h, rows: (high - low) * m, columns: h), transposeA: true, hPrev,
                         into: Matrix(dwhh[k], offset: 2 * h * h, rows: h, columns: h), beta: 1)
            }
        }
        var blockEnd = t
        for step in stride(from: t - 1, through: 0, by: -1) {
            if narrow {   // (δW_ih)ᵀ += x_tᵀ·δG_t
                try gemm(Matrix(xs[k], offset: step * m * f, rows: m, columns: f), transposeA: true,
                         Matrix(dgates[k], offset: step * m * gh, rows: m, columns: gh), into: Matrix(dwihT[k]), beta: step == t - 1 ? 0 : 1)
            }
            if step > 0 {
                try gemm(Matrix(dgates[k], offset: step * m * gh, rows: m, columns: hw, stride: gh), Matrix(whh, rows: hw, columns: h),
                         into: Matrix(dh[k]), beta: gru ? 1 : 0)
                if gru {
                    try gemm(Matrix(dhn[k], offset: step * m * h, rows: m, columns: h),
                             Matrix(whh, offset: 2 * h * h, rows: h, columns: h), into: Matrix(dh[k]), beta: 1)
                }
                if blockEnd - step == block || step == 1 {   // δW_hh over blocks of steps, not step 0 (h_0 = 0)
                    try weightHH(step, blockEnd)
                    blockEnd = step
                }
            }
        }
        if !narrow {
            try gemm(Matrix(dgates[k], rows: rows, columns: gh), transposeA: true, Matrix(xs[k]), into: Matrix(dwihT[k]))
        }
    }
}
