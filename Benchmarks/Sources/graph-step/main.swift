import Backprop
import BenchSupport
import Foundation

// graph-step: the MNIST MLP's training step through the computational graph (`Variable`s,
// `crossEntropy`, `backward()`) against the same step through the layer API (`Sequential`
// forward/backward, fused softmax cross-entropy): same weights, batch and optimizer. Alternates
// blocks of one epoch's worth of steps (468 × 128 + 96), the order swapped every round, for
// --repeats rounds; prints the medians and the ratio graph/layers.
//
//     swift run -c release --package-path Benchmarks graph-step [--repeats 7] [--threads N] [--json]

var repeats = 7, threads: Int?, json = false, only: String?
var args = CommandLine.arguments.dropFirst()
func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("graph-step: \(message)\nusage: graph-step [--repeats N] [--threads N] [--json] [--only graph|layers]\n".utf8))
    exit(2)
}
while let a = args.popFirst() {
    switch a {
    case "--repeats", "--threads":
        guard let v = args.popFirst(), let n = Int(v), n >= 1 else { usage("\(a) needs a positive integer") }
        if a == "--repeats" { repeats = n } else { threads = n }
    case "--json": json = true
    case "--only":   // one path alone, for a profiler: graph or layers
        guard let v = args.popFirst(), v == "graph" || v == "layers" else { usage("--only takes graph or layers") }
        only = v
    case "-h", "--help": usage("help")
    default: usage("unknown argument \(a)")
    }
}

let selection = BLAS.ensureReady()
if let threads { BLAS.threadCount = threads }
do {
    let layers = try MLPTrainingStep()
    let graph = try MLPGraphStep()
    for n in [128, 96, 128] { try layers.step(batch: n); try graph.step(batch: n) }
    if let only {
        let t = try (0..<repeats).map { _ in
            try epochSeconds { only == "graph" ? try graph.step(batch: $0) : try layers.step(batch: $0) }
        }
        print(String(format: "\(only) alone: median %.3f s per epoch of steps", median(t)))
        exit(0)
    }
    var layerTimes: [Double] = [], graphTimes: [Double] = []
    for round in 0..<repeats {
        if round % 2 == 0 {
            layerTimes.append(try epochSeconds { try layers.step(batch: $0) })
            graphTimes.append(try epochSeconds { try graph.step(batch: $0) })
        } else {
            graphTimes.append(try epochSeconds { try graph.step(batch: $0) })
            layerTimes.append(try epochSeconds { try layers.step(batch: $0) })
        }
    }
    let l = median(layerTimes), g = median(graphTimes)
    // On a shared machine the load moves between rounds: the ratio of the two blocks of one round
    // (run back to back) is steadier than the ratio of the medians.
    let pairRatio = median(zip(graphTimes, layerTimes).map { $0 / $1 })
    // Both models start from the same weights and see the same batches: their losses agree.
    if json {
        let object: [String: Any] = [
            "blas_core": selection.active, "blas_threads": BLAS.threadCount,
            "layers_seconds_per_epoch": l, "layers_all": layerTimes,
            "graph_seconds_per_epoch": g, "graph_all": graphTimes, "graph_over_layers": g / l, "graph_over_layers_per_round": pairRatio,
            "layers_loss": Double(layers.lastLoss), "graph_loss": Double(graph.lastLoss),
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        func list(_ v: [Double]) -> String { v.map { String(format: "%.3f", $0) }.joined(separator: ", ") }
        print("OpenBLAS core \(selection.active), \(BLAS.threadCount) thread(s); epoch of 468 × 128 + 96 steps, medians of \(repeats)")
        print(String(format: "layer API  %.3f s  (%@)", l, list(layerTimes)))
        print(String(format: "graph      %.3f s  (%@)", g, list(graphTimes)))
        print(String(format: "graph / layers = %.3f× (medians), %.3f× (median of each round's ratio)   (losses %.5f, %.5f)",
                     g / l, pairRatio, layers.lastLoss, graph.lastLoss))
    }
} catch {
    FileHandle.standardError.write(Data("graph-step: \(error)\n".utf8))
    exit(1)
}
