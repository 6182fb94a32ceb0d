/// A trainable parameter: its value and the gradient the last backward passes accumulated
/// into it (PyTorch's `param.data` and `param.grad`).
///
/// `zeroGrad()` behaves as PyTorch's `zero_grad(set_to_none=False)`: the gradient is a tensor of
/// zeros afterwards, never absent. Reading `grad` sees zeros, and an optimizer step with no
/// backward pass in between uses that zero gradient (momentum and weight decay still act, where
/// PyTorch's default `set_to_none=True` leaves `.grad` None and the optimizer skips the
/// parameter). It costs what `set_to_none=True` costs, though: nothing. It only marks the
/// gradient as zero, and the next backward pass writes it (β = 0 in its sgemm) instead of adding
/// to it; only a read of `grad` before that backward fills the buffer with zeros.
public final class Parameter {
    public let value: Tensor
    private let gradient: Tensor
    private var gradientIsZero = false

    public init(_ value: Tensor) {
        self.value = value
        self.gradient = Tensor(uncheckedShape: value.shape)
    }

    public var shape: [Int] { value.shape }

    /// This parameter as a leaf of the computational graph (`Variable`): it shares the value, and
    /// a graph's backward adds into this parameter's `grad`, as a layer's backward does.
    public private(set) lazy var variable = Variable(parameter: self)

    /// ∂L/∂value accumulated since the last `zeroGrad()`.
    public var grad: Tensor {
        if gradientIsZero {
            gradient.data.update(repeating: 0, count: gradient.count)
            gradientIsZero = false
        }
        return gradient
    }

    /// Sets the gradient to zero, lazily: `grad` reads as zeros and the next backward pass
    /// overwrites it instead of adding to it (see the type's description).
    public func zeroGrad() { gradientIsZero = true }

    /// For a layer's backward: the gradient buffer and the β to add into it with — 0 when the
    /// gradient is logically zero (the buffer's contents are then garbage and must be
    /// overwritten in full), 1 otherwise. The caller must write every element.
    public func gradientForAccumulation() -> (buffer: Tensor, beta: Float) {
        let beta: Float = gradientIsZero ? 0 : 1
        gradientIsZero = false
        return (gradient, beta)
    }

    /// `gradientForAccumulation` for a batch-sliced backward (`SliceGradients`): the gradient stays
    /// logically zero until `gradientWritten()` once every slice has written it, so a backward
    /// refused before its slices ran (another layer of the stretch threw) leaves it as it was.
    func gradientForSlicedAccumulation() -> (buffer: Tensor, beta: Float) { (gradient, gradientIsZero ? 0 : 1) }

    /// Ends a `gradientForSlicedAccumulation`: the buffer now holds the gradient.
    func gradientWritten() { gradientIsZero = false }
}
