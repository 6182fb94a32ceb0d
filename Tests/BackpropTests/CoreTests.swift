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
    /// zeroGrad is lazy (PyTorch's set_to_none): reads see zeros, one backward writes, a second adds.
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
