/// An architecture's state dict, without building the model: the names and shapes a file of it
/// holds, the check that a model is the one it describes, and the reverse — an architecture
/// read back from the names and shapes of a file written elsewhere (PyTorch).
extension Architecture {
    /// The parameter names and shapes of the built model, in `stateDict` order.
    public var stateDictShapes: [(name: String, shape: [Int])] {
        switch self {
        case let .mlp(sizes, _):
            var list: [(name: String, shape: [Int])] = []
            for (i, (a, b)) in zip(sizes, sizes.dropFirst()).enumerated() {
                list.append((name: "\(2 * i).weight", shape: [b, a]))
                list.append((name: "\(2 * i).bias", shape: [b]))
            }
            return list
        case let .lenet(classes):
            return [("0.weight", [16, 1, 5, 5]), ("0.bias", [16]), ("3.weight", [32, 16, 5, 5]), ("3.bias", [32]),
                    ("7.weight", [128, 32 * 7 * 7]), ("7.bias", [128]), ("9.weight", [classes, 128]), ("9.bias", [classes])]
        case let .recurrent(kind, _, inputSize, hidden, layers, classes):
            var list: [(name: String, shape: [Int])] = []
            let gh = kind.gateCount * hidden
            for l in 0..<max(layers, 0) {
                list.append((name: "rnn.weight_ih_l\(l)", shape: [gh, l == 0 ? inputSize : hidden]))
                list.append((name: "rnn.weight_hh_l\(l)", shape: [gh, hidden]))
                list.append((name: "rnn.bias_ih_l\(l)", shape: [gh]))
                list.append((name: "rnn.bias_hh_l\(l)", shape: [gh]))
            }
            return list + [(name: "fc.weight", shape: [classes, hidden]), (name: "fc.bias", shape: [classes])]
        }
    }

    /// Checks that `model` is the model this architecture describes: the same state dict names
    /// and shapes (`stateDictMismatch` listing the differences) and the same kind of layers
    /// (`invalidArgument`: an MLP's activation, a recurrent model's cell).
    public func check(_ model: Layer) throws {
        var expected: [String: Tensor] = [:]
        for (name, shape) in stateDictShapes { expected[name] = Tensor(uncheckedShape: shape) }
        // Compare from the architecture's side: "missing" = in the architecture, not the model.
        var mismatch = StateDictMismatch()
        let actual = Dictionary(model.stateDict.map { ($0.name, $0.tensor.shape) }, uniquingKeysWith: { a, _ in a })
        for (name, shape) in stateDictShapes {
            guard let found = actual[name] else { mismatch.unexpected.append(name); continue }
            if found != shape { mismatch.shapeMismatches.append(.init(name: name, expected: found, found: shape)) }
        }
        for (name, shape) in model.stateDict.map({ ($0.name, $0.tensor.shape) }) where expected[name] == nil {
            mismatch.missing.append((name: name, shape: shape))
        }
        mismatch.unexpected.sort()
        guard mismatch.isEmpty else {
            throw BackpropError.stateDictMismatch(source: "architecture \(json)", model: model.summary, mismatch)
        }
        switch self {
        case let .mlp(sizes, activation):
            let want = activation.makeLayer().summary
            guard let seq = model as? Sequential, seq.layers.count == 2 * sizes.count - 3 else {
                throw BackpropError.invalidArgument("\(model.summary) is not the Sequential of Dense and \(want) layers that \(json) describes")
            }
            for i in stride(from: 1, to: seq.layers.count, by: 2) where seq.layers[i].summary != want {
                throw BackpropError.invalidArgument("layer \(i) of \(model.summary) is \(seq.layers[i].summary) but \(json) has \(want)")
            }
        case .lenet:
            guard let seq = model as? Sequential, seq.layers.count == 10 else {
                throw BackpropError.invalidArgument("\(model.summary) is not the LeNet (Architectures.leNet) that \(json) describes")
            }
        case let .recurrent(kind, _, _, _, _, _):
            guard let seq = model as? SequenceClassifier, seq.kind == kind else {
                throw BackpropError.invalidArgument("\(model.summary) is not the SequenceClassifier(\(name)) that \(json) describes")
            }
        }
    }
}

