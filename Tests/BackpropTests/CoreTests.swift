import XCTest
@testable import Backprop

final class CoreTests: XCTestCase {
    func testDenseGradients() throws {
        var rng = SeededGenerator(seed: 1)
        let layer = try Dense(5, 3, rng: &rng)
        let x = try Tensor(zeros: [4, 5]); x.fillUniform(-1, 1, using: &rng)
        let report = try GradientCheck.check(layer, input: x)
        XCTAssertLessThan(report.maxError, 2e-3, "\(report)")
    }

    func testCoreSelected() {
        let s = BLAS.ensureReady()
        print("BLAS core:", s, "threads:", BLAS.threadCount)
    }
}

final class ParameterGradientTests: XCTestCase {
    /// zeroGrad is PyTorch's zero_grad(set_to_none=False), done lazily: reads see zeros, one
    /// backward writes, a second adds.
    func testLazyZeroGradOverwritesThenAccumulates() throws {
        var rng = SeededGenerator(seed: 9)
        let layer = try Dense(3, 2, rng: &rng)
        let x = try Tensor(zeros: [4, 3]); x.fillUniform(-1, 1, using: &rng)
        let dy = try Tensor(zeros: [4, 2]); dy.fillUniform(-1, 1, using: &rng)
        _ = try layer.forward(x); _ = try layer.backward(dy)
        let once = layer.parameters.map { $0.grad.scalars }
        layer.zeroGrad()
        XCTAssertTrue(layer.parameters.allSatisfy { $0.grad.scalars.allSatisfy { $0 == 0 } })
        layer.zeroGrad()
        _ = try layer.forward(x); _ = try layer.backward(dy)
        XCTAssertEqual(layer.parameters.map { $0.grad.scalars }, once, "backward after zeroGrad writes the gradient")
        _ = try layer.forward(x); _ = try layer.backward(dy)
        for (p, g) in zip(layer.parameters, once) {
            for (a, b) in zip(p.grad.scalars, g) { XCTAssertEqual(a, 2 * b, accuracy: 1e-6, "second backward accumulates") }
        }
    }
}

final class InputGradientSkipTests: XCTestCase {
    /// A first layer that need not compute δ of its input returns an empty tensor and still
    /// produces exactly the same parameter gradients.
    func testSkippingTheInputGradientKeepsParameterGradients() throws {
        func run(skip: Bool) throws -> ([[Float]], [Int]) {
            var rng = SeededGenerator(seed: 4)
            let model = Sequential(try Dense(6, 5, rng: &rng), ReLU(), try Dense(5, 3, rng: &rng))
            let x = try Tensor(zeros: [4, 6]); x.fillUniform(-1, 1, using: &rng)
            model.needsInputGradient = !skip
            let out = try model(x)
            let dx = try model.backward(try SoftmaxCrossEntropy()(out, labels: [0, 1, 2, 1]).gradient)
            return (model.parameters.map { $0.grad.scalars }, dx.shape)
        }
        let (full, fullShape) = try run(skip: false)
        let (skipped, skippedShape) = try run(skip: true)
        XCTAssertEqual(full, skipped)
        XCTAssertEqual(fullShape, [4, 6])
        XCTAssertEqual(skippedShape, [0])
    }
}

final class TensorStorageTests: XCTestCase {
    /// Buffers from 1 MiB up start on a 2 MiB boundary (whole huge pages, asked for with
    /// madvise), smaller ones on a cache line; both start zeroed and keep their values.
    func testLargeBuffersAreHugePageAligned() throws {
        for (elements, alignment) in [(1 << 18, 2 << 20), (3 << 19 + 5, 2 << 20), (1000, 64), ((1 << 18) - 1, 64)] {
            let t = try Tensor(zeros: [elements])
            let address = UInt(bitPattern: t.data)
            XCTAssertEqual(address % UInt(alignment), 0, "\(elements) floats")
            XCTAssertTrue(t.scalars.allSatisfy { $0 == 0 }, "\(elements) floats start zeroed")
            for i in stride(from: 0, to: elements, by: 4099) { t.data[i] = Float(i) }
            for i in stride(from: 0, to: elements, by: 4099) { XCTAssertEqual(t.data[i], Float(i)) }
        }
    }
}
