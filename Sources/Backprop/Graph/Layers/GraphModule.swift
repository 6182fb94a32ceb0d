/// A layer written with graph ops: subclass, override `callAsFunction(_: Variable)` (and
/// `namedParameters` for parameters, using their `Parameter.variable` in the ops), and the layer API
/// (`forward(Tensor)`, `backward(Tensor)`) comes from automatic differentiation: no backward to
/// write by hand. `SiLU` and `LayerNorm` are built this way.
///
/// As a `Layer`, `forward` runs the graph on its input and keeps the result for
/// `backward` (one backward per forward, as every layer), which returns ∂L/∂x and adds the
/// parameters' gradients into their `grad`.
open class GraphModule: GraphLayer {
    public var isTraining = true
    public var needsInputGradient = true
    private var input: Variable?
    private var result: Variable?

    public init() {}

    /// The layer's forward on the graph. Subclasses override it.
    open func callAsFunction(_ x: Variable) throws -> Variable {
        throw BackpropError.invalidUse(where: summary, detail: "GraphModule subclasses override callAsFunction(_: Variable)")
    }

    open var summary: String { String(describing: type(of: self)) }
    open var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        result = nil
        let v = Variable(x, requiresGrad: needsInputGradient)   // shared: the nodes check it is left unchanged
        let y = try self(v)
        input = v
        result = y
        return y.value
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input, let result else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward, or twice for one forward pass")
        }
        try requireSameShape(dy, result.value, layer: summary)
        self.result = nil
        try result.backward(gradient: dy)
        return needsInputGradient ? (input.grad ?? Tensor(uncheckedShape: input.shape)) : Tensor(uncheckedShape: [0])
    }
}

/// SiLU (swish), PyTorch's `nn.SiLU`: y = x · σ(x), differentiated by the graph.
public final class SiLU: GraphModule {
    public override var summary: String { "SiLU" }
    public override func callAsFunction(_ x: Variable) throws -> Variable { try x * sigmoid(x) }
}

/// Layer normalisation over the last dimension, PyTorch's `nn.LayerNorm(features)` on `[…, F]`
/// (`[N, F]`, a sequence batch `[N, T, F]`, any rank): y = (x − mean) / √(var + eps) · γ + β,
/// mean and (biased) variance over the last dimension; γ = 1, β = 0 at the start. Parameters `weight` (γ) and `bias` (β), as PyTorch names them. Differentiated by the
/// graph.
public final class LayerNorm: GraphModule {
    public let features: Int
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(_ features: Int, eps: Float = 1e-5) throws {
        guard features > 0 else { throw BackpropError.invalidArgument("LayerNorm(\(features)): features must be positive") }
        guard eps > 0, eps.isFinite else { throw BackpropError.invalidArgument("LayerNorm: eps must be positive, got \(eps)") }
        self.features = features
        self.eps = eps
        weight = Parameter(try Tensor(zeros: [features]))
        weight.value.fill(1)
        bias = Parameter(try Tensor(zeros: [features]))
        super.init()
    }

    public override var summary: String { "LayerNorm(\(features))" }
    public override var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }

    public override func callAsFunction(_ x: Variable) throws -> Variable {
        guard x.value.rank >= 1, x.shape.last == features else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input […, \(features)], got \(x.shape)")
        }
        let centred = try x - (try mean(x, axis: -1, keepDim: true))                   // […, F] − […, 1]
        let variance = try mean(try centred * centred, axis: -1, keepDim: true)         // […, 1]
        let inverseStd = exp(log(variance + eps) * -0.5)                               // 1/√(var + eps)
        return try (try centred * inverseStd) * weight.variable + bias.variable         // row-broadcast γ, β
    }
}

/// Reshapes every sample, keeping the batch dimension: `[N, …] → [N] + shape` (one entry may be
/// −1), as `x.view(N, *shape)` in PyTorch. The element count per sample must stay.
public final class Reshape: GraphModule {
    public let shape: [Int]
    public init(_ shape: [Int]) throws {
        guard !shape.isEmpty, shape.filter({ $0 == -1 }).count <= 1, shape.allSatisfy({ $0 > 0 || $0 == -1 }) else {
            throw BackpropError.invalidArgument("Reshape(\(shape)): sizes must be positive, with at most one −1")
        }
        self.shape = shape
        super.init()
    }
    public override var summary: String { "Reshape(\(shape))" }
    public override func callAsFunction(_ x: Variable) throws -> Variable {
        guard x.value.rank >= 1 else { throw BackpropError.shapeMismatch(where: summary, detail: "expected [N, …], got \(x.shape)") }
        return try reshape(x, [x.shape[0]] + shape)
    }
}

/// PyTorch's `nn.Unflatten(1, sizes)`: `[N, F] → [N] + sizes` with F = the product of `sizes`.
public final class Unflatten: GraphModule {
    public let sizes: [Int]
    public init(_ sizes: [Int]) throws {
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else {
            throw BackpropError.invalidArgument("Unflatten(\(sizes)): sizes must be positive")
        }
        self.sizes = sizes
        super.init()
    }
    public override var summary: String { "Unflatten(1, \(sizes))" }
    public override func callAsFunction(_ x: Variable) throws -> Variable {
        guard x.value.rank == 2, x.shape[1] == sizes.reduce(1, *) else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected [N, \(sizes.reduce(1, *))], got \(x.shape)")
        }
        return try reshape(x, [x.shape[0]] + sizes)
    }
}
