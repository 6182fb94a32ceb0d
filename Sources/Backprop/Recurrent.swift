/// Recurrent layers: PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` with `batch_first=True`.
///
/// Input `[N, T, F]`; output `[N, T, H]` (every step, PyTorch's `output`) or `[N, H]` (the last
/// step) when `returnSequences` is false. Stacked layers feed each layer's output sequence to
/// the next. Parameters per stacked layer k, PyTorch's names, layouts and gate order
/// (G = 1 for RNN, 4 for LSTM, 3 for GRU):
///
///     weight_ih_l{k} [G·H, F_k]   weight_hh_l{k} [G·H, H]   bias_ih_l{k} [G·H]   bias_hh_l{k} [G·H]
///
///     RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh)                       act = tanh or ReLU
///     LSTM  [i f g o] = [σ σ tanh σ](W_ih x + b_ih + W_hh h + b_hh)
///           c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
///     GRU   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
///           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h
///
/// Products (all through `gemm`; rows of an `[N, T, ·]` buffer are (n, t) pairs, n-major, so
/// step t of the batch is the strided matrix starting at row t with row stride T):
///
///     forward   Gx = X·W_ihᵀ                   [N·T, G·H]        ONE sgemm for all steps (biases: in the gate kernels)
///               per step: Gx_t += h_{t−1}·W_hhᵀ   [N, G·H]       one sgemm per step (GRU: own buffer)
///     backward  per step: δh_{t−1} = δG_t·W_hh    [N, H]          one sgemm per step
///               dW_ih += δGxᵀ·X                  [G·H, F]        ONE sgemm over N·T rows
///               dW_hh += δGhᵀ·H_prev             [G·H, H]        ONE sgemm; H_prev row (n, t) = h_{t−1}
///               dX = δGx·W_ih                    [N·T, F]        ONE sgemm
///
/// Gate arithmetic runs per step in short pointer loops over each row that LLVM vectorises
/// (RecurrentMath.swift). Every buffer is a `Tensor` resized per batch shape and reused; the
/// step loops allocate nothing.
///
/// Initial state: set `initialHidden` (`[numLayers, N, H]`, PyTorch's h_0) and for LSTM
/// `initialCell` (c_0) before `forward`, or pass them to `forward(_:initialHidden:initialCell:)`;
/// nil means zeros. After `backward`, `initialHiddenGradient` / `initialCellGradient` hold
/// ∂L/∂h_0 and ∂L/∂c_0, and `hiddenGradientNorms[t]` the batch mean of ‖∂L/∂h_{t+1}‖ (total
/// derivative, through all later steps) of the last stacked layer.
///
/// Truncated BPTT (`truncation = k`): backward runs through the last k steps only, as if the
/// state entering step T − k had been detached (`h.detach()`): gradients reaching outputs of
/// earlier steps are ignored, and δ of those inputs and of the initial state is zero.

public enum RecurrentNonlinearity: Sendable, Equatable {
    case tanh
    case relu
}

/// Which recurrent cell a `SequenceClassifier` (or `RecurrentLayer.make`) uses.
public enum RecurrentKind: Sendable, Equatable {
    case rnn
    case lstm
    case gru
}

public class RecurrentLayer: Layer {
    public enum Cell: Sendable, Equatable {
        case rnn(RecurrentNonlinearity)
        case lstm
        case gru

        /// Gate blocks per weight: G.
        public var gateCount: Int {
            switch self {
            case .rnn: return 1
            case .lstm: return 4
            case .gru: return 3
            }
        }

        var name: String {
            switch self {
            case .rnn(.tanh): return "RNN"
            case .rnn(.relu): return "RNN(relu)"
            case .lstm: return "LSTM"
            case .gru: return "GRU"
            }
        }
    }

    /// The weights and cached buffers of one stacked layer.
    final class Stage {
        let inputSize: Int
        let weightIH, weightHH, biasIH, biasHH: Parameter
        var input: Tensor?                                      // [N, T, F_k], cached
        let gates = Tensor(uncheckedShape: [0])                 // [N, T, G·H] pre-activations, then activations
        let hiddenGates = Tensor(uncheckedShape: [0])           // GRU: [N, T, 3H] = h_{t−1}·W_hhᵀ + b_hh
        let previous = Tensor(uncheckedShape: [0])              // [N, T, H], row (n, t) = h_{t−1}
        let output = Tensor(uncheckedShape: [0])                // [N, T, H], row (n, t) = h_t
        let cells = Tensor(uncheckedShape: [0])                 // LSTM: [N, T, H] c_t
        let cellTanh = Tensor(uncheckedShape: [0])              // LSTM: [N, T, H] tanh(c_t)
        let initialCell = Tensor(uncheckedShape: [0])           // LSTM: [N, H] c_0 (copy or zeros)
        let gateGradient = Tensor(uncheckedShape: [0])          // [N, T, G·H] δ of the input-side pre-activations
        let hiddenGateGradient = Tensor(uncheckedShape: [0])    // GRU: [N, T, 3H] δ of the hidden-side ones
        let inputGradient = Tensor(uncheckedShape: [0])         // [N, T, F_k]
        let combinedBias = Tensor(uncheckedShape: [0])          // [G·H] b_ih + b_hh (forward, all cells)
        /// Weight and bias gradients of batch slices 1, 2, … (slice 0 accumulates into the
        /// parameters' `grad` directly); added to `grad` after the slices finish.
        var sliceGradients: [SliceGradients] = []
        let biasSumScratch = Tensor(uncheckedShape: [0])        // [G·H] Σ δ rows of slice 0 (RNN, LSTM)
        let weightIHTransposedScratch = Tensor(uncheckedShape: [0])  // [F, G·H] (dW_ih)ᵀ of slice 0, narrow inputs

