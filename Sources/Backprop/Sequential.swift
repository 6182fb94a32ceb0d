/// Layers applied in order, PyTorch's `nn.Sequential`. Parameters are named
/// `"<index>.<name>"` (`0.weight`, `0.bias`, `2.weight`, …), exactly as `state_dict` names them.
public final class Sequential: Layer {
    public private(set) var layers: [Layer]

    public init(_ layers: [Layer]) { self.layers = layers }
    public convenience init(_ layers: Layer...) { self.init(layers) }

    public func append(_ layer: Layer) { layers.append(layer) }

    public var summary: String { "Sequential(\(layers.map(\.summary).joined(separator: ", ")))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list: [(name: String, parameter: Parameter)] = []
        for (i, layer) in layers.enumerated() {
            for (name, p) in layer.namedParameters { list.append((name: "\(i).\(name)", parameter: p)) }
        }
        return list
    }

    public var namedBuffers: [(name: String, tensor: Tensor)] {
        var list: [(name: String, tensor: Tensor)] = []
        for (i, layer) in layers.enumerated() {
            for (name, t) in layer.namedBuffers { list.append((name: "\(i).\(name)", tensor: t)) }
        }
        return list
    }

    public var isTraining: Bool {
        get { layers.first?.isTraining ?? true }
        set { for layer in layers { layer.isTraining = newValue } }
    }

    /// Set on the first layer: the layers after it always need δ of their input.
    public var needsInputGradient: Bool {
        get { layers.first?.needsInputGradient ?? true }
        set { layers.first?.needsInputGradient = newValue }
    }

    public func useThreads(_ count: Int) { for layer in layers { layer.useThreads(count) } }

    public func forward(_ input: Tensor) throws -> Tensor {
        var x = input
        for layer in layers { x = try layer.forward(x) }
        return x
    }

    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        var g = outputGradient
        for layer in layers.reversed() { g = try layer.backward(g) }
        return g
    }

    /// Runs forward and returns a copy of every layer's output, in order, each labelled
    /// `"<index>: <summary>"` (`"0: Dense(4 → 3)"`) — the activations a learner wants to look at.
    /// Copies, because each layer overwrites its output buffer on the next call.
    public func trace(_ input: Tensor) throws -> [(layer: String, output: Tensor)] {
        var x = input
        var outputs: [(layer: String, output: Tensor)] = []
        outputs.reserveCapacity(layers.count)
        for (i, layer) in layers.enumerated() {
            x = try layer.forward(x)
            outputs.append((layer: "\(i): \(layer.summary)", output: x.copy()))
        }
        return outputs
    }
}
