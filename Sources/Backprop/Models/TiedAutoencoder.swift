/// An autoencoder whose decoder weight is the encoder weight transposed (tied weights): one
/// parameter W used twice in one graph, so its gradient is the sum of both uses' gradients, as
/// the graph's backward accumulates it. For MNIST, 784 → `hidden` → 784
/// (`swift run -c release autoencoder-example`).
///
///     h = relu(x·Wᵀ + b₁)            [N, H]    encoder, W [H, F]
///     x̂ = sigmoid(h·W + b₂)          [N, F]    decoder, the same W
///     ∂L/∂W = (∂L/∂W)_encoder + (∂L/∂W)_decoder
///
/// W starts Xavier-uniform from `seed`, the biases at 0.
public final class TiedAutoencoder {
    public let features: Int
    public let hidden: Int
    /// W `[hidden, features]`, shared by the encoder and the decoder.
    public let weight: Parameter
    public let encoderBias: Parameter
    public let decoderBias: Parameter

    public init(features: Int, hidden: Int, seed: UInt64 = 0) throws {
        guard features > 0, hidden > 0 else {
            throw BackpropError.invalidArgument("TiedAutoencoder(features: \(features), hidden: \(hidden)): sizes must be positive")
        }
        self.features = features
        self.hidden = hidden
        var rng = SeededGenerator(seed: seed)
        weight = Parameter(try Tensor(zeros: [hidden, features]))
        try Initializer.xavierUniform().fill(weight.value, using: &rng)
        encoderBias = Parameter(try Tensor(zeros: [hidden]))
        decoderBias = Parameter(try Tensor(zeros: [features]))
    }

    public var summary: String { "TiedAutoencoder(features: \(features), hidden: \(hidden))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight), ("encoder_bias", encoderBias), ("decoder_bias", decoderBias)]
    }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// h = relu(x·Wᵀ + b₁) for `x` `[N, features]`; `weight` replaces W (default: the tied parameter).
    public func encode(_ x: Variable, weight w: Variable? = nil) throws -> Variable {
        guard x.value.rank == 2, x.shape[1] == features else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, \(features)], got \(x.shape)")
        }
        return relu(try matmul(x, try transpose(w ?? weight.variable)) + encoderBias.variable)
    }

    /// x̂ = sigmoid(h·W + b₂) for `h` `[N, hidden]`; `weight` replaces W (default: the tied parameter).
    public func decode(_ h: Variable, weight w: Variable? = nil) throws -> Variable {
        guard h.value.rank == 2, h.shape[1] == hidden else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected codes [N, \(hidden)], got \(h.shape)")
        }
        return sigmoid(try matmul(h, w ?? weight.variable) + decoderBias.variable)
    }

    /// The reconstruction of `x` `[N, features]`, with W in both places (tied).
    public func callAsFunction(_ x: Variable) throws -> Variable { try decode(try encode(x)) }
}
