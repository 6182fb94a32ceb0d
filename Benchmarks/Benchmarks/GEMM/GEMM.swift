import Backprop
import Benchmark

// What BLAS buys: each product of a Dense layer's training step — forward Y = X·Wᵀ,
// input gradient dX = dY·W, weight gradient dW = dYᵀ·X — as the naive triple loop, the
// cache-blocked loop (both in NaiveGEMM.swift, kept only for this) and `gemm` (OpenBLAS sgemm),
// at the MNIST first layer (784 → 256, batch 128) and at a larger layer (1024 → 512, batch 256).
// One benchmark iteration is one product; compare the wallClock medians (p50).

let benchmarks: @Sendable () -> Void = {
    struct Shape { let label: String; let batch: Int; let inputs: Int; let outputs: Int }
    let shapes = [
        Shape(label: "784to256_b128", batch: 128, inputs: 784, outputs: 256),
        Shape(label: "1024to512_b256", batch: 256, inputs: 1024, outputs: 512),
    ]
    var rng = SeededGenerator(seed: 7)
    for shape in shapes {
        let n = shape.batch, inF = shape.inputs, outF = shape.outputs
        // Operands live for the whole run (captured by the closures below).
        guard let x = try? Tensor(zeros: [n, inF]), let w = try? Tensor(zeros: [outF, inF]),
              let dy = try? Tensor(zeros: [n, outF]), let y = try? Tensor(zeros: [n, outF]),
              let dx = try? Tensor(zeros: [n, inF]), let dw = try? Tensor(zeros: [outF, inF]) else { return }
        x.fillUniform(-1, 1, using: &rng); w.fillUniform(-1, 1, using: &rng); dy.fillUniform(-1, 1, using: &rng)
        // The closures capture the tensors (not just Matrix views of them) to keep them alive.
        typealias Product = (name: String, a: Tensor, ta: Bool, b: Tensor, tb: Bool, c: Tensor)
        let products: [Product] = [
            ("forward_Y=XWt", x, false, w, true, y),
            ("inputgrad_dX=dYW", dy, false, w, false, dx),
            ("weightgrad_dW=dYtX", dy, true, x, false, dw),
        ]
        let flops = 2.0 * Double(n) * Double(inF) * Double(outF)
        // Slow loops get few iterations: at the larger shape one naive product takes ~1 s.
        let slowIterations = flops > 1e8 ? 3 : 20
        for p in products {
            let tags = ["shape": shape.label, "product": p.name, "mflop": String(Int(flops / 1e6))]
            Benchmark("\(shape.label) \(p.name) tripleLoop",
                      configuration: .init(metrics: [.wallClock], tags: tags, timeUnits: .milliseconds,
                                           warmupIterations: 1, maxDuration: .seconds(3), maxIterations: slowIterations)) { benchmark in
                for _ in benchmark.scaledIterations {
                    NaiveGEMM.tripleLoop(Matrix(p.a), transposeA: p.ta, Matrix(p.b), transposeB: p.tb, into: Matrix(p.c))
                }
                blackHole(p.c.data[0])
            }
            Benchmark("\(shape.label) \(p.name) blocked",
                      configuration: .init(metrics: [.wallClock], tags: tags, timeUnits: .milliseconds,
                                           warmupIterations: 1, maxDuration: .seconds(2), maxIterations: slowIterations * 5)) { benchmark in
                for _ in benchmark.scaledIterations {
                    NaiveGEMM.blocked(Matrix(p.a), transposeA: p.ta, Matrix(p.b), transposeB: p.tb, into: Matrix(p.c))
                }
                blackHole(p.c.data[0])
            }
            Benchmark("\(shape.label) \(p.name) sgemm",
                      configuration: .init(metrics: [.wallClock, .mallocCountTotal], tags: tags, timeUnits: .microseconds,
                                           warmupIterations: 5, maxDuration: .seconds(1), maxIterations: 2000)) { benchmark in
                for _ in benchmark.scaledIterations {
                    try gemm(p.a, transposeA: p.ta, p.b, transposeB: p.tb, into: p.c)
                }
                blackHole(p.c.data[0])
            }
        }
    }
}
