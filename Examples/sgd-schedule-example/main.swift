// SGD with momentum, a warm-up then cosine learning-rate schedule, and gradient-norm clipping,
// fitting y = sin(3x) with a small MLP on a DataLoader of Float tensors.
import Backprop
import BackpropData
import BackpropOptim
import Foundation

manualSeed(7)
let xs = (0..<256).map { Float($0) / 128 - 1 }
let data = try TensorDataset(features: xs, sampleShape: [1], targets: xs.map { sin(3 * $0) })
let (train, test) = try data.randomSplit(fraction: 0.8, seed: 1)
let loader = try DataLoader(train, batchSize: 32, shuffle: true, seed: 2)

let model = Sequential(try Dense(1, 32), Tanh(), try Dense(32, 32), Tanh(), try Dense(32, 1))
let optimizer = try SGD(parameters: model.parameters, lr: 0.1, momentum: 0.9)
let epochs = 60
let schedule = try SequentialLR(optimizer, schedulers: [
    try LinearWarmup(optimizer, warmupSteps: 5), try CosineAnnealingLR(optimizer, tMax: epochs - 5),
], milestones: [5])
let loss = MeanSquaredError()

@MainActor func testLoss() throws -> Float {   // top-level globals belong to the main actor
    let x = try Tensor(test.features, shape: [test.count, 1])
    guard case let .values(y, _) = test.targets else { return .nan }
    return try loss(try model.inferenceOutput(x), target: try Tensor(y, shape: [test.count, 1])).loss
}
let before = try testLoss()
for epoch in 1...epochs {
    var largest: Float = 0
    for batch in loader {
        guard let target = batch.targets else { continue }
        optimizer.zeroGrad()
        let (_, delta) = try loss(try model(batch.input), target: target)
        try model.backward(delta)
        largest = max(largest, try clipGradNorm(model.parameters, maxNorm: 1))   // the norm before clipping
        try optimizer.step()
    }
    schedule.step()
    if epoch % 15 == 0 {
        print(String(format: "epoch %2d  lr %.4f  largest ‖grad‖ %.3f  test MSE %.5f", epoch, optimizer.learningRate, largest, try testLoss()))
    }
}
let after = try testLoss()
print("test MSE \(before) → \(after)")
if !(after < before / 5) { exit(1) }
