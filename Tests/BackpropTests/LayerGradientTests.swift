import XCTest
@testable import Backprop

/// Finite-difference gradient checks for every layer, plus value checks of each forward.
/// Tolerance throughout: GradientCheck.maxError < 2e-3 with step 1e-2 (central differences in
/// Float, loss accumulated in Double). Inputs of piecewise-linear layers stay ≥ 0.1 away from kinks.
final class LayerGradientTests: XCTestCase {
    let tolerance: Float = 2e-3

    /// Uniform in [−2, 2] with |x| ≥ 0.1, so a ±1e-2 step never crosses 0.
    func input(_ shape: [Int], seed: UInt64 = 3) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let x = try Tensor(zeros: shape)
        x.fillUniform(-2, 2, using: &rng)
        for i in 0..<x.count where abs(x.data[i]) < 0.1 { x.data[i] = x.data[i] < 0 ? -0.1 - x.data[i] : 0.1 + x.data[i] }
        return x
    }

    func assertGradients(_ layer: Layer, _ x: Tensor, file: StaticString = #filePath, line: UInt = #line) throws {
        let report = try GradientCheck.check(layer, input: x)
        XCTAssertGreaterThan(report.checked, 0, file: file, line: line)
        XCTAssertLessThan(report.maxError, tolerance, "\(layer.summary): \(report)", file: file, line: line)
    }

    // MARK: - Gradient checks

    func testDenseGradients() throws {
        var rng = SeededGenerator(seed: 11)
        try assertGradients(try Dense(6, 4, rng: &rng), try input([5, 6]))
        try assertGradients(try Dense(6, 4, bias: false, seed: 2), try input([3, 6]))
    }

    func testReLUGradients() throws { try assertGradients(ReLU(), try input([4, 7])) }
    func testLeakyReLUGradients() throws {
        try assertGradients(LeakyReLU(), try input([4, 7]))
        try assertGradients(LeakyReLU(negativeSlope: 0.2), try input([3, 2, 5]))
    }
    func testSigmoidGradients() throws { try assertGradients(Sigmoid(), try input([4, 7])) }
    func testTanhGradients() throws { try assertGradients(Tanh(), try input([4, 7])) }
    func testGELUGradients() throws {
        try assertGradients(GELU(), try input([4, 7]))
        try assertGradients(GELU(approximate: .tanh), try input([4, 7]))
    }
    func testSoftmaxGradients() throws {
        try assertGradients(Softmax(), try input([4, 6]))
        try assertGradients(Softmax(), try input([2, 3, 5]))   // over the last dimension of a rank-3 input
    }
    func testFlattenGradients() throws { try assertGradients(Flatten(), try input([3, 2, 4])) }

    func testDropoutGradientsWithFrozenMask() throws {
        let d = try Dropout(p: 0.4, seed: 5)
        d.freezeMask = true
        let x = try input([6, 10])
        try assertGradients(d, x)
        // The mask really drops something (else the check proves little).
        let zeros = (0..<d.mask.count).filter { d.mask.data[$0] == 0 }.count
        XCTAssertGreaterThan(zeros, 0)
        XCTAssertLessThan(zeros, d.mask.count)
    }

    func testResidualGradients() throws {
        var rng = SeededGenerator(seed: 21)
        let block = Sequential(try Dense(5, 8, rng: &rng), Tanh(), try Dense(8, 5, rng: &rng))
        let r = Residual(block)
        XCTAssertEqual(r.namedParameters.map(\.name), ["block.0.weight", "block.0.bias", "block.2.weight", "block.2.bias"])
        try assertGradients(r, try input([4, 5]))
    }

    func testSequentialGradients() throws {
        var rng = SeededGenerator(seed: 31)
        let dropout = try Dropout(p: 0.2, seed: 9)
        dropout.freezeMask = true
        let model = Sequential(Flatten(), try Dense(12, 10, rng: &rng), GELU(), dropout,
                               try Dense(10, 8, rng: &rng), Sigmoid(),
                               Residual(Sequential(try Dense(8, 8, rng: &rng), Tanh())),
                               try Dense(8, 6, rng: &rng), Softmax())
        try assertGradients(model, try input([4, 3, 4]))
    }

    // MARK: - Values

    func testGELUValues() throws {
        // References from jax.nn.gelu in float64 (approximate=False / True).
        let x = Tensor([-3, -1, -0.5, 0, 0.5, 1, 3])
        let exact: [Float] = [-0.004049694, -0.158655254, -0.154268769, 0, 0.345731231, 0.841344746, 2.995950306]
        let tanhForm: [Float] = [-0.003637392, -0.158808009, -0.15428599, 0, 0.34571401, 0.841191991, 2.996362608]
        for (got, want) in zip(try GELU().forward(x).scalars, exact) { XCTAssertEqual(got, want, accuracy: 1e-6) }
        for (got, want) in zip(try GELU(approximate: .tanh).forward(x).scalars, tanhForm) { XCTAssertEqual(got, want, accuracy: 1e-6) }
        XCTAssertEqual(try GELU().forward(Tensor([1])).scalars[0], 0.8413447, accuracy: 1e-7)
    }

    func testSigmoidTanhLeakyValues() throws {
        let x = Tensor([-1000, -1, 0, 1, 1000])
        let s = try Sigmoid().forward(x).scalars
        XCTAssertEqual(s[2], 0.5)
        XCTAssertEqual(s[3], 0.731058579, accuracy: 1e-7)
        XCTAssertEqual(s[1], 0.268941421, accuracy: 1e-7)
        XCTAssertEqual(s[0], 0)            // no overflow, no NaN
        XCTAssertEqual(s[4], 1)
        let t = try Tanh().forward(x).scalars
        XCTAssertEqual(t, [-1, -0.7615942, 0, 0.7615942, 1])
        XCTAssertEqual(try LeakyReLU(negativeSlope: 0.1).forward(Tensor([-2, 0, 3])).scalars, [-0.2, 0, 3])
        XCTAssertEqual(try LeakyReLU().forward(Tensor([-1])).scalars, [-0.01])
    }

    func testSoftmaxValues() throws {
        let x = try Tensor([1, 2, 3, 1000, 1000, 1000, -5, 0, 5], shape: [3, 3])
        let y = try Softmax().forward(x)
        for r in 0..<3 {
            let s = (0..<3).reduce(Float(0)) { $0 + y[r, $1] }
            XCTAssertEqual(s, 1, accuracy: 1e-6)
        }
        XCTAssertEqual(y[0, 0], 0.09003057, accuracy: 1e-7)
        XCTAssertEqual(y[0, 2], 0.66524096, accuracy: 1e-7)
        XCTAssertEqual(y[1, 1], 1.0 / 3, accuracy: 1e-7)   // large equal logits: stable
        // Backward of a constant δ is zero (softmax is invariant to adding a constant).
        let layer = Softmax()
        _ = try layer.forward(x)
        let g = try layer.backward(try Tensor([Float](repeating: 2, count: 9), shape: [3, 3]))
        for v in g.scalars { XCTAssertEqual(v, 0, accuracy: 1e-6) }
    }

    func testDropoutEvalIsIdentity() throws {
        let d = try Dropout(p: 0.5, seed: 1)
        d.eval()
        let x = try input([3, 5])
        XCTAssertEqual(try d.forward(x).scalars, x.scalars)
        let dy = try input([3, 5], seed: 8)
        XCTAssertEqual(try d.backward(dy).scalars, dy.scalars)
        // p = 0 in training is the identity too.
        let d0 = try Dropout(p: 0, seed: 1)
        XCTAssertEqual(try d0.forward(x).scalars, x.scalars)
    }

    func testDropoutTrainingScaleAndMask() throws {
        let p: Float = 0.3
        let d = try Dropout(p: p, seed: 42)
        let n = 100_000
        let ones = try Tensor([Float](repeating: 1, count: n), shape: [100, 1000])
        let y = try d.forward(ones)
        var dropped = 0
        for i in 0..<n {
            let v = y.data[i]
            if v == 0 { dropped += 1 } else { XCTAssertEqual(v, 1 / (1 - p), accuracy: 1e-6) }
        }
        XCTAssertEqual(Float(dropped) / Float(n), p, accuracy: 0.01)
        XCTAssertEqual(y.mean(), 1, accuracy: 0.015)          // inverted dropout keeps E[y] = x
        // backward applies exactly the forward's mask
        let dy = try Tensor(zeros: [100, 1000]); var rng = SeededGenerator(seed: 2); dy.fillUniform(-1, 1, using: &rng)
        let dx = try d.backward(dy)
        for i in 0..<n { XCTAssertEqual(dx.data[i], dy.data[i] * y.data[i]) }
        // a fresh mask on the next call, the same masks from the same seed
        let first = y.copy()
        XCTAssertNotEqual(try d.forward(ones).scalars, first.scalars)
        XCTAssertEqual(try Dropout(p: p, seed: 42).forward(ones).scalars, first.scalars)
    }

    func testDropoutRejectsBadProbability() {
        for p: Float in [1, -0.1, 1.5, .nan] {
            XCTAssertThrowsError(try Dropout(p: p)) { error in
                guard case BackpropError.invalidArgument = error else { return XCTFail("\(error)") }
            }
        }
    }

    func testFlattenIsAView() throws {
        let x = try input([2, 3, 4])
        let f = Flatten()
        let y = try f.forward(x)
        XCTAssertEqual(y.shape, [2, 12])
        XCTAssertTrue(y.storage === x.storage)
        let y2 = try f.forward(x)
        XCTAssertTrue(y2 === y)                                  // the same cached view object
        let dy = try input([2, 12], seed: 4)
        let dx = try f.backward(dy)
        XCTAssertEqual(dx.shape, [2, 3, 4])
        XCTAssertEqual(dx.scalars, dy.scalars)
        XCTAssertThrowsError(try f.forward(Tensor([1, 2, 3])))
    }

    func testResidualValuesAndTraining() throws {
        var rng = SeededGenerator(seed: 4)
        let dense = try Dense(3, 3, rng: &rng)
        let dropout = try Dropout(p: 0.5)
        let r = Residual(Sequential(dense, dropout))
        r.eval()
        XCTAssertFalse(dropout.isTraining)
        XCTAssertFalse(r.isTraining)
        let x = try input([2, 3])
        let fx = try dense.forward(x).copy()
        let y = try r.forward(x)
        for i in 0..<6 { XCTAssertEqual(y.data[i], x.data[i] + fx.data[i], accuracy: 1e-6) }
        r.train()
        XCTAssertTrue(dropout.isTraining)
        XCTAssertNotNil(r.parameter(named: "block.0.weight"))
    }

    func testResidualShapeMismatchThrows() throws {
        let r = Residual(try Dense(4, 3))
        XCTAssertThrowsError(try r.forward(try input([2, 4]))) { error in
            guard case let BackpropError.shapeMismatch(location, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(location, r.summary)
            XCTAssertTrue(detail.contains("[2, 4]") && detail.contains("[2, 3]"), detail)
        }
    }

    /// δ of the wrong shape throws a shape error naming the layer, for every layer.
    func testBackwardShapeErrorsNameTheLayer() throws {
        let layers: [Layer] = [ReLU(), LeakyReLU(), Sigmoid(), Tanh(), GELU(), Softmax(), try Dropout(p: 0.1),
                               Flatten(), try Dense(3, 2), Residual(Tanh())]
        for layer in layers {
            let x = try input([2, 3])
            _ = try layer.forward(x)
            XCTAssertThrowsError(try layer.backward(try Tensor(zeros: [5, 7])), layer.summary) { error in
                guard case let BackpropError.shapeMismatch(location, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(location, layer.summary)
            }
        }
        XCTAssertThrowsError(try Dense(3, 2).forward(try input([2, 4]))) { error in
            guard case let BackpropError.shapeMismatch(location, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "Dense(3 → 2)")
            XCTAssertTrue(detail.contains("[2, 4]"), detail)
        }
    }

    func testBackwardBeforeForwardThrows() throws {
        let layers: [Layer] = [LeakyReLU(), GELU(), Flatten(), try Dense(3, 2)]
        for layer in layers {
            XCTAssertThrowsError(try layer.backward(try Tensor(zeros: [2, 3])), layer.summary)
        }
    }

    func testBuffersAreReused() throws {
        let layers: [Layer] = [LeakyReLU(), Sigmoid(), Tanh(), GELU(), Softmax(), try Dropout(p: 0.3),
                               Residual(Tanh())]
        for layer in layers {
            let y1 = try layer.forward(try input([4, 5]))
            let d1 = try layer.backward(try input([4, 5], seed: 9))
            let y2 = try layer.forward(try input([3, 5], seed: 5))     // a smaller batch fits the same storage
            let d2 = try layer.backward(try input([3, 5], seed: 6))
            XCTAssertTrue(y1 === y2 && y1.storage === y2.storage, layer.summary)
            XCTAssertTrue(d1 === d2 && d1.storage === d2.storage, layer.summary)
        }
    }

    func testSequentialTrace() throws {
        var rng = SeededGenerator(seed: 8)
        let model = Sequential(try Dense(4, 3, rng: &rng), ReLU(), try Dense(3, 2, rng: &rng))
        let x = try input([2, 4])
        let trace = try model.trace(x)
        XCTAssertEqual(trace.map(\.layer), ["0: Dense(4 → 3)", "1: ReLU", "2: Dense(3 → 2)"])
        let h = try model.layers[0].forward(x).copy()
        XCTAssertEqual(trace[0].output.scalars, h.scalars)
        XCTAssertEqual(trace[1].output.scalars, h.scalars.map { max($0, 0) })
        XCTAssertEqual(trace[2].output.scalars, try model.forward(x).scalars)
        // copies: a later forward does not change them
        let kept = trace[2].output.scalars
        _ = try model.forward(try input([2, 4], seed: 99))
        XCTAssertEqual(trace[2].output.scalars, kept)
        let live = try model.forward(x)
        XCTAssertFalse(trace[2].output === live)
    }
}
