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
