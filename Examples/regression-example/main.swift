// The regression example: y = 2x + 3 plus a little noise, Linear(1,2) → ReLU → Linear(2,1),
// mean squared error, SGD with learning rate 0.1. Prints the loss and every parameter's value
// and gradient after one step, then trains and reports the prediction error.
//
//     swift run regression-example
import Backprop
import BackpropOptim
import Foundation

do {
    let (x, y) = try RegressionExample.data(count: 64)
    let model = try RegressionExample.model()
    let loss = MeanSquaredError()
    let optimizer = try SGD(parameters: model.parameters, lr: 0.1)

    func trainStep() throws -> Float {
        optimizer.zeroGrad()
        let prediction = try model(x)
        let (value, delta) = try loss(prediction, target: y)
        _ = try model.backward(delta)
        try optimizer.step()
        return value
    }

    let first = try trainStep()
    print("step 1: loss \(first)")
    print("values after the step, gradients of the step:")
    print(model.parameterTable())
    var last = first
    for step in 2...300 {
        last = try trainStep()
        if step % 50 == 0 { print("step \(step): loss \(last)") }
    }
    let probe = try Tensor([-1, 0, 0.5, 1], shape: [4, 1])
    let predicted = try model(probe).scalars
    var worst: Float = 0
    for (xi, pi) in zip(probe.scalars, predicted) {
        print(String(format: "x = %5.2f  predicted %.4f  true %.4f", xi, pi, 2 * xi + 3))
        worst = max(worst, abs(pi - (2 * xi + 3)))
    }
    print(String(format: "final loss %.5f, largest prediction error %.4f", last, worst))
} catch {
    FileHandle.standardError.write(Data("regression-example: \(error)\n".utf8))
    exit(1)
}
