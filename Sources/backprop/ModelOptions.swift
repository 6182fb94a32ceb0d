import ArgumentParser
import Backprop
import BackpropData

/// The flags that name an architecture, shared by train, eval, predict and grads.
/// `--arch NAME` picks the family; `--layers`/`--activation` shape an MLP, `--hidden` and
/// `--num-layers` a recurrent model. Input and class counts come from the data or the file.
struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("arch"), help: "Architecture: mlp (default), lenet, rnn, lstm, gru. For a model file without metadata, the family alone: sizes are read from its tensors.")
    var archOption: String?
    @Option(help: "MLP layer sizes, input first, e.g. 784,256,128,10.") var layers: String?
    @Option(help: "MLP activation: relu, tanh, sigmoid, gelu, leaky_relu.") var activation: String = "relu"
    @Option(help: "Hidden size of rnn, lstm, gru (default 128).") var hidden: Int?
    @Option(help: "Stacked recurrent layers (default 1).") var numLayers: Int?
    @Option(help: "Classes, when no data set says (default 10).") var classes: Int?

    /// The family named by --arch (mlp when not given).
    var arch: String { archOption ?? "mlp" }

    static let defaultLayers = "784,256,128,10"

    /// The architecture these flags describe. `rows`×`columns` is the image size and `classes`
    /// the class count of the data (when known); MNIST's 28×28 and 10 otherwise.
    /// Without data (`rows`/`columns` nil) an MLP takes `--layers` as given and the other
    /// families assume MNIST's 28×28.
    func architecture(rows dataRows: Int? = nil, columns dataColumns: Int? = nil, classes dataClasses: Int? = nil) throws -> Architecture {
        let classes = dataClasses ?? self.classes ?? 10
        let hidden = self.hidden ?? 128, numLayers = self.numLayers ?? 1
        let rows = dataRows ?? 28, columns = dataColumns ?? 28
        let inputs = rows * columns
        let dataKnown = dataRows != nil && dataColumns != nil
        switch arch {
        case "mlp":
            guard let act = ActivationKind(rawValue: activation) else {
                throw ValidationError("unknown --activation \(activation); choose one of \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var sizes = try Architecture.parseSizes(layers ?? ModelOptions.defaultLayers)
            if layers == nil {  // defaults adapt to the data
                sizes[0] = inputs
                sizes[sizes.count - 1] = classes
            }
            guard sizes[0] == inputs || !dataKnown else {
                throw ValidationError("--layers starts with \(sizes[0]) inputs but the data has \(inputs) features per sample")
            }
            guard sizes[sizes.count - 1] >= classes || dataClasses == nil else {
                throw ValidationError("--layers ends with \(sizes[sizes.count - 1]) outputs but the labels have \(classes) classes")
            }
            return .mlp(sizes: sizes, activation: act)
        case "lenet":
            guard rows == 28, columns == 28 else {
                throw ValidationError("--arch lenet takes 28×28 images; the data has \(rows)×\(columns)")
            }
            return .lenet(classes: classes)
        case "rnn", "lstm", "gru":
            guard hidden >= 1, hidden <= 1 << 16 else { throw ValidationError("--hidden must be in 1…65536, got \(hidden)") }
            guard numLayers >= 1, numLayers <= 64 else { throw ValidationError("--num-layers must be in 1…64, got \(numLayers)") }
            let kind: RecurrentKind = arch == "rnn" ? .rnn : arch == "lstm" ? .lstm : .gru
            // Each image row is one time step: T = rows, F = columns.
            return .recurrent(kind: kind, steps: rows, inputSize: columns, hidden: hidden, layers: numLayers, classes: classes)
        default:
            throw ValidationError("unknown --arch \(arch); choose one of \(Architecture.names.joined(separator: ", "))")
        }
    }

    /// True when the user named an architecture on the command line (for files without metadata).
    var given: Bool {
        archOption != nil || layers != nil || activation != "relu" || hidden != nil || numLayers != nil
    }

    /// The architecture of a file without metadata: the family from --arch, every size from the
    /// tensors' names and shapes (`Architecture.inferred`); a size flag given on the command
    /// line must agree with the file (else an error naming both).
    func architecture(fromShapes shapes: [String: [Int]], steps: Int?, source: String) throws -> Architecture {
        guard let act = ActivationKind(rawValue: activation) else {
            throw ValidationError("unknown --activation \(activation); choose one of \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let inferred = try Architecture.inferred(family: arch, shapes: shapes, steps: steps, activation: act, source: source)
        func disagree(_ flag: String, _ given: String, _ found: String, _ tensor: String) -> BackpropError {
            BackpropError.invalidArgument("\(flag) \(given) but \(source) has \(found) (\(tensor)); drop the flag or fix it")
        }
        switch inferred {
        case let .mlp(sizes, _):
            if let layers, let wanted = try? Architecture.parseSizes(layers), wanted != sizes {
                throw disagree("--layers", layers, "layers " + sizes.map(String.init).joined(separator: ","),
                               "0.weight \(shapes["0.weight"] ?? [])")
            }
            if let classes, classes != sizes.last {
                throw disagree("--classes", "\(classes)", "\(sizes.last ?? 0) outputs", "the last Linear layer")
            }
        case let .lenet(fileClasses):
            if let classes, classes != fileClasses {
                throw disagree("--classes", "\(classes)", "\(fileClasses) classes", "9.weight \(shapes["9.weight"] ?? [])")
            }
        case let .recurrent(_, _, _, fileHidden, fileLayers, fileClasses):
            if let hidden, hidden != fileHidden {
                throw disagree("--hidden", "\(hidden)", "hidden size \(fileHidden)", "rnn.weight_hh_l0 \(shapes["rnn.weight_hh_l0"] ?? [])")
            }
            if let numLayers, numLayers != fileLayers {
                throw disagree("--num-layers", "\(numLayers)", "\(fileLayers) layer\(fileLayers == 1 ? "" : "s")", "rnn.weight_ih_l0 … l\(fileLayers - 1)")
            }
            if let classes, classes != fileClasses {
                throw disagree("--classes", "\(classes)", "\(fileClasses) classes", "fc.weight \(shapes["fc.weight"] ?? [])")
            }
        }
        return inferred
    }
}

extension Architecture {
    /// How the batcher lays out a batch for this model.
    var batchLayout: BatchLayout {
        switch self {
        case .mlp: return .flat
        case .lenet: return .image
        case .recurrent: return .sequence
        }
    }
}
