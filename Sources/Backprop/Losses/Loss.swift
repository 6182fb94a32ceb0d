/// A loss function: the scalar L that training minimises, computed from a model's output and a
/// target, together with δ = ∂L/∂output, the gradient `Layer.backward` starts from. One call does
/// what PyTorch's `loss = criterion(output, target); loss.backward()` does up to the model:
///
///     let (value, delta) = try loss(try model(x), target: y)
///     _ = try model.backward(delta)
///
/// - `gradient` has the output's shape. It is a buffer owned by the loss and overwritten by the
///   next call (copy it to keep it), like a layer's output.
/// - `reduction` says whether L is the mean (the default) or the sum of the per-item losses; what
///   an item is belongs to the loss (an element for `MeanSquaredError` and
///   `BinaryCrossEntropyWithLogits`, a row for `SoftmaxCrossEntropy`).
/// - An output and target that do not fit throw `BackpropError.shapeMismatch` naming the loss.
///
/// Losses that can also take integer class labels instead of a target tensor conform to
/// `ClassLabelLoss`. To add a loss: a file in Losses/ with a class conforming to `Loss`, and a
/// finite-difference check of its δ (`GradientCheck.checkLoss`) in the tests.
///
/// Initialisers follow the library's rule (see `BackpropError`): they throw exactly when an
/// argument they take can be invalid. `MeanSquaredError()`, `BinaryCrossEntropyWithLogits()` and
/// `SoftmaxCrossEntropy()` cannot fail and do not throw; `SoftmaxCrossEntropy(labelSmoothing:)`
/// checks ε ∈ [0, 1] and throws.
public protocol Loss {
    /// Mean or sum over the items (see above).
    var reduction: Reduction { get }
    /// The loss of `output` against `target` and δ = ∂L/∂output.
    func callAsFunction(_ output: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor)
}

/// A loss for classification that also takes one integer class label per row of an `[N, C]`
/// output, in place of a target tensor (PyTorch's `nn.CrossEntropyLoss` with class indices).
/// A label outside `0..<C` throws `BackpropError.invalidArgument`; a label count other than N
/// throws `BackpropError.shapeMismatch`.
public protocol ClassLabelLoss: Loss {
    /// The loss of `output` (`[N, C]`) against `labels` (N values in `0..<C`) and δ = ∂L/∂output.
    func callAsFunction(_ output: Tensor, labels: [Int32]) throws -> (loss: Float, gradient: Tensor)
}

/// How a loss reduces over its items, as PyTorch's `reduction=` argument.
public enum Reduction: Sendable {
    case mean
    case sum

    /// The factor the summed loss and its δ are multiplied by: 1 / `count` for `.mean` (1 when
    /// `count` is 0), 1 for `.sum`.
    func scale(count: Int) -> Float { self == .mean ? 1 / Float(max(count, 1)) : 1 }
}

/// The loop shared by the element-wise losses (`MeanSquaredError`, `BinaryCrossEntropyWithLogits`):
/// checks that `output` and `target` have one shape (else a shape error naming `loss`, calling the
/// output `outputName`), sizes `gradient` like them and, for every element, asks `term` for the
/// element's loss ℓ and its derivative ∂ℓ/∂y. Returns L = s·Σℓ (summed in Double) and
/// δ = s·∂ℓ/∂y, with s = `reduction.scale(count:)` of the element count.
@inline(__always)
func elementwiseLoss(_ loss: String, _ output: Tensor, _ target: Tensor, outputName: String,
                     gradient: Tensor, reduction: Reduction,
                     _ term: (_ y: Float, _ t: Float) -> (loss: Float, derivative: Float)) throws
    -> (loss: Float, gradient: Tensor) {
    guard output.shape == target.shape else {
        throw BackpropError.shapeMismatch(where: loss,
                                          detail: "\(outputName) \(output.shape) and target \(target.shape) differ")
    }
    gradient.resize(to: output.shape)
    let y = output.data, t = target.data, g = gradient.data
    let m = output.count
    let scale = reduction.scale(count: m)
    var total: Double = 0
    for i in 0..<m {
        let (l, d) = term(y[i], t[i])
        total += Double(l)
        g[i] = d * scale
    }
    return (Float(total) * scale, gradient)
}
