import Backprop

/// Updates parameters in place along their gradients: PyTorch's `torch.optim.Optimizer`.
///
///     optimizer.zeroGrad()
///     let loss = try lossFunction(model(x), y); try model.backward(loss.gradient)
///     try optimizer.step()
///
/// Every optimizer here allocates its state buffers once, in `init` (one per parameter and
/// kind of state, PyTorch's names), so `step()` allocates nothing: it runs one fused pointer
/// loop per parameter. `state` / `loadState` export and import those buffers for checkpoints
/// under stable keys: `"<parameter index>.<buffer name>"` (`"0.exp_avg"`, `"3.momentum_buffer"`)
/// plus `"step"`, the number of steps taken, as a 1-element tensor.
public protocol Optimizer: AnyObject {
    /// The step size γ. Learning-rate schedules set it before each step.
    var learningRate: Float { get set }
    /// The parameters updated by `step()`, in the order used by the state keys.
    var parameters: [Parameter] { get }
    /// One update of every parameter from its current `grad`.
    func step() throws
    /// Copies of the state buffers plus `"step"`, keyed as described above.
    var state: [String: Tensor] { get }
    /// Replaces the state with `state` (as exported by `state`). Validates every key and shape
    /// before changing anything; throws `BackpropError` on a missing, unknown or misshapen entry.
    func loadState(_ state: [String: Tensor]) throws
}

extension Optimizer {
    /// Sets every parameter's gradient to zero (`Parameter.zeroGrad()`): PyTorch's
    /// `zero_grad(set_to_none=False)`, lazily, so it costs nothing; the next backward pass
    /// overwrites the gradients instead of adding to them.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }
}

// MARK: - Shared by the optimizers

/// Throws unless `condition` holds, with PyTorch's wording for the rejected argument.
@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw BackpropError.invalidArgument(message()) }
}

/// PyTorch rejects an empty parameter list; a parameter listed twice would be updated twice.
func validateParameters(_ parameters: [Parameter], optimizer: String) throws {
    try require(!parameters.isEmpty, "\(optimizer): got an empty parameter list")
    var seen = Set<ObjectIdentifier>()
    for (i, p) in parameters.enumerated() {
        try require(seen.insert(ObjectIdentifier(p)).inserted,
                    "\(optimizer): parameter \(i) appears more than once in the parameter list")
    }
}

/// One zero-filled buffer shaped like each parameter.
func zeroBuffers(like parameters: [Parameter]) throws -> [Tensor] {
    try parameters.map { try Tensor(zeros: $0.shape) }
}

/// Checks, before a step, that every parameter's value, gradient and state buffers still agree
/// in size (a caller may have resized a tensor since the optimizer was built). Allocates nothing
/// unless it throws.
func checkSizes(_ parameters: [Parameter], _ buffers: NamedBuffers, optimizer: String) throws {
    for (i, p) in parameters.enumerated() {
        let n = p.value.count
        var ok = p.grad.count == n
        for (_, tensors) in buffers where tensors[i].count != n { ok = false }
        if !ok {
            throw BackpropError.shapeMismatch(
                where: optimizer,
                detail: "parameter \(i) has value \(p.value.shape), gradient \(p.grad.shape) and state "
                    + buffers.map { "\($0.name) \($0.tensors[i].shape)" }.joined(separator: ", ")
                    + "; they must agree")
        }
    }
}

/// The per-parameter buffers of an optimizer, by PyTorch state name (`exp_avg`, …).
typealias NamedBuffers = [(name: String, tensors: [Tensor])]

/// `Optimizer.state`: copies of every buffer under `"<i>.<name>"`, and `"step"`.
func exportState(step: Int, buffers: NamedBuffers) -> [String: Tensor] {
    var out: [String: Tensor] = ["step": Tensor([Float(step)])]
    for (name, tensors) in buffers {
        for (i, t) in tensors.enumerated() { out["\(i).\(name)"] = t.copy() }
    }
    return out
}

/// `Optimizer.loadState`: validates every key and shape, then copies into `buffers` and
/// returns the step count. Nothing is changed when it throws.
func importState(_ state: [String: Tensor], buffers: NamedBuffers, optimizer: String) throws -> Int {
    guard let stepTensor = state["step"] else {
        throw BackpropError.invalidArgument("\(optimizer).loadState: missing key \"step\"")
    }
    guard stepTensor.count == 1 else {
        throw BackpropError.shapeMismatch(where: "\(optimizer).loadState",
                                          detail: "\"step\" must hold 1 value, got shape \(stepTensor.shape)")
    }
    let s = stepTensor.data[0]
    guard s.isFinite, s >= 0, s == s.rounded(), s <= 16_777_216 else {
        throw BackpropError.invalidArgument("\(optimizer).loadState: \"step\" must be a whole number in 0...2^24, got \(s)")
    }
    var expected: Set<String> = ["step"]
    for (name, tensors) in buffers {
        for (i, t) in tensors.enumerated() {
            let key = "\(i).\(name)"
            expected.insert(key)
            guard let source = state[key] else {
                throw BackpropError.invalidArgument("\(optimizer).loadState: missing key \"\(key)\"")
            }
            guard source.shape == t.shape else {
                throw BackpropError.shapeMismatch(where: "\(optimizer).loadState",
                                                  detail: "\"\(key)\" has shape \(source.shape), parameter \(i) needs \(t.shape)")
            }
        }
    }
    if let unknown = state.keys.filter({ !expected.contains($0) }).sorted().first {
        throw BackpropError.invalidArgument(
            "\(optimizer).loadState: unexpected key \"\(unknown)\" (expected \(expected.sorted().joined(separator: ", ")))")
    }
    for (name, tensors) in buffers {
        for (i, t) in tensors.enumerated() {
            if let source = state["\(i).\(name)"] { try t.assign(source) }
        }
    }
    return Int(s)
}
