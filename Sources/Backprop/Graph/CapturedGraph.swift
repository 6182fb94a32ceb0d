import Foundation

/// A training step's graph recorded once and replayed (PyTorch's CUDA-graph capture, `jax.jit`'s
/// trace, mlx's `compile`, on our CPU kernels): the first call runs `body` on the inputs and keeps
/// every node it recorded; later calls with inputs of the same shapes copy the new values into
/// the graph's input leaves and recompute each node in place, in the recorded order, into the
/// same tensors; `backward()` runs the recorded nodes' backward into buffers kept from the first
/// backward. So once warm a step builds no node, closure or tensor: it allocates nothing.
///
///     let step = CapturedGraph { inputs in
///         try crossEntropy(model(inputs[0]), target: inputs[1])    // class indices as a tensor
///     }
///     for batch in loader {
///         optimizer.zeroGrad()
///         let loss = try step.forward([batch.input, labelTensor])   // recorded once, then replayed
///         try step.backward()
///         try optimizer.step()
///     }
///
/// What is recorded is fixed, as in any trace: the ops `body` ran, the control flow it took,
/// its constants, and values it made outside ops (a `Variable(tensor)` built inside `body` is a
/// constant of the capture: pass changing values as inputs). A layer's training flag is read at
/// the capture: call `recapture()` after switching `isTraining` (or keep one `CapturedGraph` per
/// mode). Inputs of other shapes (the last, smaller batch of an epoch) are recorded afresh, and
/// the new shapes kept until the next change. A graph with an op that cannot be replayed (see
/// `replayBlocker`) runs `body` afresh on every call: correct, but allocating as an ordinary graph.
public final class CapturedGraph {
    private let body: ([Variable]) throws -> Variable
    private var leaves: [Variable] = []
    private var forwardOrder: [Node] = []
    private var plan: BackwardPlan?
    private var arena = GraphArena()
    private var seed: Tensor?
    private var forwardDone = false
    /// The value of the last forward (the same Variable on every replay); nil before the first.
    public private(set) var output: Variable?
    /// How many times `body` has been run (recorded): 1 after a warm run of equal shapes.
    public private(set) var captures = 0
    /// The first op of the recorded graph that cannot be replayed (then every call runs `body`
    /// afresh), nil when the whole graph replays.
    public private(set) var replayBlocker: String?

    /// The buffers kept for the backward (for tests: constant once warm).
    var backwardBufferCount: Int { arena.count }

    /// `body` maps the input leaves (one per tensor given to `forward`, requiring no grad) to the
    /// value backward starts from (a one-element loss, or any value for `backward(gradient:)`).
    public init(_ body: @escaping ([Variable]) throws -> Variable) {
        self.body = body
    }

    /// Forgets the recording: the next `forward` runs `body` again (after changing a layer's
    /// training flag or anything else `body` reads outside its inputs).
    public func recapture() {
        leaves = []
        forwardOrder = []
        plan = nil
        output = nil
        arena = GraphArena()
        forwardDone = false
    }

    /// Runs the graph on `inputs` (copied into the graph's own input leaves) and returns its
    /// value: records it on the first call and whenever an input's shape differs from the
    /// recording's, otherwise replays it. A failing op throws its typed error, as in the graph.
    @discardableResult
    public func forward(_ inputs: [Tensor]) throws -> Variable {
        forwardDone = false
        if let output, replayBlocker == nil, inputs.count == leaves.count,
           zip(inputs, leaves).allSatisfy({ $0.shape == $1.value.shape }) {
            for (t, leaf) in zip(inputs, leaves) where t !== leaf.value {
                leaf.value.data.update(from: t.data, count: t.count)
                leaf.value.markChanged()
            }
            do {
                for node in forwardOrder { try node.forward?() }
            } catch {
                recapture()   // a half-recomputed graph is not kept
                throw error
            }
            for node in forwardOrder { node.noteSavedVersions() }
            forwardDone = true
            return output
        }
        return try capture(inputs)
    }

