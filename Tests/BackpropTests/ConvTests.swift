import XCTest
@testable import Backprop

/// Convolution, pooling and batch normalisation: hand-computed values, finite-difference
/// gradient checks (inputs and parameters) and shape validation.
///
/// Tolerances: GradientCheck's error is |analytic − numeric| / max(1, |a|, |n|) with step 1e-2.
/// Conv and pooling are piecewise linear (inputs chosen away from ties), so only Float rounding
/// remains: < 2e-3. Batch norm is smooth but curved; the O(h²) truncation stays below 5e-3.
final class ConvTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(low, high, using: &rng)
        return t
    }

    private func assertClose(_ a: [Float], _ b: [Float], tolerance: Float = 1e-5,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "count", file: file, line: line)
        for (i, (x, y)) in zip(a, b).enumerated() where abs(x - y) > tolerance * max(1, abs(y)) {
            XCTFail("element \(i): \(x) vs \(y)", file: file, line: line)
            return
        }
    }

    // MARK: - Conv2D values

    func testConvHandComputed() throws {
        // x = [[1 2 3] [4 5 6] [7 8 9]], kernel [[1 2] [3 4]], bias 0.5
        let conv = try Conv2D(inChannels: 1, outChannels: 1, kernelSize: 2, seed: 1)
        try conv.weight.value.assign([1, 2, 3, 4])
        try conv.bias!.value.assign([0.5])
        let x = try Tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], shape: [1, 1, 3, 3])
        let y = try conv(x)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [37.5, 47.5, 67.5, 77.5])
        // dy = ones: dX[p] = Σ of the kernel taps touching p; dW[i,j] = Σ of the window shifted by (i, j); db = 4
        conv.zeroGrad()
        let dx = try conv.backward(try Tensor([1, 1, 1, 1], shape: [1, 1, 2, 2]))
        XCTAssertEqual(dx.scalars, [1, 3, 2, 4, 10, 6, 3, 7, 4])
        XCTAssertEqual(conv.weight.grad.scalars, [12, 16, 24, 28])
        XCTAssertEqual(conv.bias!.grad.scalars, [4])
    }

    func testConvPaddingAndStrideHandComputed() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], shape: [1, 1, 3, 3])
        // 3×3 ones, padding 1: each output is the sum of the 3×3 neighbourhood.
        let same = try Conv2D(inChannels: 1, outChannels: 1, kernelSize: 3, padding: 1, bias: false, seed: 1)
        same.weight.value.fill(1)
        XCTAssertEqual(try same(x).scalars, [12, 21, 16, 27, 45, 33, 24, 39, 28])
        same.zeroGrad()
        let dx = try same.backward(try Tensor([Float](repeating: 1, count: 9), shape: [1, 1, 3, 3]))
        XCTAssertEqual(dx.scalars, [4, 6, 4, 6, 9, 6, 4, 6, 4])   // windows covering each position
        XCTAssertEqual(same.weight.grad.scalars, [12, 21, 16, 27, 45, 33, 24, 39, 28])
        // Same with stride 2: outputs at (0,0), (0,2), (2,0), (2,2).
        let strided = try Conv2D(inChannels: 1, outChannels: 1, kernelSize: 3, stride: 2, padding: 1, bias: false, seed: 1)
        strided.weight.value.fill(1)
        XCTAssertEqual(try strided(x).scalars, [12, 16, 24, 28])
    }

    func testConvMatchesDirectSum() throws {
        // Non-square input, rectangular kernel, stride (2, 1), padding (1, 2), 2 → 3 channels,
        // checked against the definition summed directly.
        var rng = SeededGenerator(seed: 3)
        let conv = try Conv2D(inChannels: 2, outChannels: 3, kernelSize: (3, 2), stride: (2, 1), padding: (1, 2), rng: &rng)
        let x = try random([2, 2, 5, 7], seed: 4)
        let y = try conv(x)
        XCTAssertEqual(y.shape, [2, 3, 3, 10])
        var expected: [Float] = []
        for n in 0..<2 { for o in 0..<3 { for oy in 0..<3 { for ox in 0..<10 {
            var s = Double(conv.bias!.value[o])
            for c in 0..<2 { for i in 0..<3 { for j in 0..<2 {
                let iy = oy * 2 - 1 + i, ix = ox - 2 + j
                if iy >= 0, iy < 5, ix >= 0, ix < 7 { s += Double(conv.weight.value[o, c, i, j]) * Double(x[n, c, iy, ix]) }
            } } }
            expected.append(Float(s))
        } } } }
        assertClose(y.scalars, expected)
        XCTAssertEqual(conv.summary, "Conv2D(2 → 3, 3×2, stride 2×1, padding 1×2)")
    }

    func testConvDefaultInitBounds() throws {
        let conv = try Conv2D(inChannels: 6, outChannels: 16, kernelSize: 5, seed: 9)
        XCTAssertEqual(conv.weight.shape, [16, 6, 5, 5])
        XCTAssertEqual(conv.bias!.shape, [16])
        XCTAssertEqual(conv.namedParameters.map(\.name), ["weight", "bias"])
        let bound = 1 / Float(150).squareRoot()
        XCTAssertLessThanOrEqual(conv.weight.value.scalars.map(abs).max()!, bound)
        XCTAssertGreaterThan(conv.weight.value.scalars.map(abs).max()!, 0.9 * bound)
        XCTAssertLessThanOrEqual(conv.bias!.value.scalars.map(abs).max()!, bound)
    }

    // MARK: - Conv2D gradients

    func testConvGradients() throws {
        let cases: [(k: (Int, Int), s: (Int, Int), p: (Int, Int), h: Int, w: Int)] = [
            ((3, 3), (1, 1), (0, 0), 5, 7),
            ((3, 3), (2, 2), (1, 1), 5, 7),
            ((3, 2), (1, 1), (1, 1), 5, 7),
            ((3, 2), (2, 2), (0, 0), 5, 7),
            ((3, 2), (2, 1), (1, 0), 5, 7),
            ((1, 1), (1, 1), (0, 0), 4, 3),   // pointwise path: no im2col
        ]
        for (index, c) in cases.enumerated() {
            var rng = SeededGenerator(seed: UInt64(10 + index))
            let conv = try Conv2D(inChannels: 2, outChannels: 3, kernelSize: c.k, stride: c.s, padding: c.p, rng: &rng)
            let x = try random([2, 2, c.h, c.w], seed: UInt64(20 + index))
            let report = try GradientCheck.check(conv, input: x)
            XCTAssertLessThan(report.maxError, 2e-3, "\(conv.summary): \(report)")
        }
    }

    func testConvImageGroupsAgree() throws {
        // imagesPerGemm = 3 on a batch of 4 (a full group and a remainder of one) gives the same
        // output and gradients as one image per gemm.
        for pointwise in [false, true] {
            let make = { try Conv2D(inChannels: 2, outChannels: 3, kernelSize: pointwise ? 1 : 3,
                                    padding: pointwise ? 0 : 1, seed: 5) }
            let a = try make(), b = try make()
            b.imagesPerGemm = 3
            let x = try random([4, 2, 5, 6], seed: 6)
            let ya = try a(x).copy(), yb = try b(x).copy()
            assertClose(yb.scalars, ya.scalars)
            let dy = try random(ya.shape, seed: 7)
            let dxa = try a.backward(dy).copy(), dxb = try b.backward(dy).copy()
            assertClose(dxb.scalars, dxa.scalars)
            assertClose(b.weight.grad.scalars, a.weight.grad.scalars, tolerance: 1e-4)
            assertClose(b.bias!.grad.scalars, a.bias!.grad.scalars, tolerance: 1e-4)
            XCTAssertLessThan(try GradientCheck.check(b, input: x).maxError, 2e-3)
        }
    }

    func testConvValidation() throws {
        let conv = try Conv2D(inChannels: 1, outChannels: 6, kernelSize: 5, seed: 0)
        XCTAssertEqual(conv.summary, "Conv2D(1 → 6, 5×5)")
        func expectShapeError(_ shape: [Int], mentions: String) throws {
            XCTAssertThrowsError(try conv(try Tensor(zeros: shape))) { error in
                guard case let BackpropError.shapeMismatch(location, detail) = error else {
                    return XCTFail("wrong error \(error)")
                }
                XCTAssertEqual(location, "Conv2D(1 → 6, 5×5)")
                XCTAssertTrue(detail.contains(mentions), detail)
            }
        }
        try expectShapeError([1, 28, 28], mentions: "[1, 28, 28]")      // rank 3
        try expectShapeError([2, 3, 28, 28], mentions: "3")              // channels
        try expectShapeError([2, 1, 4, 28], mentions: "5×5")             // kernel larger than input
        XCTAssertThrowsError(try Conv2D(inChannels: 0, outChannels: 6, kernelSize: 5, seed: 0))
        XCTAssertThrowsError(try Conv2D(inChannels: 1, outChannels: 6, kernelSize: 5, stride: 0, seed: 0))
        XCTAssertThrowsError(try Conv2D(inChannels: 1, outChannels: 6, kernelSize: 5, padding: -1, seed: 0))
        XCTAssertThrowsError(try Conv2D(inChannels: 1, outChannels: 6, kernelSize: (0, 3), seed: 0))
        // Padding makes a small input valid.
        let padded = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 5, padding: 2, seed: 0)
        XCTAssertEqual(try padded(try Tensor(zeros: [1, 1, 3, 3])).shape, [1, 2, 3, 3])
        XCTAssertThrowsError(try conv.backward(try Tensor(zeros: [1, 6, 24, 24])))   // before forward
    }

    // MARK: - Pooling

    func testMaxPoolValuesAndRouting() throws {
        let pool = try MaxPool2D(kernelSize: 2)
        let x = try Tensor([1, 5, 2, 0,
                            3, 4, 8, 7,
                            -1, -2, 6, 6,
                            -3, -4, 6, 9], shape: [1, 1, 4, 4])
        XCTAssertEqual(try pool(x).scalars, [5, 8, -1, 9])
        let dx = try pool.backward(try Tensor([10, 20, 30, 40], shape: [1, 1, 2, 2]))
        XCTAssertEqual(dx.scalars, [0, 10, 0, 0,
                                    0, 0, 20, 0,
                                    30, 0, 0, 0,
                                    0, 0, 0, 40])
        // Overlapping windows (3×3, stride 1) add up at a shared maximum.
        let overlap = try MaxPool2D(kernelSize: 3, stride: 1)
        let y = try overlap(x)
        XCTAssertEqual(y.scalars, [8, 8, 8, 9])
        let dx2 = try overlap.backward(try Tensor([1, 1, 1, 1], shape: [1, 1, 2, 2]))
        XCTAssertEqual(dx2[0, 0, 1, 2], 3)
        XCTAssertEqual(dx2[0, 0, 3, 3], 1)
        XCTAssertEqual(dx2.scalars.reduce(0, +), 4)
        XCTAssertEqual(overlap.summary, "MaxPool2D(3×3, stride 1)")
    }

    /// Values distinct by at least 0.05 (a shuffled ramp), so ±1e-2 never changes an argmax.
    private func rampInput(_ shape: [Int], seed: UInt64) throws -> Tensor {
        let count = shape.reduce(1, *)
        var rng = SeededGenerator(seed: seed)
        var values = (0..<count).map { Float($0) * 0.05 - Float(count) * 0.025 }
        values.shuffle(using: &rng)
        return try Tensor(values, shape: shape)
    }

    func testPoolingGradients() throws {
        let x = try rampInput([2, 2, 5, 7], seed: 3)
        let layers: [Layer] = [
            try MaxPool2D(kernelSize: 2),
            try MaxPool2D(kernelSize: 3, stride: 2, padding: 1),
            try MaxPool2D(kernelSize: (3, 2), stride: (1, 2)),
            try AvgPool2D(kernelSize: 2),
            try AvgPool2D(kernelSize: 3, stride: 2, padding: 1),
            try AvgPool2D(kernelSize: 3, stride: 1, padding: 1, countIncludePad: false),
            try AvgPool2D(kernelSize: (2, 3), stride: (1, 2)),
        ]
        for layer in layers {
            let report = try GradientCheck.check(layer, input: x)
            XCTAssertLessThan(report.maxError, 2e-3, "\(layer.summary): \(report)")
            XCTAssertGreaterThan(report.checked, 0)
        }
    }

    func testAvgPoolCountIncludePad() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], shape: [1, 1, 3, 3])
        let included = try AvgPool2D(kernelSize: 3, stride: 1, padding: 1)
        assertClose(try included(x).scalars, [12, 21, 16, 27, 45, 33, 24, 39, 28].map { $0 / 9 })
        let excluded = try AvgPool2D(kernelSize: 3, stride: 1, padding: 1, countIncludePad: false)
        assertClose(try excluded(x).scalars, [12 / 4, 21 / 6, 16 / 4, 27 / 6, 45 / 9, 33 / 6, 24 / 4, 39 / 6, 28 / 4])
        let plain = try AvgPool2D(kernelSize: 2, stride: 1)
        assertClose(try plain(x).scalars, [3, 4, 6, 7])
    }

    func testPoolingValidation() throws {
        XCTAssertThrowsError(try MaxPool2D(kernelSize: 2, padding: 2))   // padding above half the kernel
        XCTAssertThrowsError(try AvgPool2D(kernelSize: 0))
        XCTAssertThrowsError(try MaxPool2D(kernelSize: 2, stride: 0))
        let pool = try MaxPool2D(kernelSize: 3)
        XCTAssertThrowsError(try pool(try Tensor(zeros: [1, 1, 2, 2]))) { error in
            guard case let BackpropError.shapeMismatch(location, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "MaxPool2D(3×3)")
        }
        XCTAssertThrowsError(try pool(try Tensor(zeros: [4, 9])))
    }

    // MARK: - Batch normalisation

    func testBatchNormTrainingValuesAndRunningStats() throws {
        let bn = try BatchNorm1d(1)
        XCTAssertEqual(bn.namedParameters.map(\.name), ["weight", "bias"])
        XCTAssertEqual(bn.namedBuffers.map(\.name), ["running_mean", "running_var", "num_batches_tracked"])
        let y = try bn(try Tensor([1, 2, 3, 4], shape: [4, 1]))
        let sd = (1.25 + 1e-5 as Float).squareRoot()
        assertClose(y.scalars, [-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd])
        // running_mean = 0.1·2.5; running_var = 0.9 + 0.1·(5/3) (unbiased variance)
        assertClose(bn.runningMean.scalars, [0.25])
        assertClose(bn.runningVar.scalars, [0.9 + 0.1 * 5 / 3])
        XCTAssertEqual(bn.numBatchesTracked.scalars, [1])
        // Eval uses the running statistics.
        bn.eval()
        let e = try bn(try Tensor([1], shape: [1, 1]))
        assertClose(e.scalars, [(1 - 0.25) / (0.9 + 0.1 * 5 / 3 + 1e-5 as Float).squareRoot()])
        XCTAssertEqual(bn.numBatchesTracked.scalars, [1])
    }

    func testBatchNorm2dStatisticsPerChannel() throws {
        // Channel c of a [2, 2, 1, 2] input holds {c·10 + 1…4}: mean c·10 + 2.5 per channel.
        let bn = try BatchNorm2d(2, momentum: nil)   // cumulative average: first batch sets the stats
        let x = try Tensor([1, 2, 11, 12, 3, 4, 13, 14], shape: [2, 2, 1, 2])
        let y = try bn(x)
        let sd = (1.25 + 1e-5 as Float).squareRoot()
        assertClose(y.scalars, [-1.5, -0.5, -1.5, -0.5, 0.5, 1.5, 0.5, 1.5].map { $0 / sd })
        assertClose(bn.runningMean.scalars, [2.5, 12.5])
        assertClose(bn.runningVar.scalars, [5.0 / 3, 5.0 / 3])
        XCTAssertEqual(bn.summary, "BatchNorm2d(2)")
    }

    private func affineBatchNorm(_ kind: BatchNorm.Kind, features: Int) throws -> BatchNorm {
        let bn = try BatchNorm(features: features, kind: kind)
        var rng = SeededGenerator(seed: 31)
        bn.weight!.value.fillUniform(0.5, 1.5, using: &rng)
        bn.bias!.value.fillUniform(-0.5, 0.5, using: &rng)
        return bn
    }

    func testBatchNormTrainingGradients() throws {
        let cases: [(BatchNorm.Kind, [Int])] = [(.d1, [6, 3]), (.d1, [3, 2, 4]), (.d2, [3, 2, 3, 4])]
        for (kind, shape) in cases {
            let bn = try affineBatchNorm(kind, features: shape[1])
            let x = try random(shape, seed: 41, low: -2, high: 2)
            let report = try GradientCheck.check(bn, input: x)
            XCTAssertLessThan(report.maxError, 5e-3, "\(bn.summary) \(shape): \(report)")
        }
        // Without affine parameters.
        let plain = try BatchNorm2d(2, affine: false)
        XCTAssertTrue(plain.namedParameters.isEmpty)
        XCTAssertLessThan(try GradientCheck.check(plain, input: try random([2, 2, 3, 3], seed: 43)).maxError, 5e-3)
    }

    func testBatchNormEvalGradients() throws {
        for (kind, shape) in [(BatchNorm.Kind.d1, [4, 3]), (.d2, [2, 3, 3, 2])] {
            let bn = try affineBatchNorm(kind, features: shape[1])
            try bn.runningMean.assign([0.3, -0.2, 0.1])
            try bn.runningVar.assign([0.5, 2.0, 1.3])
            bn.eval()
            let x = try random(shape, seed: 51)
            let report = try GradientCheck.check(bn, input: x)
            XCTAssertLessThan(report.maxError, 2e-3, "\(bn.summary) eval: \(report)")
            XCTAssertEqual(bn.numBatchesTracked.scalars, [0])   // eval never updates the buffers
            XCTAssertEqual(bn.runningMean.scalars, [0.3, -0.2, 0.1])
        }
    }

    func testBatchNormValidation() throws {
        let bn = try BatchNorm2d(3)
        XCTAssertThrowsError(try bn(try Tensor(zeros: [2, 3, 4]))) { error in
            guard case let BackpropError.shapeMismatch(location, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "BatchNorm2d(3)")
            XCTAssertTrue(detail.contains("[2, 3, 4]"), detail)
        }
        XCTAssertThrowsError(try bn(try Tensor(zeros: [2, 4, 2, 2])))
        XCTAssertThrowsError(try bn(try Tensor(zeros: [1, 3, 1, 1])))   // one value per channel in training
        XCTAssertThrowsError(try BatchNorm1d(0))
        XCTAssertThrowsError(try BatchNorm1d(3, momentum: 2))
    }
}

