import XCTest
@testable import Backprop
import BackpropOptim

/// The seed example: y = 2x + 3 + noise, Linear(1,2) → ReLU → Linear(2,1), MSE, SGD lr 0.1.
final class RegressionTests: XCTestCase {
    func testOneStepGradientsMatchFiniteDifferencesAndTrainingConverges() throws {
        let (x, y) = try RegressionExample.data(count: 64)
        let model = try RegressionExample.model()
        let loss = MeanSquaredError()
        let optimizer = try SGD(parameters: model.parameters, lr: 0.1)

        // One step: every parameter gradient against a central difference of the full loss.
        optimizer.zeroGrad()
        let (first, delta) = try loss(try model(x), target: y)
        _ = try model.backward(delta)
        for (name, p) in model.namedParameters {
            for i in 0..<p.value.count {
                let saved = p.value.data[i], h: Float = 1e-2
                p.value.data[i] = saved + h
                let plus = try loss(try model(x), target: y).loss
                p.value.data[i] = saved - h
                let minus = try loss(try model(x), target: y).loss
                p.value.data[i] = saved
                let numeric = (plus - minus) / (2 * h)
                XCTAssertEqual(p.grad.data[i], numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(name)[\(i)]")
            }
        }
        let before = model.parameters.map { $0.value.scalars }
        try optimizer.step()
        for (p, old) in zip(model.parameters, before) {  // θ ← θ − 0.1·g exactly
            for i in 0..<p.value.count { XCTAssertEqual(p.value.data[i], old[i] - 0.1 * p.grad.data[i], accuracy: 1e-6) }
        }
        XCTAssertTrue(model.parameterTable().contains("0.weight"))

        var last = first
        for _ in 0..<300 {
            optimizer.zeroGrad()
            let (value, d) = try loss(try model(x), target: y)
            _ = try model.backward(d)
            try optimizer.step()
            last = value
        }
        XCTAssertLessThan(last, 0.01, "noise variance is 0.0025; the fit should approach it")
        XCTAssertLessThan(last, first / 100)
        let probe = try Tensor([-1, 0, 0.5, 1], shape: [4, 1])
        for (xi, p) in zip(probe.scalars, try model(probe).scalars) {
            XCTAssertEqual(p, 2 * xi + 3, accuracy: 0.1, "prediction at x = \(xi)")
        }
    }
}
