import Foundation
import XCTest
@testable import Backprop
import BackpropKernels

/// Wraps a recurrent layer and exposes its initial state as parameters `h0` (and `c0`), so
/// `GradientCheck` perturbs the initial state too and compares with `initialHiddenGradient`.
final class InitialStateProbe: Layer {
    let inner: RecurrentLayer
    let h0: Parameter
    let c0: Parameter?
    var isTraining = true

    init(_ inner: RecurrentLayer, batch n: Int, seed: UInt64) throws {
        self.inner = inner
        var rng = SeededGenerator(seed: seed)
        let shape = [inner.numLayers, n, inner.hiddenSize]
        h0 = Parameter(try Tensor(zeros: shape))
        h0.value.fillUniform(-0.8, 0.8, using: &rng)
        if inner.cell == .lstm {
            let c = Parameter(try Tensor(zeros: shape))
            c.value.fillUniform(-0.8, 0.8, using: &rng)
            c0 = c
        } else {
            c0 = nil
        }
    }

    var summary: String { "InitialStateProbe(\(inner.summary))" }

    var namedParameters: [(name: String, parameter: Parameter)] {
        inner.namedParameters + [(name: "h0", parameter: h0)] + (c0.map { [(name: "c0", parameter: $0)] } ?? [])
    }

    func forward(_ x: Tensor) throws -> Tensor {
        try inner.forward(x, initialHidden: h0.value, initialCell: c0?.value)
    }

    func backward(_ dy: Tensor) throws -> Tensor {
        let dx = try inner.backward(dy)
        for i in 0..<h0.grad.count { h0.grad.data[i] += inner.initialHiddenGradient.data[i] }
        if let c0 { for i in 0..<c0.grad.count { c0.grad.data[i] += inner.initialCellGradient.data[i] } }
        return dx
    }
}

final class RecurrentTests: XCTestCase {
    // The shapes of the checks: sizes that are not multiples of 4 or 16. H = 11: the gate kernels
    // run one 8-lane vector and a 3-element scalar tail per row.
    let n = 3, t = 4, f = 5, h = 11

    static let cells: [RecurrentLayer.Cell] = [.rnn(.tanh), .rnn(.relu), .lstm, .gru]

    func make(_ cell: RecurrentLayer.Cell, layers: Int = 2, sequences: Bool = true, truncation: Int? = nil,
              seed: UInt64 = 3) throws -> RecurrentLayer {
        var rng = SeededGenerator(seed: seed)
        switch cell {
        case .rnn(let act):
            return try RNN(inputSize: f, hiddenSize: h, numLayers: layers, nonlinearity: act,
                           returnSequences: sequences, truncation: truncation, rng: &rng)
        case .lstm:
            return try LSTM(inputSize: f, hiddenSize: h, numLayers: layers, returnSequences: sequences,
                            truncation: truncation, rng: &rng)
        case .gru:
            return try GRU(inputSize: f, hiddenSize: h, numLayers: layers, returnSequences: sequences,
                           truncation: truncation, rng: &rng)
        }
    }

