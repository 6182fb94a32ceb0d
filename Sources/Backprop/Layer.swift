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
}

/// One stage of a network. Forward and backward of a layer live side by side in its file.
///
/// - `forward` caches what `backward` needs and returns the layer's own output buffer, which
///   the next `forward` call overwrites (copy it to keep it).
/// - `backward` receives δ of the output (∂L/∂y, same shape as the last output), accumulates
///   ∂L/∂θ into every parameter's `grad` (as PyTorch does: zero them between steps), and
///   returns δ of the input.
public protocol Layer: AnyObject {
    /// A one-line description, e.g. `Dense(784 → 256)`.
    var summary: String { get }
    /// Parameters with names relative to this layer (`weight`, `bias`, `0.weight`, …).
    var namedParameters: [(name: String, parameter: Parameter)] { get }
    /// State that is saved with the model but not trained (BatchNorm's running statistics),
    /// named like PyTorch's `state_dict` buffers. Most layers have none.
    var namedBuffers: [(name: String, tensor: Tensor)] { get }
    /// Training mode (dropout active, batch statistics) or evaluation mode.
    var isTraining: Bool { get set }
    /// Whether `backward` must compute δ of the input. The first layer of a network trained on
    /// data has no use for it (PyTorch skips it too: the input does not require grad); setting
    /// this to false there saves a whole product per step. When false, `backward` still
    /// accumulates parameter gradients but returns an empty tensor. Layers that cannot skip
    /// the work ignore it.
    var needsInputGradient: Bool { get set }
    /// Lets layers that split a batch over cores (`Conv2D`, recurrent layers; see `BatchSlices`)
    /// use `count` slices; containers pass it to their layers, other layers ignore it.
    func useThreads(_ count: Int)
    func forward(_ input: Tensor) throws -> Tensor
    func backward(_ outputGradient: Tensor) throws -> Tensor
}

extension Layer {
    public var namedBuffers: [(name: String, tensor: Tensor)] { [] }

    public var needsInputGradient: Bool {
        get { true }
        set {}
    }

    public func useThreads(_ count: Int) {}

    /// Parameters and buffers together: what a model file holds (PyTorch's `state_dict()`).
    public var stateDict: [(name: String, tensor: Tensor)] {
        namedParameters.map { (name: $0.name, tensor: $0.parameter.value) } + namedBuffers
    }

    /// `layer(x)` is `layer.forward(x)`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try forward(input) }

    /// All parameters, in `namedParameters` order.
    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// PyTorch's `model.train()`.
    public func train() { isTraining = true }
    /// PyTorch's `model.eval()`.
    public func eval() { isTraining = false }

    /// Zeroes every parameter's gradient (`Parameter.zeroGrad()`: PyTorch's
    /// `zero_grad(set_to_none=False)`, at no cost).
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// Looks a parameter up by its `state_dict` name.
    public func parameter(named name: String) -> Parameter? {
        namedParameters.first { $0.name == name }?.parameter
    }
}

/// Checks that a layer's input has `features` values per sample; throws a shape error naming
/// the layer otherwise.
@inline(__always)
func requireFeatures(_ input: Tensor, _ features: Int, layer: @autoclosure () -> String) throws {
    guard input.rank >= 2, input.columnsPerRow == features else {
        throw BackpropError.shapeMismatch(
            where: layer(),
            detail: "expected input [N, \(features)], got \(input.shape)")
    }
}

/// Checks that δ arriving at `backward` has the shape of the last output.
@inline(__always)
func requireSameShape(_ gradient: Tensor, _ output: Tensor, layer: @autoclosure () -> String) throws {
    guard gradient.shape == output.shape else {
        throw BackpropError.shapeMismatch(
            where: layer(),
            detail: "backward got δ of shape \(gradient.shape) but the last forward produced \(output.shape)")
    }
}