/// LeNet architecture checks, and (only with BACKPROP_TIMING=1, meant for a release build)
/// the forward + backward time of one batch of 128 MNIST-sized images.
final class ConvArchitectureTests: XCTestCase {
    func testLeNetShapesAndNames() throws {
        let model = try Architectures.leNet(seed: 1)
        XCTAssertEqual(model.namedParameters.map(\.name),
                       ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"])
        XCTAssertEqual(model.parameter(named: "3.weight")?.shape, [32, 16, 5, 5])
        var rng = SeededGenerator(seed: 2)
        let x = try Tensor(zeros: [3, 1, 28, 28]); x.fillUniform(0, 1, using: &rng)
        let y = try model(x)
        XCTAssertEqual(y.shape, [3, 10])
        let (loss, delta) = try SoftmaxCrossEntropy()(y, labels: [1, 2, 3])
        XCTAssertTrue(loss.isFinite)
        XCTAssertEqual(try model.backward(delta).shape, [3, 1, 28, 28])
        XCTAssertThrowsError(try model(try Tensor(zeros: [3, 784])))
        XCTAssertThrowsError(try Architectures.leNet(classes: 0, seed: 1))
        // Same seed, same weights.
        XCTAssertEqual(try Architectures.leNet(seed: 1).parameter(named: "0.weight")?.value.scalars,
                       model.parameter(named: "0.weight")?.value.scalars)
    }

    func testResidualBlockKeepsShapeAndChecksGradients() throws {
        var rng = SeededGenerator(seed: 3)
        let block = try Architectures.residualBlock(channels: 2, rng: &rng)
        XCTAssertEqual(block.namedParameters.map(\.name),
                       ["block.0.weight", "block.1.weight", "block.1.bias", "block.3.weight", "block.4.weight", "block.4.bias"])
        let x = try Tensor(zeros: [3, 2, 4, 5]); x.fillUniform(-1, 1, using: &rng)
        XCTAssertEqual(try block(x).shape, [3, 2, 4, 5])
        // Step 1e-3: with 1e-2 a perturbed conv weight moves some pre-ReLU value across 0 (the
        // batch statistics couple every element), which the finite difference cannot straddle.
        let report = try GradientCheck.check(block, input: x, step: 1e-3, maxElements: 60)
        print("residual block gradient check: \(report)")
        XCTAssertLessThan(report.maxError, 5e-3, "\(report)")
    }

    func testLeNetStepTiming() throws {
        guard ProcessInfo.processInfo.environment["BACKPROP_TIMING"] != nil else {
            throw XCTSkip("set BACKPROP_TIMING=1 (release build) to time LeNet steps")
        }
        var rng = SeededGenerator(seed: 4)
        let x = try Tensor(zeros: [128, 1, 28, 28]); x.fillUniform(0, 1, using: &rng)
        let labels = (0..<128).map { Int32($0 % 10) }
        let loss = try SoftmaxCrossEntropy()
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        let savedThreads = BLAS.threadCount
        defer { BLAS.threadCount = savedThreads }
        print("BLAS core \(BLAS.coreName)")
        for threads in [1, 2] {
            BLAS.threadCount = threads
            for (name, model) in [("leNet 16/32", try Architectures.leNet(seed: 1)),
                                  ("leNetWide 32/64", try Architectures.leNetWide(seed: 1))] {
                for group in [1, 4, 16, 128] {
                    for case let conv as Conv2D in model.layers { conv.imagesPerGemm = group }
                    var times: [Double] = []
                    for run in 0..<4 {
                        let start = now()
                        model.zeroGrad()
                        let (value, delta) = try loss(try model(x), labels: labels)
                        _ = try model.backward(delta)
                        XCTAssertTrue(value.isFinite)
                        if run > 0 { times.append(now() - start) }
                    }
                    print(String(format: "threads %d, %@, imagesPerGemm %3d: forward+backward of 128 = %.1f ms (median of 3, min %.1f)",
                                 threads, name, group, median(times), times.min() ?? 0))
                }
            }
        }
        // Per-layer split of the default leNet, 2 threads.
        BLAS.threadCount = 2
        let model = try Architectures.leNet(seed: 1)
        var forward = [[Double]](repeating: [], count: model.layers.count), backward = forward
        for run in 0..<4 {
            var h = x
            for (i, layer) in model.layers.enumerated() {
                let t = now(); h = try layer.forward(h); if run > 0 { forward[i].append(now() - t) }
            }
            var g = try loss(h, labels: labels).gradient
            for (i, layer) in model.layers.enumerated().reversed() {
                let t = now(); g = try layer.backward(g); if run > 0 { backward[i].append(now() - t) }
            }
        }
        for (i, layer) in model.layers.enumerated() {
            print(String(format: "  %d %@: forward %.2f ms, backward %.2f ms", i, layer.summary, median(forward[i]), median(backward[i])))
        }
    }

    /// The row lowering against im2col's on LeNet (`Conv2D+RowLowering`), in one process, the two
    /// alternating call by call so that the host's drift falls on both: a training step (batch
    /// 128, the model's slices, first layer without δ of its input) and single-sample evaluation.
    /// Prints medians and the median of per-round ratios; asserts only that both ran.
    func testRowLoweringTiming() throws {
        guard ProcessInfo.processInfo.environment["BACKPROP_TIMING"] != nil else {
            throw XCTSkip("set BACKPROP_TIMING=1 (release build) to time the row lowering against im2col")
        }
        var rng = SeededGenerator(seed: 4)
        let x = try Tensor(zeros: [128, 1, 28, 28]); x.fillUniform(0, 1, using: &rng)
        let one = try Tensor(zeros: [1, 1, 28, 28]); one.fillUniform(0, 1, using: &rng)
        let labels = (0..<128).map { Int32($0 % 10) }
        let loss = try SoftmaxCrossEntropy()
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e3 }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        let rounds = Int(ProcessInfo.processInfo.environment["BACKPROP_TIMING_ROUNDS"] ?? "") ?? 40
        print("BLAS core \(BLAS.coreName)")
        let models = [try Architectures.leNet(seed: 1), try Architectures.leNet(seed: 1)]   // [im2col, rows]
        for case let conv as Conv2D in models[0].layers { conv.allowsRowLowering = false }
        for m in models { m.needsInputGradient = false }
        var step: [[Double]] = [[], []], single: [[Double]] = [[], []]
        for round in 0..<(rounds + 2) {
            for which in round % 2 == 0 ? [0, 1] : [1, 0] {
                let m = models[which]
                var start = now()
                m.zeroGrad()
                _ = try m.backward(try loss(try m(x), labels: labels).gradient)
                let t = now() - start
                start = now()
                for _ in 0..<50 { _ = try m.evaluationForward(one) }
                let u = (now() - start) / 50
                if round >= 2 { step[which].append(t); single[which].append(u) }
            }
        }
        XCTAssertEqual(models[1].layers.compactMap { ($0 as? Conv2D)?.plan.rows }, [false, true])
        for (name, v) in [("training step, batch 128 (µs)", step), ("single sample, mean of 50 (µs)", single)] {
            let ratios = zip(v[1], v[0]).map { $0 / $1 }
            print(String(format: "%@: im2col %.1f, rows %.1f, rows ÷ im2col %.3f (median of %d per-round ratios; quartiles %.3f–%.3f)",
                         name, median(v[0]), median(v[1]), median(ratios), ratios.count,
                         ratios.sorted()[ratios.count / 4], ratios.sorted()[3 * ratios.count / 4]))
        }
    }
}
