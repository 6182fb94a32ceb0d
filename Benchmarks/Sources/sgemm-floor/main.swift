import Backprop
import BenchSupport
import Foundation

// sgemm-floor: seconds for one MNIST epoch's worth of steps (468 × 128 + 96) of
//   1. the sgemm floor — only the eight sgemm calls of each training step, and
//   2. the engine's training step — Dense/ReLU/Sequential + softmax cross-entropy + SGD on a
//      fixed batch (no data loading, shuffling or metrics),
// alternated for --repeats rounds; prints medians and the ratio step/floor.
// --lenet: the same for LeNet (batch 128, batch slices on --threads or every core, Adam): the
// step against ProductsFloor, the sgemm calls the step issues alone; 20 steps per round.
//
//     swift run -c release --package-path Benchmarks sgemm-floor [--repeats 3] [--threads N] [--json]

struct Options {
    var repeats = 3
    var threads: Int?
    var json = false
    var lenet = false
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func usage(_ message: String) -> Never {
        FileHandle.standardError.write(Data("sgemm-floor: \(message)\nusage: sgemm-floor [--lenet] [--repeats N] [--threads N] [--json]\n".utf8))
        exit(2)
    }
    func intValue(_ flag: String) -> Int {
        guard let v = args.popFirst(), let n = Int(v), n >= 1 else { usage("\(flag) needs a positive integer") }
        return n
    }
    while let a = args.popFirst() {
        switch a {
        case "--repeats": o.repeats = intValue(a)
        case "--threads": o.threads = intValue(a)
        case "--json": o.json = true
        case "--lenet": o.lenet = true
        case "-h", "--help": usage("help")
        default: usage("unknown argument \(a)")
        }
    }
    return o
}

let options = parseOptions()
let selection = BLAS.ensureReady()
if let threads = options.threads { BLAS.threadCount = threads }

/// `--lenet`: the LeNet step against its products alone, alternating rounds of 20 steps.
func runLeNet() throws {
    let engine = try LeNetTrainingStep(threads: options.threads ?? BLAS.processorCount)
    for _ in 0..<3 { try engine.step(); try engine.floor.run() }
    var floorTimes: [Double] = [], stepTimes: [Double] = []
    for _ in 0..<options.repeats {
        floorTimes.append(try seconds { for _ in 0..<20 { try engine.floor.run() } } / 20)
        stepTimes.append(try seconds { for _ in 0..<20 { try engine.step() } } / 20)
    }
    let f = median(floorTimes), s = median(stepTimes)
    if options.json {
        let object: [String: Any] = [
            "model": "lenet", "blas_core": selection.active, "batch_slices": engine.model.threads,
            "floor_ms_per_step": f * 1e3, "step_ms_per_step": s * 1e3, "step_over_floor": s / f,
            "floor_gflops": engine.flops / f / 1e9, "sgemm_calls_per_step": engine.floor.calls.count,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        print("LeNet, batch 128, OpenBLAS core \(selection.active), \(engine.model.threads) batch slices; medians of \(options.repeats) rounds of 20 steps")
        print(String(format: "products alone (%d sgemm calls/step): %.2f ms/step (%.1f GFLOP/s)", engine.floor.calls.count, f * 1e3, engine.flops / f / 1e9))
        print(String(format: "engine training step                : %.2f ms/step", s * 1e3))
        print(String(format: "ratio step / products alone         : %.2f", s / f))
    }
}

do {
    if options.lenet { try runLeNet(); exit(0) }
    let floor = try SGEMMFloorStep()
    // Each timed epoch of the engine starts from a fresh model (same seed), warmed up outside
    // the timing: one model trained epoch after epoch on one fixed batch overfits it, its values
    // drift into subnormal floats and every later epoch slows (0.68 s, then 1.4, then 2.2–2.4 s
    // per epoch on the Xeon, 2026-12-01), which measures the batch, not the step.
    func freshEngine() throws -> MLPTrainingStep {
        let e = try MLPTrainingStep()
        for n in [128, 96, 128] { try e.step(batch: n) }   // size every buffer (both batch sizes)
        return e
    }
    var engine = try freshEngine()
    // Warm-up: size every buffer and let OpenBLAS start its threads.
    for n in [128, 96, 128] { try floor.step(batch: n) }

    // A third series runs the engine step with the optimizer update on one thread (the default
    // splits large parameters across cores: ParallelChunks), to show what that choice buys.
    var floorTimes: [Double] = [], stepTimes: [Double] = [], serialOptimizerTimes: [Double] = []
    let optimizerThreads = ParallelChunks.maximumThreads
    for _ in 0..<options.repeats {
        floorTimes.append(try epochSeconds { try floor.step(batch: $0) })
        engine = try freshEngine()
        stepTimes.append(try epochSeconds { try engine.step(batch: $0) })
        ParallelChunks.maximumThreads = 1
        engine = try freshEngine()
        serialOptimizerTimes.append(try epochSeconds { try engine.step(batch: $0) })
        ParallelChunks.maximumThreads = optimizerThreads
    }
    let serial = median(serialOptimizerTimes)
    let flops = MNISTJob.epochBatches.reduce(0.0) { $0 + floor.flops(batch: $1) }
    let f = median(floorTimes), s = median(stepTimes)
    // Each round times the floor and the step back to back: the median of the per-round ratios
    // is steadier than the ratio of the medians on a host whose load changes over seconds.
    let roundRatio = median(zip(stepTimes, floorTimes).map { $0 / $1 })
    if options.json {
        let object: [String: Any] = [
            "step_over_floor_median_of_rounds": roundRatio,
            "blas_core": selection.active, "blas_threads": BLAS.threadCount,
            "steps_per_epoch": MNISTJob.epochBatches.count,
            "floor_seconds_per_epoch": f, "floor_seconds_all": floorTimes,
            "floor_gflops": flops / f / 1e9,
            "step_seconds_per_epoch": s, "step_seconds_all": stepTimes,
            "step_over_floor": s / f, "final_loss": Double(engine.lastLoss),
            "step_serial_optimizer_seconds_per_epoch": serial, "step_serial_optimizer_all": serialOptimizerTimes,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        func list(_ v: [Double]) -> String { v.map { String(format: "%.3f", $0) }.joined(separator: ", ") }
        print("OpenBLAS core \(selection.active), \(BLAS.threadCount) thread(s); \(MNISTJob.epochBatches.count) steps per epoch (468 × 128 + 96), medians of \(options.repeats)")
        print(String(format: "sgemm floor (8 sgemm calls/step): %.3f s/epoch  (%.1f GFLOP/s; runs: %@)", f, flops / f / 1e9, list(floorTimes)))
        print(String(format: "engine training step            : %.3f s/epoch  (runs: %@)", s, list(stepTimes)))
        print(String(format: "ratio step / floor              : %.2f (median of the rounds' own ratios %.2f)", s / f, roundRatio))
        print(String(format: "step, optimizer on 1 thread     : %.3f s/epoch  (%.2f× the floor; runs: %@)", serial, serial / f, list(serialOptimizerTimes)))
    }
} catch {
    FileHandle.standardError.write(Data("sgemm-floor: \(error)\n".utf8))
    exit(1)
}