        init(inputSize: Int, hiddenSize: Int, gates: Int, rng: inout SeededGenerator) throws {
            self.inputSize = inputSize
            let gh = gates * hiddenSize
            weightIH = Parameter(try Tensor(zeros: [gh, inputSize]))
            weightHH = Parameter(try Tensor(zeros: [gh, hiddenSize]))
            biasIH = Parameter(try Tensor(zeros: [gh]))
            biasHH = Parameter(try Tensor(zeros: [gh]))
            // PyTorch's RNNBase.reset_parameters: every parameter U(−1/√H, 1/√H), in this order.
            let bound = 1 / Float(hiddenSize).squareRoot()
            for p in [weightIH, weightHH, biasIH, biasHH] { p.value.fillUniform(-bound, bound, using: &rng) }
        }
    }

    /// One batch slice's share of a stage's weight and bias gradients.
    final class SliceGradients {
        let weightIH = Tensor(uncheckedShape: [0]), weightHH = Tensor(uncheckedShape: [0])
        let biasIH = Tensor(uncheckedShape: [0]), biasHH = Tensor(uncheckedShape: [0])
        let biasSum = Tensor(uncheckedShape: [0])
        let weightIHTransposed = Tensor(uncheckedShape: [0])
    }

    public let cell: Cell
    public let inputSize: Int
    public let hiddenSize: Int
    public let numLayers: Int
    /// Output every step `[N, T, H]` (true) or the last step `[N, H]` (false).
    public let returnSequences: Bool
    /// Backpropagate through the last `truncation` steps only (nil: all steps).
    public var truncation: Int?
    public var isTraining = true
    /// Batch slices processed concurrently, one thread each (default 1). Samples of a batch are
    /// independent, so each slice runs every stacked layer's step loop on its own rows with
    /// single-threaded BLAS calls (OpenBLAS is set to 1 thread meanwhile and restored after):
    /// no synchronisation per time step. Weight gradients are summed over slices in slice order,
    /// so results are deterministic for a given value (and differ from 1 only by rounding).
    public var threads = 1
    public func useThreads(_ count: Int) { threads = Swift.max(1, count) }
    private let batchSlices = BatchSlices()
    /// When false, `backward` skips ∂L/∂x of the first layer (a training loop never uses δ of
    /// the data: one [N·T, G·H]·[G·H, F] product saved) and returns an empty tensor.
    public var needsInputGradient = true

    /// h_0, `[numLayers, N, H]`; nil means zeros. Read by every `forward`.
    public var initialHidden: Tensor?
    /// c_0 (LSTM only), `[numLayers, N, H]`; nil means zeros.
    public var initialCell: Tensor?
    /// ∂L/∂h_0 `[numLayers, N, H]` from the last `backward` (zeros when truncation cut it off).
    public let initialHiddenGradient = Tensor(uncheckedShape: [0])
    /// ∂L/∂c_0 `[numLayers, N, H]` (LSTM) from the last `backward`.
    public let initialCellGradient = Tensor(uncheckedShape: [0])
    /// For t = 1…T (index t − 1): mean over the batch of ‖∂L/∂h_t‖ of the last stacked layer,
    /// the total derivative through all later steps, from the last `backward`. Zero for steps
    /// outside the truncation window.
    public private(set) var hiddenGradientNorms: [Float] = []

    let stages: [Stage]
    private var batch = 0, steps = 0
    private let lastOutput = Tensor(uncheckedShape: [0])        // [N, H] when !returnSequences
    private let sliceNorms = Tensor(uncheckedShape: [0])        // [slices, T] Σ_i ‖δh_t‖ per slice
    private let hiddenNext = Tensor(uncheckedShape: [0])        // [N, H] δ into h_{t−1}
    private let cellNext = Tensor(uncheckedShape: [0])          // [N, H] δ into c_{t−1}
    private let zeroRow = Tensor(uncheckedShape: [0])           // [H] zeros: δ of outputs not given

    init(cell: Cell, inputSize: Int, hiddenSize: Int, numLayers: Int, returnSequences: Bool,
         truncation: Int?, rng: inout SeededGenerator) throws {
        let what = "\(cell.name)(inputSize: \(inputSize), hiddenSize: \(hiddenSize), numLayers: \(numLayers))"
        guard inputSize > 0 else { throw BackpropError.invalidArgument("\(what): inputSize must be positive") }
        guard hiddenSize > 0 else { throw BackpropError.invalidArgument("\(what): hiddenSize must be positive") }
        guard numLayers > 0 else { throw BackpropError.invalidArgument("\(what): numLayers must be positive") }
        if let k = truncation, k <= 0 {
            throw BackpropError.invalidArgument("\(what): truncation must be positive (or nil), got \(k)")
        }
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.returnSequences = returnSequences
        self.truncation = truncation
        var stages: [Stage] = []
        for k in 0..<numLayers {
            stages.append(try Stage(inputSize: k == 0 ? inputSize : hiddenSize, hiddenSize: hiddenSize,
                                    gates: cell.gateCount, rng: &rng))
        }
        self.stages = stages
    }

