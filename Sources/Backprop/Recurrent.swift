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

    public let cell: Cell
    public let inputSize: Int
    public let hiddenSize: Int
    public let numLayers: Int
    /// Output every step `[N, T, H]` (true) or the last step `[N, H]` (false).
    public let returnSequences: Bool
    /// Backpropagate through the last `truncation` steps only (nil: all steps).
    public var truncation: Int?
    public var isTraining = true

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
    private let biasRow = Tensor(uncheckedShape: [0])           // [G·H] b_ih + b_hh (RNN, LSTM); Σ δ rows
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
        for (k, s) in stages.enumerated() {
            try forwardStage(s, input: input, h0: initialHidden.map { $0.data + k * n * h },
                             c0: initialCell.map { $0.data + k * n * h })
            input = s.output
        }
        let top = stages[numLayers - 1].output
        if returnSequences { return top }
        lastOutput.resize(to: [n, h])
        for i in 0..<n { (lastOutput.data + i * h).update(from: top.data + (i * t + t - 1) * h, count: h) }
        return lastOutput
    }

    private func forwardStage(_ s: Stage, input x: Tensor, h0: UnsafeMutablePointer<Float>?,
                              c0: UnsafeMutablePointer<Float>?) throws {
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        s.input = x
        s.gates.resize(to: [n, t, gh])
        s.previous.resize(to: [n, t, h])
        s.output.resize(to: [n, t, h])
        let gx = s.gates.data, prev = s.previous.data, out = s.output.data

        // Gx = X·W_ihᵀ, all N·T rows in one product. The biases are added by the gate kernels
        // while the step's rows are in cache (RNN and LSTM add b_ih + b_hh in one go).
        biasRow.resize(to: [gh])
        let b = biasRow.data, bih = s.biasIH.value.data, bhh = s.biasHH.value.data
        for j in 0..<gh { b[j] = bih[j] + bhh[j] }
        try gemm(Matrix(x.data, rows: n * t, columns: f), Matrix(s.weightIH.value), transposeB: true,
                 into: Matrix(gx, rows: n * t, columns: gh), caller: summary)

        // H_prev[:, 0] = h_0.
        for i in 0..<n {
            if let h0 { (prev + i * t * h).update(from: h0 + i * h, count: h) } else { (prev + i * t * h).update(repeating: 0, count: h) }
        }
        var gHidden = gx                   // where h_{t−1}·W_hhᵀ goes: added to Gx, or (GRU) its own buffer
        if cell == .gru {
            s.hiddenGates.resize(to: [n, t, gh])
            gHidden = s.hiddenGates.data
        }
        if cell == .lstm {
            s.cells.resize(to: [n, t, h])
            s.cellTanh.resize(to: [n, t, h])
            s.initialCell.resize(to: [n, h])
            if let c0 { s.initialCell.data.update(from: c0, count: n * h) } else { s.initialCell.fill(0) }
        }
        let whh = Matrix(s.weightHH.value)
        for step in 0..<t {
            // G_t += h_{t−1}·W_hhᵀ   [N, G·H] = [N, H]·[H, G·H], rows strided by T.
            try gemm(Matrix(prev + step * h, rows: n, columns: h, stride: t * h), whh, transposeB: true,
                     into: Matrix(gHidden + step * gh, rows: n, columns: gh, stride: t * gh), beta: cell == .gru ? 0 : 1,
                     caller: summary)
            switch cell {
            case .rnn(let act): rnnForwardStep(s, step, relu: act == .relu)
            case .lstm: lstmForwardStep(s, step)
            case .gru: gruForwardStep(s, step)
            }
            if step + 1 < t {
                for i in 0..<n { (prev + (i * t + step + 1) * h).update(from: out + (i * t + step) * h, count: h) }
            }
        }
    }

    // Gate kernels: one call per step, a few short pointer loops per batch row (length H), each
    // simple enough for LLVM to vectorise (RecurrentMath.swift). Rows are (n, step) of [N, T, ·].

    private func rnnForwardStep(_ s: Stage, _ step: Int, relu: Bool) {
        let n = batch, t = steps, h = hiddenSize, bias = UnsafePointer(biasRow.data)
        for i in 0..<n {
            let row = i * t + step
            let a = s.gates.data + row * h, out = s.output.data + row * h
            for j in 0..<h { a[j] += bias[j] }
            if relu {
                for j in 0..<h { out[j] = a[j] > 0 ? a[j] : 0 }
            } else {
                for j in 0..<h { out[j] = fastTanh(a[j]) }
            }
        }
    }

    private func lstmForwardStep(_ s: Stage, _ step: Int) {
        let n = batch, t = steps, h = hiddenSize, gh = 4 * h, bias = UnsafePointer(biasRow.data)
        for i in 0..<n {
            let row = i * t + step
            let a = s.gates.data + row * gh                      // [i | f | g | o], activated in place
            let ig = a, fg = a + h, gg = a + 2 * h, og = a + 3 * h
            let cPrev = step == 0 ? s.initialCell.data + i * h : s.cells.data + (row - 1) * h
            let c = s.cells.data + row * h, tc = s.cellTanh.data + row * h, out = s.output.data + row * h
            for j in 0..<(2 * h) { a[j] = fastSigmoid(a[j] + bias[j]) }          // i, f
            for j in 0..<h { gg[j] = fastTanh(gg[j] + bias[2 * h + j]) }
            for j in 0..<h { og[j] = fastSigmoid(og[j] + bias[3 * h + j]) }
            for j in 0..<h { c[j] = fg[j] * cPrev[j] + ig[j] * gg[j] }          // c' = f⊙c + i⊙g
            for j in 0..<h { tc[j] = fastTanh(c[j]) }
            for j in 0..<h { out[j] = og[j] * tc[j] }                         // h' = o⊙tanh(c')
        }
    }

    private func gruForwardStep(_ s: Stage, _ step: Int) {
        let n = batch, t = steps, h = hiddenSize, gh = 3 * h
        let bias = UnsafePointer(biasRow.data), bih = UnsafePointer(s.biasIH.value.data)
        let bhn = UnsafePointer(s.biasHH.value.data + 2 * h)
        for i in 0..<n {
            let row = i * t + step
            let a = s.gates.data + row * gh                      // input side [r | z | n]: X·W_ihᵀ
            let b = s.hiddenGates.data + row * gh                // hidden side: h·W_hhᵀ
            let hp = s.previous.data + row * h, out = s.output.data + row * h
            for j in 0..<(2 * h) { a[j] = fastSigmoid(a[j] + b[j] + bias[j]) }    // r, z (all four biases)
            let r = a, z = a + h, nv = a + 2 * h, bn = b + 2 * h
            for j in 0..<h { bn[j] += bhn[j] }                                     // keep W_hn h + b_hn
            for j in 0..<h { nv[j] = fastTanh(nv[j] + bih[2 * h + j] + r[j] * bn[j]) }   // n
            for j in 0..<h { out[j] = nv[j] + z[j] * (hp[j] - nv[j]) }            // (1 − z)⊙n + z⊙h
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
        let n = batch, t = steps, h = hiddenSize
        let first = max(0, t - (truncation ?? t))              // first step backpropagated through
        initialHiddenGradient.resize(to: [numLayers, n, h])
        if cell == .lstm { initialCellGradient.resize(to: [numLayers, n, h]) } else { initialCellGradient.resize(to: [0]) }
        hiddenNext.resize(to: [n, h])
        cellNext.resize(to: [n, h])
        zeroRow.resize(to: [h])
        zeroRow.fill(0)
        if hiddenGradientNorms.count != t { hiddenGradientNorms = [Float](repeating: 0, count: t) }

        // δ of the top layer's outputs: every step, or only the last one.
        var delta = dy.data
        var deltaAllSteps = returnSequences
        for k in stride(from: numLayers - 1, through: 0, by: -1) {
            let s = stages[k]
            try backwardStage(s, layer: k, delta: delta, allSteps: deltaAllSteps, first: first,
                              norms: k == numLayers - 1)
            delta = s.inputGradient.data
            deltaAllSteps = true
        }
        return stages[0].inputGradient
    }

    private func backwardStage(_ s: Stage, layer k: Int, delta dy: UnsafeMutablePointer<Float>, allSteps: Bool,
                               first: Int, norms: Bool) throws {
        guard let x = s.input else { return }
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        s.gateGradient.resize(to: [n, t, gh])
        var dgHidden = s.gateGradient.data                      // δ of the hidden-side pre-activations
        if cell == .gru {
            s.hiddenGateGradient.resize(to: [n, t, gh])
            dgHidden = s.hiddenGateGradient.data
        }
        let dgx = s.gateGradient.data
        // Steps outside the truncation window contribute nothing.
        if first > 0 {
            for i in 0..<n {
                (dgx + i * t * gh).update(repeating: 0, count: first * gh)
                if cell == .gru { (dgHidden + i * t * gh).update(repeating: 0, count: first * gh) }
            }
        }
        hiddenNext.fill(0)
        cellNext.fill(0)
        let whh = Matrix(s.weightHH.value)
        for step in stride(from: t - 1, through: first, by: -1) {
            var normSum: Float = 0
            switch cell {
            case .rnn(let act): normSum = rnnBackwardStep(s, step, dy, allSteps, relu: act == .relu)
            case .lstm: normSum = lstmBackwardStep(s, step, dy, allSteps)
            case .gru: normSum = gruBackwardStep(s, step, dy, allSteps)
            }
            if norms { hiddenGradientNorms[step] = normSum / Float(n) }
            // δh_{t−1} (+)= δG_t·W_hh   [N, H] = [N, G·H]·[G·H, H]  (GRU adds to its direct z·δh term)
            if step > first || first == 0 {
                try gemm(Matrix(dgHidden + step * gh, rows: n, columns: gh, stride: t * gh), whh,
                         into: Matrix(hiddenNext), beta: cell == .gru ? 1 : 0, caller: summary)
            }
        }
        if norms { for step in 0..<first { hiddenGradientNorms[step] = 0 } }
        // ∂L/∂h_0, ∂L/∂c_0 (cut to zero by truncation).
        let dh0 = initialHiddenGradient.data + k * n * h
        if first == 0 { dh0.update(from: hiddenNext.data, count: n * h) } else { dh0.update(repeating: 0, count: n * h) }
        if cell == .lstm {
            let dc0 = initialCellGradient.data + k * n * h
            if first == 0 { dc0.update(from: cellNext.data, count: n * h) } else { dc0.update(repeating: 0, count: n * h) }
        }

        let rows = n * t
        let dgxM = Matrix(dgx, rows: rows, columns: gh), dghM = Matrix(dgHidden, rows: rows, columns: gh)
        // dW_ih += δGxᵀ·X       [G·H, F] = [G·H, N·T]·[N·T, F]
        try gemm(dgxM, transposeA: true, Matrix(x.data, rows: rows, columns: f), into: Matrix(s.weightIH.grad),
                 beta: 1, caller: summary)
        // dW_hh += δGhᵀ·H_prev  [G·H, H] = [G·H, N·T]·[N·T, H]
        try gemm(dghM, transposeA: true, Matrix(s.previous.data, rows: rows, columns: h),
                 into: Matrix(s.weightHH.grad), beta: 1, caller: summary)
        // db_ih += Σ_rows δGx,  db_hh += Σ_rows δGh (the same sum for RNN and LSTM)
        if cell == .gru {
            columnSums(dgx, rows: rows, columns: gh, into: s.biasIH.grad.data)
            columnSums(dgHidden, rows: rows, columns: gh, into: s.biasHH.grad.data)
        } else {
            biasRow.resize(to: [gh])
            biasRow.fill(0)
            columnSums(dgx, rows: rows, columns: gh, into: biasRow.data)
            let sum = biasRow.data, dbih = s.biasIH.grad.data, dbhh = s.biasHH.grad.data
            for j in 0..<gh { dbih[j] += sum[j]; dbhh[j] += sum[j] }
        }
        // dX = δGx·W_ih         [N·T, F] = [N·T, G·H]·[G·H, F]
        s.inputGradient.resize(to: x.shape)
        try gemm(dgxM, Matrix(s.weightIH.value), into: Matrix(s.inputGradient.data, rows: rows, columns: f),
                 caller: summary)
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

    /// δh_t = δ from above + δ from step t + 1, summed in place into `hiddenNext` row i;
    /// returns ‖δh_t‖ of that sample.
    @inline(__always)
    private func totalHiddenDelta(_ dy: UnsafeMutablePointer<Float>, _ allSteps: Bool, _ i: Int,
                                  _ step: Int) -> (UnsafeMutablePointer<Float>, Float) {
        let h = hiddenSize, d = outputDelta(dy, allSteps, i, step), dh = hiddenNext.data + i * h
        for j in 0..<h { dh[j] += d[j] }
        var squares: Float = 0
        for j in 0..<h { squares += dh[j] * dh[j] }
        return (dh, squares.squareRoot())
    }

    /// Each kernel returns Σ_i ‖δh_t of sample i‖.
    private func rnnBackwardStep(_ s: Stage, _ step: Int, _ dy: UnsafeMutablePointer<Float>, _ allSteps: Bool,
                                 relu: Bool) -> Float {
        let n = batch, t = steps, h = hiddenSize
        var normSum: Float = 0
        for i in 0..<n {
            let row = i * t + step
            let out = UnsafePointer(s.output.data + row * h), dg = s.gateGradient.data + row * h
            let (dh, norm) = totalHiddenDelta(dy, allSteps, i, step)
            normSum += norm
            if relu {
                for j in 0..<h { dg[j] = out[j] > 0 ? dh[j] : 0 }
            } else {
                for j in 0..<h { dg[j] = dh[j] * (1 - out[j] * out[j]) }
            }
        }
        return normSum
    }

    private func lstmBackwardStep(_ s: Stage, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                                  _ allSteps: Bool) -> Float {
        let n = batch, t = steps, h = hiddenSize, gh = 4 * h
        var normSum: Float = 0
        for i in 0..<n {
            let row = i * t + step
            let a = UnsafePointer(s.gates.data + row * gh)
            let ig = a, fg = a + h, gg = a + 2 * h, og = a + 3 * h
            let dg = s.gateGradient.data + row * gh
            let di = dg, df = dg + h, dgg = dg + 2 * h, dout = dg + 3 * h
            let cPrev = UnsafePointer(step == 0 ? s.initialCell.data + i * h : s.cells.data + (row - 1) * h)
            let tc = UnsafePointer(s.cellTanh.data + row * h)
            let dc = cellNext.data + i * h                       // δc_t in, δc_{t−1} out
            let (dh, norm) = totalHiddenDelta(dy, allSteps, i, step)
            normSum += norm
            for j in 0..<h {
                dout[j] = dh[j] * tc[j] * og[j] * (1 - og[j])                     // δ pre-o
                dc[j] += dh[j] * og[j] * (1 - tc[j] * tc[j])                      // δc_t total
            }
            for j in 0..<h {
                di[j] = dc[j] * gg[j] * ig[j] * (1 - ig[j])                       // δ pre-i
                df[j] = dc[j] * cPrev[j] * fg[j] * (1 - fg[j])                    // δ pre-f
                dgg[j] = dc[j] * ig[j] * (1 - gg[j] * gg[j])                      // δ pre-g
            }
            for j in 0..<h { dc[j] *= fg[j] }                                     // δc_{t−1}
        }
        return normSum
    }

    private func gruBackwardStep(_ s: Stage, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                                 _ allSteps: Bool) -> Float {
        let n = batch, t = steps, h = hiddenSize, gh = 3 * h
        var normSum: Float = 0
        for i in 0..<n {
            let row = i * t + step
            let a = UnsafePointer(s.gates.data + row * gh)
            let r = a, z = a + h, nv = a + 2 * h
            let bn = UnsafePointer(s.hiddenGates.data + row * gh + 2 * h)   // W_hn h + b_hn
            let dgx = s.gateGradient.data + row * gh, dgh = s.hiddenGateGradient.data + row * gh
            let hp = UnsafePointer(s.previous.data + row * h)
            let (dh, norm) = totalHiddenDelta(dy, allSteps, i, step)
            normSum += norm
            let dr = dgx, dz = dgx + h, dnx = dgx + 2 * h
            for j in 0..<h { dnx[j] = dh[j] * (1 - z[j]) * (1 - nv[j] * nv[j]) }           // δ pre-n
            for j in 0..<h { dr[j] = dnx[j] * bn[j] * r[j] * (1 - r[j]) }                  // δ pre-r
            for j in 0..<h { dz[j] = dh[j] * (hp[j] - nv[j]) * z[j] * (1 - z[j]) }         // δ pre-z
            dgh.update(from: dgx, count: 2 * h)                                            // hidden side: r, z
            for j in 0..<h { dgh[2 * h + j] = dnx[j] * r[j] }                               // and r ⊙ δ pre-n
            for j in 0..<h { dh[j] *= z[j] }                                      // direct path z⊙δh
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
