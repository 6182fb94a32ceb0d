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
/// Files: this one holds the layer's settings and parameters (`Weights`) and `RecurrentTape`, the
/// state of one pass (every stacked layer's buffers, `Stage`); `RecurrentLayer+Forward`,
/// `RecurrentLayer+Backward` the passes, run on a tape; `RecurrentLayer+Products` the matrix products of both
/// (`ForwardProducts`, `BackwardProducts`; run alone by `backprop bench-rnn`); `RNNCell`, `LSTMCell`, `GRUCell`
/// each cell's gate layout, its gate kernels and its public layer class. The layer API runs on the
/// tape the layer keeps; each call on the autodiff graph (`Graph/Layers/RecurrentOnGraph`) runs the
/// same passes on a tape of its own.
///
/// Layout: the batch is split into contiguous slices of samples run concurrently (`threads`).
/// A tape's buffers hold each slice's rows as one block, step-major inside it: the rows of
/// slice [n0, n0 + m) start at row n0·T, and step t of that slice is the m consecutive rows from
/// n0·T + t·m. So every per-step product and gate kernel works on contiguous memory (batch-major
/// rows, T apart, made the hardware prefetchers miss and aliased in the caches). The input is
/// copied into this order per slice; `output` (what callers see) and δ of the input stay
/// batch-first [N, T, ·].
///
/// Products (all through `gemm`; the row counts are per slice; `ForwardProducts` and
/// `BackwardProducts` issue them):
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
/// baseline), which also sum the bias gradients. Every buffer is a `Tensor` of the tape, resized per batch
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
public class RecurrentLayer: Layer {
    /// The layer's cell: `RecurrentKind` (`.rnn(nonlinearity)`, `.lstm`, `.gru`).
    public typealias Cell = RecurrentKind

    /// One stacked layer's parameters (PyTorch's weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    /// bias_hh_l{k}).
    final class Weights {
        let inputSize: Int
        let weightIH, weightHH, biasIH, biasHH: Parameter

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

    /// One stacked layer's buffers for one forward pass and its backward (a `RecurrentTape` holds
    /// one per stacked layer), with that layer's parameters.
    final class Stage {
        let inputSize: Int
        let weightIH, weightHH, biasIH, biasHH: Parameter
        // Rows in slice-step order (see the layout above) unless marked batch-first.
        var input: Tensor?                                      // [N, T, F_k] batch-first, the pass's input
        let stepInput = Tensor(uncheckedShape: [0])             // [N·T, F_k] the input in slice-step order
        let gates = Tensor(uncheckedShape: [0])                 // [N·T, G·H] pre-activations, then activations
        let hiddenGates = Tensor(uncheckedShape: [0])           // GRU: [N·T, H] = h_{t−1}·W_hnᵀ + b_hn
        let previous = Tensor(uncheckedShape: [0])              // [N·T, H], row (t, n) = h_{t−1}
        /// [N, T, H] batch-first, row (n, t) = h_t. A graph call gives the top layer's a fresh
        /// tensor (it is the call's result).
        var output = Tensor(uncheckedShape: [0])
        let cells = Tensor(uncheckedShape: [0])                 // LSTM: [N·T, H] c_t
        let initialCell = Tensor(uncheckedShape: [0])           // LSTM: [N, H] c_0 (copy or zeros)
        let gateGradient = Tensor(uncheckedShape: [0])          // [N·T, G·H] δ of the input-side pre-activations
        let hiddenGateGradient = Tensor(uncheckedShape: [0])    // GRU: [N·T, H] δ of W_hn h + b_hn
        let stepInputGradient = Tensor(uncheckedShape: [0])     // [N·T, F_k] δ of the input, slice-step order
        let inputGradient = Tensor(uncheckedShape: [0])         // [N, T, F_k] batch-first
        let combinedBias = Tensor(uncheckedShape: [0])          // [G·H] b_ih + b_hh (forward, all cells)
        let weightHHTransposed = Tensor(uncheckedShape: [0])    // [H, G·H] W_hhᵀ, copied per forward pass
        /// Each batch slice's dW_ih, dW_hh, db_ih, db_hh (indices 0…3), summed in slice order
        /// after the slices finish (`SliceGradients`, as Dense and Conv2D).
        lazy var gradients = SliceGradients([weightIH, weightHH, biasIH, biasHH])
        /// A graph call's own dW_ih, dW_hh, db_ih, db_hh (slice 0's targets in place of the
        /// parameters' `grad`): its node returns them and the graph adds them into `grad`.
        lazy var ownGradients = [weightIH, weightHH, biasIH, biasHH].map { Tensor(uncheckedShape: $0.shape) }
        /// Each slice's scratch: its bias sums and a narrow input's (dW_ih)ᵀ.
        var scratch: [SliceScratch] = []

