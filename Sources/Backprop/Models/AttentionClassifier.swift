/// A one-head self-attention classifier over a sequence of feature vectors, written with graph
/// ops (batched `matmul`, `transpose(_:_:_:)`, `softmax` over the last axis, `LayerNorm` on
/// `[N, T, D]`): a model the layer API cannot express, differentiated by the graph. For MNIST the
/// 28 rows of an image are the tokens, 28 pixels each (`swift run -c release attention-example`).
///
///     h = x·W_eᵀ + b_e + P                           [N, T, D]   token embedding + learned positions
///     Q, K, V = h·W_qᵀ + b_q, h·W_kᵀ + b_k, h·W_vᵀ + b_v
///     A = softmax(Q·Kᵀ / √D)                         [N, T, T]   row t: how token t reads the others
///     h = LayerNorm(h + (A·V)·W_oᵀ + b_o)                         residual, then normalisation
///     h = LayerNorm(h + relu(h·W_1ᵀ + b_1)·W_2ᵀ + b_2)            the MLP block (when hidden > 0)
///     logits = mean_t(h)·W_cᵀ + b_c                  [N, classes]
///
/// Parameters are created from `seed` (Dense: PyTorch's default; positions N(0, 0.1²)); their
/// names follow PyTorch's `state_dict` spelling (`query.weight`, `norm1.bias`, …).
public final class AttentionClassifier {
    public let tokens: Int
    public let features: Int
    public let width: Int
    public let hidden: Int
    public let classes: Int

    public let embed: Dense
    public let position: Parameter
    public let query: Dense
    public let key: Dense
    public let value: Dense
    public let projection: Dense
    public let norm1: LayerNorm
    public let mlpIn: Dense?
    public let mlpOut: Dense?
    public let norm2: LayerNorm?
    public let head: Dense

    /// - Parameters: `tokens` T and `features` F per token (MNIST rows: 28, 28), `width` D of the
    ///   attention, `hidden` units of the MLP block (0: no MLP block), `classes` outputs.
    public init(tokens: Int, features: Int, width: Int, hidden: Int, classes: Int, seed: UInt64 = 0) throws {
        guard tokens > 0, features > 0, width > 0, hidden >= 0, classes > 0 else {
            throw BackpropError.invalidArgument(
                "AttentionClassifier(tokens: \(tokens), features: \(features), width: \(width), hidden: \(hidden), classes: \(classes)): "
                    + "sizes must be positive (hidden may be 0)")
        }
        self.tokens = tokens
        self.features = features
        self.width = width
        self.hidden = hidden
        self.classes = classes
        var rng = SeededGenerator(seed: seed)
        embed = try Dense(features, width, rng: &rng)
        position = Parameter(try Tensor(zeros: [tokens, width]))
        position.value.fillNormal(std: 0.1, using: &rng)
        query = try Dense(width, width, rng: &rng)
        key = try Dense(width, width, rng: &rng)
        value = try Dense(width, width, rng: &rng)
        projection = try Dense(width, width, rng: &rng)
        norm1 = try LayerNorm(width)
        if hidden > 0 {
            mlpIn = try Dense(width, hidden, rng: &rng)
            mlpOut = try Dense(hidden, width, rng: &rng)
            norm2 = try LayerNorm(width)
        } else {
            mlpIn = nil; mlpOut = nil; norm2 = nil
        }
        head = try Dense(width, classes, rng: &rng)
    }

    public var summary: String {
        "AttentionClassifier(tokens: \(tokens), features: \(features), width: \(width), hidden: \(hidden), classes: \(classes))"
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list: [(name: String, parameter: Parameter)] = [("position", position)]
        var parts: [(String, Layer)] = [("embed", embed), ("query", query), ("key", key), ("value", value),
                                        ("projection", projection), ("norm1", norm1)]
        if let mlpIn, let mlpOut, let norm2 { parts += [("mlp.0", mlpIn), ("mlp.2", mlpOut), ("norm2", norm2)] }
        parts.append(("head", head))
        for (prefix, layer) in parts {
            for (name, p) in layer.namedParameters { list.append(("\(prefix).\(name)", p)) }
        }
        return list
    }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// One head of scaled dot-product self-attention on `h` `[N, T, D]`: the block's output
    /// (before the residual) `[N, T, D]` and the attention weights A `[N, T, T]`.
    public func attention(_ h: Variable) throws -> (output: Variable, weights: Variable) {
        guard h.value.rank == 3, h.shape[2] == width else {
            throw BackpropError.shapeMismatch(where: summary, detail: "attention expects [N, T, \(width)], got \(h.shape)")
        }
        let q = try query.applyingToLastDimension(h)
        let k = try key.applyingToLastDimension(h)
        let v = try value.applyingToLastDimension(h)
        let scores = try matmul(q, try transpose(k, 1, 2)) * (1 / Float(width).squareRoot())   // [N, T, T]
        let weights = try softmax(scores, axis: -1)
        let mixed = try matmul(weights, v)                                                     // [N, T, D]
        return (try projection.applyingToLastDimension(mixed), weights)
    }

    /// The logits `[N, classes]` for `x` `[N, T, F]`, and the attention weights `[N, T, T]`.
    public func forward(_ x: Variable) throws -> (logits: Variable, attention: Variable) {
        guard x.value.rank == 3, x.shape[1] == tokens, x.shape[2] == features else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, \(tokens), \(features)], got \(x.shape)")
        }
        var h = try embed.applyingToLastDimension(x) + position.variable             // [N, T, D] + [T, D]
        let (mixed, weights) = try attention(h)
        h = try norm1(try h + mixed)
        if let mlpIn, let mlpOut, let norm2 {
            let inner = relu(try mlpIn.applyingToLastDimension(h))
            h = try norm2(try h + (try mlpOut.applyingToLastDimension(inner)))
        }
        let pooled = try mean(h, axis: 1)                                              // [N, D]
        return (try head(pooled), weights)
    }

    /// The logits `[N, classes]` for `x` `[N, T, F]`.
    public func callAsFunction(_ x: Variable) throws -> Variable { try forward(x).logits }
}
