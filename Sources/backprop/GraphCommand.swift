import ArgumentParser
import Backprop
import BackpropData
import Foundation

/// `backprop graph`: a model file's computational graph for one batch, drawn: the model runs on
/// `Variable`s (every layer records its node), the loss is differentiated with `backward()`, and
/// `graphSVG` (or `graphDOT`) draws every op with its shape, a summary of its value and the norm of
/// its gradient; parameters carry their PyTorch names.
struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw a model file's computational graph for one batch, with values and gradients (SVG or DOT).",
        discussion: """
        The batch is the first --count images of the MNIST test set in --data, or a batch file
        (--batch, safetensors with `input` and `target`, as for `grads`). An --out ending in .dot
        gets Graphviz DOT text, anything else SVG.
        """)
    @Option(help: "Model file (safetensors).") var model: String
    @OptionGroup var arch: ModelOptions
    @Option(help: "Folder with the MNIST files (used unless --batch is given).") var data = "data/mnist"
    @Option(help: "Images taken from the test set.") var count = 4
    @Option(name: .customLong("batch"), help: "Batch file (safetensors with input and target) instead of --data.") var batchFile: String?
    @Option(help: "Loss: cross-entropy or mse (mse needs --batch with float targets).") var loss = "cross-entropy"
    @Option(name: [.short, .long], help: "Output file: .svg, or .dot for Graphviz.") var out = "graph.svg"

    func validate() throws {
        guard ["cross-entropy", "mse"].contains(loss) else { throw ValidationError("--loss must be cross-entropy or mse, got \(loss)") }
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
        if loss == "mse" && batchFile == nil { throw ValidationError("--loss mse needs --batch FILE with float targets") }
    }

    func run() throws {
        let loaded = try loadModel(model, arch)
        guard let graphModel = loaded.model as? GraphLayer else {
            throw ValidationError("\(model): a \(loaded.model.summary) cannot run on the computational graph")
        }
        let input: Tensor
        let target: BatchFile.Target
        if let batchFile {
            let batch = try BatchFile(batchFile, for: loaded, loss: loss)
            (input, target) = (batch.input, batch.target)
        } else {
            let (_, test) = try Dataset.loadMNIST(directory: data)
            guard loaded.architecture.inputFeatures == test.featureCount else {
                throw ValidationError("\(model): the model takes \(loaded.architecture.inputFeatures) features but \(data) has \(test.featureCount)")
            }
            var batcher = try Batcher(try test.subset(0..<min(count, test.count)), batchSize: count, shuffle: false,
                                      layout: loaded.architecture.batchLayout)
            guard let b = batcher.next() else { throw ValidationError("\(data): the test set is empty") }
            (input, target) = (b.input.copy(), .labels(b.labels))
        }

        let model = loaded.model
        model.train()
        model.zeroGrad()
        let x = Variable(input, requiresGrad: true)   // ∂L/∂input is drawn too
        let output = try graphModel(x)
        let lossValue: Variable
        switch target {
        case .labels(let labels):
            if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= output.value.columnsPerRow }) {
                throw ValidationError("label \(labels[bad]) at row \(bad) is outside 0..<\(output.value.columnsPerRow)")
            }
            lossValue = try crossEntropy(output, labels: labels.map(Int.init))
        case .values(let t):
            guard t.shape == output.shape else {
                throw ValidationError("target has shape \(t.shape) but the model's output is \(output.shape)")
            }
            lossValue = try mse(output, Variable(t))
        }
        // Every op's result keeps its δ for the picture (PyTorch's retain_grad), the input too.
        var seen = Set<ObjectIdentifier>(), stack = [lossValue]
        while let v = stack.popLast() {
            guard seen.insert(ObjectIdentifier(v)).inserted else { continue }
            if !v.isLeaf { v.retainGrad() }
            stack.append(contentsOf: v.inputs)
        }
        try lossValue.backward()

        var names: [String: Variable] = ["input": x, "output": output, "loss": lossValue]
        for (name, p) in model.namedParameters { names[name] = p.variable }
        let title = "\(loaded.architecture.json) · \(input.shape[0]) inputs · \(loss) \(String(format: "%.4g", try lossValue.item()))"
        let text = out.hasSuffix(".dot") ? graphDOT(lossValue, title: title, names: names)
                                         : graphSVG(lossValue, title: title, names: names)
        try AtomicFile.write(Data(text.utf8), to: out)
        print("wrote \(out): the graph of \(model.summary) on \(input.shape[0]) inputs, loss \(try lossValue.item())")
    }
}
