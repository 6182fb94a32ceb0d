// XOR: the smallest network that needs a hidden layer, trained with SGD and checked with `predict`.
import Backprop
import BackpropOptim
import Foundation

manualSeed(1)
let model = Sequential(try Dense(2, 8), Tanh(), try Dense(8, 2))
let optimizer = try SGD(parameters: model.parameters, lr: 0.5, momentum: 0.9)
let loss = SoftmaxCrossEntropy()
let x = try Tensor([0, 0, 0, 1, 1, 0, 1, 1], shape: [4, 2])
let labels: [Int32] = [0, 1, 1, 0]

for step in 1...300 {
    optimizer.zeroGrad()
    let (value, delta) = try loss(try model(x), labels: labels)
    try model.backward(delta)
    try optimizer.step()
    if step % 100 == 0 { print("step \(step): loss \(value)") }
}
let predicted = try model.predict(x)
print("predictions \(predicted), accuracy \(try accuracy(predictions: predicted, labels: labels))")
if predicted != labels.map(Int.init) { print("XOR not learned"); exit(1) }
