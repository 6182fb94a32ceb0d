/// Layers applied in order, PyTorch's `nn.Sequential`. Parameters are named
/// `"<index>.<name>"` (`0.weight`, `0.bias`, `2.weight`, …), exactly as `state_dict` names them.
///
/// A layer instance sits at one place: the same instance twice (directly or inside a nested
/// container) makes `forward` throw `BackpropError.invalidUse` naming both positions, since each
/// layer keeps one forward pass's values for its backward (build one instance per place). An
/// instance shared with another model is refused by `backward` when that model ran it in between.
public final class Sequential: LayerContainer {
    public private(set) var layers: [Layer]
    /// An instance found at two places when the list was built or appended to: `forward` refuses.
    private var repeated: (layer: Layer, first: String, second: String)?

    public init(_ layers: [Layer]) {
        self.layers = layers
        repeated = firstRepeatedInstance(in: layers)
    }
    public convenience init(_ layers: Layer...) { self.init(layers) }

    public func append(_ layer: Layer) {
        layers.append(layer)
        plan = nil
        forwardPlan = nil   // the new layer had no part in the last forward: backward needs a new one
        repeated = firstRepeatedInstance(in: layers)
    }

    public var sublayers: [Layer] { layers }

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

    /// Batch slices for stretches of `BatchSliceable` layers (default `Parallelism.defaultThreads`;
    /// set by `useThreads`).
    public private(set) var threads = Parallelism.defaultThreads

    public func useThreads(_ count: Int) {
        threads = Swift.max(1, count)
        plan = nil
        for layer in layers { layer.useThreads(count) }
    }

    /// Which layers run together in batch slices with `threads` (see `StretchPlan`); made on the
    /// first forward after the layers or the thread count change.
    private var plan: StretchPlan?
    /// The plan the last forward ran: backward runs the same one, even if `useThreads` changed in
    /// between (the layers' buffers and fusions are laid out for it).
    private var forwardPlan: StretchPlan?

    /// The stretches as (first layer index, layer count), for tests.
    var slicedStretches: [(start: Int, count: Int)] { currentPlan().stretches.map { ($0.start, $0.layers.count) } }

    private func currentPlan() -> StretchPlan {
        if let plan { return plan }
        let made = StretchPlan(layers: layers, threads: threads)
        plan = made
        return made
    }

    /// Each layer in order. With more than one thread, stretches of batch-sliceable layers run as
    /// one set of concurrent batch slices (`StretchPlan`).
    public func forward(_ input: Tensor) throws -> Tensor {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        let plan = currentPlan()
        forwardPlan = nil
        let y = try plan.forward(layers, input)
        forwardPlan = plan
        return y
    }

    /// Each layer in reverse order, with the last forward's plan.
    @discardableResult
    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        guard let forwardPlan else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before a forward that completed")
        }
        return try forwardPlan.backward(layers, outputGradient, container: summary)
    }

    /// `backward`, calling `finished(i)` each time layers `i…` have run theirs, last layer first:
    /// their parameters' gradients are then final (data-parallel training starts reducing them
    /// while the earlier layers run, as PyTorch's DDP does from its gradient hooks).
    public func backward(_ outputGradient: Tensor, finished: (Int) throws -> Void) throws -> Tensor {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        guard let forwardPlan else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before a forward that completed")
        }
        return try forwardPlan.backward(layers, outputGradient, container: summary, finished: finished)
    }

    /// Runs forward and returns a copy of every layer's output, in order, each labelled
    /// `"<index>: <summary>"` (`"0: Dense(4 → 3)"`) — the activations a learner wants to look at.
    /// Copies, because each layer overwrites its output buffer on the next call.
    public func trace(_ input: Tensor) throws -> [(layer: String, output: Tensor)] {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        forwardPlan = nil   // the layers' caches are now the trace's (plain, unsliced) pass
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
