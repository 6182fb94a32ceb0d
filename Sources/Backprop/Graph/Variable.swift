/// A differentiable value: reverse-mode automatic differentiation over `Tensor`, PyTorch's
/// autograd in miniature (micrograd's shape).
///
///     let a = Variable(try Tensor([2], shape: [1]), requiresGrad: true)
///     let b = Variable(try Tensor([-3], shape: [1]), requiresGrad: true)
///     let c = Variable(try Tensor([4], shape: [1]), requiresGrad: true)
///     let y = try (a + b) * c
///     try y.backward()          // a.grad = b.grad = [4], c.grad = [-1]
///
/// Every op (the operators, `matmul`, `sum`, `relu`, `softmax`, `crossEntropy`, … in `Graph/Ops/`)
/// returns a new Variable holding a fresh `Tensor`, and, when one of its inputs requires grad and
/// recording is on (see `noGrad`), the node that made it: the op's name, its inputs, the tensors
/// its backward reads, and that backward. Unlike a `Layer`, whose instance keeps the values of its
/// last forward only, every call keeps its own saved tensors, so one op can appear any number of
/// times in one graph.
///
/// `backward()` walks the graph from the result in reverse topological order and accumulates
/// ∂result/∂leaf into the `grad` of every leaf with `requiresGrad` (a leaf used twice receives
/// the sum; a second `backward` adds to `grad` again, as PyTorch does: set `grad = nil` or call
/// `zeroGrad()` between steps). Results of ops keep no `grad` (PyTorch's non-leaf tensors).
///
/// Errors, never traps, for what a caller can get wrong: shapes that do not fit an op are
/// `BackpropError.shapeMismatch` naming the op and the shapes; `backward()` from a value of more
/// than one element is a shape error; `backward` from a value that records nothing, or after a
/// tensor the graph saved was changed through `Tensor`'s methods (an optimizer step on a leaf's
/// value, a `resize`, `fill`, `assign`), is `BackpropError.invalidUse` naming the op.
public final class Variable {
    /// The value. Ops read it and some keep it for their backward: leave it unchanged until
    /// backward has run (a change through `Tensor`'s methods makes backward throw).
    public let value: Tensor
    /// Whether gradients flow to this value. Set it on leaves before using them in ops: an op
    /// notes at its call which of its inputs need a gradient. Results of ops that record a node
    /// have it set.
    public var requiresGrad: Bool
    /// ∂(the value backward started from)/∂(this value), accumulated over backward passes: nil
    /// until a backward reaches this leaf (as PyTorch's `.grad`). Only leaves receive it, and results
    /// of ops after `retainGrad()`.
    public var grad: Tensor? {
        get { parameter?.grad ?? leafGrad }
        set {
            if let parameter {
                if let newValue { try? parameter.grad.assign(newValue) } else { parameter.zeroGrad() }
            } else {
                leafGrad = newValue
            }
        }
    }
    private var leafGrad: Tensor?
    /// For `Parameter.variable`: the parameter whose value this leaf is and whose `grad` receives
    /// its gradient, so layers used on the graph and optimizers share one gradient.
    private(set) weak var parameter: Parameter?
    /// The parameter an op's backward may write this leaf's gradient into directly (`GradientTarget`).
    var parameterForGradient: Parameter? { requiresGrad ? parameter : nil }
    /// The op that made this value, nil for a leaf (and for any result made under `noGrad` or
    /// from inputs that require no grad).
    let node: Node?

    /// A leaf holding `value` (not copied: the variable and the caller share the tensor).
    public init(_ value: Tensor, requiresGrad: Bool = false) {
        self.value = value
        self.requiresGrad = requiresGrad
        self.node = nil
    }

