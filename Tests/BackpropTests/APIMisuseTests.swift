import Backprop
import XCTest

/// Call sequences `APISequenceFuzzer` found mishandled, each now refused before anything changes.
final class APIMisuseTests: XCTestCase {
    /// An instance appended a second time after a forward: backward ran it at the new place with
    /// δ meant for another layer, adding to its gradients, before the first place threw.
    func testBackwardRefusesAnInstanceAppendedAgainAfterForward() throws {
        let norm = try BatchNorm1d(3)
        let model = Sequential(try Dense(2, 3, seed: 1), norm)
        _ = try model.forward(try Tensor([0.5, -1, 2, 0.25, -0.75, 1.5], shape: [3, 2]))
        model.zeroGrad()
        model.append(norm)
        let delta = try Tensor([1, -2, 0.5, 0.25, 3, -1, 2, 1, -0.5], shape: [3, 3])
        XCTAssertThrowsError(try model.backward(delta)) { error in
            guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("positions 1 and 2"), detail)
        }
        for (name, p) in model.namedParameters {
            XCTAssertTrue(p.grad.scalars.allSatisfy { $0 == 0 }, "\(name) changed")
        }
    }

    /// Flatten, alone or as a whole model: backward before forward threw `invalidArgument` (every
    /// other layer: `invalidUse`), and a second backward for one forward was accepted.
    func testFlattenRefusesBackwardBeforeForwardAndTwice() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3, 1])
        let delta = try Tensor([1, 1, 1, 1, 1, 1], shape: [2, 3])
        for model in [Flatten(), Sequential(Flatten())] as [Layer] {
            XCTAssertThrowsError(try model.backward(delta), model.summary) { error in
                guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(detail.contains("before"), detail)
            }
            _ = try model.forward(x)
            XCTAssertEqual(try model.backward(delta).shape, [2, 3, 1])
            XCTAssertThrowsError(try model.backward(delta), model.summary) { error in
                guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(detail.contains("twice"), detail)
            }
            _ = try model.forward(x)
            XCTAssertEqual(try model.backward(delta).shape, [2, 3, 1])
        }
    }

    /// A layer shared with a second model whose forward ran between this model's forward and
    /// backward: the layer's backward paired with the other model's pass and returned wrong
    /// gradients without an error (its output, which the container now notes, says it ran again).
    func testBackwardRefusesALayerThatRanAnotherModelsForwardSince() throws {
        let x = try Tensor([0.5, -1, 2, 0.25, -0.75, 1.5], shape: [2, 3])
        let other = try Tensor([1, 0.5, -0.5, 2, -1, 0.25], shape: [2, 3])
        let delta = try Tensor([1, -2, 0.5, 0.25, 3, -1], shape: [2, 3])
        func assertRefused(_ model: Layer, _ shared: Layer, _ what: String) throws {
            _ = try model.forward(x)
            model.zeroGrad()
            _ = try Sequential(shared).forward(other)
            XCTAssertThrowsError(try model.backward(delta), what) { error in
                guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(what): \(error)") }
                XCTAssertTrue(detail.contains("resized or overwritten"), detail)
            }
            for (name, p) in model.namedParameters {
                XCTAssertTrue(p.grad.scalars.allSatisfy { $0 == 0 }, "\(what): \(name) changed")
            }
        }
        var dense = try Dense(3, 3, seed: 1)
        try assertRefused(Sequential(dense, Tanh()), dense, "shared first layer")
        dense = try Dense(3, 3, seed: 2)
        try assertRefused(Sequential(Tanh(), dense), dense, "shared last layer")
        dense = try Dense(3, 3, seed: 3)
        try assertRefused(Residual(dense), dense, "shared residual block")

        let classifier = try SequenceClassifier(kind: .gru, inputSize: 2, hiddenSize: 3, classes: 3, seed: 4)
        _ = try classifier.forward(try Tensor([0.5, -1, 2, 0.25, -0.75, 1.5, 1, 0], shape: [2, 2, 2]))
        _ = try Sequential(classifier.fc).forward(other)
        XCTAssertThrowsError(try classifier.backward(delta)) { error in
            guard case BackpropError.invalidUse = error else { return XCTFail("\(error)") }
        }
    }

    /// In a stretch run in batch slices, the layers begin their backward last to first before any
    /// product runs. When an earlier layer refused (its input changed), a later one had already
    /// taken its zeroed gradient for writing: after `zeroGrad` it then read as the stale values of
    /// the step before. It now reads as zero until the slices have written it.
    func testRefusedSlicedBackwardLeavesZeroedGradientsZero() throws {
        var rng = SeededGenerator(seed: 5)
        let model = Sequential(try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 1, seed: 1),
                               try Conv2D(inChannels: 2, outChannels: 1, kernelSize: 2, seed: 2),
                               Flatten(), try Dense(9, 2, seed: 3))
        model.useThreads(2)
        let x = try Tensor(zeros: [2, 1, 4, 4])
        x.fillUniform(-1, 1, using: &rng)
        let delta = try Tensor(zeros: [2, 2])
        delta.fillUniform(-1, 1, using: &rng)
        _ = try model.forward(x)
        _ = try model.backward(delta)                  // gradients now hold this step's values
        _ = try model.forward(x)
        model.zeroGrad()
        x.fill(1)                                      // the first layer's saved input changed
        XCTAssertThrowsError(try model.backward(delta)) { error in
            guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("resized or overwritten"), detail)
        }
        for (name, p) in model.namedParameters {
            XCTAssertTrue(p.grad.scalars.allSatisfy { $0 == 0 }, "\(name): \(p.grad.scalars)")
        }
    }

    /// A layer appended between forward and backward had no part in the forward; when a model
    /// sharing it ran it in between, backward paired it with that model's pass and returned.
    func testBackwardAfterAppendNeedsANewForward() throws {
        let gelu = GELU()
        let model = Sequential(try Dense(2, 3, seed: 1), Tanh())
        let x = try Tensor([0.5, -1, 2, 0.25], shape: [2, 2])
        _ = try model.forward(x)
        model.append(gelu)
        _ = try Sequential(gelu).forward(try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]))
        model.zeroGrad()
        XCTAssertThrowsError(try model.backward(try Tensor([1, -1, 0.5, 2, 0.25, -3], shape: [2, 3]))) { error in
            guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("before"), detail)
        }
        for (name, p) in model.namedParameters {
            XCTAssertTrue(p.grad.scalars.allSatisfy { $0 == 0 }, "\(name) changed")
        }
        _ = try model.forward(x)
        XCTAssertEqual(try model.backward(try Tensor([1, -1, 0.5, 2, 0.25, -3], shape: [2, 3])).shape, [2, 2])
    }
}
