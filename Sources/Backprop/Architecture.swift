import Foundation

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

/// A network's shape, small enough to store in a model file's `__metadata__` so that the
/// file alone rebuilds its model. `--arch NAME` in the CLI selects the case.
public enum Architecture: Equatable, Sendable {
    /// `nn.Sequential(Linear(s0,s1), act, Linear(s1,s2), act, …, Linear(sk-1, sk))`.
    case mlp(sizes: [Int], activation: ActivationKind)

    /// The architecture names the CLI accepts for `--arch`.
    public static let names = ["mlp"]

    public var name: String {
        switch self {
        case .mlp: return "mlp"
        }
    }

    /// Number of input features per sample, and number of outputs.
    public var inputFeatures: Int {
        switch self {
        case let .mlp(sizes, _): return sizes.first ?? 0
        }
    }

    public var outputs: Int {
        switch self {
        case let .mlp(sizes, _): return sizes.last ?? 0
        }
    }

    /// Checks the description before anything is built.
    public func validate() throws {
        switch self {
        case let .mlp(sizes, _):
            guard sizes.count >= 2 else {
                throw BackpropError.invalidArgument("an MLP needs at least an input and an output size, got \(sizes)")
            }
            guard sizes.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else {
                throw BackpropError.invalidArgument("MLP layer sizes must be between 1 and 2^20, got \(sizes)")
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
        switch self {
        case let .mlp(sizes, _):
            var total = 0
            for (a, b) in zip(sizes, sizes.dropFirst()) {
                let (w, o1) = a.multipliedReportingOverflow(by: b)
                let (t, o2) = total.addingReportingOverflow(w)
                let (u, o3) = t.addingReportingOverflow(b)
                guard !o1, !o2, !o3 else { return nil }
                total = u
            }
            return total
        }
    }

    /// Builds the model with PyTorch's default initialisation from `seed`.
    public func build(seed: UInt64) throws -> Sequential {
        try validate()
        var rng = SeededGenerator(seed: seed)
        switch self {
        case let .mlp(sizes, activation):
            var layers: [Layer] = []
            for i in 0..<(sizes.count - 1) {
                layers.append(try Dense(sizes[i], sizes[i + 1], rng: &rng))
                if i < sizes.count - 2 { layers.append(activation.makeLayer()) }
            }
            return Sequential(layers)
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
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
              let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }

    /// Parses the stored form; `source` names the file for error messages.
    public init(json: String, source: String) throws {
        guard let data = json.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let arch = object["arch"] as? String else {
            throw BackpropError.badFile(path: source, offset: nil, reason: "architecture metadata is not a JSON object with an \"arch\" field: \(json.prefix(200))")
        }
        switch arch {
        case "mlp":
            guard let sizes = object["layers"] as? [Int],
                  let act = (object["activation"] as? String).flatMap(ActivationKind.init(rawValue:)) else {
                throw BackpropError.badFile(path: source, offset: nil, reason: "mlp architecture needs integer \"layers\" and a known \"activation\": \(json.prefix(200))")
            }
            self = .mlp(sizes: sizes, activation: act)
        default:
            throw BackpropError.badFile(path: source, offset: nil, reason: "unknown architecture \"\(arch)\"")
        }
        do { try validate() } catch {
            throw BackpropError.badFile(path: source, offset: nil, reason: "architecture metadata: \(error)")
        }
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