    /// A leaf holding `values` (row-major) in a tensor of `shape`; throws when they do not fit.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) throws {
        self.init(try Tensor(values, shape: shape), requiresGrad: requiresGrad)
    }

    /// The leaf of a layer's parameter (`Parameter.variable`).
    init(parameter: Parameter) {
        self.value = parameter.value
        self.requiresGrad = true
        self.node = nil
        self.parameter = parameter
    }

    init(value: Tensor, node: Node, requiresGrad: Bool = true) {
        self.value = value
        self.requiresGrad = requiresGrad
        self.node = node
    }

    /// The value's shape.
    public var shape: [Int] { value.shape }
    /// True for a variable no recorded op made (PyTorch's `is_leaf`).
    public var isLeaf: Bool { node == nil || !requiresGrad }
    /// The name of the op that made this value (PyTorch's `grad_fn`), nil for a leaf.
    public var op: String? { node?.op }
    /// The inputs of the op that made this value (empty for a leaf).
    public var inputs: [Variable] { node?.inputs ?? [] }

    /// The single element of a one-element value (PyTorch's `item()`); a shape error otherwise.
    public func item() throws -> Float {
        guard value.count == 1 else {
            throw BackpropError.shapeMismatch(where: "Variable.item()", detail: "needs a one-element value, got shape \(shape)")
        }
        return value.data[0]
    }

    /// A leaf sharing this value, cut from the graph (PyTorch's `detach()`).
    public func detach() -> Variable { Variable(value) }

    /// Keeps this value's gradient in `grad` when backward passes through it, though it is the
    /// result of an op (PyTorch's `retain_grad()`): for looking at δ inside a graph (the pictures
    /// show ‖grad‖ of every node that keeps one). A leaf keeps its gradient anyway.
    public func retainGrad() { retainsGrad = true }
    /// Whether `grad` receives this value's gradient (leaves with `requiresGrad`, and results of
    /// ops after `retainGrad()`); PyTorch's `retains_grad` for the latter.
    public private(set) var retainsGrad = false

    /// Sets `grad` to zeros in place when there is one (PyTorch's `zero_grad(set_to_none=False)`);
    /// `grad = nil` is the `set_to_none` form.
    public func zeroGrad() { grad?.fill(0) }

    // MARK: - Backward

    /// Backpropagates from this one-element value (a loss): ∂self/∂leaf is added to the `grad`
    /// of every leaf with `requiresGrad` that it depends on.
    /// Throws `.shapeMismatch` for a value of more than one element (use `backward(gradient:)`)
    /// and `.invalidUse` when nothing was recorded or a saved tensor changed since its op ran.
    public func backward() throws {
        guard value.count == 1 else {
            throw BackpropError.shapeMismatch(
                where: "Variable.backward()",
                detail: "backward() needs a one-element value (a loss), got shape \(shape); "
                    + "reduce it first (sum, mean) or pass backward(gradient:) a tensor of that shape")
        }
        let seed = Tensor(uncheckedShape: value.shape)
        seed.data[0] = 1
        try runBackward(seed)
    }

    /// Backpropagates `gradient` (∂L/∂self, the value's shape), PyTorch's `y.backward(gradient)`.
    public func backward(gradient: Tensor) throws {
        guard gradient.shape == value.shape else {
            throw BackpropError.shapeMismatch(where: "Variable.backward(gradient:)",
                                              detail: "gradient \(gradient.shape) for a value of shape \(shape)")
        }
        try runBackward(gradient)
    }

    /// The graph under this value in topological order (every value after its inputs), following
    /// only the inputs that need a gradient (`all`: every input, as a captured forward replays
    /// them). Iterative depth-first search: a long chain of ops does not grow the call stack.
    func topologicalOrder(all: Bool = false) -> [Variable] {
        var order: [Variable] = []
        var visited: Set<ObjectIdentifier> = [ObjectIdentifier(self)]
        var stack: [(variable: Variable, next: Int)] = [(self, 0)]
        while let (v, next) = stack.popLast() {
            guard let node = v.node else { order.append(v); continue }
            var k = next
            while k < node.inputs.count && !(all || node.needsGrad[k]) { k += 1 }
            if k < node.inputs.count {
                stack.append((v, k + 1))
                let input = node.inputs[k]
                if visited.insert(ObjectIdentifier(input)).inserted { stack.append((input, 0)) }
            } else {
                order.append(v)
            }
        }
        return order
    }

    private func runBackward(_ seed: Tensor) throws {
        guard node != nil || requiresGrad else {
            throw BackpropError.invalidUse(
                where: "Variable.backward",
                detail: "this value requires no grad and was recorded by no op (made under noGrad, "
                    + "or only from values with requiresGrad false)")
        }
        var plan = BackwardPlan(from: self)
        try plan.run(seed)
    }

    /// grad += g (grad = a copy of g the first time: `g` may be shared with other inputs).
    fileprivate func accumulate(_ g: Tensor) throws {
        if let parameter {   // into the parameter's gradient, as a layer's backward adds into it
            let (buffer, beta) = parameter.gradientForAccumulation()
            guard buffer.shape == g.shape else {
                throw BackpropError.shapeMismatch(where: "Variable.backward",
                                                  detail: "parameter gradient \(buffer.shape) for a value of shape \(g.shape)")
            }
            if beta == 0 { buffer.data.update(from: g.data, count: g.count) } else { try buffer.add(g) }
            buffer.markChanged()
            return
        }
        guard let grad else { self.grad = g.copy(); return }
        guard grad.shape == g.shape else {
            throw BackpropError.shapeMismatch(where: "Variable.backward",
                                              detail: "grad \(grad.shape) was set to another shape than the value's \(shape)")
        }
        try grad.add(g)
        grad.markChanged()
    }
}

