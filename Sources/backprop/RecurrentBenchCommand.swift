import ArgumentParser
import Backprop
import BackpropOptim
import Foundation

/// `backprop bench-rnn`: where a recurrent training step spends its time. Times one step of the
/// MNIST sequence classifier (28 steps of 28 pixels, batch 128 by default) split into forward,
/// loss, backward and Adam step, and the same matrix products alone, as medians of repeated
/// runs on random data. `--graph` runs the step through the autodiff graph instead (the model on a
/// `Variable`, `crossEntropy`, `backward()`). `--json` prints one object.
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
    @Flag(help: "Run the step through the autodiff graph (model(Variable), crossEntropy, backward()) instead of the layer API.")
    var graph = false

    func validate() throws {
        guard ["rnn", "lstm", "gru"].contains(arch) else { throw ValidationError("--arch must be rnn, lstm or gru") }
        guard hidden > 0, batch > 0, steps > 0, features > 0, reps > 0 else { throw ValidationError("sizes must be positive") }
    }

    func run() throws {
        BLAS.ensureReady()
        if let threads { BLAS.threadCount = threads }
        let kind: RecurrentKind = arch == "lstm" ? .lstm : arch == "gru" ? .gru : .rnn
        let model = try SequenceClassifier(kind: kind, inputSize: features, hiddenSize: hidden, classes: 10, seed: 1)
        model.rnn.useThreads(slices)
        model.needsInputGradient = false   // as in training
        var rng = SeededGenerator(seed: 2)
        let x = try Tensor(zeros: [batch, steps, features]); x.fillUniform(0, 1, using: &rng)
        let labels = (0..<batch).map { Int32($0 % 10) }
        let graphLabels = labels.map(Int.init)
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
            var t1 = now(), t2 = t1
            if graph {
                let logits = try model(Variable(x))
                t1 = now()
                let value = try crossEntropy(logits, labels: graphLabels)
                t2 = now()
                try value.backward()
            } else {
                let out = try model.forward(x)
                t1 = now()
                let (_, delta) = try loss(out, labels: labels)
                t2 = now()
                _ = try model.backward(delta)
            }
            let t3 = now()
            try adam.step()
            let t4 = now()
            if rep == 0 { continue }  // warm-up
            cpuTimes.append((cpu() - c0) * 1e3)
            for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0].enumerated() { phases[i].append(Double(d) / 1e6) }
        }
        // The floor: the layer's matrix products alone, issued by the layer itself as its last
        // forward and backward pass issued them (per batch slice, step-major rows, step 0's
        // recurrent products skipped for h_0 = 0, no δ of the data), the slices run concurrently
        // with single-threaded BLAS as in training; no gate kernels, copies or sums.
        var products: [Double] = []
        if graph && !skipProducts {   // the products of a layer API pass of the same shapes
            model.zeroGrad()
            _ = try model.backward(try loss(try model.forward(x), labels: labels).1)
        }
        for rep in 0..<(skipProducts ? 0 : reps + 1) {
            let t0 = now()
            try model.rnn.runProductsOnly()
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
            object["arch"] = arch; object["graph"] = graph; object["threads"] = BLAS.threadCount; object["core"] = BLAS.coreName
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("\(arch) H=\(hidden) batch \(batch) × \(steps) steps × \(features), OpenBLAS \(BLAS.coreName), \(BLAS.threadCount) threads, \(slices) slices\(graph ? ", through the graph" : ""); medians of \(reps)")
        print(String(format: "forward %.2f ms  loss %.3f ms  backward %.2f ms  step %.3f ms  total %.2f ms   gemms alone %.2f ms (step %.2f× that floor)",
                     result["forward_ms"]!, result["loss_ms"]!, result["backward_ms"]!, result["step_ms"]!,
                     result["total_ms"]!, result["gemm_only_ms"] ?? .nan, result["total_ms"]! / (result["gemm_only_ms"] ?? .nan)))
        print(String(format: "CPU time per step %.2f ms (all threads)", result["cpu_ms"]!))
        print(String(format: "%.0f images/s  →  %.1f s per 60000-image epoch", result["images_per_second"]!,
                     result["epoch_seconds_60000"]!))
    }
}
