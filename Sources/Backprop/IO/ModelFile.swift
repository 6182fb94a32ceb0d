import Foundation

/// Model files: safetensors holding the `state_dict` (parameters and buffers, float32, PyTorch
/// names) and, in `__metadata__["backprop.architecture"]`, the architecture as JSON, so a file
/// alone rebuilds its model. A file written elsewhere (PyTorch, NumPy) without that metadata
/// loads when the caller supplies the architecture. Writes are atomic.
public enum ModelFile {
    public static let architectureKey = "backprop.architecture"

    /// Writes `model`'s state dict and `architecture` to `path` (temporary file, then rename).
    public static func save(_ model: Layer, architecture: Architecture, to path: String,
                            metadata extra: [String: String] = [:], extraTensors: [String: Tensor] = [:]) throws {
        var tensors: [String: Tensor] = extraTensors
        for (name, t) in model.stateDict { tensors[name] = t }
        var metadata = extra
        metadata[architectureKey] = architecture.json
        metadata["format"] = "pt"
        try SafetensorsFile(tensors: tensors, metadata: metadata).write(to: path)
    }

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
                                        reason: "no architecture in the file's metadata; give it on the command line (--arch, --layers, --activation, …)")
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
        var unused = Set(file.tensors.keys)
        for (name, target) in model.stateDict {  // model order: the first problem reported is the first layer's
            guard let t = file.tensors[name] else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "tensor \"\(name)\" \(target.shape) is missing; \(architecture.json) needs it")
            }
            guard target.shape == t.shape else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "tensor \"\(name)\" has shape \(t.shape) but \(architecture.json) needs \(target.shape)")
            }
            try target.assign(t)
            unused.remove(name)
        }
        for name in unused.sorted() {
            guard name.hasPrefix(extraPrefix), let t = file.tensors[name] else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "tensor \"\(name)\" is not part of \(architecture.json)")
            }
            extra[name] = t
        }
        return Loaded(model: model, architecture: architecture, metadata: file.metadata, extraTensors: extra)
    }
}