/// The order backward visits a graph in, with where each node's inputs sit in it: worked out once
/// per backward, or once per capture (`CapturedGraph` keeps its plan and runs it every step, so a
/// replayed backward builds no order, set or dictionary). `run` walks the order from the result
/// back, handing each node ∂L/∂out and passing its input gradients on; gradients that meet at one
/// value are summed into a fresh tensor (an op may hand the same tensor to two inputs).
struct BackwardPlan {
    let order: [Variable]
    /// For the node at position p, the position of each of its inputs (−1: not followed).
    let inputSlots: [[Int]]
    /// The gradient reaching each position during a run; empty between runs.
    private var pending: [Tensor?]

    init(from root: Variable) {
        order = root.topologicalOrder()
        var position: [ObjectIdentifier: Int] = [:]
        for (p, v) in order.enumerated() { position[ObjectIdentifier(v)] = p }
        inputSlots = order.map { v in
            guard let node = v.node else { return [] }
            return node.inputs.indices.map { k in node.needsGrad[k] ? position[ObjectIdentifier(node.inputs[k])] ?? -1 : -1 }
        }
        pending = Array(repeating: nil, count: order.count)
    }

    /// Every saved tensor is checked before any gradient is written: a refused backward leaves
    /// every `grad` as it was.
    mutating func run(_ seed: Tensor) throws {
        for v in order { try v.node?.checkSaved() }
        guard let last = order.indices.last else { return }
        defer { for p in pending.indices { pending[p] = nil } }
        pending[last] = seed
        for p in stride(from: last, through: 0, by: -1) {
            guard let g = pending[p] else { continue }
            pending[p] = nil
            let v = order[p]
            guard let node = v.node else {
                if v.requiresGrad { try v.accumulate(g) }
                continue
            }
            if v.retainsGrad { try v.accumulate(g) }
            let inputGradients = try node.backward(g, node.needsGrad)
            let slots = inputSlots[p]
            for k in 0..<slots.count where slots[k] >= 0 {
                guard let gk = inputGradients[k] else { continue }
                let input = node.inputs[k]
                guard gk.shape == input.value.shape else {
                    throw BackpropError.invalidUse(
                        where: node.op,
                        detail: "backward produced a gradient of shape \(gk.shape) for input \(k) of shape \(input.shape) (a bug in the op)")
                }
                let q = slots[k]
                // Gradients may be shared between inputs (`+` hands dC to both): sums are fresh.
                pending[q] = pending[q].map { sumOfTensors($0, gk) } ?? gk
            }
        }
    }
}

/// A fresh tensor a + b (same shape).
func sumOfTensors(_ a: Tensor, _ b: Tensor) -> Tensor {
    let out = graphTensor(a.shape)
    elementwiseAdd(a.data, b.data, into: out.data, count: a.count)
    return out
}

/// Where an op's backward writes the gradient of one input. For a parameter's leaf it is the
/// parameter's own `grad`, with β = 0 (overwrite: the gradient is logically zero) or 1 (add), as a
/// layer's backward writes it: no separate tensor, no copy into `grad` afterwards. For any other
/// input it is a new tensor (β = 0) that the graph passes on. Use: make the target, write every
/// element with β (a product's β, or overwrite-or-add), then return `finish()` as that input's
/// gradient (nil for a parameter: it is already in place).
struct GradientTarget {
    let buffer: Tensor
    let beta: Float
    private let parameter: Parameter?

    init(for input: Variable, shape: [Int]) {
        // Logically zero until `finish()`: a backward that throws halfway leaves grad as it was.
        if let p = input.parameterForGradient, case let (b, β) = p.gradientForSlicedAccumulation(), b.shape == shape {
            (buffer, beta, parameter) = (b, β, p)
        } else {
            (buffer, beta, parameter) = (graphTensor(shape), 0, nil)
        }
    }

    /// The gradient for the graph to pass on: nil when it went straight into a parameter's grad.
    func finish() -> Tensor? {
        guard let parameter else { return buffer }
        parameter.gradientWritten()
        buffer.markChanged()
        return nil
    }
}

/// What a node's backward returns: ∂L/∂input for each input, in the inputs' order (nil for an
/// input that needs none, or whose gradient went straight into its parameter's `grad`). Up to
/// three are held inline, so returning them allocates nothing; more (a `concat` of many, a
/// recurrent layer's weights) go in an array.
struct InputGradients {
    private var first: Tensor?, second: Tensor?, third: Tensor?
    private var list: [Tensor?]?

    init(_ a: Tensor?) { first = a }
    init(_ a: Tensor?, _ b: Tensor?) { (first, second) = (a, b) }
    init(_ a: Tensor?, _ b: Tensor?, _ c: Tensor?) { (first, second, third) = (a, b, c) }
    init(_ all: [Tensor?]) { list = all }