    func input(seed: UInt64 = 11, steps: Int? = nil) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let x = try Tensor(zeros: [n, steps ?? t, f])
        x.fillUniform(-1, 1, using: &rng)
        return x
    }

    /// x[:, range] of a batch-first sequence.
    func slice(_ x: Tensor, _ range: Range<Int>) throws -> Tensor {
        let (nn, tt, ff) = (x.shape[0], x.shape[1], x.shape[2])
        let out = try Tensor(zeros: [nn, range.count, ff])
        for i in 0..<nn {
            for (k, s) in range.enumerated() {
                for j in 0..<ff { out[i, k, j] = x.data[(i * tt + s) * ff + j] }
            }
        }
        return out
    }

    // MARK: - Vector math

    /// The C kernels' sigmoid and tanh (every instruction-set version) against libm in Double.
    func testFastSigmoidAndTanhMatchLibm() {
        var xs: [Float] = []
        var x: Float = -30
        while x <= 30 { xs.append(x); x += 0.001953125 }
        xs += [-200, 200, -100, 100, 88.5, -88.5, 1e-8, -1e-8, 0]
        defer { Kernels.limitInstructionSet(to: 4) }
        var results: [[Float]] = []
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            var s = [Float](repeating: 0, count: xs.count), th = s
            bp_fast_sigmoid(xs, &s, xs.count)
            bp_fast_tanh(xs, &th, xs.count)
            var worstS: Double = 0, worstT: Double = 0, worstTRel: Double = 0
            for (i, v) in xs.enumerated() {
                worstS = max(worstS, abs(Double(s[i]) - 1 / (1 + Foundation.exp(-Double(v)))))
                worstT = max(worstT, abs(Double(th[i]) - Foundation.tanh(Double(v))))
                if abs(v) < 1 && v != 0 { worstTRel = max(worstTRel, abs(Double(th[i]) / Foundation.tanh(Double(v)) - 1)) }
            }
            XCTAssertLessThan(worstS, 2e-7, "level \(level)")
            XCTAssertLessThan(worstT, 3e-7, "level \(level)")
            XCTAssertLessThan(worstTRel, 5e-7, "level \(level): tanh keeps relative accuracy near 0")
            let at = { (v: Float) in xs.firstIndex(of: v)! }
            XCTAssertEqual(s[at(-200)], 0, accuracy: 1e-30)
            XCTAssertEqual(s[at(200)], 1)
            XCTAssertEqual(th[at(200)], 1)
            XCTAssertEqual(th[at(-200)], -1)
            XCTAssertEqual(th[at(0)], 0)
            var out: [Float] = [0]
            bp_fast_tanh([Float.nan], &out, 1); XCTAssertTrue(out[0].isNaN, "level \(level)")
            bp_fast_sigmoid([Float.nan], &out, 1); XCTAssertTrue(out[0].isNaN, "level \(level)")
            results.append(s + th)
        }
        // The versions differ at most by FMA rounding.
        for r in results.dropFirst() {
            for (a, b) in zip(r, results[0]) { XCTAssertEqual(a, b, accuracy: 3e-7) }
        }
    }

    /// Every cell under every C kernel version (AVX-512, AVX2, baseline): outputs, δ of the
    /// input, h0 and c0, hidden-gradient norms and parameter gradients agree with the baseline
    /// version to 1e-5·max(1, |x|) (they differ only by FMA rounding). H = 11 runs each
    /// version's vector loop and its scalar tail; 2 slices run the strided-row paths.
    func testGateKernelsAgreeUnderEveryInstructionSet() throws {
        defer { Kernels.limitInstructionSet(to: 4) }
        for cell in Self.cells {
            var results: [[[Float]]] = []
            for level in KernelVersionTests.availableLevels {
                Kernels.limitInstructionSet(to: level)
                let layer = try make(cell, truncation: nil)
                layer.useThreads(2)
                let probe = try InitialStateProbe(layer, batch: n, seed: 5)
                var rng = SeededGenerator(seed: 21)
                let w = Tensor(uncheckedShape: [n, t, h])
                w.fillUniform(-1, 1, using: &rng)
                probe.zeroGrad()
                let y = try probe.forward(try input()).scalars
                let dx = try probe.backward(w).scalars
                results.append([y, dx, layer.hiddenGradientNorms] + probe.parameters.map { $0.grad.scalars })
            }
            XCTAssertEqual(results.count, KernelVersionTests.availableLevels.count)
            for r in results.dropFirst() {
                for (a, b) in zip(r, results[0]) {
                    XCTAssertEqual(a.count, b.count)
                    for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(v)), "\(cell)") }
                }
            }
        }
    }

    // MARK: - Forward values against an independent scalar implementation (Double)

    /// PyTorch's equations, written out element by element in Double.
    func referenceForward(_ layer: RecurrentLayer, _ x: Tensor, h0: Tensor?, c0: Tensor?) -> [Double] {
        let nn = x.shape[0], tt = x.shape[1], hh = layer.hiddenSize
        func sig(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
        var seq = (0..<nn).map { i in (0..<tt).map { s in (0..<x.shape[2]).map { j in Double(x[i, s, j]) } } }
        for k in 0..<layer.numLayers {
            let wih = layer.parameter(named: "weight_ih_l\(k)")!.value, whh = layer.parameter(named: "weight_hh_l\(k)")!.value
            let bih = layer.parameter(named: "bias_ih_l\(k)")!.value, bhh = layer.parameter(named: "bias_hh_l\(k)")!.value
            let fk = wih.shape[1]
            var next = seq
            for i in 0..<nn {
                var hv = (0..<hh).map { j in h0.map { Double($0[k, i, j]) } ?? 0 }
                var cv = (0..<hh).map { j in c0.map { Double($0[k, i, j]) } ?? 0 }
                for s in 0..<tt {
                    func gi(_ row: Int) -> Double {
                        var a = Double(bih[row])
                        for j in 0..<fk { a += Double(wih[row, j]) * seq[i][s][j] }
                        return a
                    }
                    func gh(_ row: Int) -> Double {
                        var a = Double(bhh[row])
                        for j in 0..<hh { a += Double(whh[row, j]) * hv[j] }
                        return a
                    }
                    var newH = [Double](repeating: 0, count: hh)
                    for u in 0..<hh {
                        switch layer.cell {
                        case .rnn(let act):
                            let a = gi(u) + gh(u)
                            newH[u] = act == .tanh ? Foundation.tanh(a) : max(a, 0)
                        case .lstm:
                            let ig = sig(gi(u) + gh(u)), fg = sig(gi(hh + u) + gh(hh + u))
                            let gg = Foundation.tanh(gi(2 * hh + u) + gh(2 * hh + u)), og = sig(gi(3 * hh + u) + gh(3 * hh + u))
                            cv[u] = fg * cv[u] + ig * gg
                            newH[u] = og * Foundation.tanh(cv[u])
                        case .gru:
                            let r = sig(gi(u) + gh(u)), z = sig(gi(hh + u) + gh(hh + u))
                            let nv = Foundation.tanh(gi(2 * hh + u) + r * gh(2 * hh + u))
                            newH[u] = (1 - z) * nv + z * hv[u]
                        }
                    }
                    hv = newH
                    next[i][s] = hv
                }
            }
            seq = next
        }
        return seq.flatMap { $0.flatMap { $0 } }
    }

    func testForwardMatchesScalarReference() throws {
        for cell in Self.cells {
            for sequences in [true, false] {
                let layer = try make(cell, sequences: sequences)
                let probe = try InitialStateProbe(layer, batch: n, seed: 5)
                let x = try input()
                let y = try probe.forward(x)
                let ref = referenceForward(layer, x, h0: probe.h0.value, c0: probe.c0?.value)
                XCTAssertEqual(y.shape, sequences ? [n, t, h] : [n, h])
                var worst: Double = 0
                for i in 0..<n {
                    for s in (sequences ? 0..<t : t - 1..<t) {
                        for j in 0..<h {
                            let mine = sequences ? y[i, s, j] : y[i, j]
                            worst = max(worst, abs(Double(mine) - ref[(i * t + s) * h + j]))
                        }
                    }
                }
                XCTAssertLessThan(worst, 2e-6, "\(cell) sequences=\(sequences)")
                // h_n and c_n
                let hn = try XCTUnwrap(layer.finalHidden)
                XCTAssertEqual(hn.shape, [2, n, h])
                for i in 0..<n { for j in 0..<h {
                    XCTAssertEqual(Double(hn[1, i, j]), ref[(i * t + t - 1) * h + j], accuracy: 2e-6)
                } }
                XCTAssertEqual(layer.finalCell == nil, cell != .lstm)
            }
        }
    }

    func testOneStepLSTMByHand() throws {
        // H = F = 1, x = 0.25, every parameter set by hand:
        // i = σ(0.25 + 0.25) = σ(0.5), f = σ(0.125 − 0.4 + 0.3) = σ(0.025),
        // g = tanh(−0.25 + 0.5 + 0.2) = tanh(0.45), o = σ(0.5 − 0.1 + 0.1) = σ(0.5).
        let layer = try LSTM(inputSize: 1, hiddenSize: 1, seed: 0)
        try layer.parameter(named: "weight_ih_l0")!.value.assign([1, 0.5, -1, 2])
        try layer.parameter(named: "weight_hh_l0")!.value.assign([0, 0, 0, 0])
        try layer.parameter(named: "bias_ih_l0")!.value.assign([0.25, -0.4, 0.5, -0.1])
        try layer.parameter(named: "bias_hh_l0")!.value.assign([0, 0.3, 0.2, 0.1])
        let x = try Tensor([0.25], shape: [1, 1, 1])
        let c0 = try Tensor([2], shape: [1, 1, 1])
        let y = try layer.forward(x, initialHidden: nil, initialCell: c0)
        func sig(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
        let c = sig(0.025) * 2 + sig(0.5) * Foundation.tanh(0.45)
        XCTAssertEqual(Double(y.data[0]), sig(0.5) * Foundation.tanh(c), accuracy: 1e-6)
        // δc_0 = δh·o·(1 − tanh²c)·f
        _ = try layer.backward(try Tensor([1], shape: [1, 1, 1]))
        let dc0 = sig(0.5) * (1 - pow(Foundation.tanh(c), 2)) * sig(0.025)
        XCTAssertEqual(Double(layer.initialCellGradient.data[0]), dc0, accuracy: 1e-6)
        XCTAssertEqual(layer.hiddenGradientNorms, [1])
    }

    // MARK: - Finite-difference gradient checks

    /// Inputs, h0 (c0) and every parameter of a two-layer stack, N=3, T=4, F=5, H=11.
    /// GradientCheck error = |analytic − numeric| / max(1, |analytic|, |numeric|), central
    /// differences with step 1e-2 (ReLU: 1e-3, away from kinks) in Float, loss summed in Double.
    func checkGradients(_ cell: RecurrentLayer.Cell, tolerance: Float) throws {
        for sequences in [true, false] {
            let probe = try InitialStateProbe(try make(cell, sequences: sequences), batch: n, seed: 5)
            let report = try GradientCheck.check(probe, input: try input(), step: cell == .rnn(.relu) ? 1e-3 : 1e-2,
                                                 maxElements: 48)
            print("gradient check \(cell) sequences=\(sequences): \(report)")
            XCTAssertLessThan(report.maxError, tolerance, "\(cell) sequences=\(sequences): \(report)")
            XCTAssertGreaterThan(report.checked, 300)   // every input, h0, c0 element, ≥ 48 of each weight
        }
    }

    func testRNNTanhGradients() throws { try checkGradients(.rnn(.tanh), tolerance: 3e-4) }
    func testRNNReLUGradients() throws { try checkGradients(.rnn(.relu), tolerance: 1e-3) }
    func testLSTMGradients() throws { try checkGradients(.lstm, tolerance: 3e-4) }
    func testGRUGradients() throws { try checkGradients(.gru, tolerance: 3e-4) }

    // MARK: - δh products in blocks

    /// `SmallProducts.blockWidth`: equal blocks of a multiple of 16 within the limit, or the whole
    /// dimension (it fits, a block of 16 does not, or too many blocks).
    func testBlockWidths() {
        XCTAssertEqual(SmallProducts.blockWidth(total: 512, perUnit: 64 * 128), 112)   // LSTM H = 128, slices of 64
        XCTAssertEqual(SmallProducts.blockWidth(total: 256, perUnit: 64 * 64), 128)    // LSTM H = 64
        XCTAssertEqual(SmallProducts.blockWidth(total: 128, perUnit: 64 * 128), 64)    // RNN H = 128
        XCTAssertEqual(SmallProducts.blockWidth(total: 512, perUnit: 8 * 128), 512)    // fits whole
        XCTAssertEqual(SmallProducts.blockWidth(total: 512, perUnit: 16 * 128), 256)  // 1.05 M: two blocks
        XCTAssertEqual(SmallProducts.blockWidth(total: 4096, perUnit: 1 << 17), 4096)  // a block of 16 does not fit
        XCTAssertEqual(SmallProducts.blockWidth(total: 4096, perUnit: 4096), 4096)     // 17 blocks of 240: too many
        XCTAssertEqual(SmallProducts.blockWidth(total: 0, perUnit: 0), 1)
        for total in [1, 17, 100, 256, 511, 512, 1000, 2048] {
            for perUnit in [1, 500, 4096, 8192, 20_000, 62_500, 70_000] {
                let w = SmallProducts.blockWidth(total: total, perUnit: perUnit), what = "\(total) × \(perUnit)"
                XCTAssertGreaterThanOrEqual(w, 1, what)
                if w < total {
                    XCTAssertEqual(w % SmallProducts.kernelColumns, 0, what)
                    XCTAssertLessThanOrEqual(w * perUnit, SmallProducts.limit, what)
                    XCTAssertLessThanOrEqual((total + w - 1) / w, SmallProducts.maximumBlocks, what)
                } else {
                    XCTAssertEqual(w, total, what)
                }
            }
        }
    }

    /// An LSTM large enough for the blocks (H = 64, a slice of 64 rows: δh_{t−1} = δG_t·W_hh is
    /// 64 × 64 × 256 multiply-adds, cut into 2 products over 128 gate columns) issues them, within
    /// the small-matrix limit and tiling the gate columns; its gradients equal those of 8 slices
    /// of 8 rows (one product each) to 1e-5 and pass a finite-difference check.
    func testDeltaProductsInBlocksMatchOneProduct() throws {
        let (n, t, f, h) = (64, 3, 4, 64)
        func run(threads: Int, record: Bool = false) throws -> (grads: [[Float]], calls: [ProductCall]) {
            var rng = SeededGenerator(seed: 9)
            let layer = try LSTM(inputSize: f, hiddenSize: h, returnSequences: false, rng: &rng)
            layer.useThreads(threads)
            let x = try Tensor(zeros: [n, t, f])
            x.fillUniform(-1, 1, using: &rng)
            let dy = try Tensor(zeros: [n, h])
            dy.fillUniform(-1, 1, using: &rng)
            _ = try layer.forward(x)
            let recorder = GEMMRecorder()
            if record { gemmRecorder = recorder }
            defer { gemmRecorder = nil }
            let dx = try layer.backward(dy)
            return ([dx.scalars, layer.initialHiddenGradient.scalars] + layer.parameters.map(\.grad.scalars), recorder.calls)
        }
        let (blocked, calls) = try run(threads: 1, record: true)
        // δh products: NN, [64, k]·[k, 64] with lda = 4H (rows of δG), for steps 2 and 1
        let delta = calls.filter { !$0.transposeA && !$0.transposeB && $0.m == n && $0.n == h && $0.lda == 4 * h }
        XCTAssertEqual(delta.map(\.k), [128, 128, 128, 128], "\(calls)")
        XCTAssertEqual(delta.map(\.beta), [0, 1, 0, 1])
        for c in delta { XCTAssertLessThanOrEqual(c.multiplyAdds, SmallProducts.limit) }
        let (whole, _) = try run(threads: 8)
        XCTAssertEqual(blocked.count, whole.count)
        for (a, b) in zip(blocked, whole) {
            XCTAssertEqual(a.count, b.count)
            for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u))) }
        }
        var rng = SeededGenerator(seed: 9)
        let layer = try LSTM(inputSize: f, hiddenSize: h, returnSequences: false, rng: &rng)
        let x = try Tensor(zeros: [n, t, f])
        x.fillUniform(-1, 1, using: &rng)
        let report = try GradientCheck.check(layer, input: x, maxElements: 32)
        XCTAssertLessThan(report.maxError, 3e-4, "\(report)")
    }

    // MARK: - Concurrent batch slices

    /// `threads` = 2 or 3 splits the batch into slices run concurrently: outputs, δ of the input,
    /// of h0 and c0, hidden-gradient norms and parameter gradients (summed over slices) equal the
    /// one-thread results to 1e-6·max(1, |x|) (only the summation order of dW differs), with and
    /// without truncation; so do h_n and c_n. With `needsInputGradient` false, parameter gradients are unchanged
    /// and δ of the input is an empty tensor.
    func testConcurrentSlicesMatchOneThread() throws {
        func run(_ cell: RecurrentLayer.Cell, _ sequences: Bool, _ truncation: Int?, threads: Int,
                 inputGradient: Bool = true) throws -> [[Float]] {
            let layer = try make(cell, sequences: sequences, truncation: truncation)
            layer.useThreads(threads)
            layer.needsInputGradient = inputGradient
            let probe = try InitialStateProbe(layer, batch: n, seed: 5)
            var rng = SeededGenerator(seed: 21)
            let w = Tensor(uncheckedShape: sequences ? [n, t, h] : [n, h])
            w.fillUniform(-1, 1, using: &rng)
            probe.zeroGrad()
            let y = try probe.forward(try input()).scalars
            let dx = try probe.backward(w).scalars
            // h_n and c_n (gathered from the slices' blocks) too
            let final = [try XCTUnwrap(layer.finalHidden).scalars, layer.finalCell?.scalars ?? []]
            return [y, dx, layer.hiddenGradientNorms] + probe.parameters.map { $0.grad.scalars } + final
        }
        for cell in Self.cells {
            for sequences in [true, false] {
                for truncation in [nil, 2] {
                    let one = try run(cell, sequences, truncation, threads: 1)
                    for threads in [2, 3, 8] {
                        let many = try run(cell, sequences, truncation, threads: threads)
                        XCTAssertEqual(one.count, many.count)
                        for (a, b) in zip(one, many) {
                            XCTAssertEqual(a.count, b.count)
                            for (u, v) in zip(a, b) {
                                XCTAssertEqual(u, v, accuracy: 1e-6 * max(1, abs(u)),
                                               "\(cell) sequences=\(sequences) truncation=\(String(describing: truncation)) threads=\(threads)")
                            }
                        }
                    }
                    let noDX = try run(cell, sequences, truncation, threads: 2, inputGradient: false)
                    XCTAssertEqual(noDX[1], [], "δx is empty when not needed")
                    XCTAssertEqual(one[1].count, n * t * f)
                    for (a, b) in zip(one[3...], noDX[3...]) {
                        for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-6 * max(1, abs(u))) }
                    }
                }
            }
        }
        // And a finite-difference check of the sliced path itself.
        let layer = try make(.lstm)
        layer.useThreads(2)
        let report = try GradientCheck.check(try InitialStateProbe(layer, batch: n, seed: 5), input: try input(),
                                             maxElements: 48)
        XCTAssertLessThan(report.maxError, 3e-4, "\(report)")
    }

    /// The buffers' row order depends on the number of batch slices of `forward`: changing
    /// `threads` between forward and backward must not change the gradients.
    func testBackwardUsesTheSlicesOfForward() throws {
        for cell in Self.cells {
            func run(changeThreads: Bool) throws -> [[Float]] {
                let layer = try make(cell)
                layer.useThreads(3)
                var rng = SeededGenerator(seed: 21)
                let w = Tensor(uncheckedShape: [n, t, h])
                w.fillUniform(-1, 1, using: &rng)
                layer.zeroGrad()
                let y = try layer.forward(try input()).scalars
                if changeThreads { layer.useThreads(1) }
                let dx = try layer.backward(w).scalars
                let cells = layer.finalCell?.scalars ?? []
                return [y, dx, cells] + layer.parameters.map { $0.grad.scalars }
            }
            XCTAssertEqual(try run(changeThreads: true), try run(changeThreads: false), "\(cell)")
        }
    }

    func testGradientsAccumulateLikePyTorch() throws {
        let layer = try make(.gru)
        let x = try input()
        let w = try Tensor(zeros: [n, t, h]); w.fill(0.5)
        layer.zeroGrad()
        _ = try layer.forward(x); _ = try layer.backward(w)
        let once = layer.parameters.map { $0.grad.scalars }
        _ = try layer.forward(x); _ = try layer.backward(w)
        for (p, g) in zip(layer.parameters, once) {
            for i in 0..<g.count { XCTAssertEqual(p.grad.data[i], 2 * g[i], accuracy: 1e-5 * max(1, abs(g[i]))) }
        }
    }

    // MARK: - Per-step hidden gradient norms

    /// ∂L/∂h_t of the last layer, computed independently: run steps 1…t, hand every layer's state
    /// to a fresh run over steps t+1…T as its initial state, and read ∂L/∂h_0 of the top layer
    /// there (itself checked by finite differences above).
    func testHiddenGradientNormsAgreeWithSplitRuns() throws {
        for cell in Self.cells {
            for sequences in [true, false] {
                let full = try make(cell, sequences: sequences)
                let x = try input()
                var rng = SeededGenerator(seed: 21)
                let w = Tensor(uncheckedShape: sequences ? [n, t, h] : [n, h])
                w.fillUniform(-1, 1, using: &rng)
                _ = try full.forward(x)
                _ = try full.backward(w)
                let norms = full.hiddenGradientNorms
                XCTAssertEqual(norms.count, t)
                for split in 1..<t {
                    let head = try make(cell, sequences: true)
                    _ = try head.forward(try slice(x, 0..<split))
                    let tail = try make(cell, sequences: sequences)
                    _ = try tail.forward(try slice(x, split..<t), initialHidden: head.finalHidden,
                                         initialCell: head.finalCell)
                    _ = try tail.backward(sequences ? try slice(w, split..<t) : w)
                    // Total ∂L/∂h_t = δ through later steps + the loss's own δ at step t.
                    var mean: Float = 0
                    for i in 0..<n {
                        var s: Float = 0
                        for j in 0..<h {
                            let g = tail.initialHiddenGradient[1, i, j] + (sequences ? w[i, split - 1, j] : 0)
                            s += g * g
                        }
                        mean += s.squareRoot() / Float(n)
                    }
                    XCTAssertEqual(norms[split - 1], mean, accuracy: 1e-5 * max(1, mean), "\(cell) seq=\(sequences) t=\(split)")
                }
                // At t = T only the loss's own δ reaches h_T.
                var last: Float = 0
                for i in 0..<n {
                    var s: Float = 0
                    for j in 0..<h { let g = sequences ? w[i, t - 1, j] : w[i, j]; s += g * g }
                    last += s.squareRoot() / Float(n)
                }
                XCTAssertEqual(norms[t - 1], last, accuracy: 1e-6)
            }
        }
    }

    // MARK: - Truncated BPTT

    /// With truncation k, gradients equal those of an untruncated run over the last k steps that
    /// starts from the (detached) state after step T − k; earlier inputs and h0 get zero δ.
    func testZeroInitialStateSkipsStepZeroProductsWithoutChangingResults() throws {
        // Without a given state, step 0's recurrent products are skipped (h_0 = 0) and so is δh_0.
        // A run given explicit zeros does every product: outputs, parameter and input gradients
        // must agree, for every cell, with and without truncation, on 1 and 2 slices.
        for cell in Self.cells {
            for truncation in [nil, 2] as [Int?] {
                for threads in [1, 2] {
                    let x = try input()
                    var rng = SeededGenerator(seed: 5)
                    let w = try Tensor(zeros: [n, t, h])
                    w.fillUniform(-1, 1, using: &rng)
                    let skipped = try make(cell, truncation: truncation), full = try make(cell, truncation: truncation)
                    skipped.useThreads(threads)
                    full.useThreads(threads)
                    let zeros = try Tensor(zeros: [2, n, h])
                    let y1 = try skipped.forward(x)
                    let y2 = try full.forward(x, initialHidden: zeros, initialCell: cell == .lstm ? zeros : nil)
                    XCTAssertEqual(y1.scalars, y2.scalars, "\(cell) output")
                    skipped.zeroGrad()
                    full.zeroGrad()
                    let dx1 = try skipped.backward(w), dx2 = try full.backward(w)
                    for ((name, p), (_, q)) in zip(skipped.namedParameters, full.namedParameters) {
                        for i in 0..<p.grad.count {
                            XCTAssertEqual(p.grad.data[i], q.grad.data[i], accuracy: 1e-6,
                                           "\(cell) truncation \(String(describing: truncation)) threads \(threads) \(name)[\(i)]")
                        }
                    }
                    for i in 0..<dx1.count { XCTAssertEqual(dx1.data[i], dx2.data[i], accuracy: 1e-6, "\(cell) dx[\(i)]") }
                    XCTAssertEqual(skipped.hiddenGradientNorms, full.hiddenGradientNorms, "\(cell) hidden gradient norms")
                    // No state given: no state gradient (PyTorch: hx.grad is None); given: [L, N, H].
                    XCTAssertEqual(skipped.initialHiddenGradient.count, 0)
                    XCTAssertEqual(skipped.initialCellGradient.count, 0)
                    XCTAssertEqual(full.initialHiddenGradient.shape, [2, n, h])
                    XCTAssertEqual(full.initialCellGradient.shape, cell == .lstm ? [2, n, h] : [0])
                }
            }
        }
    }

    func testTruncationEqualsDetachedTail() throws {
        let k = 2
        for cell in Self.cells {
            let x = try input(steps: 6)
            let steps = 6
            var rng = SeededGenerator(seed: 4)
            let w = Tensor(uncheckedShape: [n, h]); w.fillUniform(-1, 1, using: &rng)
            let truncated = try make(cell, sequences: false, truncation: k)
            truncated.zeroGrad()
            _ = try truncated.forward(x)
            let dx = try truncated.backward(w)

            let head = try make(cell, sequences: false)
            _ = try head.forward(try slice(x, 0..<steps - k))
            let tail = try make(cell, sequences: false)
            tail.zeroGrad()
            _ = try tail.forward(try slice(x, steps - k..<steps), initialHidden: head.finalHidden, initialCell: head.finalCell)
            let dxTail = try tail.backward(w)

            for ((name, p), (_, q)) in zip(truncated.namedParameters, tail.namedParameters) {
                for i in 0..<p.grad.count {
                    XCTAssertEqual(p.grad.data[i], q.grad.data[i], accuracy: 1e-5, "\(cell) \(name)[\(i)]")
                }
            }
            for i in 0..<n { for s in 0..<steps { for j in 0..<f {
                let expected: Float = s < steps - k ? 0 : dxTail[i, s - (steps - k), j]
                XCTAssertEqual(dx[i, s, j], expected, accuracy: 1e-6, "\(cell) dx[\(i), \(s), \(j)]")
            } } }
            XCTAssertTrue(truncated.initialHiddenGradient.scalars.allSatisfy { $0 == 0 })
            XCTAssertEqual(Array(truncated.hiddenGradientNorms.prefix(steps - k)), [Float](repeating: 0, count: steps - k))
            // Truncation longer than the sequence changes nothing.
            let long = try make(cell, sequences: false, truncation: 50), plain = try make(cell, sequences: false)
            long.zeroGrad(); plain.zeroGrad()
            _ = try long.forward(x); _ = try long.backward(w)
            _ = try plain.forward(x); _ = try plain.backward(w)
            XCTAssertEqual(long.parameters.map { $0.grad.scalars }, plain.parameters.map { $0.grad.scalars })
        }
    }

    // MARK: - Classifier

    func testSequenceClassifierNamesAndGradients() throws {
        let model = try SequenceClassifier(kind: .lstm, inputSize: f, hiddenSize: h, numLayers: 2, classes: 3, seed: 9)
        XCTAssertEqual(model.namedParameters.map(\.name), [
            "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
            "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
            "fc.weight", "fc.bias",
        ])
        XCTAssertEqual(model.namedParameters.map(\.parameter.shape), [
            [44, 5], [44, 11], [44], [44], [44, 11], [44, 11], [44], [44], [3, 11], [3],
        ])
        // PyTorch's default init bounds: recurrent 1/√H, Linear 1/√in (= 1/√H here).
        let bound = 1 / Float(h).squareRoot()
        for (name, p) in model.namedParameters {
            XCTAssertTrue(p.value.scalars.allSatisfy { abs($0) <= bound }, name)
        }
        for kind in [RecurrentKind.rnn, .lstm, .gru] {
            let m = try SequenceClassifier(kind: kind, inputSize: f, hiddenSize: h, numLayers: 2, classes: 3, seed: 9)
            let y = try m.forward(try input())
            XCTAssertEqual(y.shape, [n, 3])
            let report = try GradientCheck.check(m, input: try input(), maxElements: 48)
            print("gradient check classifier \(kind): \(report)")
            XCTAssertLessThan(report.maxError, 3e-4, "\(kind): \(report)")
        }
    }

    // MARK: - Validation

    func testInvalidShapesThrowNamingTheLayer() throws {
        let layer = try make(.lstm)
        func expectShapeError(_ x: Tensor, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try layer.forward(x), file: file, line: line) { error in
                guard case let .shapeMismatch(location, detail)? = error as? BackpropError else {
                    return XCTFail("expected shapeMismatch, got \(error)", file: file, line: line)
                }
                XCTAssertTrue(location.contains("LSTM(5 → 11"), location, file: file, line: line)
                XCTAssertTrue(detail.contains(fragment), detail, file: file, line: line)
            }
        }
        expectShapeError(try Tensor(zeros: [3, 5]), "[3, 5]")
        expectShapeError(try Tensor(zeros: [3, 4, 6]), "[3, 4, 6]")
        expectShapeError(try Tensor(zeros: [3, 0, 5]), "T = 0")
        expectShapeError(try Tensor(zeros: [0, 4, 5]), "N = 0")
        layer.initialHidden = try Tensor(zeros: [1, 3, 11])
        expectShapeError(try input(), "[2, 3, 11]")
        layer.initialHidden = nil
        layer.initialCell = try Tensor(zeros: [2, 2, 11])
        expectShapeError(try input(), "[2, 2, 11]")
        layer.initialCell = nil

        let gru = try make(.gru)
        XCTAssertThrowsError(try gru.forward(try input(), initialHidden: nil, initialCell: try Tensor(zeros: [2, 3, 11])))
        XCTAssertThrowsError(try gru.backward(try Tensor(zeros: [n, t, h])), "backward before forward")
        _ = try gru.forward(try input())
        XCTAssertThrowsError(try gru.backward(try Tensor(zeros: [n, h])), "δ of the wrong shape")

        for (hidden, layers, trunc) in [(0, 1, nil), (7, 0, nil), (7, 1, 0)] as [(Int, Int, Int?)] {
            XCTAssertThrowsError(try LSTM(inputSize: 5, hiddenSize: hidden, numLayers: layers, truncation: trunc, seed: 0)) { error in
                guard case let .invalidArgument(message)? = error as? BackpropError else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("LSTM(inputSize: 5, hiddenSize: \(hidden), numLayers: \(layers))"), message)
            }
        }
        XCTAssertThrowsError(try GRU(inputSize: 0, hiddenSize: 3, seed: 0))
        XCTAssertThrowsError(try SequenceClassifier(kind: .gru, inputSize: 5, hiddenSize: 3, classes: 0))
    }

    // MARK: - Buffer reuse

    func testBuffersAreReusedAcrossBatches() throws {
        for cell in Self.cells {
            let layer = try make(cell)
            let x = try input(), w = Tensor(uncheckedShape: [n, t, h]); w.fill(0.1)
            let y1 = try layer.forward(x); let dx1 = try layer.backward(w)
            let storages = layer.stages.map { [$0.gates.data, $0.output.data, $0.gateGradient.data, $0.previous.data] }
            let y2 = try layer.forward(x); let dx2 = try layer.backward(w)
            XCTAssertTrue(y1 === y2 && dx1 === dx2)
            XCTAssertEqual(layer.stages.map { [$0.gates.data, $0.output.data, $0.gateGradient.data, $0.previous.data] }, storages)
            // A smaller batch (the last one of an epoch) fits in the same storage.
            _ = try layer.forward(try slice(x, 0..<2))
            XCTAssertEqual(layer.stages.map { [$0.gates.data, $0.output.data, $0.gateGradient.data, $0.previous.data] }, storages)
        }
    }

    // MARK: - Timing (skipped unless BACKPROP_RNN_BENCH is set; run it in a release build)

    func testLSTMTiming() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["BACKPROP_RNN_BENCH"] == nil, "set BACKPROP_RNN_BENCH=1")
        for kind in [RecurrentKind.lstm, .gru, .rnn] {
            let (bn, bt, bf, bh) = (128, 28, 28, 128)
            var rng = SeededGenerator(seed: 1)
            let layer = try RecurrentLayer.make(kind, inputSize: bf, hiddenSize: bh, returnSequences: false, rng: &rng)
            let x = try Tensor(zeros: [bn, bt, bf]); x.fillUniform(-1, 1, using: &rng)
            let dy = try Tensor(zeros: [bn, bh]); dy.fillUniform(-1, 1, using: &rng)
            var forward: [Double] = [], total: [Double] = []
            for _ in 0..<12 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try layer.forward(x)
                let t1 = DispatchTime.now().uptimeNanoseconds
                _ = try layer.backward(dy)
                let t2 = DispatchTime.now().uptimeNanoseconds
                forward.append(Double(t1 - t0) / 1e6); total.append(Double(t2 - t0) / 1e6)
            }
            forward.sort(); total.sort()
            // The same products alone (what gemm costs of the total).
            let g = kind == .lstm ? 4 : kind == .gru ? 3 : 1
            let rows = bn * bt, gh = g * bh
            let gx = try Tensor(zeros: [rows, gh]), w = try Tensor(zeros: [gh, bh]), wi = try Tensor(zeros: [gh, bf])
            let hs = try Tensor(zeros: [rows, bh]), dw = try Tensor(zeros: [gh, bh]), dwi = try Tensor(zeros: [gh, bf])
            let dxs = try Tensor(zeros: [rows, bf]), dh = try Tensor(zeros: [bn, bh])
            var products: [Double] = []
            for _ in 0..<12 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try gemm(Matrix(x, rows: rows, columns: bf), Matrix(wi), transposeB: true, into: Matrix(gx))
                for s in 0..<bt {
                    try gemm(Matrix(hs, offset: s * bh, rows: bn, columns: bh, stride: bt * bh), Matrix(w), transposeB: true,
                             into: Matrix(gx, offset: s * gh, rows: bn, columns: gh, stride: bt * gh), beta: 1)
                }
                for s in 0..<bt {
                    try gemm(Matrix(gx, offset: s * gh, rows: bn, columns: gh, stride: bt * gh), Matrix(w), into: Matrix(dh))
                }
                try gemm(Matrix(gx), transposeA: true, Matrix(x, rows: rows, columns: bf), into: Matrix(dwi), beta: 1)
                try gemm(Matrix(gx), transposeA: true, Matrix(hs), into: Matrix(dw), beta: 1)
                try gemm(Matrix(gx), Matrix(wi), into: Matrix(dxs))
                products.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            products.sort()
            print("\(kind) N=\(bn) T=\(bt) F=\(bf) H=\(bh): forward \(forward[6]) ms, forward+backward \(total[6]) ms (median of 12; min \(total[0]) ms); its gemms alone \(products[6]) ms (min \(products[0]) ms); BLAS threads \(BLAS.threadCount)")
        }
    }
}
