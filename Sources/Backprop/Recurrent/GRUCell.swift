import BackpropKernels

/// PyTorch's `nn.GRU(input_size, hidden_size, num_layers, batch_first=True)`:
///
///     r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h
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

/// The GRU cell's gate kernels. Three gate blocks (G = 3) in PyTorch's order r, z, n: rows
/// [0, H) of W_ih, W_hh, b_ih, b_hh are the reset gate's, [H, 2H) the update gate's, [2H, 3H) the
/// candidate's. The n block's hidden side stays apart (r multiplies W_hn h + b_hn), so the
/// products put h·W_hnᵀ in the stage's `hiddenGates` [N·T, H] and read its δ from
/// `hiddenGateGradient`; the r and z blocks are added to the input side's `gates` and share its δ.
/// b_hh's n part is summed separately (after the [3H] of `biasSums`).
enum GRUCell {
    static let gateCount = 3

    /// r, z, n of the step into `gates` (n's hidden side, W_hn h + b_hn, kept in `hiddenGates`),
    /// h_t into `out` (batch-first; nil when nobody reads it) and `next` (H_prev of step + 1).
    static func forwardStep(_ s: RecurrentLayer.Stage, _ r: StepRows,
                            out: UnsafeMutablePointer<Float>?, next: UnsafeMutablePointer<Float>?) {
        bp_gru_forward_step(r.m, r.h, s.gates.data + r.row * r.gh, r.gh, s.hiddenGates.data + r.row * r.h, r.h,
                            s.combinedBias.data, s.biasIH.value.data + 2 * r.h, s.biasHH.value.data + 2 * r.h,
                            s.previous.data + r.row * r.h, next, r.h, out, r.t * r.h)
    }

    /// δh = dh + dy; δ of [r z n] (input side) into the gate gradient rows, δ of W_hn h + b_hn into
    /// `hiddenGateGradient`, dh ← z ⊙ δh (the products with W_hh are added after); bias gradients
    /// summed into `biasSums` [3H] and, for b_hn, the [H] after it. Returns Σ_rows ‖δh‖.
    static func backwardStep(_ s: RecurrentLayer.Stage, _ r: StepRows, dy: UnsafeMutablePointer<Float>, dyStride: Int,
                             dh: UnsafeMutablePointer<Float>, biasSums: UnsafeMutablePointer<Float>) -> Float {
        bp_gru_backward_step(r.m, r.h, s.gates.data + r.row * r.gh, r.gh, s.hiddenGates.data + r.row * r.h, r.h,
                             s.previous.data + r.row * r.h, r.h, dy, dyStride, dh, s.gateGradient.data + r.row * r.gh, r.gh,
                             s.hiddenGateGradient.data + r.row * r.h, r.h, biasSums, biasSums + r.gh)
    }
}
