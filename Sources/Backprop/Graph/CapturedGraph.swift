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
/// mode). Inputs of other shapes (the last, smaller batch of an epoch) get a recording of their
/// own, kept beside the others (`keep` of them, as `jax.jit` keeps a trace per shape). A graph with an op that cannot be replayed (see
/// `replayBlocker`) runs `body` afresh on every call: correct, but allocating as an ordinary graph.
public final class CapturedGraph {
    /// One recording: for one list of input shapes.
    private final class Recording {
        let leaves: [Variable]
        let output: Variable
        let forwardOrder: [Node]
        let blocker: String?
        var plan: BackwardPlan?
        let arena = GraphArena()
        var seed: Tensor?

        init(leaves: [Variable], output: Variable) {
            self.leaves = leaves
            self.output = output
            forwardOrder = output.topologicalOrder(all: true).compactMap(\.node)
            blocker = forwardOrder.first(where: { $0.forward == nil })?.op
        }

        func fits(_ inputs: [Tensor]) -> Bool {
            inputs.count == leaves.count && zip(inputs, leaves).allSatisfy { $0.shape == $1.value.shape }
        }
    }

    private let body: ([Variable]) throws -> Variable
    /// The recordings, the one used last first (at most `keep`, as `jax.jit` keeps one trace per shape).
    private var recordings: [Recording] = []
    private var current: Recording?
    private var forwardDone = false
    /// How many recordings (one per list of input shapes) are kept; the least recently used goes.
    public let keep: Int
    /// The value of the last forward (the same Variable on every replay of a recording); nil before the first.
    public var output: Variable? { current?.output }
    /// How many times `body` has been run to record (once per list of input shapes while they
    /// stay among the kept recordings).
    public private(set) var captures = 0
    /// The first op of the last recording that cannot be replayed (then every call runs `body`
    /// afresh), nil when the whole graph replays.
    public var replayBlocker: String? { current?.blocker }

    /// The buffers kept for the last recording's backward (for tests: constant once warm).
    var backwardBufferCount: Int { current?.arena.count ?? 0 }

    /// `body` maps the input leaves (one per tensor given to `forward`, requiring no grad) to the
    /// value backward starts from (a one-element loss, or any value for `backward(gradient:)`).
    /// `keep`: how many lists of input shapes keep their recording (a training epoch's full
    /// batches and its last, smaller one are two).
    public init(keep: Int = 4, _ body: @escaping ([Variable]) throws -> Variable) {
        self.keep = max(1, keep)
        self.body = body
    }

    /// Forgets every recording: the next `forward` runs `body` again (after changing a layer's
    /// training flag or anything else `body` reads outside its inputs).
    public func recapture() {
        recordings = []
        current = nil
        forwardDone = false
    }

    /// Runs the graph on `inputs` (copied into the graph's own input leaves) and returns its
    /// value: replays the recording made for these input shapes, or records one. A failing op
    /// throws its typed error, as in the graph (and the recording it failed in is dropped).
    @discardableResult
    public func forward(_ inputs: [Tensor]) throws -> Variable {
        forwardDone = false
        guard let index = recordings.firstIndex(where: { $0.fits(inputs) }), recordings[index].blocker == nil else {
            return try record(inputs)
        }
        let r = recordings[index]
        if index != 0 { recordings.remove(at: index); recordings.insert(r, at: 0) }
        current = r
        for (t, leaf) in zip(inputs, r.leaves) where t !== leaf.value {
            leaf.value.data.update(from: t.data, count: t.count)
            leaf.value.markChanged()
        }
        do {
            for node in r.forwardOrder { try node.forward?() }
        } catch {
            recordings.removeFirst()   // a half-recomputed graph is not kept
            current = nil
            throw error
        }
        for node in r.forwardOrder { node.noteSavedVersions() }
        forwardDone = true
        return r.output
    }

    private func record(_ inputs: [Tensor]) throws -> Variable {
        recordings.removeAll { $0.fits(inputs) }
        current = nil
        let leaves = inputs.map { Variable($0.copy()) }
        let result = try GraphCapture.$isCapturing.withValue(true) { try body(leaves) }
        captures += 1
        let r = Recording(leaves: leaves, output: result)
        recordings.insert(r, at: 0)
        if recordings.count > keep { recordings.removeLast() }
        current = r
        forwardDone = true
        return result
    }

    /// Backpropagates from the last forward's one-element value: adds ∂value/∂parameter into
    /// every parameter's `grad` (and into the `grad` of inputs that keep one), as
    /// `Variable.backward()`. `.invalidUse` before a forward, or a second time for one forward.
    public func backward() throws {
        guard let r = current else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward", detail: "no forward has run")
        }
        guard r.output.value.count == 1 else {
            throw BackpropError.shapeMismatch(where: "CapturedGraph.backward",
                                              detail: "backward() needs a one-element value (a loss), got shape \(r.output.shape)")
        }
        let seed = r.seed ?? Tensor(uncheckedShape: r.output.shape)
        seed.data[0] = 1
        r.seed = seed
        try backward(gradient: seed)
    }

    /// Backpropagates `gradient` (∂L/∂value, the value's shape) from the last forward's value.
    public func backward(gradient: Tensor) throws {
        guard let r = current, forwardDone else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward",
                                           detail: "backward needs a forward first (and runs once per forward)")
        }
        let output = r.output
        guard gradient.shape == output.shape else {
            throw BackpropError.shapeMismatch(where: "CapturedGraph.backward(gradient:)",
                                              detail: "gradient \(gradient.shape) for a value of shape \(output.shape)")
        }
        guard output.node != nil && output.requiresGrad else {
            throw BackpropError.invalidUse(where: "CapturedGraph.backward",
                                           detail: "the captured value depends on no parameter or input that requires grad")
        }
        forwardDone = false
        if r.blocker != nil { try output.backward(gradient: gradient); return }
        if r.plan == nil { r.plan = BackwardPlan(from: output) }
        r.arena.rewind()
        try GraphArena.using(r.arena) { try r.plan?.run(gradient) }
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
