import Backprop
import BenchSupport
import Foundation

// graph-step: a training step through the computational graph (`Variable`s, `crossEntropy`,
// `backward()`) against the same step through the layer API (forward/backward, fused softmax
// cross-entropy): same weights, batch and optimizer.
//   --model mlp   the MNIST MLP 784-256-128-10, batch 128; a block is one epoch's worth of steps
//                 (468 × 128 + 96)
//   --model lstm  the MNIST-rows LSTM (28 × 28, hidden 128), batch 128; a block is 20 steps
// Blocks alternate (the order swapped every round) for --repeats rounds; prints the medians, the
// median of each round's ratio graph/layers, and both final losses (equal: the same training).
//
// --captured runs the graph path through a `CapturedGraph` (recorded once per batch size, then replayed).
//
//     swift run -c release --package-path Benchmarks graph-step [--model mlp|lstm] [--captured] [--repeats 7] [--threads N] [--json]

var repeats = 7, threads: Int?, json = false, only: String?, modelName = "mlp", captured = false
var args = CommandLine.arguments.dropFirst()
func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("graph-step: \(message)\nusage: graph-step [--model mlp|lstm] [--captured] [--repeats N] [--threads N] [--json] [--only graph|layers]\n".utf8))
    exit(2)
}
while let a = args.popFirst() {
    switch a {
    case "--repeats", "--threads":
        guard let v = args.popFirst(), let n = Int(v), n >= 1 else { usage("\(a) needs a positive integer") }
        if a == "--repeats" { repeats = n } else { threads = n }
    case "--model":
        guard let v = args.popFirst(), v == "mlp" || v == "lstm" else { usage("--model takes mlp or lstm") }
        modelName = v
    case "--json": json = true
    case "--captured": captured = true   // the graph path through a CapturedGraph (recorded once, replayed)
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
    // A block of steps for each path, and each path's last loss.
    let layerBlock: () throws -> Double, graphBlock: () throws -> Double
    let losses: () -> (Float, Float)
    let blockName: String
    // Each block starts from fresh models (same seed, warmed up outside the timing): trained on
    // one fixed batch for long, a model overfits it and its values drift into subnormal floats,
    // which slows every later block (docs/performance.md); fresh models make every block the same work.
    var lastLosses: (Float, Float) = (0, 0)
    if modelName == "mlp" {
        layerBlock = {
            let s = try MLPTrainingStep()
            for n in [128, 96, 128] { try s.step(batch: n) }
            defer { lastLosses.0 = s.lastLoss }
            return try epochSeconds { try s.step(batch: $0) }
        }
        graphBlock = {
            let s = try MLPGraphStep(captured: captured)
            for n in [128, 96, 128] { try s.step(batch: n) }
            defer { lastLosses.1 = s.lastLoss }
            return try epochSeconds { try s.step(batch: $0) }
        }
        blockName = "epoch of 468 × 128 + 96 steps"
    } else {
        func block(_ graph: Bool) throws -> Double {
            let s = try LSTMTrainingStep(graph: graph, captured: captured)
            for _ in 0..<2 { try s.step() }
            defer { if graph { lastLosses.1 = s.lastLoss } else { lastLosses.0 = s.lastLoss } }
            return try seconds { for _ in 0..<20 { try s.step() } }
        }
        layerBlock = { try block(false) }
        graphBlock = { try block(true) }
        blockName = "block of 20 LSTM steps (batch 128, 28 × 28, hidden 128)"
    }
    losses = { lastLosses }
    if let only {
        let t = try (0..<repeats).map { _ in try only == "graph" ? graphBlock() : layerBlock() }
        print(String(format: "\(only) alone: median %.3f s per \(blockName)", median(t)))
        exit(0)
    }
    var layerTimes: [Double] = [], graphTimes: [Double] = []
    for round in 0..<repeats {
        if round % 2 == 0 {
            layerTimes.append(try layerBlock()); graphTimes.append(try graphBlock())
        } else {
            graphTimes.append(try graphBlock()); layerTimes.append(try layerBlock())
        }
    }
    let l = median(layerTimes), g = median(graphTimes)
    // On a shared machine the load moves between rounds: the ratio of the two blocks of one round
    // (run back to back) is steadier than the ratio of the medians.
    let pairRatio = median(zip(graphTimes, layerTimes).map { $0 / $1 })
    let (layerLoss, graphLoss) = losses()
    if json {
        let object: [String: Any] = [
            "model": modelName, "blas_core": selection.active, "blas_threads": BLAS.threadCount,
            "layers_seconds_per_block": l, "layers_all": layerTimes,
            "graph_seconds_per_block": g, "graph_all": graphTimes, "graph_over_layers": g / l,
            "graph_over_layers_per_round": pairRatio,
            "layers_loss": Double(layerLoss), "graph_loss": Double(graphLoss),
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        func list(_ v: [Double]) -> String { v.map { String(format: "%.3f", $0) }.joined(separator: ", ") }
        print("OpenBLAS core \(selection.active), \(BLAS.threadCount) thread(s); \(modelName): \(blockName), medians of \(repeats)")
        print(String(format: "layer API  %.3f s  (%@)", l, list(layerTimes)))
        print(String(format: "graph      %.3f s  (%@)", g, list(graphTimes)))
        print(String(format: "graph / layers = %.3f× (medians), %.3f× (median of each round's ratio)   (losses %.5f, %.5f)",
                     g / l, pairRatio, layerLoss, graphLoss))
    }
} catch {
    FileHandle.standardError.write(Data("graph-step: \(error)\n".utf8))
    exit(1)
}