        init(_ w: Weights) {
            inputSize = w.inputSize
            weightIH = w.weightIH; weightHH = w.weightHH; biasIH = w.biasIH; biasHH = w.biasHH
        }
    }

    /// One batch slice's scratch in backward.
    final class SliceScratch {
        let biasSum = Tensor(uncheckedShape: [0])               // [G·H] Σ δ rows (GRU: + [H] of b_hn)
        let weightIHTransposed = Tensor(uncheckedShape: [0])    // [F, G·H] (dW_ih)ᵀ, narrow inputs
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
    /// Batch slices processed concurrently, one thread each (default `Parallelism.defaultThreads`:
    /// every processor; set with `useThreads`).
    /// Samples of a batch are independent, so each slice runs every stacked layer's step loop on its own rows with
    /// single-threaded BLAS calls (OpenBLAS is set to 1 thread meanwhile and restored after):
    /// no synchronisation per time step. Weight gradients are summed over slices in slice order,
    /// so results are deterministic for a given value (and differ from 1 only by rounding).
    public internal(set) var threads = Parallelism.defaultThreads
    public func useThreads(_ count: Int) { threads = Swift.max(1, count) }
    /// When false, `backward` skips ∂L/∂x of the first layer (a training loop never uses δ of
    /// the data: one [N·T, G·H]·[G·H, F] product saved) and returns an empty tensor.
    public var needsInputGradient = true

    /// h_0, `[numLayers, N, H]`; nil means zeros. Read by every `forward`.
    public var initialHidden: Tensor?
    /// c_0 (LSTM only), `[numLayers, N, H]`; nil means zeros.
    public var initialCell: Tensor?
    /// ∂L/∂h_0 `[numLayers, N, H]` from the last `backward` (zeros when truncation cut it off);
    /// empty when the forward pass was given no initial state.
    public var initialHiddenGradient: Tensor { tape.initialHiddenGradient }
    /// ∂L/∂c_0 `[numLayers, N, H]` (LSTM) from the last `backward`; empty without an initial state.
    public var initialCellGradient: Tensor { tape.initialCellGradient }
    /// For t = 1…T (index t − 1): mean over the batch of ‖∂L/∂h_t‖ of the last stacked layer,
    /// the total derivative through all later steps, from the last `backward`. Zero for steps
    /// outside the truncation window.
    public var hiddenGradientNorms: [Float] { tape.hiddenGradientNorms }

    /// Every stacked layer's parameters.
    let weights: [Weights]
    /// The layer API's pass state: its buffers, reused by every `forward`/`backward` pair. Graph
    /// calls run on tapes of their own (`RecurrentOnGraph`).
    let tape: RecurrentTape
    /// The layer API's per-stage buffers (`tape.stages`).
    var stages: [Stage] { tape.stages }
    /// Tapes of graph calls whose nodes are gone, kept for the next graph call (their buffers are
    /// already sized); at most `spareTapeLimit`.
    var spareTapes: [RecurrentTape] = []
    static let spareTapeLimit = 2
    /// The last forward's input and output, checked by backward (see `ForwardRecord`).
    var savedInput = ForwardRecord(), savedOutput = ForwardRecord()
    lazy var parametersAtForward = ParameterRecords(parameters)   // W_ih, W_hh are read again by backward

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
        var weights: [Weights] = []
        for k in 0..<numLayers {
            weights.append(try Weights(inputSize: k == 0 ? inputSize : hiddenSize, hiddenSize: hiddenSize,
                                       gates: cell.gateCount, rng: &rng))
        }
        self.weights = weights
        tape = RecurrentTape(cell: cell, hiddenSize: hiddenSize, returnSequences: returnSequences, weights: weights)
    }

    /// A tape for one graph call: a spare one when there is one, else a new one.
    func graphTape() -> RecurrentTape {
        if let spare = spareTapes.popLast() { return spare }
        let t = RecurrentTape(cell: cell, hiddenSize: hiddenSize, returnSequences: returnSequences, weights: weights)
        t.ownsGradients = true
        return t
    }

    /// Takes back a graph call's tape once its node is gone.
    func returnTape(_ t: RecurrentTape) {
        if spareTapes.count < Self.spareTapeLimit { spareTapes.append(t) }
    }

