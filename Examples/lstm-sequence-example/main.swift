// An LSTM on a toy sequence task, fed by a DataLoader of Float tensors: is the first step's
// value positive? The answer sits 12 steps back, so the cell state must carry it.
import Backprop
import BackpropData
import BackpropOptim
import Foundation

let steps = 12, n = 512
var rng = SeededGenerator(seed: 5)
var features: [Float] = [], labels: [Int] = []
for _ in 0..<n {
    let values = (0..<steps).map { _ in Float.random(in: -1...1, using: &rng) }
    features += values.flatMap { [$0, 0.5] }           // two features per step
    labels.append(values[0] > 0 ? 1 : 0)
}
let data = try TensorDataset(features: features, sampleShape: [steps, 2], labels: labels)
let (train, test) = try data.randomSplit(fraction: 0.75, seed: 1)
let loader = try DataLoader(train, batchSize: 32, shuffle: true, seed: 1)

let model = try SequenceClassifier(kind: .lstm, inputSize: 2, hiddenSize: 16, classes: 2, seed: 3)
let optimizer = try Adam(parameters: model.parameters, lr: 0.01)
let loss = SoftmaxCrossEntropy()
let testInput = try Tensor(test.features, shape: [test.count, steps, 2])
let testLabels = test.labels ?? []

for epoch in 1...30 {
    var total: Float = 0
    for batch in loader {
        optimizer.zeroGrad()
        let (value, delta) = try loss(try model(batch.input), labels: batch.labels)
        try model.backward(delta)
        try clipGradNorm(model.parameters, maxNorm: 1)
        try optimizer.step()
        total += value * Float(batch.count)
    }
    if epoch % 10 == 0 {
        let acc = try accuracy(predictions: try model.predict(testInput), labels: testLabels)
        print(String(format: "epoch %2d  train loss %.4f  test accuracy %.1f%%", epoch, total / Float(train.count), acc * 100))
    }
}
var matrix = try ConfusionMatrix(classes: 2)
try matrix.add(predictions: try model.predict(testInput), labels: testLabels)
print(matrix)
if matrix.accuracy < 0.9 { exit(1) }
