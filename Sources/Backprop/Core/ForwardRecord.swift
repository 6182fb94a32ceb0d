/// What a layer's backward knows of the forward it pairs with: the tensor that forward saved for
/// it (its input, or its own output), the state of that tensor's storage then, and whether a
/// backward has already used it. `save` at forward, `take` at backward.
///
/// `take` refuses, with `BackpropError.invalidUse` naming the layer:
/// - a backward with no forward before it;
/// - a second backward for one forward (PyTorch: "Trying to backward through the graph a second
///   time"): its gradients would be added twice;
/// - a saved tensor resized, refilled or overwritten since (PyTorch: "one of the variables needed
///   for gradient computation has been modified by an inplace operation"): its gradients would
///   be those of other values, and a smaller tensor would be read and written out of bounds.
///   This is also what a layer instance placed twice in one model runs into: its second forward
///   overwrites the output the layer after its first place saved.
///
/// Two comparisons and a flag: nothing measurable next to a layer's products.
struct ForwardRecord {
    private(set) var tensor: Tensor?
    private var storage: TensorStorage?
    private var version = 0
    private var count = 0
    private var used = false

    /// Notes `t` as it is now. Call it after the forward has written everything it writes into
    /// `t` through a resize (the write that counts as a change).
    mutating func save(_ t: Tensor) {
        tensor = t
        storage = t.storage
        version = t.storage.version
        count = t.count
        used = false
    }

    /// The saved tensor, checked to be as forward left it and not yet used by a backward.
    /// With `markUsed` (the default) a second `take` fails until the next `save`.
    mutating func take(_ layer: @autoclosure () -> String, markUsed: Bool = true) throws -> Tensor {
        let t = try peek(layer())
        if markUsed { used = true }
        return t
    }

    /// `take` for an element-wise layer, whose δ has the saved tensor's shape: checks δ first, so
    /// a wrong δ leaves the record usable for a corrected call.
    mutating func take(matching gradient: Tensor, _ layer: @autoclosure () -> String) throws -> Tensor {
        try requireSameShape(gradient, try peek(layer()), layer: layer())
        return try take(layer())
    }

    /// As `take`, without marking the record used (for a second saved tensor of the same pass).
    func peek(_ layer: @autoclosure () -> String) throws -> Tensor {
        guard let t = tensor, let storage else {
            throw BackpropError.invalidUse(where: layer(), detail: "backward called before forward")
        }
        guard !used else {
            throw BackpropError.invalidUse(
                where: layer(),
                detail: "backward called twice for one forward pass (its gradients would be added twice); run forward again first")
        }
        guard t.storage === storage, storage.version == version, t.count == count else {
            throw BackpropError.invalidUse(
                where: layer(),
                detail: "a tensor this layer's forward saved for backward was resized or overwritten before backward "
                    + "(the input changed, another forward of the same instance ran, or the instance sits at two places of one model)")
        }
        return t
    }

    /// Forgets the saved tensor (the next backward is "before forward").
    mutating func clear() { tensor = nil; storage = nil; used = false }
}

/// The values of a layer's parameters as its forward saw them. Backward reads them (W for δ of
/// the input, γ for batch norm), so an optimizer step or a write to a value between a forward and
/// its backward (PyTorch: "modified by an inplace operation") is refused, not computed with the
/// new values. Optimizers mark the values they update (`Tensor.markChanged`).
final class ParameterRecords {
    private let parameters: [Parameter]
    private var records: [ForwardRecord]

    init(_ parameters: [Parameter]) {
        self.parameters = parameters
        records = [ForwardRecord](repeating: ForwardRecord(), count: parameters.count)
    }

    /// Notes every value as it is now (at forward). (A class: a layer keeps it in a `lazy var`,
    /// and a struct there would be copied out and back on every mutation, its records array
    /// reallocated by copy-on-write on every forward.)
    func save() {
        for i in parameters.indices { records[i].save(parameters[i].value) }
    }

    /// Checks that no value changed since `save` (at backward).
    func check(_ layer: @autoclosure () -> String) throws {
        for record in records {
            do { _ = try record.peek(layer()) } catch {
                throw BackpropError.invalidUse(
                    where: layer(),
                    detail: "a parameter changed between forward and backward (an optimizer step or a write to its value); "
                        + "step after backward, then run forward again")
            }
        }
    }
}