    /// A recurrent layer of the given kind. `nonlinearity`, when given, replaces an RNN kind's
    /// own (so `make(.rnn, nonlinearity: .relu)` is an `.rnn(.relu)` layer); other cells ignore it.
    public static func make(_ kind: RecurrentKind, inputSize: Int, hiddenSize: Int, numLayers: Int = 1,
                            nonlinearity: RecurrentNonlinearity? = nil, returnSequences: Bool = true,
                            truncation: Int? = nil, rng: inout SeededGenerator) throws -> RecurrentLayer {
        switch kind {
        case .rnn(let own):
            return try RNN(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                           nonlinearity: nonlinearity ?? own, returnSequences: returnSequences,
                           truncation: truncation, rng: &rng)
        case .lstm:
            return try LSTM(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                            returnSequences: returnSequences, truncation: truncation, rng: &rng)
        case .gru:
            return try GRU(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                           returnSequences: returnSequences, truncation: truncation, rng: &rng)
        }
    }

    /// `summary` for the forward pass's error messages, built once per configuration (a string
    /// built on every call would be a heap allocation per prediction).
    var cachedSummary: String {
        if let c = summaryCache, c.returnSequences == returnSequences, c.truncation == truncation { return c.text }
        let text = summary
        summaryCache = (returnSequences, truncation, text)
        return text
    }
    private var summaryCache: (returnSequences: Bool, truncation: Int?, text: String)?

    public var summary: String {
        "\(cell.name)(\(inputSize) → \(hiddenSize)\(numLayers > 1 ? ", \(numLayers) layers" : "")"
            + "\(returnSequences ? ", sequences" : ", last step")"
            + "\(truncation.map { ", truncation \($0)" } ?? ""))"
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list: [(name: String, parameter: Parameter)] = []
        for (k, s) in weights.enumerated() {
            list.append((name: "weight_ih_l\(k)", parameter: s.weightIH))
            list.append((name: "weight_hh_l\(k)", parameter: s.weightHH))
            list.append((name: "bias_ih_l\(k)", parameter: s.biasIH))
            list.append((name: "bias_hh_l\(k)", parameter: s.biasHH))
        }
        return list
    }

    /// h_n: every layer's hidden state after the last step, `[numLayers, N, H]` (a new tensor).
    public var finalHidden: Tensor? { tape.finalHidden }

    /// c_n (LSTM): every layer's cell state after the last step, `[numLayers, N, H]` (a new tensor).
    public var finalCell: Tensor? { tape.finalCell }
}

/// The state of one pass of a recurrent layer: every stacked layer's buffers (`Stage`) for one
/// forward pass and its backward, the pass's shapes and batch slicing, and backward's recurrent δ
/// and outputs (∂L/∂h_0, ∂L/∂c_0, the hidden gradient norms). The forward and backward passes
/// (`RecurrentLayer+Forward`, `+Backward`, `+Products`) run on a tape: the layer API on the one
/// the layer keeps (reused by every pass: no allocation once sized), each graph call on one of
/// its own that its node holds, so one layer can appear at several places of a graph.
final class RecurrentTape {
    let cell: RecurrentKind
    let hiddenSize: Int
    let numLayers: Int
    let returnSequences: Bool
    let stages: [RecurrentLayer.Stage]
    /// The layer's summary at the last forward pass, for messages.
    var name: String
    /// A graph call's tape: backward writes the weight gradients into the stages' `ownGradients`
    /// (returned to the graph) instead of adding them into the parameters' `grad`.
    var ownsGradients = false
    let batchSlices = BatchSlices()
    var batch = 0, steps = 0
    /// The number of batch slices of the last forward pass: it fixes the buffers' row order, so
    /// backward runs the same slices.
    var slices = 1
    /// Whether the last forward pass started from a given state (`initialHidden` or `initialCell`),
    /// and whether h_0 was zero (no `initialHidden`): then step 0's recurrent products are skipped
    /// (h_0·W_hhᵀ = 0, and its rows add nothing to δW_hh), and so is δh_0 unless a state was given.
    var stateGiven = false, zeroInitialHidden = true
    /// Whether backward has sized its buffers for the last forward's shapes (what
    /// `runProductsOnly` needs).
    var backwardBuffersSized = false
    /// [N, H] when !returnSequences. A graph call gives it a fresh tensor (the call's result).
    var lastOutput = Tensor(uncheckedShape: [0])
    let sliceNorms = Tensor(uncheckedShape: [0])        // [slices, T] Σ_i ‖δh_t‖ per slice
    let hiddenNext = Tensor(uncheckedShape: [0])        // [N, H] δ into h_{t−1}
    let cellNext = Tensor(uncheckedShape: [0])          // [N, H] δ into c_{t−1}
    let zeroRow = Tensor(uncheckedShape: [0])           // [H] zeros: δ of outputs not given
    /// ∂L/∂h_0, ∂L/∂c_0 `[numLayers, N, H]` of the last backward (see `RecurrentLayer`).
    let initialHiddenGradient = Tensor(uncheckedShape: [0])
    let initialCellGradient = Tensor(uncheckedShape: [0])
    /// Mean over the batch of ‖∂L/∂h_t‖ of the last stacked layer (see `RecurrentLayer`).
    var hiddenGradientNorms: [Float] = []