    /// The gradient of input k (nil beyond those given).
    subscript(k: Int) -> Tensor? {
        if let list { return k < list.count ? list[k] : nil }
        switch k {
        case 0: return first
        case 1: return second
        case 2: return third
        default: return nil
        }
    }
}

/// The record of one op in the graph: its name, its inputs (with whether each needs a gradient,
/// noted at the call), the tensors its backward reads and the backward itself, which maps ∂L/∂out
/// to ∂L/∂input for each input whose flag is set (nil for the others).
final class Node {
    typealias Backward = (_ outputGradient: Tensor, _ needsGrad: [Bool]) throws -> InputGradients
    /// Recomputes the op's value (and whatever its backward reads) in place, from its inputs'
    /// current values: what `CapturedGraph` replays. Nil for an op that cannot be replayed.
    typealias Forward = () throws -> Void

    let op: String
    private(set) var inputs: [Variable]
    let needsGrad: [Bool]
    let backward: Backward
    let forward: Forward?
    /// Each saved tensor with its storage and version then (PyTorch's saved-tensor version check).
    private var saved: [(tensor: Tensor, storage: TensorStorage, version: Int, shape: [Int])]

    init(op: String, inputs: [Variable], needsGrad: [Bool], saving: [Tensor], forward: Forward?, backward: @escaping Backward) {
        self.op = op
        self.inputs = inputs
        self.needsGrad = needsGrad
        self.forward = forward
        self.backward = backward
        self.saved = saving.map { ($0, $0.storage, $0.storage.version, $0.shape) }
    }

    /// After a replayed forward: the saved tensors' current versions are the ones backward may read.
    func noteSavedVersions() {
        for i in saved.indices { saved[i].version = saved[i].storage.version }
    }

    /// Releases the graph under this node with a loop instead of a recursion: releasing the last
    /// value of a long chain of ops would otherwise run one nested deinit per op and overflow the
    /// stack (a 100 000-op chain did). Inputs that nothing else holds hand their own inputs to the
    /// loop before they go.
    deinit {
        guard !inputs.isEmpty else { return }
        var pending = inputs
        inputs.removeAll()
        while var v = pending.popLast() {
            if isKnownUniquelyReferenced(&v), let node = v.node {
                pending.append(contentsOf: node.inputs)
                node.inputs.removeAll()
            }
        }
    }

    /// Throws `.invalidUse` naming the op when a saved tensor was changed since the op ran.
    func checkSaved() throws {
        for s in saved where s.tensor.storage !== s.storage || s.storage.version != s.version || s.tensor.shape != s.shape {
            throw BackpropError.invalidUse(
                where: op,
                detail: "a tensor this op saved for backward (shape \(s.shape)) was changed after the op ran "
                    + "(PyTorch: modified by an inplace operation); leave values unchanged until backward")
        }
    }
}

extension Variable {
    /// The result of an op: a Variable holding `value`, with a node when recording is on and an
    /// input requires grad (else a plain leaf that requires no grad). `saving` lists the tensors
    /// `backward` reads, for the version check. `forward` recomputes `value` in place from the
    /// inputs' current values (the op's math, run once here by the op itself and again on every
    /// replay of a `CapturedGraph`); while a graph is being captured every op records a node,
    /// also one whose inputs need no gradient, so that the replay recomputes it.
    static func result(_ op: String, _ inputs: [Variable], _ value: Tensor, saving: [Tensor] = [],
                       forward: Node.Forward? = nil, backward: @escaping Node.Backward) -> Variable {
        let enabled = GradMode.isEnabled
        let needs = enabled ? inputs.map(\.requiresGrad) : Array(repeating: false, count: inputs.count)
        let recording = enabled && needs.contains(true)
        if GraphCapture.isCapturing {
            return Variable(value: value, node: Node(op: op, inputs: inputs, needsGrad: needs, saving: saving,
                                                     forward: forward, backward: backward),
                            requiresGrad: recording)
        }
        guard recording else { return Variable(value) }
        return Variable(value: value, node: Node(op: op, inputs: inputs, needsGrad: needs, saving: saving,
                                                 forward: forward, backward: backward))
    }

    /// A one-element constant (shape []) that requires no grad: the Float side of `x * 2`.
    static func constant(_ v: Float) -> Variable {
        let t = Tensor(uncheckedShape: [])
        t.data[0] = v
        return Variable(t)
    }
}

extension Variable: CustomStringConvertible {
    /// `Variable(shape: [2, 3], op: matmul, [0.1, …])`, or `leaf, requiresGrad` in place of the op.
    public var description: String {
        let origin = op.map { "op: \($0)" } ?? (requiresGrad ? "leaf, requiresGrad" : "leaf")
        let shown = value.scalars.prefix(6).map { String(describing: $0) }.joined(separator: ", ")
        return "Variable(shape: \(shape), \(origin), [\(shown)\(value.count > 6 ? ", …" : "")])"
    }
}
