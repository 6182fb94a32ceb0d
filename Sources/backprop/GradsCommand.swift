import ArgumentParser
import Backprop
import Foundation

/// `backprop grads`: one forward and backward pass on a batch file, printing the loss and every
/// named parameter's value and gradient, like a PyTorch `for name, p in model.named_parameters()`
/// loop — the view learners ask for.
struct Grads: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the loss and each parameter's value and gradient for one batch.",
        discussion: """
        The batch file is safetensors with `input` (float32, [N, features]) and `target`:
        int64 (or int32) class labels [N] for --loss cross-entropy, float32 [N, outputs] for --loss mse.
        """)
    @Option(help: "Model file (safetensors).") var model: String
    @Option(name: .customLong("batch"), help: "Batch file (safetensors with input and target).") var batchFile: String
    @OptionGroup var arch: ModelOptions
    @Option(help: "Loss: cross-entropy or mse.") var loss = "cross-entropy"
    @Option(help: "Values shown per tensor in the table.") var show = 6
    @Flag(help: "Print {\"loss\": …, \"gradients\": {name: [flat row-major values]}} instead.") var json = false

    func validate() throws {
        guard ["cross-entropy", "mse"].contains(loss) else { throw ValidationError("--loss must be cross-entropy or mse, got \(loss)") }
    }

    func run() throws {
        let loaded = try loadModel(model, arch)
        let m = loaded.model
        let batch = try BatchFile(batchFile, for: loaded, loss: loss)
        m.train()
        m.zeroGrad()
        let output = try m.forward(batch.input)
        let value: Float
        let delta: Tensor
        switch batch.target {
        case .values(let target):
            guard target.shape == output.shape else {
                throw BackpropError.badFile(path: batchFile, offset: nil,
                                            reason: "target has shape \(target.shape) but the model's output is \(output.shape)")
            }
            (value, delta) = try MeanSquaredError()(output, target: target)
        case .labels(let labels):
            if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= output.columnsPerRow }) {
                throw BackpropError.badFile(path: batchFile, offset: nil,
                                            reason: "label \(labels[bad]) at row \(bad) is outside 0..<\(output.columnsPerRow)")
            }
            (value, delta) = try SoftmaxCrossEntropy()(output, labels: labels)
        }
        _ = try m.backward(delta)
        if json {
            var grads: [String] = []
            for (name, p) in m.namedParameters {
                grads.append("\"\(name)\": [" + p.grad.scalars.map { "\($0)" }.joined(separator: ", ") + "]")
            }
            var extra = ""
            if let seq = m as? SequenceClassifier {
                extra = ", \"hidden_gradient_norms\": [" + seq.rnn.hiddenGradientNorms.map { "\($0)" }.joined(separator: ", ") + "]"
            }
            print("{\"loss\": \(value), \"gradients\": {" + grads.joined(separator: ", ") + "}" + extra + "}")
            return
        }
        print("loss \(value)   (\(loss), batch of \(batch.rows), model \(loaded.architecture.json))")
        if let seq = m as? SequenceClassifier {
            print("mean ‖∂L/∂h_t‖ for t = 1…\(seq.rnn.hiddenGradientNorms.count): "
                  + seq.rnn.hiddenGradientNorms.map { String(format: "%.3g", $0) }.joined(separator: " "))
        }
        for (name, p) in m.namedParameters {
            print("\(name)  shape \(p.shape)")
            print("  value \(preview(p.value))")
            print("  grad  \(preview(p.grad))   ‖grad‖ \(String(format: "%.6g", p.grad.l2Norm()))")
        }
    }

    private func preview(_ t: Tensor) -> String {
        let k = max(0, min(show, t.count))
        let head = (0..<k).map { String(format: "%.6g", t.data[$0]) }.joined(separator: ", ")
        return "[" + head + (t.count > k ? ", … (\(t.count) values)" : "") + "]"
    }
}

/// A batch file as `grads` and `graph` read it: safetensors with `input` (float32, [N, features],
/// reshaped to the model's input shape) and `target` (int64 or int32 class labels [N] for
/// cross-entropy, float32 [N, outputs] for mse). Errors name the file and what is wrong.
struct BatchFile {
    enum Target {
        case labels([Int32])
        case values(Tensor)
    }
    let input: Tensor
    let target: Target
    let rows: Int

    init(_ path: String, for loaded: ModelFile.Loaded, loss: String) throws {
        let batch = try SafetensorsFile.read(path: path)
        guard let input = batch.tensors["input"] else {
            throw BackpropError.badFile(path: path, offset: nil, reason: "no tensor named \"input\"")
        }
        guard batch.tensors["target"] != nil else {
            throw BackpropError.badFile(path: path, offset: nil, reason: "no tensor named \"target\"")
        }
        let features = loaded.architecture.inputFeatures
        guard input.rank >= 2, input.rows >= 1, input.columnsPerRow == features else {
            throw BackpropError.badFile(path: path, offset: nil,
                                        reason: "input has shape \(input.shape) but the model takes \(loaded.architecture.inputShape(batch: max(input.rows, 1)))")
        }
        self.rows = input.rows
        self.input = try input.reshaped(loaded.architecture.inputShape(batch: input.rows))
        if loss == "mse" {
            target = .values(try batch.tensor("target"))
        } else {
            let labels: [Int32]
            if batch.dtypes["target"] == "I32" { labels = try batch.int32Values("target") } else {
                labels = try batch.int64Values("target").map { Int32(clamping: $0) }
            }
            guard labels.count == input.rows else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "target holds \(labels.count) labels for \(input.rows) inputs")
            }
            target = .labels(labels)
        }
    }
}