    init(cell: RecurrentKind, hiddenSize: Int, returnSequences: Bool, weights: [RecurrentLayer.Weights]) {
        self.cell = cell
        self.hiddenSize = hiddenSize
        self.numLayers = weights.count
        self.returnSequences = returnSequences
        self.stages = weights.map(RecurrentLayer.Stage.init)
        self.name = cell.name
    }

    /// h_n of the last forward pass, `[numLayers, N, H]` (a new tensor).
    var finalHidden: Tensor? {
        guard steps > 0 else { return nil }
        return gatherLastStep(batchFirst: true) { $0.output.data }
    }

    /// c_n (LSTM) of the last forward pass, `[numLayers, N, H]` (a new tensor).
    var finalCell: Tensor? {
        guard steps > 0, cell == .lstm else { return nil }
        return gatherLastStep(batchFirst: false) { $0.cells.data }
    }

    private func gatherLastStep(batchFirst: Bool, _ buffer: (RecurrentLayer.Stage) -> UnsafeMutablePointer<Float>) -> Tensor {
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

    /// Runs `body` on the forward pass's contiguous slices of the batch's samples, one per thread
    /// (`BatchSlices`).
    func forEachSlice(_ body: (_ slice: Int, _ samples: Range<Int>) throws -> Void) throws {
        try batchSlices.run(count: slices, items: batch, body)
    }

    /// Where step `step` of the batch slice `samples` lies in a stage's buffers, for the gate
    /// kernels (see `RecurrentLayer`'s layout).
    func stepRows(_ samples: Range<Int>, _ step: Int) -> StepRows {
        StepRows(n0: samples.lowerBound, m: samples.count, t: steps, h: hiddenSize, gh: cell.gateCount * hiddenSize,
                 step: step)
    }
}

/// Step `step` of the batch slice of the `m` samples from `n0`, in a stage's buffers: its `m` rows
/// of the slice-step-ordered buffers start at `row`; its rows of the batch-first `output` (and of
/// δ of it) start at `n0·T + step`, `T` apart.
struct StepRows {
    let n0, m, t, h, gh: Int
    let step: Int
    /// The step's first row in slice-step order.
    var row: Int { n0 * t + step * m }
}

/// An RNN's nonlinearity (PyTorch's `nonlinearity='tanh'` or `'relu'`).
public enum RecurrentNonlinearity: Sendable, Equatable {
    case tanh
    case relu
}

/// A recurrent cell: which layer `RecurrentLayer.make` and `SequenceClassifier` build, and a
/// layer's `cell`. `.rnn` alone is `.rnn(.tanh)` (PyTorch's default); `case .rnn:` in a `switch`
/// matches either nonlinearity, while `==` compares it too.
public enum RecurrentKind: Sendable, Equatable, CustomStringConvertible {
    case rnn(RecurrentNonlinearity)
    case lstm
    case gru

    /// An RNN with PyTorch's default nonlinearity, tanh.
    public static var rnn: RecurrentKind { .rnn(.tanh) }

    /// Gate blocks per weight: G.
    public var gateCount: Int {
        switch self {
        case .rnn: return RNNCell.gateCount
        case .lstm: return LSTMCell.gateCount
        case .gru: return GRUCell.gateCount
        }
    }

    /// The layer's name in summaries and messages: `RNN`, `RNN(relu)`, `LSTM`, `GRU`.
    var name: String {
        switch self {
        case .rnn(.tanh): return "RNN"
        case .rnn(.relu): return "RNN(relu)"
        case .lstm: return "LSTM"
        case .gru: return "GRU"
        }
    }

    /// `rnn`, `rnn(relu)`, `lstm`, `gru`.
    public var description: String {
        switch self {
        case .rnn(.tanh): return "rnn"
        case .rnn(.relu): return "rnn(relu)"
        case .lstm: return "lstm"
        case .gru: return "gru"
        }
    }
}
