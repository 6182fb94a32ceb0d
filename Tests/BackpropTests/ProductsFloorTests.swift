import XCTest
@testable import Backprop

/// `ProductsFloor` (`backprop bench --lenet`'s floor) lists exactly the sgemm calls a training step
/// of the model issues: compared, as multisets, with the calls `gemm` records during a real step.
final class ProductsFloorTests: XCTestCase {
    /// The calls of one training step (zeroGrad, forward, loss, backward) as `gemm` saw them.
    private func recordedStep(_ model: Sequential, _ x: Tensor, labels: [Int32]) throws -> [ProductCall] {
        let loss = try SoftmaxCrossEntropy()
        model.zeroGrad()
        _ = try model.backward(try loss(try model.forward(x), labels: labels).gradient)   // warm, unrecorded
        let recorder = GEMMRecorder()
        gemmRecorder = recorder
        defer { gemmRecorder = nil }
        model.zeroGrad()
        _ = try model.backward(try loss(try model.forward(x), labels: labels).gradient)
        return recorder.calls
    }

    private func sorted(_ calls: [ProductCall]) -> [String] { calls.map(\.description).sorted() }

    func testLeNetFloorIssuesTheStepsProducts() throws {
        for (batch, threads, imagesPerGemm) in [(7, 1, 1), (9, 2, 1), (8, 3, 1), (6, 2, 4), (5, 1, 2)] {
            let model = try Architectures.leNet(seed: 1)
            model.useThreads(threads)
            model.needsInputGradient = false   // as training sets it
            for case let conv as Conv2D in model.layers { conv.imagesPerGemm = imagesPerGemm }
            var rng = SeededGenerator(seed: 2)
            let x = try Tensor(zeros: [batch, 1, 28, 28]); x.fillUniform(0, 1, using: &rng)
            let labels = (0..<batch).map { Int32($0 % 10) }
            let recorded = try recordedStep(model, x, labels: labels)
            let floor = try ProductsFloor(trainingStepOf: model, inputShape: x.shape)
            let what = "batch \(batch), threads \(threads), images per gemm \(imagesPerGemm)"
            XCTAssertFalse(recorded.isEmpty, what)
            XCTAssertEqual(sorted(floor.calls), sorted(recorded), what)
            // The slices of a sliced run are as many as the model's batch slices.
            XCTAssertEqual(floor.phases.map(\.slices.count).max(), Swift.min(threads, batch), what)
            // The floor runs, and issues its own list.
            let recorder = GEMMRecorder()
            gemmRecorder = recorder
            try floor.run()
            gemmRecorder = nil
            XCTAssertEqual(sorted(recorder.calls), sorted(floor.calls), what)
        }
    }

    /// The input gradient of the first layer counts: with it, each image adds its dcols products.
    func testFirstLayerInputGradientChangesTheList() throws {
        let model = try Architectures.leNet(seed: 1)
        let x = try Tensor(zeros: [3, 1, 28, 28])
        model.needsInputGradient = false
        let without = try ProductsFloor(trainingStepOf: model, inputShape: x.shape).calls.count
        model.needsInputGradient = true
        let with = try ProductsFloor(trainingStepOf: model, inputShape: x.shape)
        XCTAssertGreaterThan(with.calls.count, without)
        XCTAssertEqual(sorted(with.calls), sorted(try recordedStep(model, x, labels: [1, 2, 3])))
    }

    func testUnknownLayersAndBadShapesAreRefused() throws {
        let model = Sequential([try BatchNorm2d(1), try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, seed: 1)])
        XCTAssertThrowsError(try ProductsFloor(trainingStepOf: model, inputShape: [2, 1, 8, 8]))
        let lenet = try Architectures.leNet(seed: 1)
        XCTAssertThrowsError(try ProductsFloor(trainingStepOf: lenet, inputShape: [2, 3, 28, 28]))
        XCTAssertThrowsError(try ProductsFloor(trainingStepOf: lenet, inputShape: [0, 1, 28, 28]))
        XCTAssertThrowsError(try ProductsFloor(trainingStepOf: lenet, inputShape: []))
    }
}
