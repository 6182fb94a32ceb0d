import XCTest
@testable import Backprop
import BackpropOptim

/// Built-in layers on the graph: the same gradients as the layer API, parameter gradients in the
/// same `Parameter.grad`, and what only the graph can do (a layer used twice, tied weights),
/// checked against finite differences.
final class GraphLayerTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64, range: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-range, range, using: &rng)
        return t
    }

    func assertClose(_ a: [Float], _ b: [Float], _ what: String, tolerance: Float = 1e-5,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(b.map(abs).max() ?? 1, 1e-6)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: tolerance * scale, what, file: file, line: line) }
    }

    /// Central differences of `loss` with respect to every element of `parameter`, compared with
    /// its `grad` (loss in Double, step 1e-2).
    func assertParameterGradient(_ parameter: Parameter, _ what: String, loss: () throws -> Float,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let analytic = parameter.grad.scalars
        var worst: Float = 0
        for i in 0..<parameter.value.count {
            let keep = parameter.value.data[i]
            parameter.value.data[i] = keep + 1e-2
            let up = Double(try noGrad { try loss() })
            parameter.value.data[i] = keep - 1e-2
            let down = Double(try noGrad { try loss() })
            parameter.value.data[i] = keep
            let numeric = Float((up - down) / 2e-2)
            worst = max(worst, abs(numeric - analytic[i]) / max(1, abs(numeric)))
        }
        XCTAssertLessThan(worst, 2e-3, what, file: file, line: line)
    }

    func testDenseOnTheGraphMatchesTheLayer() throws {
        let dense = try Dense(5, 3, seed: 1)
        let x = try random([4, 5], seed: 2), dy = try random([4, 3], seed: 3)
        let y = try dense(x).copy()
        dense.zeroGrad()
        let dx = try dense.backward(dy).copy()
        let layerGrads = dense.parameters.map(\.grad.scalars)
        dense.zeroGrad()
        let xv = Variable(x.copy(), requiresGrad: true)
        let yv = try dense(xv)
        XCTAssertEqual(yv.value.scalars, y.scalars)
        try yv.backward(gradient: dy)
        XCTAssertEqual(xv.grad?.scalars ?? [], dx.scalars)
        XCTAssertEqual(dense.parameters.map(\.grad.scalars), layerGrads)
        XCTAssertEqual(dense.weight.variable.grad?.scalars ?? [], layerGrads[0], "the leaf's grad is the parameter's")
    }

    /// An MLP through `Sequential(x: Variable)` and `crossEntropy`, then an optimizer step, against
    /// the layer API with `SoftmaxCrossEntropy`.
    func testSequentialOnTheGraphTrainsLikeTheLayerAPI() throws {
        func model() throws -> Sequential { Sequential(try Dense(6, 8, seed: 4), ReLU(), try Dense(8, 3, seed: 5)) }
        let a = try model(), b = try model()
        let x = try random([5, 6], seed: 6), labels = [0, 2, 1, 1, 0]
        let sa = try SGD(parameters: a.parameters, lr: 0.1, momentum: 0.9), sb = try SGD(parameters: b.parameters, lr: 0.1, momentum: 0.9)
        for _ in 0..<3 {
            sa.zeroGrad()
            let (_, delta) = try SoftmaxCrossEntropy()(try a(x), labels: labels.map(Int32.init))
            _ = try a.backward(delta)
            try sa.step()
            sb.zeroGrad()
            try crossEntropy(try b(Variable(x)), labels: labels).backward()
            try sb.step()
        }
        for (p, q) in zip(a.namedParameters, b.namedParameters) {
            assertClose(q.parameter.value.scalars, p.parameter.value.scalars, p.name)
        }
    }

    /// One Dense at two places of one graph: its gradients are the sum over both uses (the layer
    /// API refuses this; the graph keeps each call's saved tensors).
    func testLayerUsedTwiceSumsItsGradients() throws {
        let d = try Dense(4, 4, seed: 7)
        let x = try random([3, 4], seed: 8), w = try random([3, 4], seed: 9)
        let weights = Variable(w)
        func loss() throws -> Float { try sum(try d(try tanh(try d(Variable(x)))) * weights).item() }
        d.zeroGrad()
        try sum(try d(try tanh(try d(Variable(x)))) * weights).backward()
        try assertParameterGradient(d.weight, "Dense used twice: weight") { try loss() }
        try assertParameterGradient(d.bias!, "Dense used twice: bias") { try loss() }
    }

    /// Tied weights: a decoder that multiplies by the encoder's weight (decoder = encoderᵀ), the
    /// tied autoencoder's pattern.
    func testTiedWeights() throws {
        let encoder = try Dense(6, 3, seed: 10)
        let x = try random([4, 6], seed: 11)
        func reconstructionLoss() throws -> Variable {
            let h = relu(try encoder(Variable(x)))
            let back = try matmul(h, encoder.weight.variable)        // [4, 3]·[3, 6]: Wᵀ of the encoder's X·Wᵀ
            return try mse(back, Variable(x))
        }
        encoder.zeroGrad()
        try reconstructionLoss().backward()
        try assertParameterGradient(encoder.weight, "tied weight") { try reconstructionLoss().item() }
        try assertParameterGradient(encoder.bias!, "encoder bias") { try reconstructionLoss().item() }
    }

    /// zeroGrad then a graph backward overwrites, as a layer backward does; a second adds.
    func testGraphBackwardAccumulatesIntoParameterGrad() throws {
        let d = try Dense(3, 2, seed: 12)
        let x = try random([2, 3], seed: 13)
        d.weight.grad.fill(99)
        d.zeroGrad()
        try sum(try d(Variable(x))).backward()
        let once = d.weight.grad.scalars
        try sum(try d(Variable(x))).backward()
        assertClose(d.weight.grad.scalars, once.map { 2 * $0 }, "second backward adds")
        XCTAssertFalse(once.contains(99), "the stale gradient was overwritten")
    }

    /// An optimizer step between a graph's forward and its backward is refused (the node saved W).
    func testStepBeforeGraphBackwardIsRefused() throws {
        let d = try Dense(3, 2, seed: 14)
        let optimizer = try SGD(parameters: d.parameters, lr: 0.1)
        let loss = try sum(try d(Variable(try random([2, 3], seed: 15))))
        try sum(try d(Variable(try random([2, 3], seed: 15)))).backward()
        try optimizer.step()
        XCTAssertThrowsError(try loss.backward()) {
            guard case .invalidUse? = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
    }

    func testLayerWithoutGraphSupportIsATypedError() throws {
        let model = Sequential(try Dense(3, 3, seed: 16), TensorOnlyLayer())
        XCTAssertThrowsError(try model(Variable(try random([2, 3], seed: 17)))) {
            guard case .invalidArgument(let message)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("TensorOnly"), message)
        }
    }
}