    private func capture(_ inputs: [Tensor]) throws -> Variable {
        recapture()
        let leaves = inputs.map { Variable($0.copy()) }
        let result = try GraphCapture.$isCapturing.withValue(true) { try body(leaves) }
        captures += 1
        let nodes = result.topologicalOrder(all: true).compactMap(\.node)
        replayBlocker = nodes.first(where: { $0.forward == nil })?.op
        self.leaves = leaves
        forwardOrder = nodes
        output = result
        seed = nil
        forwardDone = true
        return result
    }

    /// Backpropagates from the last forward's one-element value: adds ∂value/∂parameter into
    /// every parameter's `grad` (and into the `grad` of inputs that keep one), as
    /// `Variable.backward()`. `.invalidUse` before a forward, or a second time for one forward.
    public func backward() throws {
        guard let output else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward", detail: "no forward has run")
        }
        guard output.value.count == 1 else {
            throw BackpropError.shapeMismatch(where: "CapturedGraph.backward",
                                              detail: "backward() needs a one-element value (a loss), got shape \(output.shape)")
        }
        if seed == nil {
            let s = Tensor(uncheckedShape: output.shape)
            s.data[0] = 1
            seed = s
        }
        guard let seed else { return }
        try backward(gradient: seed)
    }

    /// Backpropagates `gradient` (∂L/∂value, the value's shape) from the last forward's value.
    public func backward(gradient: Tensor) throws {
        guard let output, forwardDone else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward",
                                           detail: "backward needs a forward first (and runs once per forward)")
        }
        guard gradient.shape == output.shape else {
            throw BackpropError.shapeMismatch(where: "CapturedGraph.backward(gradient:)",
                                              detail: "gradient \(gradient.shape) for a value of shape \(output.shape)")
        }
        guard output.node != nil && output.requiresGrad else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward",
                                           detail: "the captured value depends on no parameter or input that requires grad")
        }
        forwardDone = false
        if replayBlocker != nil { try output.backward(gradient: gradient); return }
        if plan == nil { plan = BackwardPlan(from: output) }
        arena.rewind()
        try GraphArena.using(arena) { try plan?.run(gradient) }
    }
}

/// Whether ops are being recorded for a `CapturedGraph` (every op then records its node).
enum GraphCapture {
    @TaskLocal static var isCapturing = false
}

/// The tensors a captured graph's backward takes, in the order it takes them, kept from one
/// backward to the next: the first backward allocates them, each later one is handed the same
/// tensor at the same turn (its shape checked; a different shape gets a fresh tensor there).
/// Ops take their backward buffers through `graphTensor`, which asks the arena of the calling
/// thread, if one is set, and otherwise allocates.
final class GraphArena {
    private var tensors: [Tensor] = []
    private var next = 0

    func rewind() { next = 0 }
    /// How many buffers the arena holds (constant once warm).
    var count: Int { tensors.count }

    func take(_ shape: [Int], zeroed: Bool) -> Tensor {
        defer { next += 1 }
        if next < tensors.count, tensors[next].shape == shape {
            let t = tensors[next]
            if zeroed { t.data.update(repeating: 0, count: t.count) }
            return t
        }
        let t = zeroed ? Tensor(uncheckedShape: shape) : Tensor(uninitializedShape: shape)
        if next < tensors.count { tensors[next] = t } else { tensors.append(t) }
        return t
    }

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// Runs `body` with `arena` as the calling thread's arena.
    static func using<R>(_ arena: GraphArena, _ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, Unmanaged.passUnretained(arena).toOpaque())
        defer { pthread_setspecific(key, previous) }
        return try body()
    }

    static var current: GraphArena? {
        guard let p = pthread_getspecific(key) else { return nil }
        return Unmanaged<GraphArena>.fromOpaque(p).takeUnretainedValue()
    }
}

/// A tensor of `shape` for an op's backward (or a forward's scratch): from the calling thread's
/// `GraphArena` during a captured graph's backward, else a new one. `zeroed`: filled with 0.
@inline(__always)
func graphTensor(_ shape: [Int], zeroed: Bool = false) -> Tensor {
    if let arena = GraphArena.current { return arena.take(shape, zeroed: zeroed) }
    return zeroed ? Tensor(uncheckedShape: shape) : Tensor(uninitializedShape: shape)
}
