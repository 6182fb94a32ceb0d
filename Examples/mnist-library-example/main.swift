// MNIST through the library: train an MLP for one epoch from a DataLoader, save it, load the file
// into a freshly built model and predict one image. Data: `scripts/fetch-mnist data/mnist`.
import Backprop
import BackpropData
import BackpropOptim
import Foundation

let folder = CommandLine.arguments.dropFirst().first ?? "data/mnist"
guard FileManager.default.fileExists(atPath: folder) else {
    print("no MNIST in \(folder) (bash scripts/fetch-mnist \(folder) downloads it); nothing to do")
    exit(0)
}
let (train, test) = try Dataset.loadMNIST(directory: folder)
let loader = try DataLoader(train, batchSize: 128, shuffle: true, seed: 1)   // [B, 784], pixels / 255

let architecture = Architecture.mlp(sizes: [784, 128, 10], activation: .relu)
let model = try architecture.build(seed: 1)
let optimizer = try SGD(parameters: model.parameters, lr: 0.1, momentum: 0.9)
let loss = SoftmaxCrossEntropy()
for batch in loader {
    optimizer.zeroGrad()
    let (_, delta) = try loss(try model(batch.input), labels: batch.labels)
    try model.backward(delta)
    try optimizer.step()
}

let path = NSTemporaryDirectory() + "mnist-library-example.safetensors"
try ModelFile.save(model, architecture: architecture, to: path)   // checked against the architecture
let fresh = try architecture.build(seed: 99)
try ModelFile.load(into: fresh, from: path)                         // strict: every name and shape

var matrix = try ConfusionMatrix(classes: 10)
for batch in try DataLoader(test, batchSize: 1000, shuffle: false) {
    try matrix.add(predictions: try fresh.predict(batch.input), labels: batch.labels)
}
print(String(format: "test accuracy after one epoch: %.2f%%", matrix.accuracy * 100))

let image = try test.pixels(of: 0).map { Float($0) / 255 }
let (digit, probabilities) = try fresh.predict(sample: try Tensor(image, shape: [784]))
print("image 0 (label \(test.labels[0])): predicted \(digit) with probability \(probabilities[digit])")
if matrix.accuracy < 0.9 { exit(1) }