/// A layer with only the tensor API (every built-in layer runs on the graph).
final class TensorOnlyLayer: Layer {
    var isTraining = true
    var summary: String { "TensorOnly" }
    var namedParameters: [(name: String, parameter: Parameter)] { [] }
    func forward(_ x: Tensor) throws -> Tensor { x }
    func backward(_ dy: Tensor) throws -> Tensor { dy }
}

/// Layers written with graph ops (`GraphModule`): their layer API is the graph's backward.
final class GraphModuleTests: XCTestCase {
    func input(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-2, 2, using: &rng)
        return t
    }

    func testLayerNormNormalisesEachRow() throws {
        let ln = try LayerNorm(5)
        let y = try ln(try input([3, 5], seed: 1))
        for r in 0..<3 {
            let row = (0..<5).map { y[r, $0] }
            let mean = row.reduce(0, +) / 5
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
            XCTAssertEqual(mean, 0, accuracy: 1e-5)
            XCTAssertEqual(variance, 1, accuracy: 1e-3)   // eps = 1e-5 makes it slightly below 1
        }
        // γ and β: y = x̂·γ + β, checked element by element against the formula.
        ln.weight.value.fill(2); ln.bias.value.fill(0.5)
        let x = try input([2, 5], seed: 2)
        let z = try ln(x)
        for r in 0..<2 {
            let row = (0..<5).map { x[r, $0] }
            let mean = row.reduce(0, +) / 5
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
            for j in 0..<5 { XCTAssertEqual(z[r, j], (row[j] - mean) / (variance + 1e-5).squareRoot() * 2 + 0.5, accuracy: 1e-4) }
        }
        XCTAssertThrowsError(try ln(try input([2, 4], seed: 3)))
    }

    func testGradientsThroughTheLayerAPI() throws {
        var rng = SeededGenerator(seed: 99)
        let ln = try LayerNorm(6)
        ln.weight.value.fillUniform(0.5, 1.5, using: &rng)
        ln.bias.value.fillUniform(-0.5, 0.5, using: &rng)
        for layer in [ln, SiLU(), Sequential(try Dense(4, 6, seed: 4), try LayerNorm(6), SiLU(), try Dense(6, 3, seed: 5))] as [Layer] {
            let shape = layer is Sequential ? [3, 4] : [3, 6]
            let report = try GradientCheck.check(layer, input: try input(shape, seed: 6))
            XCTAssertGreaterThan(report.checked, 0)
            XCTAssertLessThan(report.maxError, 2e-3, "\(layer.summary): \(report)")
        }
    }

    func testOneBackwardPerForward() throws {
        let silu = SiLU()
        let y = try silu(try input([2, 3], seed: 7))
        let dy = try Tensor(zeros: y.shape); dy.fill(1)
        _ = try silu.backward(dy)
        XCTAssertThrowsError(try silu.backward(dy)) {
            guard case .invalidUse? = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try SiLU().backward(dy))
    }
}

