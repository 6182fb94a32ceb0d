import XCTest
@testable import Backprop

/// `Layer.predict`: evaluation mode for the call, the caller's mode restored, buffers reused.
final class PredictTests: XCTestCase {
    func testPredictRunsInEvaluationModeAndRestoresTheMode() throws {
        var rng = SeededGenerator(seed: 4)
        let model = Sequential([try Dense(6, 5, rng: &rng), try Dropout(p: 0.5, seed: 3), try Dense(5, 3, rng: &rng)])
        let x = try Tensor(zeros: [4, 6]); x.fillUniform(-1, 1, using: &rng)
        model.isTraining = false
        let expected = try model.forward(x).scalars
        model.isTraining = true
        XCTAssertEqual(try model.evaluationForward(x).scalars, expected, "dropout must be off")
        XCTAssertTrue(model.isTraining, "training mode restored")
        model.isTraining = false
        XCTAssertEqual(try model.evaluationForward(x).scalars, expected)
        XCTAssertFalse(model.isTraining, "evaluation mode kept")
    }

    /// Once warm, the three benchmarked models answer every call in the same output buffer, and
    /// a mistaken input shape is a shape error, not a crash.
    func testPredictReusesItsOutputAndRejectsBadShapes() throws {
        let architectures: [Architecture] = [
            .mlp(sizes: [784, 32, 10], activation: .relu), .lenet(classes: 10),
            .recurrent(kind: .lstm, steps: 28, inputSize: 28, hidden: 16, layers: 1, classes: 10),
        ]
        for architecture in architectures {
            let model = try architecture.build(seed: 1)
            let one = try Tensor(zeros: architecture.inputShape(batch: 1))
            let first = try model.evaluationForward(one)
            let base = first.data
            for _ in 0..<3 { XCTAssertEqual(try model.evaluationForward(one).data, base, architecture.name) }
            XCTAssertEqual(try model.evaluationForward(one).shape, [1, 10], architecture.name)
            XCTAssertThrowsError(try model.evaluationForward(try Tensor(zeros: [1, 5])), architecture.name)
        }
    }
}