    /// A recurrent layer of the given kind (`nonlinearity` applies to `.rnn`).
    public static func make(_ kind: RecurrentKind, inputSize: Int, hiddenSize: Int, numLayers: Int = 1,
                            nonlinearity: RecurrentNonlinearity = .tanh, returnSequences: Bool = true,
                            truncation: Int? = nil, rng: inout SeededGenerator) throws -> RecurrentLayer {
        switch kind {
        case .rnn:
            return try RNN(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                           nonlinearity: nonlinearity, returnSequences: returnSequences,
                           truncation: truncation, rng: &rng)
        case .lstm:
            return try LSTM(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                            returnSequences: returnSequences, truncation: truncation, rng: &rng)
        case .gru:
            return try GRU(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                           returnSequences: returnSequences, truncation: truncation, rng: &rng)
        }
    }

    public var summary: String {
        "\(cell.name)(\(inputSize) → \(hiddenSize)\(numLayers > 1 ? ", \(numLayers) layers" : "")"
            + "\(returnSequences ? ", sequences" : ", last step")"
            + "\(truncation.map { ", truncation \($0)" } ?? ""))"
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list: [(name: String, parameter: Parameter)] = []
        for (k, s) in stages.enumerated() {
            list.append((name: "weight_ih_l\(k)", parameter: s.weightIH))
            list.append((name: "weight_hh_l\(k)", parameter: s.weightHH))
            list.append((name: "bias_ih_l\(k)", parameter: s.biasIH))
            list.append((name: "bias_hh_l\(k)", parameter: s.biasHH))
        }
        return list
    }

    /// h_n: every layer's hidden state after the last step, `[numLayers, N, H]` (a new tensor).
    public var finalHidden: Tensor? {
        guard steps > 0 else { return nil }
        return gatherLastStep { $0.output.data }
    }

    /// c_n (LSTM): every layer's cell state after the last step, `[numLayers, N, H]` (a new tensor).
    public var finalCell: Tensor? {
        guard steps > 0, cell == .lstm else { return nil }
        return gatherLastStep { $0.cells.data }
    }

    private func gatherLastStep(_ buffer: (Stage) -> UnsafeMutablePointer<Float>) -> Tensor {
        let h = hiddenSize, n = batch, t = steps
        let out = Tensor(uncheckedShape: [numLayers, n, h])
        for (k, s) in stages.enumerated() {
            let src = buffer(s)
            for i in 0..<n { (out.data + (k * n + i) * h).update(from: src + (i * t + t - 1) * h, count: h) }
        }
        return out
    }

    /// Sets `initialHidden` / `initialCell` and runs `forward` (on an error they keep their old values).
    public func forward(_ x: Tensor, initialHidden: Tensor?, initialCell: Tensor? = nil) throws -> Tensor {
        let saved = (self.initialHidden, self.initialCell)
        self.initialHidden = initialHidden
        self.initialCell = initialCell
        do {
            return try forward(x)
        } catch {
            (self.initialHidden, self.initialCell) = saved
            throw error
        }
    }