final class EmbeddingAndLinearTests: XCTestCase {
    func testEmbeddingLooksUpAndScatterAdds() throws {
        let emb = try Embedding(5, 3, seed: 1)
        let indices = [4, 0, 4, 2]
        let y = try emb(indices, shape: [2, 2])
        XCTAssertEqual(y.shape, [2, 2, 3])
        for (k, i) in indices.enumerated() {
            for j in 0..<3 { XCTAssertEqual(y.value.data[k * 3 + j], emb.weight.value[i, j]) }
        }
        var rng = SeededGenerator(seed: 2)
        let w = try Tensor(zeros: [2, 2, 3]); w.fillUniform(-1, 1, using: &rng)
        emb.weight.zeroGrad()
        try sum(try y * Variable(w)).backward()
        // Row 4 is used twice: its gradient is the sum of both positions' weights; rows 1, 3 unused.
        for j in 0..<3 {
            XCTAssertEqual(emb.weight.grad[4, j], w.data[j] + w.data[6 + j], accuracy: 1e-6)
            XCTAssertEqual(emb.weight.grad[0, j], w.data[3 + j], accuracy: 1e-6)
            XCTAssertEqual(emb.weight.grad[2, j], w.data[9 + j], accuracy: 1e-6)
            XCTAssertEqual(emb.weight.grad[1, j], 0)
            XCTAssertEqual(emb.weight.grad[3, j], 0)
        }
        XCTAssertThrowsError(try emb([5])) { guard case .invalidArgument? = $0 as? BackpropError else { return XCTFail("\($0)") } }
        XCTAssertThrowsError(try emb([-1]))
        XCTAssertThrowsError(try emb([1, 2], shape: [3]))
    }

    func testLinearOverLeadingDimensions() throws {
        let dense = try Dense(4, 5, seed: 3)
        var rng = SeededGenerator(seed: 4)
        let x = try Tensor(zeros: [2, 3, 4]); x.fillUniform(-1, 1, using: &rng)
        let y = try dense.applyingToLastDimension(Variable(x))
        XCTAssertEqual(y.shape, [2, 3, 5])
        let rows = try dense(x.reshaped([6, 4])).copy()   // the layer API on the rows
        XCTAssertEqual(y.value.scalars, rows.scalars)
        let w = try Tensor(zeros: [2, 3, 5]); w.fillUniform(-1, 1, using: &rng)
        dense.zeroGrad()
        try sum(try dense.applyingToLastDimension(Variable(x)) * Variable(w)).backward()
        let analytic = dense.weight.grad.scalars
        for i in 0..<dense.weight.value.count {
            let keep = dense.weight.value.data[i]
            func loss() throws -> Double {
                Double(try noGrad { try sum(try dense.applyingToLastDimension(Variable(x)) * Variable(w)).item() })
            }
            dense.weight.value.data[i] = keep + 1e-2; let up = try loss()
            dense.weight.value.data[i] = keep - 1e-2; let down = try loss()
            dense.weight.value.data[i] = keep
            XCTAssertEqual(Float((up - down) / 2e-2), analytic[i], accuracy: 2e-3 * max(1, abs(analytic[i])))
        }
        XCTAssertThrowsError(try dense.applyingToLastDimension(Variable(try Tensor(zeros: [2, 3, 5]))))
        // Called directly, as PyTorch's nn.Linear: [N, T, in] → [N, T, out], the same values.
        let direct = try dense(Variable(x))
        XCTAssertEqual(direct.shape, [2, 3, 5])
        XCTAssertEqual(direct.value.scalars, rows.scalars)
        // [N, C, H, W] whose C·H·W is `in` still reads each row as one input, as the layer API.
        let flat = try Dense(12, 2, seed: 5)
        XCTAssertEqual(try flat(Variable(try Tensor(zeros: [2, 3, 2, 2]))).shape, [2, 2])
    }
}

final class ReshapeLayerTests: XCTestCase {
    func testReshapeAndUnflattenRoundTripThroughTheLayerAPI() throws {
        let model = Sequential(try Unflatten([2, 3]), try Reshape([-1]), try Dense(6, 2, seed: 1))
        var rng = SeededGenerator(seed: 2)
        let x = try Tensor(zeros: [4, 6]); x.fillUniform(-1, 1, using: &rng)
        XCTAssertEqual(try Unflatten([2, 3])(x).shape, [4, 2, 3])
        let report = try GradientCheck.check(model, input: x)
        XCTAssertLessThan(report.maxError, 2e-3, "\(report)")
        XCTAssertThrowsError(try Unflatten([4, 2])(x))
        XCTAssertThrowsError(try Reshape([-1, -1]))
        XCTAssertThrowsError(try Reshape([4])(x))
    }
}
