import XCTest
import Backprop
import BackpropOptim

/// The README's library example, verbatim apart from the prints: it must compile and learn.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeExample() throws {
        var rng = SeededGenerator(seed: 0)
        let model = Sequential(try Dense(1, 2, rng: &rng), ReLU(), try Dense(2, 1, rng: &rng))
        let optimizer = try SGD(parameters: model.parameters, lr: 0.1)
        let loss = MeanSquaredError()

        let x = try Tensor([-1, -0.5, 0, 0.5, 1], shape: [5, 1])
        let y = try Tensor([1, 2, 3, 4, 5], shape: [5, 1])
        var first: Float = 0, last: Float = 0
        for step in 1...200 {
            optimizer.zeroGrad()
            let (value, delta) = try loss(try model(x), target: y)
            _ = try model.backward(delta)
            try optimizer.step()
            if step == 1 { first = value; XCTAssertTrue(model.parameterTable().contains("2.bias")) }
            last = value
        }
        XCTAssertEqual(model.namedParameters.map(\.name), ["0.weight", "0.bias", "2.weight", "2.bias"])
        XCTAssertLessThan(last, first / 10, "the README example must visibly learn (\(first) → \(last))")
    }
}