extension Architecture {
    /// The architecture of family `family` (`mlp`, `lenet`, `rnn`, `lstm`, `gru`) whose state
    /// dict has these names and shapes: every size is read from them — an MLP's layer widths,
    /// a recurrent model's input size, hidden size, layer count and classes, LeNet's classes.
    /// `steps` (not in a state dict) is the sequence length of a recurrent model's input (1 when
    /// unknown); `activation` is an MLP's (not in a state dict either). Errors
    /// (`badFile` naming `source`) say which tensor does not fit the family.
    public static func inferred(family: String, shapes: [String: [Int]], steps: Int? = nil,
                                activation: ActivationKind = .relu, source: String) throws -> Architecture {
        func bad(_ reason: String) -> BackpropError { .badFile(path: source, offset: nil, reason: reason) }
        func shape(_ name: String, rank: Int) throws -> [Int] {
            guard let s = shapes[name] else {
                let near = shapes.keys.sorted().prefix(6).joined(separator: ", ")
                throw bad("no tensor \"\(name)\", which a \(family) state dict has (the file holds \(near)\(shapes.count > 6 ? ", …" : ""))")
            }
            guard s.count == rank else { throw bad("tensor \"\(name)\" has shape \(s); a \(family) needs rank \(rank)") }
            return s
        }
        let architecture: Architecture
        switch family {
        case "mlp":
            // Linear layers at 0, 2, 4, … (an activation between each): nn.Sequential's names.
            let indices = shapes.keys.compactMap { name -> Int? in
                guard name.hasSuffix(".weight"), let i = Int(name.dropLast(7)) else { return nil }
                return i
            }.sorted()
            guard !indices.isEmpty else { throw bad("no \"0.weight\", \"2.weight\", … tensors: not an MLP state dict") }
            guard indices == Array(stride(from: 0, to: 2 * indices.count, by: 2)) else {
                throw bad("Linear layers at positions \(indices); an mlp has them at 0, 2, 4, … (an activation between each)")
            }
            var sizes: [Int] = []
            for i in indices {
                let w = try shape("\(i).weight", rank: 2)
                if let last = sizes.last, w[1] != last {
                    throw bad("tensor \"\(i).weight\" has shape \(w) but the layer before it has \(last) outputs")
                }
                if sizes.isEmpty { sizes.append(w[1]) }
                sizes.append(w[0])
            }
            architecture = .mlp(sizes: sizes, activation: activation)
        case "lenet":
            architecture = .lenet(classes: try shape("9.weight", rank: 2)[0])
        default:
            guard let kind = Architecture.kind(named: family) else {
                throw BackpropError.invalidArgument("unknown architecture \(family); choose one of \(Architecture.names.joined(separator: ", "))")
            }
            let ih = try shape("rnn.weight_ih_l0", rank: 2), hh = try shape("rnn.weight_hh_l0", rank: 2)
            let hidden = hh[1]
            guard hidden > 0, hh[0] % hidden == 0 else { throw bad("tensor \"rnn.weight_hh_l0\" has shape \(hh): not [gates × H, H]") }
            let gates = hh[0] / hidden
            guard gates == kind.gateCount else {
                let named = [1: "an rnn", 3: "a gru", 4: "an lstm"][gates] ?? "no recurrent cell"
                throw bad("tensor \"rnn.weight_hh_l0\" has shape \(hh): \(gates) gate\(gates == 1 ? "" : "s") of \(hidden), "
                          + "which is \(named), not \(Architecture.name(of: kind)) (\(kind.gateCount) gate\(kind.gateCount == 1 ? "" : "s"))")
            }
            var layers = 1
            while shapes["rnn.weight_ih_l\(layers)"] != nil { layers += 1 }
            let fc = try shape("fc.weight", rank: 2)
            architecture = .recurrent(kind: kind, steps: steps ?? 1, inputSize: ih[1], hidden: hidden, layers: layers, classes: fc[0])
        }
        do { try architecture.validate() } catch { throw bad("\(error)") }
        return architecture
    }

    /// This architecture with a recurrent model's sequence length set to `steps` (others unchanged).
    public func withSteps(_ steps: Int) -> Architecture {
        if case let .recurrent(kind, _, inputSize, hidden, layers, classes) = self {
            return .recurrent(kind: kind, steps: steps, inputSize: inputSize, hidden: hidden, layers: layers, classes: classes)
        }
        return self
    }
}
