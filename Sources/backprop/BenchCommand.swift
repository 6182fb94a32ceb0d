import ArgumentParser
import Backprop
import BackpropOptim
import Foundation

/// `backprop bench`: what BLAS buys. Each matrix product of a training step of the 784→256
/// layer (batch 128), and a larger square one, timed as a naive triple loop, a cache-blocked
/// loop and OpenBLAS sgemm — plus sgemm under the SSE3 `Prescott` kernels that a misdetecting
/// OpenBLAS would use. Medians of repeated runs.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure naive loops against OpenBLAS sgemm for each product of a training step.")

    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice).") var threads: Int?
    @Option(help: "Batch size of the layer products.") var batch = 128
    @Option(help: "Size of the extra square product (0 to skip).") var square = 1024
    @Flag(help: "Skip timing the Prescott kernels.") var noCoreComparison = false
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @Flag(help: "Time a LeNet training step (batch --batch) against its matrix products alone (the same sgemm calls, nothing else).")
    var lenet = false
    @Option(help: "Timed repetitions with --lenet (median reported).") var reps = 15

    struct Row: Codable {
        var product: String
        var m: Int, n: Int, k: Int
        var naive_gflops: Double
        var blocked_gflops: Double
        var blas_gflops: Double
        var blas_prescott_gflops: Double?
        var speedup_over_naive: Double
        var speedup_over_blocked: Double
    }

    func validate() throws {
        guard batch > 0, batch <= 65536 else { throw ValidationError("--batch must be in 1…65536") }
        guard square >= 0, square <= 4096 else { throw ValidationError("--square must be in 0…4096") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard reps > 0, reps <= 100_000 else { throw ValidationError("--reps must be in 1…100000") }
    }

    func run() throws {
        let selection = BLAS.ensureReady()
        if let threads { BLAS.threadCount = threads }
        if lenet { return try runLeNet() }
        let n = batch, inF = 784, outF = 256
        var rng = SeededGenerator(seed: 1)
        func filled(_ shape: [Int]) throws -> Tensor { let t = try Tensor(zeros: shape); t.fillUniform(-1, 1, using: &rng); return t }
        let x = try filled([n, inF]), w = try filled([outF, inF]), dy = try filled([n, outF])
        let y = try Tensor(zeros: [n, outF]), dx = try Tensor(zeros: [n, inF]), dw = try Tensor(zeros: [outF, inF])
        typealias Case = (name: String, a: Matrix, ta: Bool, b: Matrix, tb: Bool, c: Matrix)
        var cases: [Case] = [
            ("forward  Y = X·Wᵀ", Matrix(x), false, Matrix(w), true, Matrix(y)),
            ("input δ  dX = dY·W", Matrix(dy), false, Matrix(w), false, Matrix(dx)),
            ("weight δ dW = dYᵀ·X", Matrix(dy), true, Matrix(x), false, Matrix(dw)),
        ]
        var keep: [Tensor] = []
        if square > 0 {
            let a = try filled([square, square]), b = try filled([square, square]), c = try Tensor(zeros: [square, square])
            keep += [a, b, c]
            cases.append(("square \(square)³", Matrix(a), false, Matrix(b), false, Matrix(c)))
        }
        var rows: [Row] = []
        let active = BLAS.coreName
        for cs in cases {
            let m = cs.c.rows, nn = cs.c.columns, k = cs.ta ? cs.a.rows : cs.a.columns
            let flops = 2.0 * Double(m) * Double(nn) * Double(k)
            let naiveReps = flops > 1e9 ? 1 : 3
            let naive = median(naiveReps) { NaiveGEMM.tripleLoop(cs.a, transposeA: cs.ta, cs.b, transposeB: cs.tb, into: cs.c) }
            let blocked = median(naiveReps) { NaiveGEMM.blocked(cs.a, transposeA: cs.ta, cs.b, transposeB: cs.tb, into: cs.c) }
            let blasReps = max(5, min(200, Int(2e9 / flops)))
            let blas = median(blasReps) { try? gemm(cs.a, transposeA: cs.ta, cs.b, transposeB: cs.tb, into: cs.c) }
            var prescott: Double?
            if !noCoreComparison, (try? BLAS.useCore("Prescott")) != nil {
                prescott = median(blasReps) { try? gemm(cs.a, transposeA: cs.ta, cs.b, transposeB: cs.tb, into: cs.c) }
                try BLAS.useCore(active)
            }
            rows.append(Row(product: cs.name, m: m, n: nn, k: k,
                            naive_gflops: flops / naive / 1e9, blocked_gflops: flops / blocked / 1e9,
                            blas_gflops: flops / blas / 1e9, blas_prescott_gflops: prescott.map { flops / $0 / 1e9 },
                            speedup_over_naive: naive / blas, speedup_over_blocked: blocked / blas))
        }
        _ = keep
        if json {
            struct Out: Codable { var core: String; var detected_core: String; var threads: Int; var rows: [Row] }
            let data = try JSONEncoder().encode(Out(core: active, detected_core: selection.detected, threads: BLAS.threadCount, rows: rows))
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("OpenBLAS core \(selection), threads \(BLAS.threadCount); GFLOP/s, median of repeated runs")
        print(pad("product", 22) + pad("m×n×k", 16) + pad("naive", 9) + pad("blocked", 9) + pad("BLAS", 9)
              + pad("Prescott", 10) + "BLAS/naive")
        for r in rows {
            print(pad(r.product, 22) + pad("\(r.m)×\(r.n)×\(r.k)", 16)
                  + pad(String(format: "%.2f", r.naive_gflops), 9) + pad(String(format: "%.2f", r.blocked_gflops), 9)
                  + pad(String(format: "%.1f", r.blas_gflops), 9)
                  + pad(r.blas_prescott_gflops.map { String(format: "%.1f", $0) } ?? "-", 10)
                  + String(format: "%.0f×", r.speedup_over_naive))
        }
    }

    /// `--lenet`: the training step as `train` runs it (batch slices on every core, Adam) and
    /// its products alone (`ProductsFloor`), alternating, medians of `reps`.
    private func runLeNet() throws {
        let model = try Architectures.leNet(seed: 1)
        model.useThreads(threads ?? BLAS.processorCount)
        model.needsInputGradient = false   // as in training
        var rng = SeededGenerator(seed: 2)
        let x = try Tensor(zeros: [batch, 1, 28, 28]); x.fillUniform(0, 1, using: &rng)
        let labels = (0..<batch).map { Int32($0 % 10) }
        let loss = try SoftmaxCrossEntropy()
        let adam = try Adam(parameters: model.parameters)
        let floor = try ProductsFloor(trainingStepOf: model, inputShape: x.shape)
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        var steps: [Double] = [], passes: [Double] = [], products: [Double] = []
        for rep in 0...reps {
            let t0 = now()
            model.zeroGrad()
            _ = try model.backward(try loss(try model.forward(x), labels: labels).gradient)
            let t1 = now()
            try adam.step()
            let t2 = now()
            try floor.run()
            let t3 = now()
            if rep == 0 { continue }   // warm-up
            steps.append(Double(t2 - t0) / 1e6); passes.append(Double(t1 - t0) / 1e6); products.append(Double(t3 - t2) / 1e6)
        }
        func med(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        let calls = floor.calls
        let gflop = 2 * Double(calls.reduce(0) { $0 + $1.multiplyAdds }) / 1e9
        let step = med(steps), pass = med(passes), alone = med(products)
        if json {
            let object: [String: Any] = [
                "model": "lenet", "batch": batch, "threads": model.threads, "core": BLAS.coreName, "reps": reps,
                "step_ms": step, "forward_backward_ms": pass, "products_alone_ms": alone, "products": calls.count,
                "gflop_per_step": gflop, "step_over_floor": step / alone, "products_gflops": gflop / (alone / 1e3),
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("LeNet training step, batch \(batch), \(model.threads) batch slices, OpenBLAS \(BLAS.coreName); medians of \(reps), alternating")
        print(String(format: "step %.2f ms (forward+loss+backward %.2f ms, Adam %.2f ms)   products alone %.2f ms: %d sgemm calls, %.2f GFLOP, %.1f GFLOP/s",
                     step, pass, step - pass, alone, calls.count, gflop, gflop / (alone / 1e3)))
        print(String(format: "step / products alone %.2f×  (forward+backward / products %.2f×)", step / alone, pass / alone))
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}

/// Median wall time in seconds of `reps` runs of `body` (after one warm-up run).
func median(_ reps: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<max(1, reps) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}
