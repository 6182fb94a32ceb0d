import Foundation

/// Sigmoid followed by binary cross-entropy, fused: PyTorch's `nn.BCEWithLogitsLoss`.
///
/// For logits z and targets t ∈ [0, 1] (hard labels or probabilities), element-wise:
///
///     ℓ = −[t · log σ(z) + (1 − t) · log(1 − σ(z))]
///       = max(z, 0) − z·t + log1p(e^(−|z|))          (never overflows, never takes log 0)
///     L = (1/M) Σ ℓ over all M elements (or the sum with `.sum`)
///     δ = ∂L/∂z = (σ(z) − t) / M
///
/// Returns the loss and δ (a buffer owned by the loss, overwritten by the next call).
public final class BinaryCrossEntropyWithLogits: Loss {
    public let reduction: Reduction
    private let gradient = Tensor(uncheckedShape: [0])

    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    public func callAsFunction(_ logits: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor) {
        try elementwiseLoss("BinaryCrossEntropyWithLogits", logits, target, outputName: "logits",
                            gradient: gradient, reduction: reduction) { z, t in
            let e = expf(-abs(z))                       // e^(−|z|) ∈ (0, 1]
            let s = z >= 0 ? 1 / (1 + e) : e / (1 + e)  // σ(z) from the same exponential
            return (max(z, 0) - z * t + log1pf(e), s - t)
        }
    }
}
