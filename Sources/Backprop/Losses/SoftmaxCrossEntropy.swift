import Foundation

/// Softmax followed by cross-entropy, fused: PyTorch's `nn.CrossEntropyLoss` on logits.
///
///     p = softmax(z) (computed as exp(z − max z) for stability)
///     L = −(1/N) Σ_n Σ_c q_nc · log p_nc,   q = (1 − ε)·onehot(label) + ε/C   (ε: label smoothing)
///     δ = ∂L/∂z = (p − q) / N
///
/// Takes integer class labels (`ClassLabelLoss`) or target probabilities per row (`Loss`).
/// Returns the loss and δ (a buffer owned by the loss, overwritten by the next call).
public final class SoftmaxCrossEntropy: ClassLabelLoss {
    public let labelSmoothing: Float
    public let reduction: Reduction
    /// Softmax probabilities of the last call, `[N, C]`.
    public let probabilities = Tensor(uncheckedShape: [0])
    private let gradient = Tensor(uncheckedShape: [0])

    /// Without label smoothing: no argument can be invalid, so it does not throw.
    public init(reduction: Reduction = .mean) {
        self.labelSmoothing = 0
        self.reduction = reduction
    }

    /// With label smoothing ε, which must lie in [0, 1] (else `BackpropError.invalidArgument`).
    public init(labelSmoothing: Float, reduction: Reduction = .mean) throws {
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw BackpropError.invalidArgument("label smoothing must be in [0, 1], got \(labelSmoothing)")
        }
        self.labelSmoothing = labelSmoothing
        self.reduction = reduction
    }

    /// Loss and δ for integer class labels (one per row of `logits`).
    public func callAsFunction(_ logits: Tensor, labels: [Int32]) throws -> (loss: Float, gradient: Tensor) {
        let n = logits.rows, c = logits.columnsPerRow
        guard logits.rank == 2, labels.count == n, c > 0 else {
            throw BackpropError.shapeMismatch(where: "SoftmaxCrossEntropy",
                                              detail: "logits \(logits.shape) need [N, C] with C > 0 and N = \(labels.count) labels")
        }
        for (i, label) in labels.enumerated() where label < 0 || Int(label) >= c {
            throw BackpropError.invalidArgument("SoftmaxCrossEntropy: label \(label) at row \(i) is outside 0..<\(c)")
        }
        return labels.withUnsafeBufferPointer { lab in
            compute(logits) { row, cls in cls == Int(lab[row]) ? 1 : 0 }
        }
    }

    /// Loss and δ for target probabilities `[N, C]` (each row summing to 1).
    public func callAsFunction(_ logits: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor) {
        guard logits.rank == 2, target.shape == logits.shape, logits.columnsPerRow > 0 else {
            throw BackpropError.shapeMismatch(where: "SoftmaxCrossEntropy",
                                              detail: "logits \(logits.shape) and target \(target.shape) must both be [N, C]")
        }
        let c = logits.columnsPerRow, t = target.data
        return compute(logits) { row, cls in t[row * c + cls] }
    }

    private func compute(_ logits: Tensor, target: (Int, Int) -> Float) -> (loss: Float, gradient: Tensor) {
        let n = logits.rows, c = logits.columnsPerRow
        probabilities.resize(n, c)
        gradient.resize(n, c)
        let z = logits.data, p = probabilities.data, g = gradient.data
        let eps = labelSmoothing, uniform = labelSmoothing / Float(c)
        let scale = reduction.scale(count: n)
        var total: Double = 0
        for i in 0..<n {
            let zi = z + i * c, pi = p + i * c, gi = g + i * c
            let (m, s) = exponentiateShifted(zi, into: pi, count: c)
            let logS = logf(s), inv = 1 / s
            var rowLoss: Float = 0
            for j in 0..<c {
                let q = (1 - eps) * target(i, j) + uniform
                let logp = zi[j] - m - logS
                if q != 0 { rowLoss -= q * logp }
                pi[j] *= inv
                gi[j] = (pi[j] - q) * scale
            }
            total += Double(rowLoss)
        }
        return (Float(total) * scale, gradient)
    }
}
