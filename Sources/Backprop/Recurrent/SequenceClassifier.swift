/// Recurrent layers → the last step's hidden state → `Linear(H, C)`: the sequence classifier a
/// PyTorch user writes as
///
///     class Seq(nn.Module):
///         def __init__(s, F, H, L, C):
///             super().__init__()
///             s.rnn = nn.LSTM(F, H, num_layers=L, batch_first=True)   # or nn.RNN / nn.GRU
///             s.fc = nn.Linear(H, C)
///         def forward(s, x): return s.fc(s.rnn(x)[0][:, -1])
///
/// Parameter names match that module's `state_dict`: `rnn.weight_ih_l0`, `rnn.weight_hh_l0`,
/// `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, …, `fc.weight`, `fc.bias`.
/// Input `[N, T, F]`, output logits `[N, C]`.
public final class SequenceClassifier: LayerContainer {
    /// The recurrent layers' cell (with an RNN's nonlinearity).
    public let kind: RecurrentKind
    public let rnn: RecurrentLayer
    public let fc: Dense

    /// Parameters are initialised as PyTorch does (recurrent U(−1/√H, 1/√H), Linear's default)
    /// from one generator seeded with `seed` (or the default generator's next seed), recurrent
    /// layers first. `nonlinearity`, when given, replaces an RNN kind's own (see `RecurrentLayer.make`).
    public init(kind: RecurrentKind, inputSize: Int, hiddenSize: Int, numLayers: Int = 1, classes: Int,
                nonlinearity: RecurrentNonlinearity? = nil, truncation: Int? = nil, seed: UInt64? = nil) throws {
        guard classes > 0 else {
            throw BackpropError.invalidArgument("SequenceClassifier(\(kind), hiddenSize: \(hiddenSize), classes: \(classes)): classes must be positive")
        }
        var rng = SeededGenerator(seedOrDefault: seed)
        rnn = try RecurrentLayer.make(kind, inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers,
                                      nonlinearity: nonlinearity, returnSequences: false,
                                      truncation: truncation, rng: &rng)
        self.kind = rnn.cell
        fc = try Dense(hiddenSize, classes, rng: &rng)
    }

    public var sublayers: [Layer] { [rnn, fc] }

    public var summary: String { "SequenceClassifier(\(rnn.summary), \(fc.summary))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        rnn.namedParameters.map { (name: "rnn.\($0.name)", parameter: $0.parameter) }
            + fc.namedParameters.map { (name: "fc.\($0.name)", parameter: $0.parameter) }
    }

    /// Passed on to the recurrent layer (the first layer).
    public func useThreads(_ count: Int) { rnn.useThreads(count) }

    public var needsInputGradient: Bool {
        get { rnn.needsInputGradient }
        set { rnn.needsInputGradient = newValue }
    }

    public var isTraining: Bool {
        get { rnn.isTraining }
        set { rnn.isTraining = newValue; fc.isTraining = newValue }
    }

    /// Mean over the batch of ‖∂L/∂h_t‖ of the last recurrent layer, t = 1…T, from the last backward.
    public var hiddenGradientNorms: [Float] { rnn.hiddenGradientNorms }

    /// fc's output: backward checks that fc ran no other forward since (an instance shared with another model).
    private var saved = ForwardRecord()

    public func forward(_ x: Tensor) throws -> Tensor {
        let y = try fc.forward(try rnn.forward(x))
        saved.save(y)
        return y
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        _ = try saved.peek(summary)
        return try rnn.backward(try fc.backward(dy))
    }
}
