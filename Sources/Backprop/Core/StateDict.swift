/// What did not fit when a state dict was loaded into a model (PyTorch's `_IncompatibleKeys`
/// plus its size-mismatch list): names the model has and the state dict lacks, names the state
/// dict has and the model lacks, and names both have with different shapes.
public struct StateDictMismatch: Equatable, Sendable, CustomStringConvertible {
    /// One name whose shape differs: the model's shape and the state dict's.
    public struct ShapeMismatch: Equatable, Sendable {
        public let name: String
        public let expected: [Int]
        public let found: [Int]
    }
    /// In the model, absent from the state dict (with the model's shape), in model order.
    public var missing: [(name: String, shape: [Int])] = []
    /// In the state dict, not in the model, sorted.
    public var unexpected: [String] = []
    /// In both with different shapes, in model order. Always an error, strict or not (as in PyTorch).
    public var shapeMismatches: [ShapeMismatch] = []

    public init() {}

    /// True when every name of each side is on the other with its shape.
    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && shapeMismatches.isEmpty }

    public static func == (a: StateDictMismatch, b: StateDictMismatch) -> Bool {
        a.missing.map(\.name) == b.missing.map(\.name) && a.missing.map(\.shape) == b.missing.map(\.shape)
            && a.unexpected == b.unexpected && a.shapeMismatches == b.shapeMismatches
    }

    /// `missing: "fc.weight" [3, 7]; unexpected: "extra"; shape: "0.weight" model [4, 3], state dict [4, 5]`.
    public var description: String {
        func list(_ names: [String]) -> String {
            let shown = names.prefix(8).joined(separator: ", ")
            return names.count > 8 ? shown + ", … (\(names.count) in all)" : shown
        }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing: " + list(missing.map { "\"\($0.name)\" \($0.shape)" })) }
        if !unexpected.isEmpty { parts.append("unexpected: " + list(unexpected.map { "\"\($0)\"" })) }
        if !shapeMismatches.isEmpty {
            parts.append("shape: " + list(shapeMismatches.map { "\"\($0.name)\" model \($0.expected), state dict \($0.found)" }))
        }
        return parts.isEmpty ? "no differences" : parts.joined(separator: "; ")
    }
}

extension Layer {
    /// The state dict as a dictionary (names → the model's own tensors, not copies).
    public var stateDictionary: [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (name, t) in stateDict { d[name] = t }
        return d
    }

    /// What differs between this model's state dict and `tensors` (names and shapes only).
    public func stateDictMismatch(_ tensors: [String: Tensor]) -> StateDictMismatch {
        var result = StateDictMismatch()
        var seen = Set<String>()
        for (name, target) in stateDict {
            seen.insert(name)
            guard let t = tensors[name] else {
                result.missing.append((name: name, shape: target.shape))
                continue
            }
            if t.shape != target.shape {
                result.shapeMismatches.append(.init(name: name, expected: target.shape, found: t.shape))
            }
        }
        result.unexpected = tensors.keys.filter { !seen.contains($0) }.sorted()
        return result
    }

    /// Copies `tensors` into this model's parameters and buffers, by `state_dict` name (PyTorch's
    /// `load_state_dict`). Nothing is changed unless the whole load succeeds.
    ///
    /// - `strict: true` (the default): every name of the model must be present and no other
    ///   name given; otherwise `BackpropError.stateDictMismatch` lists every missing, unexpected
    ///   and mis-shaped name at once.
    /// - `strict: false`: names present on both sides are loaded, the others are skipped and
    ///   returned. A shape mismatch is still an error (as in PyTorch).
    /// - `source` names where the tensors came from in errors (a file path; default "state dict").
    /// - Returns: the names that were skipped (empty after a strict load).
    @discardableResult
    public func loadStateDict(_ tensors: [String: Tensor], strict: Bool = true,
                              source: String = "state dict") throws -> StateDictMismatch {
        let mismatch = stateDictMismatch(tensors)
        if !mismatch.shapeMismatches.isEmpty || (strict && !mismatch.isEmpty) {
            throw BackpropError.stateDictMismatch(source: source, model: summary, mismatch)
        }
        for (name, target) in stateDict {
            if let t = tensors[name] { try target.assign(t) }
        }
        return mismatch
    }

    /// `loadStateDict` from a list such as another model's `stateDict`. A name given twice is an
    /// `invalidArgument` error.
    @discardableResult
    public func loadStateDict(_ tensors: [(name: String, tensor: Tensor)], strict: Bool = true,
                              source: String = "state dict") throws -> StateDictMismatch {
        var d: [String: Tensor] = [:]
        for (name, t) in tensors {
            guard d.updateValue(t, forKey: name) == nil else {
                throw BackpropError.invalidArgument("\(source): tensor \"\(name)\" is given twice")
            }
        }
        return try loadStateDict(d, strict: strict, source: source)
    }
}
