import Foundation
import XCTest
@testable import Backprop

/// δ of every loss against finite differences of its value (GradientCheck.checkLoss, step 1e-2,
/// maxError < 2e-3), plus hand-computed values.
final class LossTests: XCTestCase {
    let tolerance: Float = 2e-3

    func logits(_ shape: [Int], seed: UInt64 = 5, range: Float = 3) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-range, range, using: &rng)
        return t
    }

    func assertLoss(_ output: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line,
                    _ loss: (Tensor) throws -> (loss: Float, gradient: Tensor)) throws {
        let report = try GradientCheck.checkLoss(output: output, loss)
        XCTAssertEqual(report.checked, output.count, file: file, line: line)
        XCTAssertLessThan(report.maxError, tolerance, "\(name): \(report)", file: file, line: line)
    }

    func testMeanSquaredError() throws {
        let y = try logits([4, 3]), t = try logits([4, 3], seed: 6)
        for reduction in [Reduction.mean, .sum] {
            let mse = MeanSquaredError(reduction: reduction)
            try assertLoss(y, "MSE \(reduction)") { try mse($0, target: t) }
        }
        let (value, _) = try MeanSquaredError()(Tensor([1, 2, 3]), target: Tensor([1, 0, 0]))
        XCTAssertEqual(value, 13.0 / 3, accuracy: 1e-6)
    }

    func testSoftmaxCrossEntropyLabels() throws {
        let z = try logits([5, 4])
        let labels: [Int32] = [0, 3, 1, 2, 3]
        for smoothing: Float in [0, 0.1] {
            for reduction in [Reduction.mean, .sum] {
                let ce = try SoftmaxCrossEntropy(labelSmoothing: smoothing, reduction: reduction)
                try assertLoss(z, "CE ε=\(smoothing) \(reduction)") { try ce($0, labels: labels) }
            }
        }
    }

    func testSoftmaxCrossEntropySoftTargets() throws {
        let z = try logits([3, 5])
        let raw = try logits([3, 5], seed: 9)
        let t = try Softmax().forward(raw).copy()                 // rows of probabilities
        let ce = try SoftmaxCrossEntropy()
        try assertLoss(z, "CE soft") { try ce($0, target: t) }
        let smoothed = try SoftmaxCrossEntropy(labelSmoothing: 0.2)
        try assertLoss(z, "CE soft ε=0.2") { try smoothed($0, target: t) }
    }

    func testCrossEntropyValues() throws {
        // uniform logits: L = log C, δ = (1/C − onehot) / N
        let c = 10
        let z = try Tensor(zeros: [4, c])
        let ce = try SoftmaxCrossEntropy()
        let (loss, grad) = try ce(z, labels: [0, 1, 2, 9])
        XCTAssertEqual(loss, logf(Float(c)), accuracy: 1e-6)
        XCTAssertEqual(grad[0, 0], (0.1 - 1) / 4, accuracy: 1e-7)
        XCTAssertEqual(grad[0, 1], 0.1 / 4, accuracy: 1e-7)
        // hand example: logits [0, ln 3] → p = [1/4, 3/4]; label 1 → −ln(3/4)
        let (l2, _) = try ce(try Tensor([0, logf(3)], shape: [1, 2]), labels: [1])
        XCTAssertEqual(l2, -logf(0.75), accuracy: 1e-6)
        // label smoothing ε on uniform logits is still log C (every class has p = 1/C)
        XCTAssertEqual(try SoftmaxCrossEntropy(labelSmoothing: 0.3)(z, labels: [0, 1, 2, 3]).loss, logf(Float(c)), accuracy: 1e-6)
        XCTAssertThrowsError(try ce(z, labels: [0, 1, 2, 10]))
        XCTAssertThrowsError(try ce(z, labels: [0, 1]))
    }

    func testBinaryCrossEntropyWithLogitsGradient() throws {
        let z = try logits([4, 3])
        var rng = SeededGenerator(seed: 12)
        let soft = try Tensor(zeros: [4, 3]); soft.fillUniform(0, 1, using: &rng)
        let hard = try Tensor((0..<12).map { Float($0 % 2) }, shape: [4, 3])
        for (name, t) in [("soft", soft), ("hard", hard)] {
            for reduction in [Reduction.mean, .sum] {
                let bce = BinaryCrossEntropyWithLogits(reduction: reduction)
                try assertLoss(z, "BCE \(name) \(reduction)") { try bce($0, target: t) }
            }
        }
    }

    func testBinaryCrossEntropyWithLogitsValues() throws {
        // Reference: numpy/jax in float64 of max(z,0) − z·t + log1p(e^−|z|).
        let z = try Tensor([-2, 0.5, 3, 10, -30, 0], shape: [2, 3])
        let t = try Tensor([0, 1, 1, 1, 0, 0.3], shape: [2, 3])
        XCTAssertEqual(try BinaryCrossEntropyWithLogits()(z, target: t).loss, 0.22379748770934615, accuracy: 1e-6)
        XCTAssertEqual(try BinaryCrossEntropyWithLogits(reduction: .sum)(z, target: t).loss, 1.342784926256077, accuracy: 1e-5)
        // z = 0: loss log 2, δ = (½ − t) / M
        let (l0, g0) = try BinaryCrossEntropyWithLogits()(Tensor([0]), target: Tensor([1]))
        XCTAssertEqual(l0, logf(2), accuracy: 1e-7)
        XCTAssertEqual(g0.scalars, [-0.5])
        // extreme logits stay finite: confident and wrong costs |z|, confident and right costs ~0
        let (big, gBig) = try BinaryCrossEntropyWithLogits(reduction: .sum)(Tensor([100, -100, 100]), target: Tensor([0, 0, 1]))
        XCTAssertEqual(big, 100, accuracy: 1e-4)
        for (got, want) in zip(gBig.scalars, [Float(1), 0, 0]) { XCTAssertEqual(got, want, accuracy: 1e-30) }
        XCTAssertThrowsError(try BinaryCrossEntropyWithLogits()(z, target: Tensor([1, 2]))) { error in
            guard case let BackpropError.shapeMismatch(location, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "BinaryCrossEntropyWithLogits")
        }
    }

    /// BCE on logits equals Sigmoid followed by the textbook binary cross-entropy.
    func testBCEMatchesSigmoidComposition() throws {
        let z = try logits([3, 4], range: 4)
        var rng = SeededGenerator(seed: 3)
        let t = try Tensor(zeros: [3, 4]); t.fillUniform(0, 1, using: &rng)
        let p = try Sigmoid().forward(z)
        var expected: Double = 0
        for i in 0..<12 {
            let pi = Double(p.data[i]), ti = Double(t.data[i])
            expected -= ti * log(pi) + (1 - ti) * log(1 - pi)
        }
        XCTAssertEqual(Double(try BinaryCrossEntropyWithLogits()(z, target: t).loss), expected / 12, accuracy: 1e-5)
    }
}
