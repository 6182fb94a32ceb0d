import BackpropKernels

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
/// Layout: the batch is split into contiguous slices of samples run concurrently (`threads`).
/// The layer's own buffers hold each slice's rows as one block, step-major inside it: the rows of
/// slice [n0, n0 + m) start at row n0·T, and step t of that slice is the m consecutive rows from
/// n0·T + t·m. So every per-step product and gate kernel works on contiguous memory (batch-major
/// rows, T apart, made the hardware prefetchers miss and aliased in the caches). The input is
/// copied into this order per slice; `output` (what callers see) and δ of the input stay
/// batch-first [N, T, ·].
///
/// Products (all through `gemm`; the row counts are per slice):
///
///     forward   Gx = X·W_ihᵀ                   [N·T, G·H]        ONE sgemm for all steps (biases: in the gate kernels)
///               per step: Gx_t += h_{t−1}·W_hhᵀ   [M, G·H]       one sgemm per step on a copy of W_hhᵀ
///                                                                (none at step 0 when h_0 = 0)
///     backward  per step: δh_{t−1} = δG_t·W_hh    [M, H]          one sgemm per step
///               dW_hh += δGhᵀ·H_prev             [G·H, H]        one sgemm per block of `weightBlockSteps`
///                                                                steps, inside the step loop; H_prev row
///                                                                (t, n) = h_{t−1}; not over step 0 when h_0 = 0
///               dW_ih += δGxᵀ·X                  [G·H, F]        F < 64: per step as (dW_ih)ᵀ += x_tᵀ·δGx_t;
///                                                                else ONE sgemm over M·T rows
///     GRU: the n block's hidden side stays apart (n = tanh(… + r ⊙ (W_hn h + b_hn))), so its
///     per-step and dW_hh products are split in two: the r, z rows of W_hh (added to Gx, δ shared
///     with the input side) and the n rows (own [M·T, H] buffers).
///               dX = δGx·W_ih                    [N·T, F]        ONE sgemm
/// The per-step and per-block weight products run while their δG rows are still in cache.
///
/// Gate arithmetic runs per step in C kernels (BackpropKernels/recurrent.inc, AVX-512/AVX2/
/// baseline), which also sum the bias gradients. Every buffer is a `Tensor` resized per batch
/// shape and reused; the step loops allocate nothing.
///
/// Initial state: set `initialHidden` (`[numLayers, N, H]`, PyTorch's h_0) and for LSTM
/// `initialCell` (c_0) before `forward`, or pass them to `forward(_:initialHidden:initialCell:)`;
/// nil means zeros. After `backward`, `initialHiddenGradient` / `initialCellGradient` hold
/// ∂L/∂h_0 and ∂L/∂c_0 when the forward pass was given an initial state (h_0 or c_0; as in
/// PyTorch, a state left out is a constant zero with no gradient, and they are empty), and `hiddenGradientNorms[t]` the batch mean of ‖∂L/∂h_{t+1}‖ (total
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
        // Rows in slice-step order (see the layout above) unless marked batch-first.
        var input: Tensor?                                      // [N, T, F_k] batch-first, cached
        let stepInput = Tensor(uncheckedShape: [0])             // [N·T, F_k] the input in slice-step order
        let gates = Tensor(uncheckedShape: [0])                 // [N·T, G·H] pre-activations, then activations
        let hiddenGates = Tensor(uncheckedShape: [0])           // GRU: [N·T, H] = h_{t−1}·W_hnᵀ + b_hn
        let previous = Tensor(uncheckedShape: [0])              // [N·T, H], row (t, n) = h_{t−1}
        let output = Tensor(uncheckedShape: [0])                // [N, T, H] batch-first, row (n, t) = h_t
        let cells = Tensor(uncheckedShape: [0])                 // LSTM: [N·T, H] c_t
        let initialCell = Tensor(uncheckedShape: [0])           // LSTM: [N, H] c_0 (copy or zeros)
        let gateGradient = Tensor(uncheckedShape: [0])          // [N·T, G·H] δ of the input-side pre-activations
        let hiddenGateGradient = Tensor(uncheckedShape: [0])    // GRU: [N·T, H] δ of W_hn h + b_hn
        let stepInputGradient = Tensor(uncheckedShape: [0])     // [N·T, F_k] δ of the input, slice-step order
        let inputGradient = Tensor(uncheckedShape: [0])         // [N, T, F_k] batch-first
        let combinedBias = Tensor(uncheckedShape: [0])          // [G·H] b_ih + b_hh (forward, all cells)
        let weightHHTransposed = Tensor(uncheckedShape: [0])    // [H, G·H] W_hhᵀ, copied per forward pass
        /// Weight and bias gradients of batch slices 1, 2, … (slice 0 accumulates into the
        /// parameters' `grad` directly); added to `grad` after the slices finish.
        var sliceGradients: [SliceGradients] = []
        let biasSumScratch = Tensor(uncheckedShape: [0])        // [G·H] Σ δ rows of slice 0 (GRU: + [H] of b_hn)
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
    /// ∂L/∂h_0 `[numLayers, N, H]` from the last `backward` (zeros when truncation cut it off);
    /// empty when the forward pass was given no initial state.
    public let initialHiddenGradient = Tensor(uncheckedShape: [0])
    /// ∂L/∂c_0 `[numLayers, N, H]` (LSTM) from the last `backward`; empty without an initial state.
    public let initialCellGradient = Tensor(uncheckedShape: [0])
    /// For t = 1…T (index t − 1): mean over the batch of ‖∂L/∂h_t‖ of the last stacked layer,
    /// the total derivative through all later steps, from the last `backward`. Zero for steps
    /// outside the truncation window.
    public private(set) var hiddenGradientNorms: [Float] = []

    let stages: [Stage]
    private var batch = 0, steps = 0
    /// The number of batch slices of the last forward pass: it fixes the buffers' row order, so
    /// backward runs the same slices.
    private var slices = 1
    /// Whether the last forward pass started from a given state (`initialHidden` or `initialCell`),
    /// and whether h_0 was zero (no `initialHidden`): then step 0's recurrent products are skipped
    /// (h_0·W_hhᵀ = 0, and its rows add nothing to δW_hh), and so is δh_0 unless a state was given.
    private var stateGiven = false, zeroInitialHidden = true
    /// The last forward's input and output, checked by backward (see `ForwardRecord`).
    private var savedInput = ForwardRecord(), savedOutput = ForwardRecord()
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
        return gatherLastStep(batchFirst: true) { $0.output.data }
    }

    /// c_n (LSTM): every layer's cell state after the last step, `[numLayers, N, H]` (a new tensor).
    public var finalCell: Tensor? {
        guard steps > 0, cell == .lstm else { return nil }
        return gatherLastStep(batchFirst: false) { $0.cells.data }
    }

    private func gatherLastStep(batchFirst: Bool, _ buffer: (Stage) -> UnsafeMutablePointer<Float>) -> Tensor {
        let h = hiddenSize, n = batch, t = steps
        let out = Tensor(uncheckedShape: [numLayers, n, h])
        for (k, s) in stages.enumerated() {
            let src = buffer(s)
            for slice in 0..<slices {
                let samples = BatchSlices.range(slice, of: slices, items: n)
                for i in samples {
                    let row = batchFirst ? i * t + t - 1 : samples.lowerBound * t + (t - 1) * samples.count + i - samples.lowerBound
                    (out.data + (k * n + i) * h).update(from: src + row * h, count: h)
                }
            }
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
        savedOutput.clear()   // the buffers are about to change: no backward until this forward completes
        batch = n
        steps = t
        slices = BatchSlices.count(threads: threads, items: n)
        stateGiven = initialHidden != nil || initialCell != nil
        zeroInitialHidden = initialHidden == nil
        var input = x
        for s in stages {
            try prepareForward(s, input: input)
            input = s.output
        }
        let h0 = initialHidden?.data, c0 = initialCell?.data
        try forEachSlice { _, samples in
            for (k, s) in self.stages.enumerated() {
                try self.forwardSlice(s, samples, h0: h0.map { $0 + k * n * h }, c0: c0.map { $0 + k * n * h })
            }
        }
        let top = stages[numLayers - 1].output
        savedInput.save(x)
        if returnSequences {
            savedOutput.save(top)
            return top
        }
        lastOutput.resize(n, h)
        for i in 0..<n { (lastOutput.data + i * h).update(from: top.data + (i * t + t - 1) * h, count: h) }
        savedOutput.save(lastOutput)
        return lastOutput
    }

    /// Runs `body` on the forward pass's contiguous slices of the batch's samples, one per thread
    /// (`BatchSlices`).
    private func forEachSlice(_ body: (_ slice: Int, _ samples: Range<Int>) throws -> Void) throws {
        try batchSlices.run(count: slices, items: batch, body)
    }

    /// Sizes a stage's buffers for the batch (before the slices run: they only write rows).
    private func prepareForward(_ s: Stage, input x: Tensor) throws {
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        s.input = x
        s.stepInput.resize(n * t, s.inputSize)
        s.gates.resize(n * t, gh)
        s.previous.resize(n * t, h)
        s.output.resize(n, t, h)
        if cell == .gru { s.hiddenGates.resize(n * t, h) }
        if cell == .lstm {
            s.cells.resize(n * t, h)
            s.initialCell.resize(n, h)
        }
        s.combinedBias.resize(gh)
        let b = s.combinedBias.data, bih = s.biasIH.value.data, bhh = s.biasHH.value.data
        for j in 0..<gh { b[j] = bih[j] + bhh[j] }
        // The per-step products read W_hhᵀ [H, G·H] untransposed: OpenBLAS runs [M, H]·[H, G·H] ~5 %
        // faster than [M, H]·[G·H, H]ᵀ at these shapes (the B operand packs more cheaply).
        s.weightHHTransposed.resize(h, gh)
        try transpose(Matrix(s.weightHH.value), into: Matrix(s.weightHHTransposed), caller: summary)
    }

    /// One stage's forward pass for the samples `samples` (the block of rows n0·T ..< (n0 + m)·T).
    private func forwardSlice(_ s: Stage, _ samples: Range<Int>, h0: UnsafeMutablePointer<Float>?,
                              c0: UnsafeMutablePointer<Float>?) throws {
        guard let x = s.input else { return }
        let t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count, rows = m * t
        let prev = s.previous.data + n0 * t * h
        // The slice's input rows in step order: row (step, i) = x[n0 + i, step].
        let xs = s.stepInput.data + n0 * t * f
        for i in 0..<m {
            for step in 0..<t { (xs + (step * m + i) * f).update(from: x.data + ((n0 + i) * t + step) * f, count: f) }
        }

        // Gx = X·W_ihᵀ, all the slice's rows in one product. The biases are added by the gate
        // kernels while the step's rows are in cache.
        try gemm(Matrix(s.stepInput, offset: n0 * t * f, rows: rows, columns: f), Matrix(s.weightIH.value), transposeB: true,
                 into: Matrix(s.gates, offset: n0 * t * gh, rows: rows, columns: gh), caller: summary)

        // H_prev step 0 = h_0.
        if let h0 { prev.update(from: h0 + n0 * h, count: m * h) } else { prev.update(repeating: 0, count: m * h) }
        // GRU: the n columns of W_hhᵀ, whose product goes to its own buffer
        let gru = cell == .gru, hn = s.hiddenGates.data + n0 * t * h
        let whhN = Matrix(s.weightHHTransposed, offset: 2 * h, rows: h, columns: h, stride: gh)
        if cell == .lstm {
            let c = s.initialCell.data + n0 * h
            if let c0 { c.update(from: c0 + n0 * h, count: m * h) } else { c.update(repeating: 0, count: m * h) }
        }
        // (GRU: the r, z columns)
        let whh = Matrix(s.weightHHTransposed, rows: h, columns: gru ? 2 * h : gh, stride: gh)
        for step in 0..<t {
            // G_t += h_{t−1}·W_hhᵀ   [M, G·H] = [M, H]·[H, G·H]   (GRU: [M, 2H], then [M, H] into its own buffer)
            let hPrev = Matrix(s.previous, offset: (n0 * t + step * m) * h, rows: m, columns: h)
            if step > 0 || h0 != nil {
                try gemm(hPrev, whh, into: Matrix(s.gates, offset: (n0 * t + step * m) * gh, rows: m, columns: whh.columns, stride: gh),
                         beta: 1, caller: summary)
                if gru { try gemm(hPrev, whhN, into: Matrix(s.hiddenGates, offset: (n0 * t + step * m) * h, rows: m, columns: h), caller: summary) }
            } else if gru {
                hn.update(repeating: 0, count: m * h)   // h_0 = 0: nothing to add
            }
            forwardStep(s, samples, step)
        }
    }

    // Gate kernels (C, BackpropKernels/recurrent.inc): one call per step for the slice's m
    // consecutive rows of that step. Each writes h_t into `output` (batch-first, rows T apart)
    // and into H_prev's rows of step + 1, the next step's product input.

    private func forwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int) {
        let t = steps, h = hiddenSize, gh = cell.gateCount * h, m = samples.count, n0 = samples.lowerBound
        let row = n0 * t + step * m                              // the step's first row
        let gates = s.gates.data + row * gh
        // The top layer's outputs before the last step are never read when only the last step is
        // returned (LSTM and GRU backward read their own buffers; an RNN's reads its outputs).
        let unread = !returnSequences && s === stages[numLayers - 1] && step + 1 < t && cell.gateCount > 1
        let out: UnsafeMutablePointer<Float>? = unread ? nil : s.output.data + (n0 * t + step) * h
        let next = step + 1 == t ? nil : s.previous.data + (row + m) * h
        switch cell {
        case .rnn(let act):
            bp_rnn_forward_step(m, h, act == .relu ? 1 : 0, gates, gh, s.combinedBias.data, out, t * h, next, h)
        case .lstm:
            let cPrev = step == 0 ? s.initialCell.data + n0 * h : s.cells.data + (row - m) * h
            bp_lstm_forward_step(m, h, gates, gh, s.combinedBias.data, cPrev, h,
                                 s.cells.data + row * h, next, h, out, t * h)
        case .gru:
            bp_gru_forward_step(m, h, gates, gh, s.hiddenGates.data + row * h, h, s.combinedBias.data,
                                s.biasIH.value.data + 2 * h, s.biasHH.value.data + 2 * h,
                                s.previous.data + row * h, next, h, out, t * h)
        }
    }

    // MARK: - Backward

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, try savedOutput.peek(summary), layer: summary)
        _ = try savedInput.peek(summary)
        if let k = truncation, k <= 0 {
            throw BackpropError.invalidArgument("\(summary): truncation must be positive (or nil), got \(k)")
        }
        _ = try savedOutput.take(summary)
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        let first = max(0, t - (truncation ?? t))              // first step backpropagated through
        if stateGiven { initialHiddenGradient.resize(numLayers, n, h) } else { initialHiddenGradient.resize(0) }
        if stateGiven && cell == .lstm { initialCellGradient.resize(numLayers, n, h) } else { initialCellGradient.resize(0) }
        hiddenNext.resize(n, h)
        cellNext.resize(n, h)
        zeroRow.resize(h)
        zeroRow.fill(0)
        sliceNorms.resize(slices, t)
        sliceNorms.fill(0)
        for (k, s) in stages.enumerated() {
            s.gateGradient.resize(n * t, gh)
            if cell == .gru { s.hiddenGateGradient.resize(n * t, h) }
            if let x = s.input {
                if k > 0 || needsInputGradient {
                    s.inputGradient.resize(to: x.shape)
                    s.stepInputGradient.resize(n * t, s.inputSize)
                } else {
                    s.inputGradient.resize(0)
                }
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
        guard s.input != nil else { return }
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count, rows = m * t
        let dgx = s.gateGradient.data + n0 * t * gh
        // GRU: δ of W_hn h + b_hn (the hidden side's r and z blocks share the input side's δ)
        let gru = cell == .gru, dhn = s.hiddenGateGradient.data + n0 * t * h
        // Steps outside the truncation window (the block's first rows) contribute nothing.
        if first > 0 {
            dgx.update(repeating: 0, count: first * m * gh)
            if gru { dhn.update(repeating: 0, count: first * m * h) }
        }
        let dhNext = hiddenNext.data + n0 * h
        dhNext.update(repeating: 0, count: m * h)
        (cellNext.data + n0 * h).update(repeating: 0, count: m * h)
        // Bias gradients: the step kernels sum δ rows into a zeroed scratch row [G·H] (GRU: and
        // [H] for b_hn), added to slice 0's parameter gradients or a slice's own buffers after:
        // δb_ih = δb_hh except for GRU's n block.
        let scratch = slice == 0 ? nil : s.sliceGradients[slice - 1]
        let dbih = scratch?.biasIH ?? s.biasIH.grad, dbhh = scratch?.biasHH ?? s.biasHH.grad
        let biasSum = scratch?.biasSum ?? s.biasSumScratch
        biasSum.resize(gru ? gh + h : gh)
        biasSum.fill(0)
        // W_hh's rows that δG multiplies (GRU: r, z; then the n rows with δ of W_hn h + b_hn)
        let whh = Matrix(s.weightHH.value, rows: gru ? 2 * h : gh, columns: h)
        let whhN = Matrix(s.weightHH.value, offset: 2 * h * h, rows: h, columns: h)
        let normRow = sliceNorms.data + slice * t
        // A narrow dW_ih (MNIST rows: F = 28) is gathered step by step as its transpose
        // (dW_ih)ᵀ += x_tᵀ·δGx_t [F, G·H] while δGx_t is still in cache (one product over all rows
        // had to pack the whole δGx, cold, for 28 output columns); added in place after the loop.
        let narrow = f < 64
        let dWihT = scratch?.weightIHTransposed ?? s.weightIHTransposedScratch
        if narrow { dWihT.resize(f, gh) }
        // dW_hh += δGhᵀ·H_prev  [G·H, H] = [G·H, rows]·[rows, H]  (GRU: rows r, z from δGx, n from δ of
        // W_hn h), over blocks of steps while their δG rows are in cache; not over step 0 when
        // h_0 = 0 (its H_prev rows are zeros), none before the truncation window.
        let dWhhOut = scratch?.weightHH ?? s.weightHH.grad
        var blockEnd = t, firstBlock = true
        let lowestStep = max(first, zeroInitialHidden ? 1 : 0)
        func weightHHBlock(from low: Int) throws {
            let r0 = low * m, used = (blockEnd - low) * m
            let beta: Float = slice == 0 || !firstBlock ? 1 : 0
            let hPrev = Matrix(s.previous, offset: (n0 * t + r0) * h, rows: used, columns: h)
            try gemm(Matrix(s.gateGradient, offset: (n0 * t + r0) * gh, rows: used, columns: whh.rows, stride: gh), transposeA: true, hPrev,
                     into: Matrix(dWhhOut, rows: whh.rows, columns: h), beta: beta, caller: summary)
            if gru {
                try gemm(Matrix(s.hiddenGateGradient, offset: (n0 * t + r0) * h, rows: used, columns: h), transposeA: true, hPrev,
                         into: Matrix(dWhhOut, offset: 2 * h * h, rows: h, columns: h), beta: beta, caller: summary)
            }
            firstBlock = false
            blockEnd = low
        }
        for step in stride(from: t - 1, through: first, by: -1) {
            let normSum = backwardStep(s, samples, step, dy, allSteps, biasSums: biasSum.data)
            if norms { normRow[step] = normSum }
            if narrow {
                try gemm(Matrix(s.stepInput, offset: (n0 * t + step * m) * f, rows: m, columns: f), transposeA: true,
                         Matrix(s.gateGradient, offset: (n0 * t + step * m) * gh, rows: m, columns: gh), into: Matrix(dWihT),
                         beta: step == t - 1 ? 0 : 1, caller: summary)
            }
            // δh_{t−1} (+)= δG_t·W_hh   [M, H] = [M, G·H]·[G·H, H]  (GRU adds to its direct z·δh term);
            // δh_0 only for a given state.
            if step > first || (first == 0 && stateGiven) {
                try gemm(Matrix(s.gateGradient, offset: (n0 * t + step * m) * gh, rows: m, columns: whh.rows, stride: gh), whh,
                         into: Matrix(hiddenNext, offset: n0 * h, rows: m, columns: h), beta: gru ? 1 : 0, caller: summary)
                if gru {
                    try gemm(Matrix(s.hiddenGateGradient, offset: (n0 * t + step * m) * h, rows: m, columns: h), whhN,
                             into: Matrix(hiddenNext, offset: n0 * h, rows: m, columns: h), beta: 1, caller: summary)
                }
            }
            if step >= lowestStep && (blockEnd - step == Self.weightBlockSteps || step == lowestStep) {
                try weightHHBlock(from: step)
            }
        }
        if firstBlock { try weightHHBlock(from: blockEnd) }   // no rows (T = 1 with h_0 = 0): zeros for slices ≠ 0
        let sv = biasSum.data, a = dbih.data, b = dbhh.data
        for j in 0..<gh { a[j] += sv[j] }
        if gru {
            for j in 0..<(2 * h) { b[j] += sv[j] }
            for j in 0..<h { b[2 * h + j] += sv[gh + j] }
        } else {
            for j in 0..<gh { b[j] += sv[j] }
        }
        // ∂L/∂h_0, ∂L/∂c_0 (cut to zero by truncation).
        if stateGiven {
            let dh0 = initialHiddenGradient.data + (k * n + n0) * h
            if first == 0 { dh0.update(from: dhNext, count: m * h) } else { dh0.update(repeating: 0, count: m * h) }
        }
        if stateGiven && cell == .lstm {
            let dc0 = initialCellGradient.data + (k * n + n0) * h
            if first == 0 { dc0.update(from: cellNext.data + n0 * h, count: m * h) } else { dc0.update(repeating: 0, count: m * h) }
        }

        // Slice 0 accumulates into the parameters' gradients; the others fill their own buffers.
        let dWih = scratch?.weightIH ?? s.weightIH.grad
        let beta: Float = slice == 0 ? 1 : 0
        let dgxM = Matrix(s.gateGradient, offset: n0 * t * gh, rows: rows, columns: gh)
        // dW_ih += δGxᵀ·X       [G·H, F] = [G·H, M·T]·[M·T, F]
        let xM = Matrix(s.stepInput, offset: n0 * t * f, rows: rows, columns: f)
        if narrow {
            let src = UnsafePointer(dWihT.data), dst = dWih.data
            for r in 0..<gh {
                let row = dst + r * f
                if beta == 0 { for c in 0..<f { row[c] = src[c * gh + r] } } else { for c in 0..<f { row[c] += src[c * gh + r] } }
            }
        } else {
            try gemm(dgxM, transposeA: true, xM, into: Matrix(dWih), beta: beta, caller: summary)
        }
        // dX = δGx·W_ih         [M·T, F] = [M·T, G·H]·[G·H, F]  (not needed for the data)
        if k > 0 || needsInputGradient {
            let dxs = s.stepInputGradient.data + n0 * t * f
            try gemm(dgxM, Matrix(s.weightIH.value), into: Matrix(s.stepInputGradient, offset: n0 * t * f, rows: rows, columns: f), caller: summary)
            for i in 0..<m {   // back to batch-first rows
                for step in 0..<t {
                    (s.inputGradient.data + ((n0 + i) * t + step) * f).update(from: dxs + (step * m + i) * f, count: f)
                }
            }
        }
    }

    /// Steps per block of the dW_hh product in backward: a block's δG rows are still in cache.
    /// On 2 slices 1–2 % faster per step than one product over all steps (medians of 8–10
    /// alternating bench-rnn runs: 10.16 → 9.95 and 10.35 → 10.24 ms); the same on one core.
    public static let weightBlockSteps = 4

    /// One backward step of the gate kernels (C) for the slice's rows: δ of the pre-activations
    /// into the gradient buffers, bias gradients summed into `biasSums` ([G·H], GRU: then [H] of
    /// b_hn), the recurrent δ updated in `hiddenNext` / `cellNext`. Returns Σ_i ‖δh_t of sample i‖.
    private func backwardStep(_ s: Stage, _ samples: Range<Int>, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                              _ allSteps: Bool, biasSums: UnsafeMutablePointer<Float>) -> Float {
        let t = steps, h = hiddenSize, gh = cell.gateCount * h, m = samples.count, n0 = samples.lowerBound
        let row = n0 * t + step * m                              // the step's first row
        // δ arriving at h_t from above (batch-first): the output gradient rows, or (last step only) zeros.
        let (d, dStride): (UnsafeMutablePointer<Float>, Int) =
            allSteps ? (dy + (n0 * t + step) * h, t * h) : (step == t - 1 ? (dy + n0 * h, h) : (zeroRow.data, 0))
        let dh = hiddenNext.data + n0 * h, dg = s.gateGradient.data + row * gh
        switch cell {
        case .rnn(let act):
            return bp_rnn_backward_step(m, h, act == .relu ? 1 : 0, s.output.data + (n0 * t + step) * h, t * h,
                                        d, dStride, dh, dg, gh, biasSums)
        case .lstm:
            let cPrev = step == 0 ? s.initialCell.data + n0 * h : s.cells.data + (row - m) * h
            return bp_lstm_backward_step(m, h, s.gates.data + row * gh, gh, s.cells.data + row * h, h,
                                         cPrev, h, d, dStride, dh, cellNext.data + n0 * h, dg, gh, biasSums)
        case .gru:
            return bp_gru_backward_step(m, h, s.gates.data + row * gh, gh, s.hiddenGates.data + row * h, h,
                                        s.previous.data + row * h, h, d, dStride, dh, dg, gh,
                                        s.hiddenGateGradient.data + row * h, h, biasSums, biasSums + gh)
        }
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
                            truncation: Int? = nil, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
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
                            truncation: Int? = nil, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
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
                            truncation: Int? = nil, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
        try self.init(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                      returnSequences: returnSequences, truncation: truncation, rng: &rng)
    }
}
