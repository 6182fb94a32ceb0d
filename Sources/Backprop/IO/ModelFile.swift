import Foundation

/// Model files: safetensors holding the `state_dict` (parameters and buffers, float32, PyTorch
/// names) and, in `__metadata__["backprop.architecture"]`, the architecture as JSON, so a file
/// alone rebuilds its model. A file written elsewhere (PyTorch, NumPy) without that metadata
/// loads when the caller supplies the architecture. Writes are atomic.
public enum ModelFile {
    public static let architectureKey = "backprop.architecture"

    /// Writes `model`'s state dict and `architecture` to `path` (temporary file, then rename), so
    /// that `load(_:)` alone rebuilds the model. The model must be the one `architecture`
    /// describes (same names, shapes and layers), else `stateDictMismatch` or `invalidArgument`
    /// and no file is written. `extraTensors` (optimizer state) must not reuse a model name.
    public static func save(_ model: Layer, architecture: Architecture, to path: String,
                            metadata extra: [String: String] = [:], extraTensors: [String: Tensor] = [:]) throws {
        try architecture.check(model)
        var metadata = extra
        metadata[architectureKey] = architecture.json
        try write(model, to: path, metadata: metadata, extraTensors: extraTensors)
    }

    /// Writes any model's state dict to `path` (PyTorch names, float32; no architecture
    /// metadata): load it back with `load(into:from:)` into a model built the same way, or in
    /// PyTorch with `model.load_state_dict(safetensors.torch.load_file(path))`.
    public static func save(_ model: Layer, to path: String,
                            metadata extra: [String: String] = [:], extraTensors: [String: Tensor] = [:]) throws {
        var metadata = extra
        metadata.removeValue(forKey: architectureKey)
        try write(model, to: path, metadata: metadata, extraTensors: extraTensors)
    }

    private static func write(_ model: Layer, to path: String, metadata extra: [String: String],
                              extraTensors: [String: Tensor]) throws {
        var tensors: [String: Tensor] = extraTensors
        for (name, t) in model.stateDict {
            guard tensors.updateValue(t, forKey: name) == nil else {
                throw BackpropError.invalidArgument("ModelFile.save(\(path)): tensor \"\(name)\" is both in the model and in extraTensors")
            }
        }
        var metadata = extra
        metadata["format"] = "pt"
        try SafetensorsFile(tensors: tensors, metadata: metadata).write(to: path)
    }

    /// Loads the state dict in `path` into `model`, a model the caller built (any layers, any
    /// sizes): `Layer.loadStateDict` with the file's tensors, errors naming the file. Tensors
    /// whose names start with `extraPrefix` (optimizer state in a checkpoint) are skipped; the
    /// file's architecture metadata, if any, is not needed. Nothing in `model` changes unless
    /// the load succeeds.
    /// - Returns: the file's metadata.
    @discardableResult
    public static func load(into model: Layer, from path: String, strict: Bool = true,
                            extraPrefix: String = "optimizer.") throws -> [String: String] {
        let file = try SafetensorsFile.read(path: path)
        let tensors = file.tensors.filter { extraPrefix.isEmpty || !$0.key.hasPrefix(extraPrefix) }
        try model.loadStateDict(tensors, strict: strict, source: path)
        return file.metadata
    }

    /// The advice given for a file without architecture metadata.
    public static let noArchitectureAdvice =
        "no architecture in the file's metadata (written by PyTorch, or by ModelFile.save(_:to:) without one): "
        + "build the model in code and load the file with ModelFile.load(into:from:), pass the architecture as "
        + "`fallback:`, or on the command line give the family with --arch (mlp, lenet, rnn, lstm, gru)"

    /// A model read from a file: the rebuilt model, its architecture, the file's metadata and
    /// any tensors that are not part of the model (optimizer state in a checkpoint).
    public struct Loaded {
        public let model: Layer
        public let architecture: Architecture
        public let metadata: [String: String]
        public let extraTensors: [String: Tensor]
    }

    /// Reads `path`. The architecture comes from the file's metadata, else from `fallback`
    /// (`--arch`, `--layers`, … on the command line); when the file has one, `fallback` is
    /// ignored, even if it differs. Every tensor the model expects must be present with its
    /// shape; a missing, misshapen or unexpected tensor is an error naming the file and tensor.
    /// Tensor names starting with `extraPrefix` (e.g. `optimizer.`) are returned separately.
    public static func load(_ path: String, fallback: Architecture? = nil,
                            extraPrefix: String = "optimizer.") throws -> Loaded {
        let file = try SafetensorsFile.read(path: path)
        let architecture: Architecture
        if let json = file.metadata[architectureKey] {
            architecture = try Architecture(json: json, source: path)
        } else if let fallback {
            architecture = fallback
        } else {
            throw BackpropError.badFile(path: path, offset: nil,
                                        reason: noArchitectureAdvice)
        }
        // The metadata is untrusted: a model it describes must fit in the file's own tensors,
        // checked before anything is allocated for it (a 200-byte file must not cost gigabytes).
        let stored = file.tensors.filter { !$0.key.hasPrefix(extraPrefix) }.values.reduce(0) { $0 + $1.count }
        if file.metadata[architectureKey] != nil, let needed = architecture.parameterCount, needed > stored {
            throw BackpropError.badFile(path: path, offset: nil,
                                        reason: "\(architecture.json) has \(needed) parameters but the file's tensors hold only \(stored) values")
        }
        let model = try architecture.build(seed: 0)
        var extra: [String: Tensor] = [:]
        var own: [String: Tensor] = [:]
        for (name, t) in file.tensors {
            if !extraPrefix.isEmpty, name.hasPrefix(extraPrefix) { extra[name] = t } else { own[name] = t }
        }
        do {
            try model.loadStateDict(own, strict: true, source: path)
        } catch BackpropError.stateDictMismatch(_, _, let mismatch) {
            throw BackpropError.badFile(path: path, offset: nil, reason: "the tensors do not fit \(architecture.json): \(mismatch)")
        }
        return Loaded(model: model, architecture: architecture, metadata: file.metadata, extraTensors: extra)
    }
}
