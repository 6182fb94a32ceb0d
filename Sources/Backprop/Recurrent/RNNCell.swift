import BackpropKernels

/// PyTorch's `nn.RNN(input_size, hidden_size, num_layers, nonlinearity, batch_first=True)`:
///
///     h' = act(W_ih x + b_ih + W_hh h + b_hh)        act = tanh or ReLU
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

/// The RNN cell's gate kernels. One gate block (G = 1): W_ih [H, F], W_hh [H, H], b_ih, b_hh [H].
/// Forward leaves h_t in `output` only (no activations of its own: act'(a) is computed from h_t),
/// so backward reads the stage's outputs, and the top layer writes every step's.
enum RNNCell {
    static let gateCount = 1

    /// h_t = act(G_t + b_ih + b_hh) into `out` (batch-first) and `next` (H_prev of step + 1).
    static func forwardStep(_ act: RecurrentNonlinearity, _ s: RecurrentLayer.Stage, _ r: StepRows,
                            out: UnsafeMutablePointer<Float>?, next: UnsafeMutablePointer<Float>?) {
        bp_rnn_forward_step(r.m, r.h, act == .relu ? 1 : 0, s.gates.data + r.row * r.gh, r.gh, s.combinedBias.data,
                            out, r.t * r.h, next, r.h)
    }

    /// δh = dh + dy, δG_t = δh ⊙ act'(h_t) into the gate gradient rows; bias gradients summed into
    /// `biasSums` [H]. Returns Σ_rows ‖δh‖.
    static func backwardStep(_ act: RecurrentNonlinearity, _ s: RecurrentLayer.Stage, _ r: StepRows,
                             dy: UnsafeMutablePointer<Float>, dyStride: Int, dh: UnsafeMutablePointer<Float>,
                             biasSums: UnsafeMutablePointer<Float>) -> Float {
        bp_rnn_backward_step(r.m, r.h, act == .relu ? 1 : 0, s.output.data + (r.n0 * r.t + r.step) * r.h, r.t * r.h,
                             dy, dyStride, dh, s.gateGradient.data + r.row * r.gh, r.gh, biasSums)
    }
}