    // MARK: - Forward

    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.rank == 3 else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "expected batch-first input [N, T, \(inputSize)], got \(x.shape) (rank \(x.rank))")
        }
        let n = x.shape[0], t = x.shape[1], f = x.shape[2]
        guard f == inputSize else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "expected \(inputSize) features per step ([N, T, \(inputSize)]), got \(x.shape)")
        }
        guard t > 0, n > 0 else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "input \(x.shape) has no \(t == 0 ? "time steps (T = 0)" : "samples (N = 0)")")
        }
        let h = hiddenSize, stateShape = [numLayers, n, h]
        if let h0 = initialHidden, h0.shape != stateShape {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "initial hidden state must be [numLayers, N, H] = \(stateShape) for input \(x.shape), got \(h0.shape)")
        }
        if let c0 = initialCell {
            guard cell == .lstm else {
                throw BackpropError.invalidArgument("\(summary): only an LSTM has an initial cell state")
            }
            guard c0.shape == stateShape else {
                throw BackpropError.shapeMismatch(
                    where: summary, detail: "initial cell state must be [numLayers, N, H] = \(stateShape) for input \(x.shape), got \(c0.shape)")
            }
        }
        batch = n
        steps = t
        var input = x
        for s in stages {
            prepareForward(s, input: input)
            input = s.output
        }
        let h0 = initialHidden?.data, c0 = initialCell?.data
        try forEachSlice { _, samples in
            for (k, s) in self.stages.enumerated() {
                try self.forwardSlice(s, samples, h0: h0.map { $0 + k * n * h }, c0: c0.map { $0 + k * n * h })
            }
        }
        let top = stages[numLayers - 1].output
        if returnSequences { return top }
        lastOutput.resize(n, h)
        for i in 0..<n { (lastOutput.data + i * h).update(from: top.data + (i * t + t - 1) * h, count: h) }
        return lastOutput
    }

    /// Runs `body` on contiguous slices of the batch's samples, one per thread (`BatchSlices`).
    private func forEachSlice(_ body: (_ slice: Int, _ samples: Range<Int>) throws -> Void) throws {
        try batchSlices.run(count: BatchSlices.count(threads: threads, items: batch), items: batch, body)
    }

    /// Sizes a stage's buffers for the batch (before the slices run: they only write rows).
    private func prepareForward(_ s: Stage, input x: Tensor) {
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        s.input = x
        s.gates.resize(n, t, gh)
        s.previous.resize(n, t, h)
        s.output.resize(n, t, h)
        if cell == .gru { s.hiddenGates.resize(n, t, gh) }
        if cell == .lstm {
            s.cells.resize(n, t, h)
            s.cellTanh.resize(n, t, h)
            s.initialCell.resize(n, h)
        }
        s.combinedBias.resize(gh)
        let b = s.combinedBias.data, bih = s.biasIH.value.data, bhh = s.biasHH.value.data
        for j in 0..<gh { b[j] = bih[j] + bhh[j] }
    }

    /// One stage's forward pass for the samples `samples` (rows i·T … i·T + T − 1 of each buffer).
    private func forwardSlice(_ s: Stage, _ samples: Range<Int>, h0: UnsafeMutablePointer<Float>?,
                              c0: UnsafeMutablePointer<Float>?) throws {
        guard let x = s.input else { return }
        let t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count, rows = m * t
        let gx = s.gates.data + n0 * t * gh, prev = s.previous.data + n0 * t * h

        // Gx = X·W_ihᵀ, all the slice's rows in one product. The biases are added by the gate
        // kernels while the step's rows are in cache.
        try gemm(Matrix(x.data + n0 * t * f, rows: rows, columns: f), Matrix(s.weightIH.value), transposeB: true,
                 into: Matrix(gx, rows: rows, columns: gh), caller: summary)

        // H_prev[:, 0] = h_0.
        for i in samples {
            let row = prev + (i - n0) * t * h
            if let h0 { row.update(from: h0 + i * h, count: h) } else { row.update(repeating: 0, count: h) }
        }
        // where h_{t−1}·W_hhᵀ goes: added to Gx, or (GRU) its own buffer
        let gHidden = cell == .gru ? s.hiddenGates.data + n0 * t * gh : gx
        if cell == .lstm {
            let c = s.initialCell.data + n0 * h
            if let c0 { c.update(from: c0 + n0 * h, count: m * h) } else { c.update(repeating: 0, count: m * h) }
        }
        let whh = Matrix(s.weightHH.value)
        for step in 0..<t {
            // G_t += h_{t−1}·W_hhᵀ   [M, G·H] = [M, H]·[H, G·H], rows strided by T.
            try gemm(Matrix(prev + step * h, rows: m, columns: h, stride: t * h), whh, transposeB: true,
                     into: Matrix(gHidden + step * gh, rows: m, columns: gh, stride: t * gh), beta: cell == .gru ? 0 : 1,
                     caller: summary)
            switch cell {
            case .rnn(let act): rnnForwardStep(s, samples, step, relu: act == .relu)
            case .lstm: lstmForwardStep(s, samples, step)
            case .gru: gruForwardStep(s, samples, step)
            }
        }
    }

    // Gate kernels: one call per step; per batch row (length H) one pass in 8-lane vectors
    // (RecurrentMath.swift) and a scalar tail for H mod 8, doing the same arithmetic. Rows are
    // (n, step) of [N, T, ·]. Each kernel also writes h_t into H_prev's row (n, step + 1), the
    // next step's product input.

    private func rnnForwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int, relu: Bool) {
        let t = steps, h = hiddenSize, bias = UnsafePointer(s.combinedBias.data), last = step + 1 == t
        let h8 = h & ~7
        for i in samples {
            let row = i * t + step
            let a = s.gates.data + row * h, out = s.output.data + row * h
            let next = s.previous.data + (row + 1) * h          // valid unless `last`
            var j = 0
            while j < h8 {
                let pre = a.vector(at: j) + bias.vector(at: j)
                let y = relu ? pre.replacing(with: 0, where: pre .< 0) : fastTanh(pre)
                out.store(y, at: j)
                if !last { next.store(y, at: j) }
                j += 8
            }
            while j < h {
                let pre = a[j] + bias[j]
                let y = relu ? (pre > 0 ? pre : 0) : fastTanh(pre)
                out[j] = y
                if !last { next[j] = y }
                j += 1
            }
        }
    }

    private func lstmForwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int) {
        let t = steps, h = hiddenSize, gh = 4 * h, bias = UnsafePointer(s.combinedBias.data), last = step + 1 == t
        let h8 = h & ~7
        for i in samples {
            let row = i * t + step
            let a = s.gates.data + row * gh                      // [i | f | g | o], activated in place
            let ig = a, fg = a + h, gg = a + 2 * h, og = a + 3 * h
            let cPrev = step == 0 ? s.initialCell.data + i * h : s.cells.data + (row - 1) * h
            let c = s.cells.data + row * h, tc = s.cellTanh.data + row * h, out = s.output.data + row * h
            let next = s.previous.data + (row + 1) * h
            var j = 0
            while j < h8 {
                let iv = fastSigmoid(ig.vector(at: j) + bias.vector(at: j))
                let fv = fastSigmoid(fg.vector(at: j) + bias.vector(at: h + j))
                let gv = fastTanh(gg.vector(at: j) + bias.vector(at: 2 * h + j))
                let ov = fastSigmoid(og.vector(at: j) + bias.vector(at: 3 * h + j))
                let cv = fv * cPrev.vector(at: j) + iv * gv                       // c' = f⊙c + i⊙g
                let tv = fastTanh(cv)
                let y = ov * tv                                                   // h' = o⊙tanh(c')
                ig.store(iv, at: j); fg.store(fv, at: j); gg.store(gv, at: j); og.store(ov, at: j)
                c.store(cv, at: j); tc.store(tv, at: j); out.store(y, at: j)
                if !last { next.store(y, at: j) }
                j += 8
            }
            while j < h {
                let iv = fastSigmoid(ig[j] + bias[j]), fv = fastSigmoid(fg[j] + bias[h + j])
                let gv = fastTanh(gg[j] + bias[2 * h + j]), ov = fastSigmoid(og[j] + bias[3 * h + j])
                let cv = fv * cPrev[j] + iv * gv, tv = fastTanh(cv), y = ov * tv
                ig[j] = iv; fg[j] = fv; gg[j] = gv; og[j] = ov
                c[j] = cv; tc[j] = tv; out[j] = y
                if !last { next[j] = y }
                j += 1
            }
        }
    }

    private func gruForwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int) {
        let t = steps, h = hiddenSize, gh = 3 * h, last = step + 1 == t
        let bias = UnsafePointer(s.combinedBias.data), bin = UnsafePointer(s.biasIH.value.data + 2 * h)
        let bhn = UnsafePointer(s.biasHH.value.data + 2 * h)
        let h8 = h & ~7
        for i in samples {
            let row = i * t + step
            let a = s.gates.data + row * gh                      // input side [r | z | n]: X·W_ihᵀ
            let b = s.hiddenGates.data + row * gh                // hidden side: h·W_hhᵀ
            let r = a, z = a + h, nv = a + 2 * h, bn = b + 2 * h
            let hp = s.previous.data + row * h, out = s.output.data + row * h
            let next = s.previous.data + (row + 1) * h
            var j = 0
            while j < h8 {
                let rv = fastSigmoid(r.vector(at: j) + b.vector(at: j) + bias.vector(at: j))      // all four biases
                let zv = fastSigmoid(z.vector(at: j) + b.vector(at: h + j) + bias.vector(at: h + j))
                let bnv = bn.vector(at: j) + bhn.vector(at: j)                                   // W_hn h + b_hn, kept
                let nvv = fastTanh(nv.vector(at: j) + bin.vector(at: j) + rv * bnv)
                let hv = hp.vector(at: j)
                let y = nvv + zv * (hv - nvv)                                                    // (1 − z)⊙n + z⊙h
                r.store(rv, at: j); z.store(zv, at: j); bn.store(bnv, at: j); nv.store(nvv, at: j)
                out.store(y, at: j)
                if !last { next.store(y, at: j) }
                j += 8
            }
            while j < h {
                let rv = fastSigmoid(r[j] + b[j] + bias[j]), zv = fastSigmoid(z[j] + b[h + j] + bias[h + j])
                let bnv = bn[j] + bhn[j]
                let nvv = fastTanh(nv[j] + bin[j] + rv * bnv)
                let y = nvv + zv * (hp[j] - nvv)
                r[j] = rv; z[j] = zv; bn[j] = bnv; nv[j] = nvv
                out[j] = y
                if !last { next[j] = y }
                j += 1
            }
        }
    }

    // MARK: - Backward

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard steps > 0, stages[0].input != nil else {
            throw BackpropError.invalidArgument("\(summary): backward called before forward")
        }
        try requireSameShape(dy, returnSequences ? stages[numLayers - 1].output : lastOutput, layer: summary)
        if let k = truncation, k <= 0 {
            throw BackpropError.invalidArgument("\(summary): truncation must be positive (or nil), got \(k)")
        }
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        let first = max(0, t - (truncation ?? t))              // first step backpropagated through
        initialHiddenGradient.resize(numLayers, n, h)
        if cell == .lstm { initialCellGradient.resize(numLayers, n, h) } else { initialCellGradient.resize(0) }
        hiddenNext.resize(n, h)
        cellNext.resize(n, h)
        zeroRow.resize(h)
        zeroRow.fill(0)
        let slices = max(1, min(threads, n))
        sliceNorms.resize(slices, t)
        sliceNorms.fill(0)
        for (k, s) in stages.enumerated() {
            s.gateGradient.resize(n, t, gh)
            if cell == .gru { s.hiddenGateGradient.resize(n, t, gh) }
            if let x = s.input {
                if k > 0 || needsInputGradient { s.inputGradient.resize(to: x.shape) } else { s.inputGradient.resize(0) }
            }
            while s.sliceGradients.count < slices - 1 { s.sliceGradients.append(SliceGradients()) }
            for g in s.sliceGradients.prefix(slices - 1) {
                g.weightIH.resize(to: s.weightIH.value.shape)
                g.weightHH.resize(to: s.weightHH.value.shape)
                g.biasIH.resize(gh); g.biasIH.fill(0)
                g.biasHH.resize(gh); g.biasHH.fill(0)
            }
        }

        // Each slice runs all layers, top first; δ of the top layer's outputs is given for every
        // step, or only the last one.
        try forEachSlice { slice, samples in
            var delta = dy.data
            var deltaAllSteps = self.returnSequences
            for k in stride(from: self.numLayers - 1, through: 0, by: -1) {
                let s = self.stages[k]
                try self.backwardSlice(s, samples, slice: slice, layer: k, delta: delta, allSteps: deltaAllSteps,
                                       first: first, norms: k == self.numLayers - 1)
                delta = s.inputGradient.data
                deltaAllSteps = true
            }
        }
        // Slices 1, 2, … add their weight and bias gradients, in order.
        for s in stages {
            for g in s.sliceGradients.prefix(slices - 1) {
                for (sum, part) in [(s.weightIH.grad, g.weightIH), (s.weightHH.grad, g.weightHH),
                                    (s.biasIH.grad, g.biasIH), (s.biasHH.grad, g.biasHH)] {
                    let a = sum.data, b = UnsafePointer(part.data)
                    for j in 0..<sum.count { a[j] += b[j] }
                }
            }
        }
        if hiddenGradientNorms.count != t { hiddenGradientNorms = [Float](repeating: 0, count: t) }
        for step in 0..<t {
            var total: Float = 0
            for k in 0..<slices { total += sliceNorms.data[k * t + step] }
            hiddenGradientNorms[step] = total / Float(n)
        }
        return stages[0].inputGradient
    }

    /// One stage's backward pass for the samples `samples`; weight and bias gradients go to the
    /// parameters (slice 0) or the slice's own buffers.
    private func backwardSlice(_ s: Stage, _ samples: Range<Int>, slice: Int, layer k: Int,
                               delta dy: UnsafeMutablePointer<Float>, allSteps: Bool, first: Int, norms: Bool) throws {
        guard let x = s.input else { return }
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count, rows = m * t
        let dgx = s.gateGradient.data + n0 * t * gh
        // δ of the hidden-side pre-activations (the same as the input side but for GRU)
        let dgHidden = cell == .gru ? s.hiddenGateGradient.data + n0 * t * gh : dgx
        // Steps outside the truncation window contribute nothing.
        if first > 0 {
            for i in 0..<m {
                (dgx + i * t * gh).update(repeating: 0, count: first * gh)
                if cell == .gru { (dgHidden + i * t * gh).update(repeating: 0, count: first * gh) }
            }
        }
        let dhNext = hiddenNext.data + n0 * h
        dhNext.update(repeating: 0, count: m * h)
        (cellNext.data + n0 * h).update(repeating: 0, count: m * h)
        let whh = Matrix(s.weightHH.value), normRow = sliceNorms.data + slice * t
        for step in stride(from: t - 1, through: first, by: -1) {
            var normSum: Float = 0
            switch cell {
            case .rnn(let act): normSum = rnnBackwardStep(s, samples, step, dy, allSteps, relu: act == .relu)
            case .lstm: normSum = lstmBackwardStep(s, samples, step, dy, allSteps)
            case .gru: normSum = gruBackwardStep(s, samples, step, dy, allSteps)
            }
            if norms { normRow[step] = normSum }
            // δh_{t−1} (+)= δG_t·W_hh   [M, H] = [M, G·H]·[G·H, H]  (GRU adds to its direct z·δh term)
            if step > first || first == 0 {
                try gemm(Matrix(dgHidden + step * gh, rows: m, columns: gh, stride: t * gh), whh,
                         into: Matrix(dhNext, rows: m, columns: h), beta: cell == .gru ? 1 : 0, caller: summary)
            }
        }
        // ∂L/∂h_0, ∂L/∂c_0 (cut to zero by truncation).
        let dh0 = initialHiddenGradient.data + (k * n + n0) * h
        if first == 0 { dh0.update(from: dhNext, count: m * h) } else { dh0.update(repeating: 0, count: m * h) }
        if cell == .lstm {
            let dc0 = initialCellGradient.data + (k * n + n0) * h
            if first == 0 { dc0.update(from: cellNext.data + n0 * h, count: m * h) } else { dc0.update(repeating: 0, count: m * h) }
        }

        // Slice 0 accumulates into the parameters' gradients; the others fill their own buffers.
        let scratch = slice == 0 ? nil : s.sliceGradients[slice - 1]
        let dWih = scratch?.weightIH ?? s.weightIH.grad, dWhh = scratch?.weightHH ?? s.weightHH.grad
        let dbih = scratch?.biasIH ?? s.biasIH.grad, dbhh = scratch?.biasHH ?? s.biasHH.grad
        let beta: Float = slice == 0 ? 1 : 0
        let dgxM = Matrix(dgx, rows: rows, columns: gh), dghM = Matrix(dgHidden, rows: rows, columns: gh)
        // dW_ih += δGxᵀ·X       [G·H, F] = [G·H, M·T]·[M·T, F]
        let xM = Matrix(x.data + n0 * t * f, rows: rows, columns: f)
        if f < 64 {
            // A narrow product (MNIST rows: F = 28) runs ~1.4× faster in sgemm as its transpose
            // (dW_ih)ᵀ = Xᵀ·δGx [F, G·H]; the [G·H, F] result is then added in place.
            let tr = scratch?.weightIHTransposed ?? s.weightIHTransposedScratch
            tr.resize(f, gh)
            try gemm(xM, transposeA: true, dgxM, into: Matrix(tr), caller: summary)
            let src = UnsafePointer(tr.data), dst = dWih.data
            for r in 0..<gh {
                let row = dst + r * f
                if beta == 0 { for c in 0..<f { row[c] = src[c * gh + r] } } else { for c in 0..<f { row[c] += src[c * gh + r] } }
            }
        } else {
            try gemm(dgxM, transposeA: true, xM, into: Matrix(dWih), beta: beta, caller: summary)
        }
        // dW_hh += δGhᵀ·H_prev  [G·H, H] = [G·H, M·T]·[M·T, H]
        try gemm(dghM, transposeA: true, Matrix(s.previous.data + n0 * t * h, rows: rows, columns: h),
                 into: Matrix(dWhh), beta: beta, caller: summary)
        // db_ih += Σ_rows δGx,  db_hh += Σ_rows δGh (the same sum for RNN and LSTM)
        if cell == .gru {
            columnSums(dgx, rows: rows, columns: gh, into: dbih.data)
            columnSums(dgHidden, rows: rows, columns: gh, into: dbhh.data)
        } else {
            let sum = scratch?.biasSum ?? s.biasSumScratch
            sum.resize(gh)
            sum.fill(0)
            columnSums(dgx, rows: rows, columns: gh, into: sum.data)
            let sv = sum.data, a = dbih.data, b = dbhh.data
            for j in 0..<gh { a[j] += sv[j]; b[j] += sv[j] }
        }
        // dX = δGx·W_ih         [M·T, F] = [M·T, G·H]·[G·H, F]  (not needed for the data)
        if k > 0 || needsInputGradient {
            try gemm(dgxM, Matrix(s.weightIH.value), into: Matrix(s.inputGradient.data + n0 * t * f, rows: rows, columns: f),
                     caller: summary)
        }
    }

    /// acc[j] += Σ_r m[r, j]
    private func columnSums(_ m: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
                            into acc: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let row = m + r * columns
            for j in 0..<columns { acc[j] += row[j] }
        }
    }

    /// δ arriving at h_t from above for sample i: the output gradient row, or zeros.
    @inline(__always)
    private func outputDelta(_ dy: UnsafeMutablePointer<Float>, _ allSteps: Bool, _ i: Int, _ step: Int)
        -> UnsafeMutablePointer<Float> {
        if allSteps { return dy + (i * steps + step) * hiddenSize }
        return step == steps - 1 ? dy + i * hiddenSize : zeroRow.data
    }

    // Backward gate kernels: per batch row, δh_t = δ from above + δ from step t + 1 (`hiddenNext`
    // row i, which the next product overwrites or, for GRU, adds to), then δ of the
    // pre-activations, in 8-lane vectors with a scalar tail. Each returns Σ_i ‖δh_t of sample i‖.

    private func rnnBackwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int, _ dy: UnsafeMutablePointer<Float>, _ allSteps: Bool,
                                 relu: Bool) -> Float {
        let t = steps, h = hiddenSize, h8 = h & ~7
        var normSum: Float = 0
        for i in samples {
            let row = i * t + step
            let out = s.output.data + row * h, dg = s.gateGradient.data + row * h
            let d = outputDelta(dy, allSteps, i, step), dh = hiddenNext.data + i * h
            var squares = FloatVector(), tailSquares: Float = 0
            var j = 0
            while j < h8 {
                let dhv = dh.vector(at: j) + d.vector(at: j), y = out.vector(at: j)
                squares += dhv * dhv
                dg.store(relu ? dhv.replacing(with: 0, where: y .<= 0) : dhv * (1 - y * y), at: j)
                j += 8
            }
            while j < h {
                let dhv = dh[j] + d[j], y = out[j]
                tailSquares += dhv * dhv
                dg[j] = relu ? (y > 0 ? dhv : 0) : dhv * (1 - y * y)
                j += 1
            }
            normSum += (squares.sum() + tailSquares).squareRoot()
        }
        return normSum
    }

    private func lstmBackwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                                  _ allSteps: Bool) -> Float {
        let t = steps, h = hiddenSize, gh = 4 * h, h8 = h & ~7
        var normSum: Float = 0
        for i in samples {
            let row = i * t + step
            let a = UnsafePointer(s.gates.data + row * gh)
            let ig = a, fg = a + h, gg = a + 2 * h, og = a + 3 * h
            let dg = s.gateGradient.data + row * gh
            let di = dg, df = dg + h, dgg = dg + 2 * h, dout = dg + 3 * h
            let cPrev = UnsafePointer(step == 0 ? s.initialCell.data + i * h : s.cells.data + (row - 1) * h)
            let tc = UnsafePointer(s.cellTanh.data + row * h)
            let dc = cellNext.data + i * h                       // δc_t in, δc_{t−1} out
            let d = outputDelta(dy, allSteps, i, step), dh = hiddenNext.data + i * h
            var squares = FloatVector(), tailSquares: Float = 0
            var j = 0
            while j < h8 {
                let dhv = dh.vector(at: j) + d.vector(at: j)
                squares += dhv * dhv
                let iv = ig.vector(at: j), fv = fg.vector(at: j), gv = gg.vector(at: j), ov = og.vector(at: j)
                let tv = tc.vector(at: j)
                dout.store(dhv * tv * ov * (1 - ov), at: j)                          // δ pre-o
                let dcv = dc.vector(at: j) + dhv * ov * (1 - tv * tv)                // δc_t total
                di.store(dcv * gv * iv * (1 - iv), at: j)                            // δ pre-i
                df.store(dcv * cPrev.vector(at: j) * fv * (1 - fv), at: j)           // δ pre-f
                dgg.store(dcv * iv * (1 - gv * gv), at: j)                           // δ pre-g
                dc.store(dcv * fv, at: j)                                            // δc_{t−1}
                j += 8
            }
            while j < h {
                let dhv = dh[j] + d[j]
                tailSquares += dhv * dhv
                let iv = ig[j], fv = fg[j], gv = gg[j], ov = og[j], tv = tc[j]
                dout[j] = dhv * tv * ov * (1 - ov)
                let dcv = dc[j] + dhv * ov * (1 - tv * tv)
                di[j] = dcv * gv * iv * (1 - iv)
                df[j] = dcv * cPrev[j] * fv * (1 - fv)
                dgg[j] = dcv * iv * (1 - gv * gv)
                dc[j] = dcv * fv
                j += 1
            }
            normSum += (squares.sum() + tailSquares).squareRoot()
        }
        return normSum
    }

    private func gruBackwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                                 _ allSteps: Bool) -> Float {
        let t = steps, h = hiddenSize, gh = 3 * h, h8 = h & ~7
        var normSum: Float = 0
        for i in samples {
            let row = i * t + step
            let a = UnsafePointer(s.gates.data + row * gh)
            let r = a, z = a + h, nv = a + 2 * h
            let bn = UnsafePointer(s.hiddenGates.data + row * gh + 2 * h)   // W_hn h + b_hn
            let dgx = s.gateGradient.data + row * gh, dgh = s.hiddenGateGradient.data + row * gh
            let dr = dgx, dz = dgx + h, dnx = dgx + 2 * h
            let hp = UnsafePointer(s.previous.data + row * h)
            let d = outputDelta(dy, allSteps, i, step), dh = hiddenNext.data + i * h
            var squares = FloatVector(), tailSquares: Float = 0
            var j = 0
            while j < h8 {
                let dhv = dh.vector(at: j) + d.vector(at: j)
                squares += dhv * dhv
                let rv = r.vector(at: j), zv = z.vector(at: j), nvv = nv.vector(at: j)
                let dn = dhv * (1 - zv) * (1 - nvv * nvv)                            // δ pre-n
                let drv = dn * bn.vector(at: j) * rv * (1 - rv)                      // δ pre-r
                let dzv = dhv * (hp.vector(at: j) - nvv) * zv * (1 - zv)             // δ pre-z
                dr.store(drv, at: j); dz.store(dzv, at: j); dnx.store(dn, at: j)
                dgh.store(drv, at: j); dgh.store(dzv, at: h + j)                     // hidden side: r, z
                dgh.store(dn * rv, at: 2 * h + j)                                    // and r ⊙ δ pre-n
                dh.store(dhv * zv, at: j)                                            // direct path z⊙δh
                j += 8
            }
            while j < h {
                let dhv = dh[j] + d[j]
                tailSquares += dhv * dhv
                let rv = r[j], zv = z[j], nvv = nv[j]
                let dn = dhv * (1 - zv) * (1 - nvv * nvv)
                let drv = dn * bn[j] * rv * (1 - rv)
                let dzv = dhv * (hp[j] - nvv) * zv * (1 - zv)
                dr[j] = drv; dz[j] = dzv; dnx[j] = dn
                dgh[j] = drv; dgh[h + j] = dzv; dgh[2 * h + j] = dn * rv
                dh[j] = dhv * zv
                j += 1
            }
            normSum += (squares.sum() + tailSquares).squareRoot()
        }
        return normSum
    }
}

