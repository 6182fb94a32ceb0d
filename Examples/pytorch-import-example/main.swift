// A model loaded from a PyTorch state dict of non-MNIST sizes: nn.LSTM(5, 7) + nn.Linear(7, 3),
// written by `torch` (scripts/make-size-fixtures.py), loaded into a model built in Swift, and run
// on the batch PyTorch saved with it; the loss matches the one PyTorch computed.
import Backprop
import Foundation

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../Tests/BackpropCLITests/Fixtures").standardized.path
let modelFile = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : fixtures + "/sizes_lstm.safetensors"
let batchFile = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : fixtures + "/sizes_lstm_batch.safetensors"

// Sizes from the file's shapes (or build it yourself: SequenceClassifier(kind: .lstm, inputSize: 5, …)).
let file = try SafetensorsFile.read(path: modelFile)
let architecture = try Architecture.inferred(family: "lstm", shapes: file.tensors.mapValues(\.shape), source: modelFile)
print("read from the shapes: \(architecture.json)")
let model = try SequenceClassifier(kind: .lstm, inputSize: 5, hiddenSize: 7, classes: 3, seed: 0)
try model.loadStateDict(file.tensors, source: modelFile)   // strict, as torch's load_state_dict

let batch = try SafetensorsFile.read(path: batchFile)
let input = try batch.tensor("input")                        // [4, 6, 5]: any sequence length
let labels = try batch.int64Values("target").map { Int32($0) }
let (value, _) = try SoftmaxCrossEntropy()(try model.inferenceOutput(input), labels: labels)
print("batch \(input.shape): loss \(value), predictions \(try model.predict(input)), labels \(labels)")

let grads = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/sizes_grads.json")))
if CommandLine.arguments.count <= 1, let torchLoss = ((grads as? [String: Any])?["lstm"] as? [String: Any])?["loss"] as? Double {
    print("PyTorch's loss: \(torchLoss)")
    if abs(Double(value) - torchLoss) > 1e-5 * abs(torchLoss) { exit(1) }
}
