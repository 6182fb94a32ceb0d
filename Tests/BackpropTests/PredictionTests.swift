import XCTest
@testable import Backprop

/// `argmax`, `predict`, `accuracy` and `ConfusionMatrix`.
final class PredictionTests: XCTestCase {
    func testArgmaxPerRowFirstOnTiesNaNLargest() throws {
        let t = try Tensor([1, 5, 2, 7, 7, 0, -1, .nan, 3], shape: [3, 3])
        XCTAssertEqual(t.argmax(), [1, 0, 1])
        XCTAssertEqual(Tensor([0.5, 2, 1]).argmax(), [1])
        XCTAssertEqual(try Tensor((0..<8).map(Float.init), shape: [2, 2, 2]).argmax(), [3, 3])
        XCTAssertEqual(try Tensor(zeros: [0, 3]).argmax(), [])
    }

    func testPredictUsesEvaluationModeAndRestoresIt() throws {
        let dense = try Dense(2, 3, seed: 1)
        try dense.weight.value.assign([1, 0, 0, 1, -1, -1])
        try dense.bias!.value.assign([0, 0, 0])
        let model = Sequential([dense, try Dropout(p: 0.9)])
        model.train()
        let x = try Tensor([3, 1, 0, 2, -2, -2], shape: [3, 2])
        XCTAssertEqual(try model.predict(x), [0, 1, 2])
        XCTAssertTrue(model.isTraining, "the mode is restored")
        let p = try model.predictProbabilities(x)
        XCTAssertEqual(p.shape, [3, 3])
        for r in 0..<3 { XCTAssertEqual((0..<3).reduce(Float(0)) { $0 + p[r, $1] }, 1, accuracy: 1e-6) }
        XCTAssertEqual(p[0, 0], expf(3) / (expf(3) + expf(1) + expf(-4)), accuracy: 1e-6)
        let one = try model.predict(sample: Tensor([0, 2]))
        XCTAssertEqual(one.label, 1)
        XCTAssertEqual(one.probabilities.count, 3)
        XCTAssertThrowsError(try model.predict(sample: Tensor([0, 2, 3])))
    }

    func testAccuracyAndConfusionMatrix() throws {
        XCTAssertEqual(try accuracy(predictions: [0, 1, 2, 2], labels: [0, 1, 1, 2]), 0.75)
        XCTAssertThrowsError(try accuracy(predictions: [0], labels: [0, 1]))
        let logits = try Tensor([2, 1, 0, 3, 5, 0], shape: [3, 2])
        XCTAssertEqual(try accuracy(logits: logits, labels: [0, 1, 1]), 2.0 / 3, accuracy: 1e-12)
        var m = try ConfusionMatrix(classes: 3)
        try m.add(predictions: [0, 1, 2, 2], labels: [0, 1, 1, 2])
        try m.add(logits: try Tensor([0, 0, 9], shape: [1, 3]), labels: [0])
        XCTAssertEqual(m.counts, [[1, 0, 1], [0, 1, 1], [0, 0, 1]])
        XCTAssertEqual(m.total, 5)
        XCTAssertEqual(m.accuracy, 0.6, accuracy: 1e-12)
        XCTAssertEqual(m.perClassAccuracy, [0.5, 0.5, 1.0])
        XCTAssertTrue(m.description.contains("50.00%"), m.description)
        XCTAssertThrowsError(try m.add(predictions: [3], labels: [0]))
        XCTAssertThrowsError(try m.add(predictions: [0], labels: [-1]))
        XCTAssertEqual(m.total, 5, "a refused batch adds nothing")
        XCTAssertThrowsError(try ConfusionMatrix(classes: 0))
    }
}