/// PyTorch's `nn.RNN(input_size, hidden_size, num_layers, nonlinearity, batch_first=True)`.
public final class RNN: RecurrentLayer {
    public init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, nonlinearity: RecurrentNonlinearity = .tanh,
                returnSequences: Bool = true, truncation: Int? = nil, rng: inout SeededGenerator) throws {
        try super.init(cell: .rnn(nonlinearity), inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                       returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }

    public convenience init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1,
                            nonlinearity: RecurrentNonlinearity = .tanh, returnSequences: Bool = true,
                            truncation: Int? = nil, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, nonlinearity: nonlinearity,
                      returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }
}

/// PyTorch's `nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)`.
public final class LSTM: RecurrentLayer {
    public init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, returnSequences: Bool = true,
                truncation: Int? = nil, rng: inout SeededGenerator) throws {
        try super.init(cell: .lstm, inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                       returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }

    public convenience init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, returnSequences: Bool = true,
                            truncation: Int? = nil, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                      returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }
}

/// PyTorch's `nn.GRU(input_size, hidden_size, num_layers, batch_first=True)`.
public final class GRU: RecurrentLayer {
    public init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, returnSequences: Bool = true,
                truncation: Int? = nil, rng: inout SeededGenerator) throws {
        try super.init(cell: .gru, inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                       returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }

    public convenience init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, returnSequences: Bool = true,
                            truncation: Int? = nil, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                      returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }
}
