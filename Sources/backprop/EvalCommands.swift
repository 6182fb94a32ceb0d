import ArgumentParser
import Backprop
import BackpropData
import Foundation

/// `backprop eval`: test loss and accuracy of a model file.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a model file on the MNIST test set (or any IDX folder or CSV file).")
    @Option(help: "Model file (safetensors).") var model: String
    @OptionGroup var arch: ModelOptions
    @Option(help: "Folder with the MNIST-format IDX files (its test set), or a CSV file of label,pixel0,… lines (all of it).") var data = "data/mnist"
    @Option(help: "Batch size.") var batch = 500
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let test = try DataSources.loadTest(data: data)
        let loaded = try loadModel(model, arch, steps: test.rows)
        guard loaded.architecture.inputFeatures == test.featureCount else {
            throw ValidationError("\(model): the model takes \(loaded.architecture.inputFeatures) features but \(data) has \(test.featureCount)")
        }
        guard loaded.architecture.outputs >= test.classCount else {
            throw ValidationError("\(model): the model has \(loaded.architecture.outputs) outputs but the labels have \(test.classCount) classes")
        }
        let m = loaded.model
        let wasTraining = m.isTraining
        m.eval()
        defer { m.isTraining = wasTraining }
        var batcher = try Batcher(test, batchSize: max(1, batch), shuffle: false, seed: 0, layout: loaded.architecture.batchLayout)
        batcher.startEpoch(1)
        let lossFunction = SoftmaxCrossEntropy()
        var matrix = try ConfusionMatrix(classes: max(loaded.architecture.outputs, 1))
        var total = 0.0
        while let b = batcher.next() {
            let out = try m.forward(b.input)
            let (value, _) = try lossFunction(out, labels: b.labels)
            total += Double(value) * Double(b.count)
            try matrix.add(logits: out, labels: b.labels)
        }
        let loss = total / Double(max(matrix.total, 1)), accuracy = matrix.accuracy
        if json {
            let rows = matrix.counts.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ")
            let perClass = matrix.perClassAccuracy.map { $0.map { "\($0)" } ?? "null" }.joined(separator: ", ")
            print("{\"test_loss\": \(loss), \"test_accuracy\": \(accuracy), \"images\": \(test.count), "
                  + "\"confusion_matrix\": [\(rows)], \"per_class_accuracy\": [\(perClass)]}")
        } else {
            print(String(format: "test loss %.4f  test accuracy %.2f%% on %d images", loss, accuracy * 100, test.count))
            print("confusion matrix (rows: true class, columns: predicted class):")
            print(matrix)
        }
    }
}

/// `backprop predict`: the digit and class probabilities for PGM images.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Classify PGM images with a model file.")
    @Option(help: "Model file (safetensors).") var model: String
    @OptionGroup var arch: ModelOptions
    @Flag(help: "Print JSON lines.") var json = false
    @Argument(help: "PGM images (P2 or P5), as many pixels as the model has inputs.") var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one IMAGE.pgm") }
    }

    func run() throws {
        let loaded = try loadModel(model, arch)
        let m = loaded.model
        m.eval()
        let softmax = SoftmaxCrossEntropy()
        for path in images {
            let image = try PGM.read(path: path)
            // A recurrent model reads one image row per step: any height, rows of its input size.
            var architecture = loaded.architecture
            if case let .recurrent(_, _, inputSize, _, _, _) = architecture, image.width == inputSize {
                architecture = architecture.withSteps(image.height)
            }
            let features = architecture.inputFeatures
            guard image.pixels.count == features else {
                throw ValidationError("\(path): \(image.width)×\(image.height) = \(image.pixels.count) pixels but the model takes \(features)")
            }
            let input = try Tensor(zeros: architecture.inputShape(batch: 1))
            for (i, p) in image.pixels.enumerated() { input.data[i] = Float(p) / 255 }
            let out = try m.forward(input)
            _ = try softmax(out, labels: [0])
            let probs = softmax.probabilities.scalars
            let best = probs.indices.max { probs[$0] < probs[$1] } ?? 0
            if json {
                let list = probs.map { String(format: "%.6f", $0) }.joined(separator: ", ")
                print("{\"image\": \"\(path)\", \"digit\": \(best), \"probabilities\": [\(list)]}")
            } else {
                let list = probs.enumerated().map { String(format: "%d:%.3f", $0.offset, $0.element) }.joined(separator: " ")
                print("\(path): \(best)   \(list)")
            }
        }
    }
}

/// Loads a model file. The architecture comes from its metadata; a file without (PyTorch's) is
/// rebuilt from the family given by --arch and its tensors' names and shapes, with `steps`
/// (from the data) as a recurrent model's sequence length.
func loadModel(_ path: String, _ options: ModelOptions, steps: Int? = nil) throws -> ModelFile.Loaded {
    guard options.given else { return try ModelFile.load(path) }
    let file = try SafetensorsFile.read(path: path)
    if file.metadata[ModelFile.architectureKey] != nil { return try ModelFile.load(path) }
    let shapes = file.tensors.filter { !$0.key.hasPrefix("optimizer.") }.mapValues(\.shape)
    let architecture = try options.architecture(fromShapes: shapes, steps: steps, source: path)
    return try ModelFile.load(path, fallback: architecture)
}
