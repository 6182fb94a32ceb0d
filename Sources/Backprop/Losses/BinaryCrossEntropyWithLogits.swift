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
public final class BinaryCrossEntropyWithLogits {
    public let reduction: Reduction
    private let gradient = Tensor(uncheckedShape: [0])

    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    public func callAsFunction(_ logits: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor) {
        guard logits.shape == target.shape else {
            throw BackpropError.shapeMismatch(where: "BinaryCrossEntropyWithLogits",
                                              detail: "logits \(logits.shape) and target \(target.shape) differ")
        }
        gradient.resize(to: logits.shape)
        let z = logits.data, t = target.data, g = gradient.data
        let m = logits.count
        let scale: Float = reduction == .mean ? 1 / Float(max(m, 1)) : 1
        var total: Double = 0
        for i in 0..<m {
            let zi = z[i], ti = t[i]
            let e = expf(-abs(zi))                       // e^(−|z|) ∈ (0, 1]
            total += Double(max(zi, 0) - zi * ti + log1pf(e))
            let s = zi >= 0 ? 1 / (1 + e) : e / (1 + e) // σ(z) from the same exponential
            g[i] = (s - ti) * scale
        }
        return (Float(total) * scale, gradient)
    }
}
