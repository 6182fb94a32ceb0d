import ArgumentParser
import Backprop

/// The flags that name an architecture, shared by train, eval, predict and grads.
/// `--arch NAME` picks the family; `--layers`/`--activation` shape an MLP, `--hidden` and
/// `--num-layers` a recurrent model. Input and class counts come from the data or the file.
struct ModelOptions: ParsableArguments {
    @Option(help: "Architecture: \(Architecture.names.joined(separator: ", ")).") var arch: String = "mlp"
    @Option(help: "MLP layer sizes, input first, e.g. 784,256,128,10.") var layers: String?
    @Option(help: "MLP activation: relu, tanh, sigmoid, gelu, leaky_relu.") var activation: String = "relu"

    static let defaultLayers = "784,256,128,10"

    /// The architecture these flags describe. `inputs`/`classes`, when known (from data),
    /// are checked against `--layers`.
    func architecture(inputs: Int? = nil, classes: Int? = nil) throws -> Architecture {
        guard Architecture.names.contains(arch) else {
            throw ValidationError("unknown --arch \(arch); choose one of \(Architecture.names.joined(separator: ", "))")
        }
        guard let act = ActivationKind(rawValue: activation) else {
            throw ValidationError("unknown --activation \(activation); choose one of \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var sizes = try Architecture.parseSizes(layers ?? ModelOptions.defaultLayers)
        if layers == nil {  // defaults adapt to the data
            if let inputs { sizes[0] = inputs }
            if let classes { sizes[sizes.count - 1] = classes }
        }
        if let inputs, sizes[0] != inputs {
            throw ValidationError("--layers starts with \(sizes[0]) inputs but the data has \(inputs) features per sample")
        }
        if let classes, sizes[sizes.count - 1] < classes {
            throw ValidationError("--layers ends with \(sizes[sizes.count - 1]) outputs but the labels have \(classes) classes")
        }
        return .mlp(sizes: sizes, activation: act)
    }

    /// True when the user named an architecture on the command line (for files without metadata).
    var given: Bool { layers != nil || arch != "mlp" || activation != "relu" }
}
