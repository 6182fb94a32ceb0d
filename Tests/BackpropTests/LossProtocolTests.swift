import Foundation
import XCTest
import Backprop

/// The three losses used only through the `Loss` and `ClassLabelLoss` protocols: generic code
/// gets the value of a float64 reference and a δ that agrees with finite differences of the
/// value (GradientCheck.checkLoss, step 1e-2, maxError < 2e-3), for both reductions.
final class LossProtocolTests: XCTestCase {
    let tolerance: Float = 2e-3

    func uniform(_ shape: [Int], _ low: Float, _ high: Float, seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(low, high, using: &rng)
        return t
    }

    /// What generic code sees: the value against `reference` (a float64 value of the same loss),
    /// δ against finite differences, and δ's shape.
    func check(_ loss: some Loss, _ name: String, output: Tensor, target: Tensor, reference: Double,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let (value, gradient) = try loss(output, target: target)
        XCTAssertEqual(gradient.shape, output.shape, name, file: file, line: line)
        XCTAssertEqual(Double(value), reference, accuracy: 1e-5 * max(1, abs(reference)), name, file: file, line: line)
        let report = try GradientCheck.checkLoss(loss, output: output, target: target)
        XCTAssertEqual(report.checked, output.count, file: file, line: line)
        XCTAssertLessThan(report.maxError, tolerance, "\(name): \(report)", file: file, line: line)
    }

    func testEveryLossThroughTheProtocol() throws {
        let y = try uniform([4, 3], -3, 3, seed: 5)
        let real = try uniform([4, 3], -3, 3, seed: 6)                 // MSE target
        let probability = try uniform([4, 3], 0, 1, seed: 7)           // BCE target
        let rows = try Softmax().forward(try uniform([4, 3], -2, 2, seed: 8)).copy()   // CE target: rows sum to 1

        // Σ of the per-item losses in float64, and the item count a mean divides by.
        var squares = 0.0, bce = 0.0, crossEntropy = 0.0
        for i in 0..<12 {
            let z = Double(y.data[i])
            squares += pow(z - Double(real.data[i]), 2)
            let t = Double(probability.data[i]), s = 1 / (1 + exp(-z))
            bce -= t * log(s) + (1 - t) * log(1 - s)
        }
        for r in 0..<4 {
            let z = (0..<3).map { Double(y.data[r * 3 + $0]) }
            let logSum = log(z.map(exp).reduce(0, +))
            for c in 0..<3 { crossEntropy -= Double(rows.data[r * 3 + c]) * (z[c] - logSum) }
        }

        for reduction in [Reduction.mean, .sum] {
            let cases: [(name: String, loss: any Loss, target: Tensor, sum: Double, items: Int)] = [
                ("MeanSquaredError", MeanSquaredError(reduction: reduction), real, squares, 12),
                ("BinaryCrossEntropyWithLogits", BinaryCrossEntropyWithLogits(reduction: reduction), probability, bce, 12),
                ("SoftmaxCrossEntropy", SoftmaxCrossEntropy(reduction: reduction), rows, crossEntropy, 4),
            ]
            for c in cases {
                XCTAssertEqual(c.loss.reduction, reduction)
                let reference = reduction == .mean ? c.sum / Double(c.items) : c.sum
                try check(c.loss, "\(c.name) \(reduction)", output: y, target: c.target, reference: reference)
            }
        }
    }

    /// Labels through `ClassLabelLoss` are one-hot targets through `Loss`: same value, same δ.
    func testClassLabelsAreOneHotTargets() throws {
        func compare(_ loss: some ClassLabelLoss, _ name: String) throws {
            let z = try uniform([5, 4], -3, 3, seed: 11)
            let labels: [Int32] = [0, 3, 1, 2, 3]
            let oneHot = try Tensor(zeros: [5, 4])
            for (row, label) in labels.enumerated() { oneHot[row, Int(label)] = 1 }
            let (byLabel, labelGradient) = try loss(z, labels: labels)
            let keptGradient = labelGradient.copy()
            let (byTarget, targetGradient) = try loss(z, target: oneHot)
            XCTAssertEqual(byLabel, byTarget, accuracy: 1e-6, name)
            for (a, b) in zip(keptGradient.scalars, targetGradient.scalars) { XCTAssertEqual(a, b, accuracy: 1e-7, name) }
            let report = try GradientCheck.checkLoss(loss, output: z, labels: labels)
            XCTAssertLessThan(report.maxError, tolerance, "\(name): \(report)")
            XCTAssertThrowsError(try loss(z, labels: [0, 1]), name)
        }
        try compare(SoftmaxCrossEntropy(), "SoftmaxCrossEntropy")
        try compare(try SoftmaxCrossEntropy(labelSmoothing: 0.1, reduction: .sum), "SoftmaxCrossEntropy ε=0.1 sum")
    }

    /// One convention for initialisers: the forms whose arguments cannot be invalid do not throw
    /// (this compiles without `try`); label smoothing is checked.
    func testInitialisersThrowOnlyForArgumentsThatCanBeInvalid() {
        let losses: [any Loss] = [MeanSquaredError(), BinaryCrossEntropyWithLogits(), SoftmaxCrossEntropy(),
                                  SoftmaxCrossEntropy(reduction: .sum)]
        XCTAssertEqual(losses.map(\.reduction), [.mean, .mean, .mean, .sum])
        XCTAssertEqual(Dropout(seed: 1).p, 0.5)
        XCTAssertThrowsError(try SoftmaxCrossEntropy(labelSmoothing: 1.5))
        XCTAssertThrowsError(try SoftmaxCrossEntropy(labelSmoothing: -0.1))
        XCTAssertEqual(try SoftmaxCrossEntropy(labelSmoothing: 1).labelSmoothing, 1)
    }
}
