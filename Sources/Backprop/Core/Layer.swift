/// One stage of a network. Forward and backward of a layer live side by side in its file.
///
/// - `forward` caches what `backward` needs and returns the layer's own output buffer, which
///   the next `forward` call overwrites (copy it to keep it).
/// - `backward` receives δ of the output (∂L/∂y, same shape as the last output), accumulates
///   ∂L/∂θ into every parameter's `grad` (as PyTorch does: zero them between steps), and
///   returns δ of the input.
///
/// The contract of an instance (each broken case is a `BackpropError`, never a wrong answer or
/// a write outside a buffer):
/// - `backward` pairs with the most recent `forward` of the same instance: a second forward in
///   between (a validation batch) replaces the first, and a δ that does not fit it is a shape error.
/// - One `backward` per `forward` (`.invalidUse` for a second one, or for one before any forward).
/// - The tensors a forward saved (its input; its output, which it returned) must be left as they
///   were until backward: resizing or refilling them through `Tensor`'s methods is `.invalidUse`.
///   Writes through `data` are not tracked (`Tensor.markChanged()` declares them). A parameter
///   changed in between (an optimizer step, a refilled value) is refused the same way.
/// - An instance sits at one place of one model: containers refuse it twice (`.invalidUse`).
///
/// Concurrency: layers (and `Tensor`, `Parameter`) are classes holding one forward pass's caches
/// and reused buffers, so they are not `Sendable`, and no lock could make two concurrent
/// forwards of one instance meaningful. A model belongs to one task at a time. Swift 6 lets a
/// model move into a task when nothing else can reach it: build it in a function (not at the
/// top level of `main.swift`, whose globals stay on the main actor) and do not touch it after
/// `Task.detached { try model.predict(x) }`; or build it inside the task from an `Architecture`
/// or a state dict file. What crosses tasks freely is `Sendable`: `Architecture`, `Dataset`,
/// `TensorDataset`, `[Float]` values, `BackpropError`.
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
    @discardableResult
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
