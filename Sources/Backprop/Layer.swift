/// A trainable parameter: its value and the gradient the last backward passes accumulated
/// into it (PyTorch's `param.data` and `param.grad`).
///
/// `zeroGrad()` costs nothing: like PyTorch's `zero_grad(set_to_none=True)` it only marks the
/// gradient as zero, and the next backward pass writes it (β = 0 in its sgemm) instead of adding
/// to it. Reading `grad` in between sees zeros.
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

    /// Sets the gradient to zero (lazily).
    public func zeroGrad() { gradientIsZero = true }

    /// For a layer's backward: the gradient buffer and the β to add into it with — 0 when the
    /// gradient is logically zero (the buffer's contents are then garbage and must be
    /// overwritten in full), 1 otherwise. The caller must write every element.
    public func gradientForAccumulation() -> (buffer: Tensor, beta: Float) {
        let beta: Float = gradientIsZero ? 0 : 1
        gradientIsZero = false
        return (gradient, beta)
    }

    /// `gradientForAccumulation` for a batch-sliced backward: the gradient stays logically zero
    /// until `endBackward` calls `gradientWritten()` once every slice has written it, so a backward
    /// refused before its slices ran (another layer of the stretch threw) leaves it as it was.
    func gradientForSlicedAccumulation() -> (buffer: Tensor, beta: Float) { (gradient, gradientIsZero ? 0 : 1) }

    func gradientWritten() { gradientIsZero = false }
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

    /// Zeroes every parameter's gradient.
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

/// Checks that δ arriving at `backward` is `[rows, columns]` (the shape the paired forward produced).
@inline(__always)
func requireMatrixShape(_ gradient: Tensor, rows: Int, columns: Int, layer: @autoclosure () -> String) throws {
    guard gradient.rank == 2, gradient.shape[0] == rows, gradient.shape[1] == columns else {
        throw BackpropError.shapeMismatch(
            where: layer(),
            detail: "backward got δ of shape \(gradient.shape) but the last forward produced [\(rows), \(columns)]")
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

/// What a layer's backward knows of the forward it pairs with: the tensor that forward saved for
/// it (its input, or its own output), the state of that tensor's storage then, and whether a
/// backward has already used it. `save` at forward, `take` at backward.
///
/// `take` refuses, with `BackpropError.invalidUse` naming the layer:
/// - a backward with no forward before it;
/// - a second backward for one forward (PyTorch: "Trying to backward through the graph a second
///   time"): its gradients would be added twice;
/// - a saved tensor resized, refilled or overwritten since (PyTorch: "one of the variables needed
///   for gradient computation has been modified by an inplace operation"): its gradients would
///   be those of other values, and a smaller tensor would be read and written out of bounds.
///   This is also what a layer instance placed twice in one model runs into: its second forward
///   overwrites the output the layer after its first place saved.
///
/// Two comparisons and a flag: nothing measurable next to a layer's products.
struct ForwardRecord {
    private(set) var tensor: Tensor?
    private var storage: TensorStorage?
    private var version = 0
    private var count = 0
    private var used = false

    /// Notes `t` as it is now. Call it after the forward has written everything it writes into
    /// `t` through a resize (the write that counts as a change).
    mutating func save(_ t: Tensor) {
        tensor = t
        storage = t.storage
        version = t.storage.version
        count = t.count
        used = false
    }

    /// The saved tensor, checked to be as forward left it and not yet used by a backward.
    /// With `markUsed` (the default) a second `take` fails until the next `save`.
    mutating func take(_ layer: @autoclosure () -> String, markUsed: Bool = true) throws -> Tensor {
        let t = try peek(layer())
        if markUsed { used = true }
        return t
    }

    /// `take` for an element-wise layer, whose δ has the saved tensor's shape: checks δ first, so
    /// a wrong δ leaves the record usable for a corrected call.
    mutating func take(matching gradient: Tensor, _ layer: @autoclosure () -> String) throws -> Tensor {
        try requireSameShape(gradient, try peek(layer()), layer: layer())
        return try take(layer())
    }

    /// As `take`, without marking the record used (for a second saved tensor of the same pass).
    func peek(_ layer: @autoclosure () -> String) throws -> Tensor {
        guard let t = tensor, let storage else {
            throw BackpropError.invalidUse(where: layer(), detail: "backward called before forward")
        }
        guard !used else {
            throw BackpropError.invalidUse(
                where: layer(),
                detail: "backward called twice for one forward pass (its gradients would be added twice); run forward again first")
        }
        guard t.storage === storage, storage.version == version, t.count == count else {
            throw BackpropError.invalidUse(
                where: layer(),
                detail: "a tensor this layer's forward saved for backward was resized or overwritten before backward "
                    + "(the input changed, another forward of the same instance ran, or the instance sits at two places of one model)")
        }
        return t
    }

    /// Forgets the saved tensor (the next backward is "before forward").
    mutating func clear() { tensor = nil; storage = nil; used = false }
}

/// Containers (`Sequential`, `Residual`, `SequenceClassifier`) list their direct sublayers here so
/// that a model can be checked for one instance at two places.
public protocol LayerContainer: Layer {
    var sublayers: [Layer] { get }
}

/// The first layer instance found at two places of the tree under `layers`, with both paths
/// (`"1"`, `"3"`, `"2.block.0"`), or nil. A layer keeps the caches of one forward pass, so one
/// instance at two places would compute the second place's backward from the first's values.
func firstRepeatedInstance(in layers: [Layer]) -> (layer: Layer, first: String, second: String)? {
    var seen: [ObjectIdentifier: String] = [:]
    func walk(_ layer: Layer, _ path: String) -> (layer: Layer, first: String, second: String)? {
        let id = ObjectIdentifier(layer)
        if let first = seen[id] { return (layer, first, path) }
        seen[id] = path
        if let container = layer as? LayerContainer {
            for (i, sub) in container.sublayers.enumerated() {
                if let found = walk(sub, path.isEmpty ? "\(i)" : "\(path).\(i)") { return found }
            }
        }
        return nil
    }
    for (i, layer) in layers.enumerated() {
        if let found = walk(layer, "\(i)") { return found }
    }
    return nil
}

/// The error for one instance at two places of a container.
func repeatedInstanceError(_ container: String, _ found: (layer: Layer, first: String, second: String)) -> BackpropError {
    .invalidUse(
        where: container,
        detail: "one \(found.layer.summary) instance is at positions \(found.first) and \(found.second); a layer instance keeps "
            + "the values of one forward pass for its backward, so it can sit at one place only: build one instance per place "
            + "(copy weights with `assign` to start them equal)")
}
