import Foundation

/// The description of a built-in model: which network (an MLP, the LeNet, an RNN/LSTM/GRU
/// classifier) with which sizes. It is what a model file's metadata names — stored as JSON in
/// `__metadata__["backprop.architecture"]` (`json`, `init(json:source:)`, used by `ModelFile`),
/// so the file alone rebuilds its model — and what the CLI builds from `--arch NAME` and its
/// size flags. `build(seed:)` makes the layers; the LeNet's come from `Architectures.leNet`
/// (Models/LeNet.swift).
public enum Architecture: Equatable, Sendable {
    /// `nn.Sequential(Linear(s0,s1), act, Linear(s1,s2), act, …, Linear(sk-1, sk))`, input `[N, s0]`.
    case mlp(sizes: [Int], activation: ActivationKind)
    /// `Architectures.leNet`: two 5×5 convolutions with max-pooling, then two dense layers;
    /// input `[N, 1, 28, 28]`.
    case lenet(classes: Int)
    /// `SequenceClassifier`: RNN/LSTM/GRU over `steps` steps of `inputSize` features, the last
    /// hidden state, then Linear(hidden, classes); input `[N, steps, inputSize]`.
    case recurrent(kind: RecurrentKind, steps: Int, inputSize: Int, hidden: Int, layers: Int, classes: Int)

    /// The architecture names the CLI accepts for `--arch`.
    public static let names = ["mlp", "lenet", "rnn", "lstm", "gru"]

    public var name: String {
        switch self {
        case .mlp: return "mlp"
        case .lenet: return "lenet"
        case let .recurrent(kind, _, _, _, _, _): return Architecture.name(of: kind)
        }
    }

    static func name(of kind: RecurrentKind) -> String {
        switch kind {
        case .rnn: return "rnn"
        case .lstm: return "lstm"
        case .gru: return "gru"
        }
    }

    static func kind(named name: String) -> RecurrentKind? {
        switch name {
        case "rnn": return .rnn
        case "lstm": return .lstm
        case "gru": return .gru
        default: return nil
        }
    }

    /// Input values per sample (784 for MNIST in every case).
    public var inputFeatures: Int {
        switch self {
        case let .mlp(sizes, _): return sizes.first ?? 0
        case .lenet: return 28 * 28
        case let .recurrent(_, steps, inputSize, _, _, _): return steps * inputSize
        }
    }

    /// The shape one batch of `n` samples takes at the model's input.
    public func inputShape(batch n: Int) -> [Int] {
        switch self {
        case let .mlp(sizes, _): return [n, sizes.first ?? 0]
        case .lenet: return [n, 1, 28, 28]
        case let .recurrent(_, steps, inputSize, _, _, _): return [n, steps, inputSize]
        }
    }

    public var outputs: Int {
        switch self {
        case let .mlp(sizes, _): return sizes.last ?? 0
        case let .lenet(classes): return classes
        case let .recurrent(_, _, _, _, _, classes): return classes
        }
    }

    /// Checks the description before anything is built.
    public func validate() throws {
        func positive(_ values: [Int], _ what: String) throws {
            guard values.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else {
                throw BackpropError.invalidArgument("\(name): \(what) must be between 1 and 2^20, got \(values)")
            }
        }
        switch self {
        case let .mlp(sizes, _):
            guard sizes.count >= 2 else {
                throw BackpropError.invalidArgument("an MLP needs at least an input and an output size, got \(sizes)")
            }
            try positive(sizes, "layer sizes")
        case let .lenet(classes):
            try positive([classes], "classes")
        case let .recurrent(_, steps, inputSize, hidden, layers, classes):
            try positive([steps, inputSize, hidden, classes], "steps, input size, hidden size and classes")
            guard layers >= 1, layers <= 64 else {
                throw BackpropError.invalidArgument("\(name): number of layers must be in 1…64, got \(layers)")
            }
        }
        guard let n = parameterCount, n <= Architecture.maxParameters else {
            throw BackpropError.invalidArgument("\(json) has more than \(Architecture.maxParameters) parameters")
        }
    }

    /// Largest model built (2^30 Float32 parameters, 4 GiB): refused before allocating.
    public static let maxParameters = 1 << 30

