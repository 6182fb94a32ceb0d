import XCTest
@testable import Backprop
import BackpropOptim

/// The models of `attention-example` and `autoencoder-example` on tiny data: a few Adam steps
/// lower the loss; the attention block's and the whole classifier's gradients against finite
/// differences; and the tied autoencoder weight's gradient is the sum of its two uses' gradients.
final class GraphExamplesTests: XCTestCase {
    func uniform(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(low, high, using: &rng)
        return t
    }

    /// Runs `steps` Adam steps of `loss` and returns the losses before the first and after the last.
    func train(_ parameters: [Parameter], steps: Int, lr: Float, _ loss: () throws -> Variable) throws -> (first: Float, last: Float) {
        let optimizer = try Adam(parameters: parameters, lr: lr)
        let first = try noGrad { try loss() }.item()
        for _ in 0..<steps {
            optimizer.zeroGrad()
            let l = try loss()
            try l.backward()
            try optimizer.step()
        }
        return (first, try noGrad { try loss() }.item())
    }

    // MARK: - Attention classifier

    func testAttentionClassifierShapesAndAttentionRowsSumToOne() throws {
        let model = try AttentionClassifier(tokens: 5, features: 6, width: 8, hidden: 12, classes: 3, seed: 1)
        let (logits, attention) = try model.forward(Variable(try uniform([4, 5, 6], seed: 2)))
        XCTAssertEqual(logits.shape, [4, 3])
        XCTAssertEqual(attention.shape, [4, 5, 5])
        for r in 0..<20 {
            let s = (0..<5).map { attention.value.data[r * 5 + $0] }.reduce(0, +)
            XCTAssertEqual(s, 1, accuracy: 1e-5)
        }
        XCTAssertEqual(model.namedParameters.count, 1 + 2 * 8 + 2 * 2)   // positions, 8 Dense, 2 LayerNorm
        XCTAssertEqual(Set(model.namedParameters.map(\.name)).count, model.namedParameters.count)
        XCTAssertThrowsError(try model(Variable(try uniform([4, 6, 5], seed: 3))))
        XCTAssertThrowsError(try model.attention(Variable(try uniform([4, 5, 7], seed: 3))))
        XCTAssertThrowsError(try AttentionClassifier(tokens: 0, features: 6, width: 8, hidden: 0, classes: 3))
    }

    func testAttentionClassifierTrainingStepsLowerTheLoss() throws {
        let model = try AttentionClassifier(tokens: 6, features: 5, width: 8, hidden: 16, classes: 4, seed: 3)
        let x = Variable(try uniform([16, 6, 5], seed: 4))
        let labels = (0..<16).map { $0 % 4 }
        let (first, last) = try train(model.parameters, steps: 30, lr: 1e-2) {
            try crossEntropy(try model(x), labels: labels)
        }
        XCTAssertLessThan(last, 0.5 * first, "loss \(first) → \(last)")
    }

    func testAttentionBlockGradientsAgainstFiniteDifferences() throws {
        let model = try AttentionClassifier(tokens: 4, features: 3, width: 5, hidden: 0, classes: 3, seed: 5)
        let h = Variable(try uniform([2, 4, 5], seed: 6), requiresGrad: true)
        let block = [model.query, model.key, model.value, model.projection].flatMap(\.parameters)
        // The block's output and its attention weights, as functions of its input and its parameters.
        try GraphBatchedOpsTests.checkGradients([h], parameters: block) { try model.attention($0[0]).output }
        try GraphBatchedOpsTests.checkGradients([h], parameters: block) { try model.attention($0[0]).weights }
    }

    func testAttentionClassifierGradientsAgainstFiniteDifferences() throws {
        // hidden 0: no ReLU, whose kink a finite-difference step could cross.
        let model = try AttentionClassifier(tokens: 3, features: 4, width: 4, hidden: 0, classes: 3, seed: 7)
        let x = Variable(try uniform([2, 3, 4], seed: 8), requiresGrad: true)
        try GraphBatchedOpsTests.checkGradients([x], parameters: model.parameters) { try model($0[0]) }
        try GraphBatchedOpsTests.checkGradients([x], parameters: model.parameters) {
            try crossEntropy(try model($0[0]), labels: [2, 0])
        }
    }

    // MARK: - Tied autoencoder

    func testTiedAutoencoderTrainingStepsLowerTheLoss() throws {
        let model = try TiedAutoencoder(features: 20, hidden: 6, seed: 9)
        let x = Variable(try uniform([16, 20], seed: 10, low: 0, high: 1))
        let (first, last) = try train(model.parameters, steps: 40, lr: 1e-2) { try mse(try model(x), x) }
        XCTAssertLessThan(last, 0.7 * first, "loss \(first) → \(last)")
    }

    func testTiedWeightGradientIsTheSumOfBothUses() throws {
        let model = try TiedAutoencoder(features: 12, hidden: 5, seed: 11)
        model.encoderBias.value.fill(0.3)   // every hidden unit on: both uses carry a gradient
        let x = Variable(try uniform([6, 12], seed: 12, low: 0, high: 1))
        let target = Variable(try uniform([6, 12], seed: 13, low: 0, high: 1))
        model.weight.zeroGrad()
        try mse(try model(x), target).backward()
        let tied = model.weight.grad.copy()
        // The same function with two separate copies of W: one for the encoder, one for the decoder.
        let encoderW = Variable(model.weight.value.copy(), requiresGrad: true)
        let decoderW = Variable(model.weight.value.copy(), requiresGrad: true)
        let untied = try model.decode(try model.encode(x, weight: encoderW), weight: decoderW)
        try mse(untied, target).backward()
        let ge = try XCTUnwrap(encoderW.grad), gd = try XCTUnwrap(decoderW.grad)
        var encoderPart: Float = 0, decoderPart: Float = 0
        for i in 0..<tied.count {
            XCTAssertEqual(tied.data[i], ge.data[i] + gd.data[i], accuracy: 1e-6 + 1e-4 * abs(tied.data[i]))
            encoderPart += abs(ge.data[i]); decoderPart += abs(gd.data[i])
        }
        XCTAssertGreaterThan(encoderPart, 1e-4)   // each use contributes: neither alone is the tied gradient
        XCTAssertGreaterThan(decoderPart, 1e-4)
        // And the tied gradient against finite differences.
        try GraphBatchedOpsTests.checkGradients([x], parameters: model.parameters) { try model($0[0]) }
        XCTAssertThrowsError(try model(Variable(try uniform([2, 11], seed: 14))))
        XCTAssertThrowsError(try model.decode(Variable(try uniform([2, 4], seed: 14))))
    }
}
