import ArgumentParser
import Backprop
import Foundation

/// `backprop bench-infer`: a model's inference speed through `Layer.predict` (evaluation mode):
/// single-sample latency (median and 99th percentile over many calls) and the throughput of
/// batches of `--batch` samples. The model is built from the architecture flags with random
/// weights (`--seed`) or read from `--model FILE`; the input is random. `--save-model` and
/// `--save-io` write the model and a batch's input and output as safetensors, for running the same
/// model in another framework (`scripts/compare-peers --infer`).
struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-infer",
        abstract: "Measure a model's single-sample latency and batch throughput in evaluation mode.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "A model file to measure instead of a randomly initialised one.") var model: String?
    @Option(help: "Seed of the random weights and inputs.") var seed: UInt64 = 1
    @Option(help: "Timed single-sample calls (median and p99 reported).") var calls = 2000
    @Option(help: "Samples per batch of the throughput measurement.") var batch = 256
    @Option(help: "Timed batch calls.") var batchCalls = 30
    @Option(help: "Threads (OpenBLAS and batch slices; default: every core).") var threads: Int?
    @Option(help: "Write the model (safetensors with its architecture) to this file.") var saveModel: String?
    @Option(help: "Write a batch's input and the model's output for it (tensors \"input\", \"output\") to this file.")
    var saveIo: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard calls > 0, calls <= 10_000_000 else { throw ValidationError("--calls must be in 1…10000000") }
        guard batch > 0, batch <= 65536 else { throw ValidationError("--batch must be in 1…65536") }
        guard batchCalls > 0, batchCalls <= 1_000_000 else { throw ValidationError("--batch-calls must be in 1…1000000") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        BLAS.ensureReady()
        let count = threads ?? BLAS.processorCount
        BLAS.threadCount = count
        let layer: Layer, architecture: Architecture
        if let model {
            let loaded = try loadModel(model, modelOptions)
            (layer, architecture) = (loaded.model, loaded.architecture)
        } else {
            architecture = try modelOptions.architecture()
            layer = try architecture.build(seed: seed)
        }
        layer.useThreads(count)
        layer.isTraining = false
        if let saveModel { try ModelFile.save(layer, architecture: architecture, to: saveModel) }
        var rng = SeededGenerator(seed: seed &+ 1)
        let many = try Tensor(zeros: architecture.inputShape(batch: batch)); many.fillUniform(0, 1, using: &rng)
        let one = try Tensor(zeros: architecture.inputShape(batch: 1))   // the batch's first sample
        one.data.update(from: many.data, count: one.count)
        if let saveIo {
            let out = try layer.evaluationForward(many).copy()
            try SafetensorsFile(tensors: ["input": many, "output": out]).write(to: saveIo)
        }
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        // Alternating blocks of single-sample and batch calls, so that a burst of load elsewhere
        // on the machine falls on both.
        var single: [Double] = [], batched: [Double] = []
        for _ in 0..<10 { _ = try layer.evaluationForward(one); _ = try layer.evaluationForward(many) }   // warm-up
        let rounds = 5
        for round in 0..<rounds {
            let ones = calls * (round + 1) / rounds - calls * round / rounds
            for _ in 0..<ones {
                let t0 = now(); _ = try layer.evaluationForward(one); single.append(Double(now() - t0) / 1e3)
            }
            let batches = batchCalls * (round + 1) / rounds - batchCalls * round / rounds
            for _ in 0..<batches {
                let t0 = now(); _ = try layer.evaluationForward(many); batched.append(Double(now() - t0) / 1e6)
            }
        }
        func quantile(_ v: [Double], _ q: Double) -> Double {
            let s = v.sorted(); return s.isEmpty ? .nan : s[Swift.min(s.count - 1, Int(q * Double(s.count)))]
        }
        let median = quantile(single, 0.5), p99 = quantile(single, 0.99)
        let batchMs = quantile(batched, 0.5)
        let throughput = batched.isEmpty ? 0 : Double(batch) / (batchMs / 1e3)
        if json {
            let object: [String: Any] = [
                "model": architecture.name, "threads": count, "core": BLAS.coreName, "calls": calls,
                "latency_median_us": median, "latency_p99_us": p99, "batch": batch,
                "batch_median_ms": batchMs, "samples_per_second": throughput,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("\(architecture.name) inference (evaluation mode, predict), OpenBLAS \(BLAS.coreName), \(count) threads")
        print(String(format: "single sample: median %.1f µs, p99 %.1f µs over %d calls", median, p99, single.count))
        print(String(format: "batch %d: median %.3f ms per batch → %.0f samples/s", batch, batchMs, throughput))
    }
}
