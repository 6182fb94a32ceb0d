import XCTest
@testable import Backprop
import BackpropOptim

/// The convolutional family (and the other remaining built-in layers) on the graph: the same
/// values and gradients as the layer API, gradients that agree with finite differences, a layer
/// used twice in one graph, and a small LeNet trained through the graph step for step like the
/// layer API.
final class GraphConvLayerTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64, range: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-range, range, using: &rng)
        return t
    }

    /// Values 0.05 apart in a random order (no ties, no two within a finite-difference step of
    /// each other), centred on 0: max pooling's argmax cannot change under a ±1e-2 perturbation.
    func distinct(_ shape: [Int], seed: UInt64) throws -> Tensor {
        let t = try Tensor(zeros: shape)
        var rng = SeededGenerator(seed: seed)
        var values = (0..<t.count).map { Float($0) * 0.05 - Float(t.count) * 0.025 }
        values.shuffle(using: &rng)
        for i in 0..<t.count { t.data[i] = values[i] }
        return t
    }

    func assertClose(_ a: [Float], _ b: [Float], _ what: String, tolerance: Float = 1e-5,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(b.map(abs).max() ?? 1, 1e-6)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
        XCTAssertLessThanOrEqual(worst, tolerance * scale, "\(what): largest difference \(worst)", file: file, line: line)
    }

    /// `graph` on the graph against `api` through `forward`/`backward` on the same input and δ:
    /// outputs, δ of the input and every parameter gradient. (`api` and `graph` are usually one
    /// instance; layers that draw random numbers need two seeded alike.)
    func assertGraphMatchesLayerAPI(_ api: Layer, _ graph: GraphLayer, input x: Tensor, seed: UInt64,
                                    tolerance: Float = 1e-6, file: StaticString = #filePath, line: UInt = #line) throws {
        let what = api.summary
        api.zeroGrad()
        let y = try api.forward(x.copy()).copy()
        let dy = try random(y.shape, seed: seed)
        let dx = try api.backward(dy).copy()
        let layerGrads = api.namedParameters.map { ($0.name, $0.parameter.grad.scalars) }
        graph.zeroGrad()
        let xv = Variable(x.copy(), requiresGrad: true)
        let yv = try graph(xv)
        XCTAssertEqual(yv.shape, y.shape, "\(what): output shape", file: file, line: line)
        assertClose(yv.value.scalars, y.scalars, "\(what): output", tolerance: tolerance, file: file, line: line)
        try yv.backward(gradient: dy)
        assertClose(xv.grad?.scalars ?? [], dx.scalars, "\(what): input gradient", tolerance: tolerance, file: file, line: line)
        XCTAssertEqual(graph.namedParameters.count, layerGrads.count, file: file, line: line)
        for (p, (name, g)) in zip(graph.namedParameters, layerGrads) {
            assertClose(p.parameter.grad.scalars, g, "\(what): \(name) gradient", tolerance: tolerance, file: file, line: line)
        }
    }

    /// The graph's gradients of L = Σ layer(x)·w (w fixed, random) with respect to the input and
    /// every parameter, against central differences of L (in Double, step 1e-2) for up to
    /// `maxElements` elements of each.
    func assertGraphGradientsMatchFiniteDifferences(_ layer: GraphLayer, input x: Tensor, seed: UInt64,
                                                    maxElements: Int = 60, tolerance: Float = 2e-3,
                                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let w = try random(try noGrad { try layer(Variable(x)) }.shape, seed: seed)
        func loss() throws -> Double {
            let y = try noGrad { try layer(Variable(x)) }.value
            var s: Double = 0
            for i in 0..<y.count { s += Double(y.data[i]) * Double(w.data[i]) }
            return s
        }
        layer.zeroGrad()
        let xv = Variable(x, requiresGrad: true)
        try sum(try layer(xv) * Variable(w)).backward()
        var checks = [("input", x, xv.grad?.scalars ?? [])]
        for (name, p) in layer.namedParameters { checks.append((name, p.value, p.grad.scalars)) }
        var checked = 0
        for (name, values, analytic) in checks {
            XCTAssertEqual(analytic.count, values.count, "\(layer.summary): \(name) has a gradient", file: file, line: line)
            guard analytic.count == values.count else { continue }
            let stride = max(1, values.count / maxElements)
            var worst: Float = 0, at = 0
            for i in Swift.stride(from: 0, to: values.count, by: stride) {
                let keep = values.data[i]
                values.data[i] = keep + 1e-2
                let up = try loss()
                values.data[i] = keep - 1e-2
                let down = try loss()
                values.data[i] = keep
                let numeric = Float((up - down) / 2e-2)
                let error = abs(numeric - analytic[i]) / max(1, abs(numeric), abs(analytic[i]))
                if error > worst { worst = error; at = i }
                checked += 1
            }
            XCTAssertLessThan(worst, tolerance, "\(layer.summary): \(name)[\(at)] backward \(analytic[at])",
                              file: file, line: line)
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
    }

    func assertShapeError(_ body: @autoclosure () throws -> Variable, naming name: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            guard case .shapeMismatch(let place, _)? = $0 as? BackpropError else { return XCTFail("\($0)", file: file, line: line) }
            XCTAssertTrue(place.contains(name), "\(place) names \(name)", file: file, line: line)
        }
    }

    // MARK: - Conv2D

    func convs() throws -> [Conv2D] {
        let grouped = try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 3, padding: 1, seed: 5)
        grouped.imagesPerGemm = 2
        var rng = SeededGenerator(seed: 2)
        return [
            try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 3, padding: 1, seed: 1),
            try Conv2D(inChannels: 2, outChannels: 4, kernelSize: (2, 3), stride: (2, 1), padding: (1, 0), bias: false,
                       rng: &rng),
            try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 1, seed: 3),          // pointwise: no im2col
            try Conv2D(inChannels: 2, outChannels: 2, kernelSize: 2, stride: 2, seed: 4),
            grouped,                                                                     // G = 2 images per product
        ]
    }

    func testConv2DOnTheGraphMatchesTheLayer() throws {
        for (i, conv) in try convs().enumerated() {
            try assertGraphMatchesLayerAPI(conv, conv, input: try random([3, 2, 6, 5], seed: 10 + UInt64(i)), seed: 20 + UInt64(i))
        }
    }

    func testConv2DGraphGradientsMatchFiniteDifferences() throws {
        for (i, conv) in try convs().enumerated() {
            try assertGraphGradientsMatchFiniteDifferences(conv, input: try random([2, 2, 5, 4], seed: 30 + UInt64(i)),
                                                           seed: 40 + UInt64(i))
        }
    }

    /// One Conv2D at two places of one graph: its gradients are the sums over both uses, that is
    /// the gradients two copies of it (same weights) receive together, and agree with finite
    /// differences.
    func testConv2DUsedTwiceSumsItsGradients() throws {
        let conv = try Conv2D(inChannels: 3, outChannels: 3, kernelSize: 3, padding: 1, seed: 50)
        let first = try Conv2D(inChannels: 3, outChannels: 3, kernelSize: 3, padding: 1, seed: 50)
        let second = try Conv2D(inChannels: 3, outChannels: 3, kernelSize: 3, padding: 1, seed: 50)
        let x = try random([2, 3, 5, 5], seed: 51), w = try random([2, 3, 5, 5], seed: 52)
        conv.zeroGrad(); first.zeroGrad(); second.zeroGrad()
        let xv = Variable(x, requiresGrad: true)
        let once = try conv(xv)
        try sum(try conv(tanh(once)) * Variable(w)).backward()
        let x2 = Variable(x, requiresGrad: true)
        try sum(try second(tanh(try first(x2))) * Variable(w)).backward()
        assertClose(conv.weight.grad.scalars, zip(first.weight.grad.scalars, second.weight.grad.scalars).map { $0 + $1 },
                    "weight: the sum of both uses")
        assertClose(conv.bias?.grad.scalars ?? [], zip(first.bias?.grad.scalars ?? [], second.bias?.grad.scalars ?? []).map { $0 + $1 },
                    "bias: the sum of both uses")
        assertClose(xv.grad?.scalars ?? [], x2.grad?.scalars ?? [], "input")
        XCTAssertGreaterThan(first.weight.grad.scalars.map(abs).max() ?? 0, 0)
        XCTAssertGreaterThan(second.weight.grad.scalars.map(abs).max() ?? 0, 0)

        final class Twice: GraphModule {
            let conv: Conv2D
            init(_ conv: Conv2D) { self.conv = conv; super.init() }
            override var namedParameters: [(name: String, parameter: Parameter)] { conv.namedParameters }
            override func callAsFunction(_ x: Variable) throws -> Variable { try conv(tanh(try conv(x))) }
        }
        try assertGraphGradientsMatchFiniteDifferences(Twice(conv), input: x, seed: 53)
    }

    func testConv2DGraphErrorsAreTyped() throws {
        let conv = try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 3, seed: 60)
        assertShapeError(try conv(Variable(try Tensor(zeros: [1, 3, 5, 5]))), naming: "Conv2D")   // channels
        assertShapeError(try conv(Variable(try Tensor(zeros: [2, 5, 5]))), naming: "Conv2D")      // rank
        assertShapeError(try conv(Variable(try Tensor(zeros: [1, 2, 2, 5]))), naming: "Conv2D")   // smaller than the kernel
        // An empty batch is a valid input: an empty output and zero gradients.
        let empty = try conv(Variable(try Tensor(zeros: [0, 2, 5, 5]), requiresGrad: true))
        XCTAssertEqual(empty.shape, [0, 3, 3, 3])
        conv.weight.grad.fill(7)
        conv.zeroGrad()
        try sum(empty).backward()
        XCTAssertEqual(Set(conv.weight.grad.scalars), [0])
        // The node saved the input: changing it before backward is refused.
        let x = try random([1, 2, 5, 5], seed: 61)
        let loss = try sum(try conv(Variable(x, requiresGrad: true)))
        x.fill(0)
        XCTAssertThrowsError(try loss.backward()) {
            guard case .invalidUse? = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
    }

    // MARK: - Pooling

    func pools() throws -> [GraphLayer] {
        [try MaxPool2D(kernelSize: 2),                                  // the 2×2 SIMD forward and C backward
         try MaxPool2D(kernelSize: 3, stride: 2, padding: 1),
         try MaxPool2D(kernelSize: (2, 3), stride: (1, 2)),
         try AvgPool2D(kernelSize: 2),
         try AvgPool2D(kernelSize: 3, stride: 2, padding: 1),
         try AvgPool2D(kernelSize: 3, stride: 2, padding: 1, countIncludePad: false)]
    }

    func testPoolingOnTheGraphMatchesTheLayers() throws {
        for (i, pool) in try pools().enumerated() {
            // Width 18: 9 outputs per row for 2×2, the 8-lane SIMD path with an overlapping tail.
            try assertGraphMatchesLayerAPI(pool, pool, input: try distinct([2, 3, 7, 18], seed: 70 + UInt64(i)), seed: 80 + UInt64(i))
        }
    }

    func testPoolingGraphGradientsMatchFiniteDifferences() throws {
        for (i, pool) in try pools().enumerated() {
            try assertGraphGradientsMatchFiniteDifferences(pool, input: try distinct([2, 2, 6, 9], seed: 90 + UInt64(i)),
                                                           seed: 100 + UInt64(i))
        }
    }

    func testMaxPoolUsedTwiceKeepsEachCallsIndices() throws {
        let pool = try MaxPool2D(kernelSize: 2)
        let a = Variable(try distinct([1, 1, 4, 4], seed: 110), requiresGrad: true)
        let b = Variable(try distinct([1, 1, 4, 4], seed: 111), requiresGrad: true)
        let ya = try pool(a), yb = try pool(b)          // the second call must not disturb the first's argmax
        try sum(try ya + yb).backward()
        for (v, name) in [(a, "a"), (b, "b")] {
            var expected = [Float](repeating: 0, count: 16)
            for oy in 0..<2 {
                for ox in 0..<2 {
                    let window = [(2 * oy) * 4 + 2 * ox, (2 * oy) * 4 + 2 * ox + 1, (2 * oy + 1) * 4 + 2 * ox, (2 * oy + 1) * 4 + 2 * ox + 1]
                    let best = window.max { v.value.data[$0] < v.value.data[$1] } ?? 0
                    expected[best] = 1
                }
            }
            XCTAssertEqual(v.grad?.scalars ?? [], expected, name)
        }
    }

    func testPoolingGraphErrorsAreTyped() throws {
        assertShapeError(try MaxPool2D(kernelSize: 2)(Variable(try Tensor(zeros: [1, 4, 4]))), naming: "MaxPool2D")
        assertShapeError(try MaxPool2D(kernelSize: 3)(Variable(try Tensor(zeros: [1, 1, 2, 4]))), naming: "MaxPool2D")
        assertShapeError(try AvgPool2D(kernelSize: 2)(Variable(try Tensor(zeros: [2, 4]))), naming: "AvgPool2D")
        assertShapeError(try AvgPool2D(kernelSize: 3)(Variable(try Tensor(zeros: [1, 1, 4, 1]))), naming: "AvgPool2D")
    }

    // MARK: - BatchNorm

    func batchNorms() throws -> [(BatchNorm, [Int])] {
        let scaled = try BatchNorm.d2(3)
        var rng = SeededGenerator(seed: 120)
        scaled.weight?.value.fillUniform(0.5, 1.5, using: &rng)
        scaled.bias?.value.fillUniform(-0.5, 0.5, using: &rng)
        return [(scaled, [4, 3, 3, 2]),
                (try BatchNorm.d1(5, momentum: nil), [6, 5]),
                (try BatchNorm.d1(2), [3, 2, 4]),
                (try BatchNorm.d2(2, affine: false), [2, 2, 3, 3])]
    }

    func testBatchNormOnTheGraphMatchesTheLayerInBothModes() throws {
        for (i, (bn, shape)) in try batchNorms().enumerated() {
            let x = try random(shape, seed: 130 + UInt64(i), range: 2)
            let twin = try BatchNorm(features: bn.features, kind: bn.kind, eps: bn.eps, momentum: bn.momentum, affine: bn.weight != nil)
            for (p, q) in zip(twin.parameters, bn.parameters) { try p.value.assign(q.value) }
            // Training: batch statistics, and the running statistics move once per call on both paths.
            try assertGraphMatchesLayerAPI(bn, bn, input: x, seed: 140 + UInt64(i))
            _ = try twin.forward(x); _ = try twin.forward(x)
            for (b, t) in zip(bn.namedBuffers, twin.namedBuffers) {
                assertClose(b.tensor.scalars, t.tensor.scalars, "\(bn.summary): \(b.name) after one layer and one graph call")
            }
            XCTAssertEqual(bn.numBatchesTracked.data[0], 2)
            XCTAssertNotEqual(bn.runningMean.scalars, [Float](repeating: 0, count: bn.features))
            // Eval: running statistics, left unchanged.
            bn.eval()
            let before = bn.namedBuffers.map(\.tensor.scalars)
            try assertGraphMatchesLayerAPI(bn, bn, input: x, seed: 150 + UInt64(i))
            XCTAssertEqual(bn.namedBuffers.map(\.tensor.scalars), before, "\(bn.summary): eval changes no buffer")
        }
    }

    func testBatchNormGraphGradientsMatchFiniteDifferences() throws {
        for (i, (bn, shape)) in try batchNorms().enumerated() {
            let x = try random(shape, seed: 160 + UInt64(i), range: 2)
            try assertGraphGradientsMatchFiniteDifferences(bn, input: x, seed: 170 + UInt64(i), tolerance: 5e-3)
            bn.eval()
            try assertGraphGradientsMatchFiniteDifferences(bn, input: x, seed: 180 + UInt64(i))
        }
    }

    /// Eval mode normalises with the running statistics: y = γ (x − mean)/√(var + ε) + β.
    func testBatchNormEvalUsesRunningStatistics() throws {
        let bn = try BatchNorm.d1(2)
        try bn.runningMean.assign(try Tensor([1, -2], shape: [2]))
        try bn.runningVar.assign(try Tensor([4, 0.25], shape: [2]))
        try bn.weight?.value.assign(try Tensor([2, 3], shape: [2]))
        try bn.bias?.value.assign(try Tensor([0.5, -1], shape: [2]))
        bn.eval()
        let x = try Tensor([3, 0, -1, 1], shape: [2, 2])
        let y = try bn(Variable(x)).value.scalars
        let expected: [Float] = [2 * (3 - 1) / (4 + 1e-5).squareRoot() + 0.5, 3 * (0 + 2) / (0.25 + 1e-5).squareRoot() - 1,
                                 2 * (-1 - 1) / (4 + 1e-5).squareRoot() + 0.5, 3 * (1 + 2) / (0.25 + 1e-5).squareRoot() - 1]
        assertClose(y, expected, "eval output")
        XCTAssertEqual(bn.numBatchesTracked.data[0], 0)
    }

    func testBatchNormGraphErrorsAreTyped() throws {
        assertShapeError(try BatchNorm.d2(3)(Variable(try Tensor(zeros: [2, 4, 2, 2]))), naming: "BatchNorm2d")
        assertShapeError(try BatchNorm.d1(3)(Variable(try Tensor(zeros: [2, 3, 2, 2]))), naming: "BatchNorm1d")
        XCTAssertThrowsError(try BatchNorm.d1(3)(Variable(try Tensor(zeros: [1, 3])))) {   // one value per channel
            guard case .invalidArgument(let message)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("BatchNorm1d"), message)
        }
    }

    // MARK: - Dropout

    /// The graph draws what the layer API draws from the same generator, one mask per call.
    func testDropoutOnTheGraphMatchesTheLayer() throws {
        let api = try Dropout(p: 0.3, seed: 190), graph = try Dropout(p: 0.3, seed: 190)
        for step in 0..<3 {
            try assertGraphMatchesLayerAPI(api, graph, input: try random([4, 7], seed: 200 + UInt64(step)), seed: 210 + UInt64(step))
        }
        let masked = try graph(Variable(try random([40, 40], seed: 220))).value.scalars
        let dropped = Float(masked.filter { $0 == 0 }.count) / Float(masked.count)
        XCTAssertEqual(dropped, 0.3, accuracy: 0.05)
        // Two calls: two masks, each kept by its own node.
        let x = Variable(try random([8, 8], seed: 221), requiresGrad: true)
        let a = try graph(x), b = try graph(x)
        XCTAssertNotEqual(a.value.scalars, b.value.scalars)
        try sum(try a + b * 2).backward()
        let expected = (0..<64).map { i -> Float in
            (a.value.data[i] == 0 ? 0 : 1 / 0.7) + 2 * (b.value.data[i] == 0 ? 0 : 1 / 0.7)
        }
        assertClose(x.grad?.scalars ?? [], expected, "δ through both masks")
        // Eval: the identity.
        graph.eval(); api.eval()
        let z = Variable(try random([3, 5], seed: 222), requiresGrad: true)
        XCTAssertEqual(try graph(z).value.scalars, z.value.scalars)
        try assertGraphMatchesLayerAPI(api, graph, input: z.value, seed: 223)
    }

    func testDropoutGraphGradientsMatchFiniteDifferences() throws {
        let dropout = try Dropout(p: 0.4, seed: 230)
        dropout.freezeMask = true          // one mask for every evaluation of the loss
        try assertGraphGradientsMatchFiniteDifferences(dropout, input: try random([5, 6], seed: 231), seed: 232)
    }

    // MARK: - LeakyReLU, Softmax

    func testActivationsOnTheGraphMatchTheLayers() throws {
        for (i, layer) in ([LeakyReLU(negativeSlope: 0.1), LeakyReLU(), Softmax()] as [GraphLayer]).enumerated() {
            try assertGraphMatchesLayerAPI(layer, layer, input: try random([4, 3, 5], seed: 240 + UInt64(i), range: 3), seed: 250 + UInt64(i))
        }
    }

    func testActivationGraphGradientsMatchFiniteDifferences() throws {
        // Inputs kept 0.05 or more away from LeakyReLU's kink at 0.
        let x = try distinct([3, 7], seed: 260)
        for i in 0..<x.count where abs(x.data[i]) < 0.05 { x.data[i] += 0.1 }
        for layer in [LeakyReLU(negativeSlope: 0.2), Softmax()] as [GraphLayer] {
            try assertGraphGradientsMatchFiniteDifferences(layer, input: x, seed: 261)
        }
        assertShapeError(try Softmax()(Variable(try Tensor(zeros: [2, 0]))), naming: "Softmax")
    }

    // MARK: - Residual

    func residuals() throws -> [Residual] {
        [Residual(Sequential(try Conv2D(inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, seed: 270), ReLU(),
                             try Conv2D(inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, seed: 271))),
         Residual(Sequential(try BatchNorm.d2(2), LeakyReLU(negativeSlope: 0.1)))]
    }

    func testResidualOnTheGraphMatchesTheLayer() throws {
        for (i, residual) in try residuals().enumerated() {
            try assertGraphMatchesLayerAPI(residual, residual, input: try random([2, 2, 4, 5], seed: 280 + UInt64(i)),
                                           seed: 290 + UInt64(i), tolerance: 1e-5)
        }
    }

    func testResidualGraphGradientsMatchFiniteDifferences() throws {
        for (i, residual) in try residuals().enumerated() {
            try assertGraphGradientsMatchFiniteDifferences(residual, input: try random([2, 2, 4, 4], seed: 300 + UInt64(i)),
                                                           seed: 310 + UInt64(i), tolerance: 5e-3)
        }
    }

    func testResidualGraphErrorsAreTyped() throws {
        let widening = Residual(try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 1, seed: 320))
        assertShapeError(try widening(Variable(try Tensor(zeros: [1, 2, 3, 3]))), naming: "Residual")
        XCTAssertThrowsError(try Residual(TensorOnlyLayer())(Variable(try Tensor(zeros: [1, 2])))) {
            guard case .invalidArgument(let message)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("TensorOnly"), message)
        }
    }

    // MARK: - A LeNet trained through the graph

    /// Conv2D → ReLU → MaxPool2D → Flatten → Dense, a few SGD steps (momentum) through the graph
    /// with `crossEntropy`, against the layer API with `SoftmaxCrossEntropy`, step by step.
    func testLeNetTrainsOnTheGraphLikeTheLayerAPI() throws {
        func model() throws -> Sequential {
            Sequential(try Conv2D(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, seed: 330), ReLU(),
                       try MaxPool2D(kernelSize: 2), Flatten(), try Dense(4 * 4 * 4, 3, seed: 331))
        }
        let api = try model(), graph = try model()
        let x = try random([6, 1, 8, 8], seed: 332), labels = [0, 2, 1, 1, 0, 2]
        let sa = try SGD(parameters: api.parameters, lr: 0.1, momentum: 0.9)
        let sg = try SGD(parameters: graph.parameters, lr: 0.1, momentum: 0.9)
        for step in 0..<4 {
            sa.zeroGrad()
            let (loss, delta) = try SoftmaxCrossEntropy()(try api(x), labels: labels.map(Int32.init))
            _ = try api.backward(delta)
            sg.zeroGrad()
            let graphLoss = try crossEntropy(try graph(Variable(x)), labels: labels)
            XCTAssertEqual(try graphLoss.item(), loss, accuracy: 1e-5 * max(1, abs(loss)), "loss at step \(step)")
            try graphLoss.backward()
            for (p, q) in zip(api.namedParameters, graph.namedParameters) {
                assertClose(q.parameter.grad.scalars, p.parameter.grad.scalars, "step \(step): \(p.name) gradient")
            }
            try sa.step()
            try sg.step()
            for (p, q) in zip(api.namedParameters, graph.namedParameters) {
                assertClose(q.parameter.value.scalars, p.parameter.value.scalars, "step \(step): \(p.name)")
            }
        }
    }
}