    /// Number of Float32 parameters the model holds, or nil when the count overflows Int.
    public var parameterCount: Int? {
        var total = 0, overflow = false
        /// Adds `outputs × (inputs + extra)` parameters (a weight matrix and `extra` bias-like columns).
        func add(_ outputs: Int, _ inputs: Int, _ extra: Int = 0) {
            let (k, o0) = inputs.addingReportingOverflow(extra)
            let (w, o1) = outputs.multipliedReportingOverflow(by: k)
            let (t, o2) = total.addingReportingOverflow(w)
            overflow = overflow || o0 || o1 || o2 || outputs < 0 || inputs < 0
            total = t
        }
        switch self {
        case let .mlp(sizes, _):
            for (a, b) in zip(sizes, sizes.dropFirst()) { add(b, a, 1) }
        case let .lenet(classes):
            add(16, 1 * 25, 1); add(32, 16 * 25, 1); add(128, 32 * 7 * 7, 1); add(classes, 128, 1)
        case let .recurrent(kind, _, inputSize, hidden, layers, classes):
            let gates = kind.gateCount
            for l in 0..<max(layers, 0) {   // W_ih, W_hh, b_ih, b_hh
                let gh = gates.multipliedReportingOverflow(by: hidden)
                overflow = overflow || gh.overflow
                add(gh.partialValue, l == 0 ? inputSize : hidden, hidden)
                add(gh.partialValue, 2)
            }
            add(classes, hidden, 1)
        }
        return overflow ? nil : total
    }

    /// Builds the model with PyTorch's default initialisation from `seed`.
    public func build(seed: UInt64) throws -> Layer {
        try validate()
        switch self {
        case let .mlp(sizes, activation):
            var rng = SeededGenerator(seed: seed)
            var layers: [Layer] = []
            for i in 0..<(sizes.count - 1) {
                layers.append(try Dense(sizes[i], sizes[i + 1], rng: &rng))
                if i < sizes.count - 2 { layers.append(activation.makeLayer()) }
            }
            return Sequential(layers)
        case let .lenet(classes):
            return try Architectures.leNet(classes: classes, seed: seed)
        case let .recurrent(kind, _, inputSize, hidden, layers, classes):
            return try SequenceClassifier(kind: kind, inputSize: inputSize, hiddenSize: hidden, numLayers: layers,
                                          classes: classes, seed: seed)
        }
    }

    // MARK: - Stored form

    /// The JSON stored under `__metadata__["backprop.architecture"]`.
    public var json: String {
        var object: [String: Any] = ["arch": name]
        switch self {
        case let .mlp(sizes, activation):
            object["layers"] = sizes
            object["activation"] = activation.rawValue
        case let .lenet(classes):
            object["classes"] = classes
        case let .recurrent(_, steps, inputSize, hidden, layers, classes):
            object["steps"] = steps
            object["input_size"] = inputSize
            object["hidden"] = hidden
            object["num_layers"] = layers
            object["classes"] = classes
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
              let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }

    /// Parses the stored form; `source` names the file for error messages.
    public init(json: String, source: String) throws {
        func bad(_ reason: String) -> BackpropError {
            .badFile(path: source, offset: nil, reason: "architecture metadata: \(reason): \(json.prefix(200))")
        }
        guard let data = json.data(using: .utf8),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let arch = object["arch"] as? String else {
            throw bad("not a JSON object with an \"arch\" field")
        }
        func int(_ key: String) throws -> Int {
            guard let n = object[key] as? Int, abs(n) < 1 << 30 else { throw bad("\"\(key)\" must be an integer") }
            return n
        }
        switch arch {
        case "mlp":
            guard let raw = object["layers"] as? [Int], raw.allSatisfy({ abs($0) < 1 << 30 }),
                  let act = (object["activation"] as? String).flatMap(ActivationKind.init(rawValue:)) else {
                throw bad("mlp needs integer \"layers\" and a known \"activation\"")
            }
            self = .mlp(sizes: raw, activation: act)
        case "lenet":
            self = .lenet(classes: try int("classes"))
        default:
            guard let kind = Architecture.kind(named: arch) else { throw bad("unknown architecture \"\(arch)\"") }
            self = .recurrent(kind: kind, steps: try int("steps"), inputSize: try int("input_size"),
                              hidden: try int("hidden"), layers: try int("num_layers"), classes: try int("classes"))
        }
        do { try validate() } catch { throw bad("\(error)") }
    }

    /// Parses `--layers 784,256,128,10`.
    public static func parseSizes(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        var sizes: [Int] = []
        for p in parts {
            guard let v = Int(p.trimmingCharacters(in: .whitespaces)), v > 0 else {
                throw BackpropError.invalidArgument("--layers wants positive integers separated by commas (e.g. 784,256,128,10), got \"\(text)\"")
            }
            sizes.append(v)
        }
        guard sizes.count >= 2 else {
            throw BackpropError.invalidArgument("--layers needs at least an input and an output size, got \"\(text)\"")
        }
        return sizes
    }
}

/// Element-wise activations an architecture can name.
public enum ActivationKind: String, CaseIterable, Sendable, Codable {
    case relu, tanh, sigmoid, gelu
    case leakyRelu = "leaky_relu"

    public func makeLayer() -> Layer {
        switch self {
        case .relu: return ReLU()
        case .tanh: return Tanh()
        case .sigmoid: return Sigmoid()
        case .gelu: return GELU()
        case .leakyRelu: return LeakyReLU()
        }
    }
}
