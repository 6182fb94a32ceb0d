import BackpropKernels

/// PyTorch's `nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)`:
///
///     [i f g o] = [σ σ tanh σ](W_ih x + b_ih + W_hh h + b_hh)
///     c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
///
/// `initialCell` / `finalCell` / `initialCellGradient` are c_0, c_n and ∂L/∂c_0.
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

/// The LSTM cell's gate kernels. Four gate blocks (G = 4) in PyTorch's order i, f, g, o: rows
/// [0, H) of W_ih, W_hh, b_ih, b_hh are the input gate's, [H, 2H) the forget gate's, [2H, 3H)
/// the cell candidate's, [3H, 4H) the output gate's. Forward replaces the pre-activations in
/// `gates` by the activations and keeps c_t in `cells` (c_0 in `initialCell`); backward
/// recomputes tanh(c_t) from c_t and carries δc in the layer's `cellNext`.
enum LSTMCell {
    static let gateCount = 4

    /// c_{t−1}'s rows: c_0 at step 0, else the previous step's rows of `cells`.
    private static func previousCell(_ s: RecurrentLayer.Stage, _ r: StepRows) -> UnsafeMutablePointer<Float> {
        r.step == 0 ? s.initialCell.data + r.n0 * r.h : s.cells.data + (r.row - r.m) * r.h
    }

    /// Activations of G_t + b_ih + b_hh in place, c_t into `cells`, h_t into `out` (batch-first;
    /// nil when nobody reads it) and `next` (H_prev of step + 1).
    static func forwardStep(_ s: RecurrentLayer.Stage, _ r: StepRows,
                            out: UnsafeMutablePointer<Float>?, next: UnsafeMutablePointer<Float>?) {
        bp_lstm_forward_step(r.m, r.h, s.gates.data + r.row * r.gh, r.gh, s.combinedBias.data, previousCell(s, r), r.h,
                             s.cells.data + r.row * r.h, next, r.h, out, r.t * r.h)
    }

    /// δh = dh + dy, δc = dc + δh ⊙ o ⊙ (1 − tanh²c_t); δ of [i f g o] into the gate gradient rows,
    /// dc ← δc ⊙ f; bias gradients summed into `biasSums` [4H]. Returns Σ_rows ‖δh‖.
    static func backwardStep(_ s: RecurrentLayer.Stage, _ r: StepRows, dy: UnsafeMutablePointer<Float>, dyStride: Int,
                             dh: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>,
                             biasSums: UnsafeMutablePointer<Float>) -> Float {
        bp_lstm_backward_step(r.m, r.h, s.gates.data + r.row * r.gh, r.gh, s.cells.data + r.row * r.h, r.h,
                              previousCell(s, r), r.h, dy, dyStride, dh, dc, s.gateGradient.data + r.row * r.gh, r.gh,
                              biasSums)
    }
}
