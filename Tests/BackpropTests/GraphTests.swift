import XCTest
@testable import Backprop

/// The graph (`Variable` and the ops of `Graph/Ops`): every op's gradients against central finite
/// differences, the bookkeeping of backward (a leaf used twice, a diamond, accumulation, noGrad,
/// errors), and a small MLP whose gradients must equal those of the layer API on the same weights.
///
/// Finite differences as `GradientCheck`: L = Σ op(x) ⊙ w for fixed random w, step h = 1e-2 in
/// Float, L accumulated in Double, error |a − n| / max(1, |a|, |n|) < 2e-3 for every element of
/// every input that requires grad.
final class GraphTests: XCTestCase {
    let tolerance: Float = 2e-3

    /// Uniform in [low, high] with |x| ≥ 0.1 (a ±1e-2 step never crosses a kink at 0).
    func leaf(_ shape: [Int], seed: UInt64, low: Float = -2, high: Float = 2, requiresGrad: Bool = true) throws -> Variable {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(low, high, using: &rng)
        for i in 0..<t.count where abs(t.data[i]) < 0.1 { t.data[i] = t.data[i] < 0 ? -0.1 - t.data[i] : 0.1 + t.data[i] }
        return Variable(t, requiresGrad: requiresGrad)
    }

    /// Checks ∂/∂x of L = Σ f(inputs) ⊙ w for every input with requiresGrad, element by element.
    func assertGradients(_ inputs: [Variable], seed: UInt64 = 99, file: StaticString = #filePath, line: UInt = #line,
                         _ f: ([Variable]) throws -> Variable) throws {
        let y = try f(inputs)
        XCTAssertFalse(y.isLeaf, "the op recorded nothing", file: file, line: line)
        var rng = SeededGenerator(seed: seed)
        let w = try Tensor(zeros: y.shape)
        w.fillUniform(-1, 1, using: &rng)
        for x in inputs { x.grad = nil }
        let loss = try sum(y * Variable(w))
        try loss.backward()

        func numericLoss() throws -> Double {
            let out = try noGrad { try f(inputs) }
            XCTAssertTrue(out.isLeaf, file: file, line: line)
            var s: Double = 0
            for i in 0..<out.value.count { s += Double(out.value.data[i]) * Double(w.data[i]) }
            return s
        }
        // The unrecorded forward gives the same values as the recorded one.
        let plain = try noGrad { try f(inputs) }
        XCTAssertEqual(plain.value.scalars, y.value.scalars, file: file, line: line)

        var checked = 0, worst: Float = 0, worstAt = ""
        let h: Float = 1e-2
        for (n, x) in inputs.enumerated() where x.requiresGrad {
            guard let g = x.grad else { XCTFail("input \(n) received no grad", file: file, line: line); continue }
            XCTAssertEqual(g.shape, x.shape, file: file, line: line)
            for i in 0..<x.value.count {
                let saved = x.value.data[i]
                x.value.data[i] = saved + h
                let plus = try numericLoss()
                x.value.data[i] = saved - h
                let minus = try numericLoss()
                x.value.data[i] = saved
                let numeric = Float((plus - minus) / (2 * Double(h)))
                let a = g.data[i]
                let err = abs(a - numeric) / max(1, abs(a), abs(numeric))
                if err > worst { worst = err; worstAt = "input \(n)[\(i)]: backward \(a), finite difference \(numeric)" }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
        XCTAssertLessThan(worst, tolerance, worstAt, file: file, line: line)
    }

    func assertShapeMismatch(_ op: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Variable) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let BackpropError.shapeMismatch(location, _)? = error as? BackpropError else {
                return XCTFail("expected a shape mismatch, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(location, op, file: file, line: line)
        }
    }

    // MARK: - The example

    func testReadmeExample() throws {
        let a = Variable(try Tensor([2], shape: [1]), requiresGrad: true)
        let b = Variable(try Tensor([-3], shape: [1]), requiresGrad: true)
        let c = Variable(try Tensor([4], shape: [1]), requiresGrad: true)
        let y = try (a + b) * c
        try y.backward()
        XCTAssertEqual(y.value.scalars, [-4])
        XCTAssertEqual(y.op, "mul")
        XCTAssertEqual(a.grad?.scalars, [4])
        XCTAssertEqual(b.grad?.scalars, [4])
        XCTAssertEqual(c.grad?.scalars, [-1])
        XCTAssertNil(y.grad)   // not a leaf
    }

    /// retainGrad keeps δ of an op's result (PyTorch's retain_grad), summed over two backwards.
    func testRetainGradKeepsIntermediateGradients() throws {
        let a = Variable(try Tensor([2], shape: [1]), requiresGrad: true)
        let b = Variable(try Tensor([-3], shape: [1]), requiresGrad: true)
        let c = Variable(try Tensor([4], shape: [1]), requiresGrad: true)
        let s = try a + b
        s.retainGrad()
        XCTAssertTrue(s.retainsGrad)
        let y = try s * c
        XCTAssertFalse(y.retainsGrad)
        try y.backward()
        XCTAssertEqual(s.grad?.scalars, [4])      // ∂y/∂(a + b) = c
        XCTAssertNil(y.grad)
        XCTAssertEqual(a.grad?.scalars, [4])
        try y.backward()
        XCTAssertEqual(s.grad?.scalars, [8])      // accumulates, as a leaf's grad
        XCTAssertEqual(a.grad?.scalars, [8])
    }

    // MARK: - Arithmetic and broadcasting

    func testArithmeticSameShape() throws {
        let a = try leaf([3, 4], seed: 1), b = try leaf([3, 4], seed: 2, low: 0.5, high: 2)   // b also divides
        try assertGradients([a, b]) { try $0[0] + $0[1] }
        try assertGradients([a, b]) { try $0[0] - $0[1] }
        try assertGradients([a, b]) { try $0[0] * $0[1] }
        try assertGradients([a, b]) { try $0[0] / $0[1] }
        try assertGradients([a]) { -$0[0] }
        let r1 = try leaf([5], seed: 3), r2 = try leaf([5], seed: 4)   // rank 1
        try assertGradients([r1, r2]) { try $0[0] * $0[1] - $0[1] }
    }

    func testRowBroadcast() throws {
        let x = try leaf([4, 3], seed: 5), r = try leaf([3], seed: 6), r2 = try leaf([1, 3], seed: 7)
        let px = try leaf([4, 3], seed: 5, low: 0.5, high: 2)   // a divisor away from 0 (finite differences of 1/x)
        for bias in [r, r2] {
            try assertGradients([x, bias]) { try $0[0] + $0[1] }
            try assertGradients([x, bias]) { try $0[1] - $0[0] }   // the broadcast side on the left
            try assertGradients([x, bias]) { try $0[0] * $0[1] }
            try assertGradients([px, bias]) { try $0[1] / $0[0] }
            try assertGradients([x, bias]) { try $0[0] / $0[1] }
        }
        XCTAssertEqual(try (x + r).shape, [4, 3])
        XCTAssertEqual(try (r2 * x).shape, [4, 3])
    }

    func testColumnBroadcast() throws {
        let x = try leaf([4, 3], seed: 8), c = try leaf([4, 1], seed: 9)
        let px = try leaf([4, 3], seed: 8, low: 0.5, high: 2), pc = try leaf([4, 1], seed: 9, low: 0.5, high: 2)   // divisors
        try assertGradients([x, c]) { try $0[0] + $0[1] }
        try assertGradients([x, c]) { try $0[1] - $0[0] }
        try assertGradients([x, c]) { try $0[0] * $0[1] }
        try assertGradients([x, pc]) { try $0[0] / $0[1] }
        try assertGradients([c, px]) { try $0[0] / $0[1] }
        XCTAssertEqual(try (c - x).shape, [4, 3])
    }

    func testScalarBroadcastAndFloats() throws {
        let x = try leaf([3, 2], seed: 10, low: 0.5, high: 2), s0 = try leaf([], seed: 11), s1 = try leaf([1], seed: 12)
        for s in [s0, s1] {
            try assertGradients([x, s]) { try $0[0] * $0[1] }
            try assertGradients([x, s]) { try $0[1] / $0[0] }
            try assertGradients([x, s]) { try $0[1] - $0[0] }
        }
        try assertGradients([x]) { try ((2 * $0[0] + 1) / 3 - 0.5) * $0[0] }
        try assertGradients([x]) { try (1 - $0[0]) + (2 / $0[0]) }
        let y = 2 - x * 3   // Float operands: no try
        for i in 0..<x.value.count { XCTAssertEqual(y.value.data[i], 2 - 3 * x.value.data[i], accuracy: 1e-6) }
    }

    // MARK: - Products, reductions, element-wise functions

    func testMatmul() throws {
        let a = try leaf([3, 4], seed: 13), b = try leaf([4, 5], seed: 14)
        try assertGradients([a, b]) { try matmul($0[0], $0[1]) }
        // The value against a plain triple loop.
        let c = try matmul(a, b)
        XCTAssertEqual(c.shape, [3, 5])
        for i in 0..<3 {
            for j in 0..<5 {
                var s: Float = 0
                for k in 0..<4 { s += a.value[i, k] * b.value[k, j] }
                XCTAssertEqual(c.value[i, j], s, accuracy: 1e-5)
            }
        }
        // Only b requires grad: a gets none.
        let fixed = try leaf([3, 4], seed: 15, requiresGrad: false)
        try assertGradients([fixed, b]) { try matmul($0[0], $0[1]) }
        XCTAssertNil(fixed.grad)
    }

    func testReductions() throws {
        let x = try leaf([3, 4], seed: 16), t = try leaf([2, 3, 4], seed: 17)
        try assertGradients([x]) { sum($0[0]) }
        try assertGradients([x]) { mean($0[0]) }
        try assertGradients([x]) { try sum($0[0], axis: 0) }
        try assertGradients([x]) { try mean($0[0], axis: 1) }
        try assertGradients([x]) { try sum($0[0], axis: -1, keepDim: true) }
        try assertGradients([t]) { try mean($0[0], axis: 1) }
        try assertGradients([t]) { try sum($0[0], axis: 2, keepDim: true) }
        XCTAssertEqual(sum(x).shape, [])
        XCTAssertEqual(try sum(x, axis: 0).shape, [4])
        XCTAssertEqual(try mean(t, axis: 1, keepDim: true).shape, [2, 1, 4])
        XCTAssertEqual(try mean(x).item(), x.value.mean(), accuracy: 1e-6)
        let rowSums = try sum(x, axis: 1)
        for i in 0..<3 { XCTAssertEqual(rowSums.value.data[i], (0..<4).map { x.value[i, $0] }.reduce(0, +), accuracy: 1e-5) }
    }

    func testElementwise() throws {
        let x = try leaf([4, 5], seed: 18), positive = try leaf([4, 5], seed: 19, low: 0.2, high: 3)
        try assertGradients([x]) { exp($0[0]) }
        try assertGradients([positive]) { log($0[0]) }
        try assertGradients([x]) { tanh($0[0]) }
        try assertGradients([x]) { sigmoid($0[0]) }
        try assertGradients([x]) { relu($0[0]) }
        try assertGradients([x]) { gelu($0[0]) }
        try assertGradients([x]) { gelu($0[0], approximate: .tanh) }
        // Values against the layers and the standard library.
        XCTAssertEqual(relu(x).value.scalars, try ReLU().forward(x.value).scalars)
        let g = try GELU().forward(x.value)
        for (u, v) in zip(gelu(x).value.scalars, g.scalars) { XCTAssertEqual(u, v, accuracy: 1e-6) }
        let (t, s, e) = (tanh(x).value.scalars, sigmoid(x).value.scalars, exp(x).value.scalars)
        for (i, v) in x.value.scalars.enumerated() {
            XCTAssertEqual(t[i], tanhf(v), accuracy: 1e-6)
            XCTAssertEqual(s[i], 1 / (1 + expf(-v)), accuracy: 1e-6)
            XCTAssertEqual(e[i], expf(v), accuracy: 1e-5 * expf(v))
        }
    }

    // MARK: - Softmax and losses

    func testSoftmaxAndLogSoftmax() throws {
        let x = try leaf([3, 5], seed: 20), t = try leaf([2, 3, 4], seed: 21)
        try assertGradients([x]) { try softmax($0[0]) }
        try assertGradients([x]) { try softmax($0[0], axis: 0) }
        try assertGradients([t]) { try softmax($0[0], axis: 1) }
        try assertGradients([x]) { try logSoftmax($0[0]) }
        try assertGradients([t]) { try logSoftmax($0[0], axis: 0) }
        // Rows sum to 1 and match the Softmax layer; logSoftmax = log(softmax).
        let p = try softmax(x)
        let layer = try Softmax().forward(x.value)
        for (u, v) in zip(p.value.scalars, layer.scalars) { XCTAssertEqual(u, v, accuracy: 1e-6) }
        for i in 0..<3 { XCTAssertEqual((0..<5).map { p.value[i, $0] }.reduce(0, +), 1, accuracy: 1e-5) }
        let lp = try logSoftmax(x)
        for (u, v) in zip(lp.value.scalars, p.value.scalars) { XCTAssertEqual(u, logf(v), accuracy: 1e-5) }
        // Large logits do not overflow.
        let big = try softmax(Variable([1000, 0, -1000], shape: [1, 3]))
        XCTAssertEqual(big.value.scalars, [1, 0, 0])
    }

    func testCrossEntropy() throws {
        let z = try leaf([4, 5], seed: 22)
        let labels = [3, 0, 4, 1]
        try assertGradients([z]) { try crossEntropy($0[0], labels: labels) }
        try assertGradients([z]) { try crossEntropy($0[0], labels: labels, reduction: .sum) }
        let (value, _) = try SoftmaxCrossEntropy()(z.value, labels: labels.map(Int32.init))
        XCTAssertEqual(try crossEntropy(z, labels: labels).item(), value, accuracy: 1e-6)
        // Errors.
        assertShapeMismatch("crossEntropy") { try crossEntropy(z, labels: [0, 1]) }
        XCTAssertThrowsError(try crossEntropy(z, labels: [0, 1, 5, 2])) { error in
            guard case BackpropError.invalidArgument? = error as? BackpropError else { return XCTFail("\(error)") }
        }
    }

    func testMSE() throws {
        let p = try leaf([3, 4], seed: 23), t = try leaf([3, 4], seed: 24)
        try assertGradients([p, t]) { try mse($0[0], $0[1]) }
        try assertGradients([p, t]) { try mse($0[0], $0[1], reduction: .sum) }
        let (value, _) = try MeanSquaredError()(p.value, target: t.value)
        XCTAssertEqual(try mse(p, t).item(), value, accuracy: 1e-6)
        assertShapeMismatch("mse") { try mse(p, try leaf([4, 3], seed: 1)) }
    }

    // MARK: - Shape ops

    func testShapeOps() throws {
        let x = try leaf([4, 6], seed: 25), y = try leaf([2, 6], seed: 26), z = try leaf([4, 2], seed: 27)
        let fixed = try leaf([1, 6], seed: 28, requiresGrad: false)
        try assertGradients([x]) { try reshape($0[0], [3, -1]) }
        try assertGradients([x]) { try reshape($0[0], [2, 3, 4]) }
        try assertGradients([x]) { try transpose($0[0]) }
        try assertGradients([x]) { try rows($0[0], 1..<3) }
        try assertGradients([x, y, fixed]) { try concat([$0[0], $0[1], $0[2]], axis: 0) }
        try assertGradients([x, z]) { try concat([$0[0], $0[1]], axis: 1) }
        try assertGradients([x, z]) { try concat([$0[1], $0[0], $0[1]], axis: -1) }   // an input twice
        XCTAssertNil(fixed.grad)
        // Values.
        XCTAssertEqual(try reshape(x, [3, -1]).shape, [3, 8])
        let xt = try transpose(x)
        XCTAssertEqual(xt.shape, [6, 4])
        XCTAssertEqual(xt.value[5, 2], x.value[2, 5])
        XCTAssertEqual(try rows(x, 1..<3).value.scalars, Array(x.value.scalars[6..<18]))
        let c = try concat([x, z], axis: 1)
        XCTAssertEqual(c.shape, [4, 8])
        XCTAssertEqual(c.value[3, 7], z.value[3, 1])
        XCTAssertEqual(c.value[3, 5], x.value[3, 5])
        // Errors.
        assertShapeMismatch("reshape") { try reshape(x, [5, 5]) }
        assertShapeMismatch("reshape") { try reshape(x, [-1, -1]) }
        assertShapeMismatch("transpose") { try transpose(try reshape(x, [2, 3, 4])) }
        assertShapeMismatch("rows") { try rows(x, 2..<5) }
        assertShapeMismatch("concat") { try concat([x, y], axis: 1) }
    }

    // MARK: - Graph bookkeeping

    func testLeafUsedTwice() throws {
        let x = try leaf([5], seed: 29)
        try (sum(x * x)).backward()
        for i in 0..<5 { XCTAssertEqual(x.grad!.data[i], 2 * x.value.data[i], accuracy: 1e-6) }
        let a = try leaf([2, 3], seed: 30)
        try sum(a + a).backward()
        XCTAssertEqual(a.grad?.scalars, [Float](repeating: 2, count: 6))
        try assertGradients([x]) { try $0[0] * $0[0] }
        try assertGradients([a]) { try $0[0] + $0[0] }
    }

    func testDiamond() throws {
        // a → b = 2a, a → c = exp(a), d = b ⊙ c: ∂d/∂a = 2·exp(a) + 2a·exp(a).
        let a = try leaf([3], seed: 31)
        let d = try sum((a * 2) * exp(a))
        try d.backward()
        for i in 0..<3 {
            let v = a.value.data[i]
            XCTAssertEqual(a.grad!.data[i], 2 * expf(v) * (1 + v), accuracy: 1e-4 * max(1, abs(2 * expf(v) * (1 + v))))
        }
        // A deeper diamond with a shared interior value used by two branches.
        let x = try leaf([2, 3], seed: 32), w = try leaf([3, 3], seed: 33)
        try assertGradients([x, w]) { v in
            let h = try matmul(v[0], v[1])
            return try tanh(h) + sigmoid(h) * h
        }
    }

    func testAccumulationAndZeroGrad() throws {
        let x = try leaf([4], seed: 34)
        let y = sum(x * 3)
        try y.backward()
        XCTAssertEqual(x.grad?.scalars, [3, 3, 3, 3])
        try y.backward()   // a second pass adds, as PyTorch with retain_graph
        XCTAssertEqual(x.grad?.scalars, [6, 6, 6, 6])
        x.zeroGrad()
        XCTAssertEqual(x.grad?.scalars, [0, 0, 0, 0])
        x.grad = nil
        try sum(x).backward()
        XCTAssertEqual(x.grad?.scalars, [1, 1, 1, 1])
        // Two leaves receiving one shared gradient do not share a grad tensor.
        let a = try leaf([2], seed: 35), b = try leaf([2], seed: 36)
        try sum(a + b).backward()
        a.grad!.data[0] = 100
        XCTAssertEqual(b.grad!.data[0], 1)
    }

    func testNoGradRecordsNothing() throws {
        let x = try leaf([2, 3], seed: 37)
        XCTAssertTrue(GradMode.isEnabled)
        let y = noGrad { () -> Variable in
            XCTAssertFalse(GradMode.isEnabled)
            return sum(relu(x) * 2)
        }
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertTrue(y.isLeaf)
        XCTAssertNil(y.op)
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(y.inputs.isEmpty)
        XCTAssertThrowsError(try y.backward()) { error in
            guard case BackpropError.invalidUse? = error as? BackpropError else { return XCTFail("\(error)") }
        }
        XCTAssertNil(x.grad)
        // Values that require no grad record nothing either.
        let c = try leaf([3], seed: 38, requiresGrad: false)
        XCTAssertTrue(exp(c).isLeaf)
        // Recording is back after noGrad.
        let z = sum(exp(x))
        XCTAssertEqual(z.op, "sum")
        XCTAssertEqual(z.inputs.first?.op, "exp")
    }

    /// noGrad is per thread: a thread inside it does not stop another from recording.
    func testNoGradIsPerThread() throws {
        let x = try leaf([3], seed: 47)
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        let insideWasLeaf = LockedFlag()
        Thread.detachNewThread {
            noGrad {
                entered.signal()
                release.wait()
                // A variable of this thread's own (Variable is not Sendable).
                if let local = try? Variable([1, 2, 3], shape: [3], requiresGrad: true) { insideWasLeaf.set(exp(local).isLeaf) }
            }
            done.signal()
        }
        entered.wait()
        // The other thread is inside noGrad now; this one still records.
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertEqual(exp(x).op, "exp")
        release.signal()
        done.wait()
        XCTAssertEqual(insideWasLeaf.get(), true)
    }

    func testBackwardFromALeafAndDescription() throws {
        let s = try Variable([3], shape: [], requiresGrad: true)
        try s.backward()
        XCTAssertEqual(s.grad?.scalars, [1])
        let y = s * 2
        XCTAssertEqual(y.description, "Variable(shape: [], op: mul, [6.0])")
        XCTAssertEqual(s.description, "Variable(shape: [], leaf, requiresGrad, [3.0])")
        // A [1, 1] value broadcasts as a scalar.
        let x = try leaf([2, 3], seed: 48), one = try leaf([1, 1], seed: 49)
        try assertGradients([x, one]) { try $0[0] * $0[1] }
        XCTAssertEqual(try (one + x).shape, [2, 3])
    }

    func testBackwardFromNonScalarIsATypedError() throws {
        let x = try leaf([2, 3], seed: 39)
        let y = relu(x)
        XCTAssertThrowsError(try y.backward()) { error in
            guard case let BackpropError.shapeMismatch(location, _)? = error as? BackpropError else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "Variable.backward()")
        }
        XCTAssertNil(x.grad)
        // With an explicit gradient of the value's shape it runs.
        try y.backward(gradient: try Tensor([1, 1, 1, 1, 1, 1], shape: [2, 3]))
        XCTAssertEqual(x.grad?.scalars, x.value.scalars.map { $0 > 0 ? 1 : 0 })
        XCTAssertThrowsError(try y.backward(gradient: try Tensor(zeros: [3, 2])))
    }

    func testShapeMismatchesAreTypedErrors() throws {
        let a = try leaf([2, 3], seed: 40), b = try leaf([3, 2], seed: 41), r = try leaf([2], seed: 42)
        assertShapeMismatch("+") { try a + b }
        assertShapeMismatch("-") { try a - r }
        assertShapeMismatch("*") { try a * (try leaf([3, 1], seed: 1)) }
        assertShapeMismatch("/") { try (try leaf([1, 3], seed: 2)) / (try leaf([2, 1], seed: 3)) }
        assertShapeMismatch("matmul") { try matmul(a, a) }
        assertShapeMismatch("matmul") { try matmul(r, b) }
        assertShapeMismatch("sum") { try sum(a, axis: 2) }
        assertShapeMismatch("softmax") { try softmax(a, axis: -3) }
        XCTAssertNoThrow(try sum(a).item())
        XCTAssertThrowsError(try a.item())
    }

    func testChangedSavedTensorIsRefused() throws {
        let x = try leaf([2, 3], seed: 43), w = try leaf([3, 2], seed: 44)
        let loss = try sum(matmul(x, w))
        w.value.fill(0.5)   // an optimizer step between forward and backward
        XCTAssertThrowsError(try loss.backward()) { error in
            guard case let BackpropError.invalidUse(location, _)? = error as? BackpropError else { return XCTFail("\(error)") }
            XCTAssertEqual(location, "matmul")
        }
        XCTAssertNil(x.grad)
        XCTAssertNil(w.grad)
    }

    /// A chain of 100 000 ops: backward walks it without recursion, and releasing it does not
    /// overflow the stack.
    func testLongChain() throws {
        let x = try leaf([1], seed: 46)
        do {
            var y = x
            for _ in 0..<100_000 { y = y + 1 }
            try y.backward()
        }
        XCTAssertEqual(x.grad?.scalars, [1])
    }

    // MARK: - The graph against the layer API

    /// Sequential(Dense, ReLU, Dense) + SoftmaxCrossEntropy and the same network written with
    /// Variables, on the same weights and batch: every parameter's gradient and the input's.
    func testMLPMatchesSequential() throws {
        let first = try Dense(6, 8, seed: 1), second = try Dense(8, 4, seed: 2)
        let model = Sequential(first, ReLU(), second)
        let x = try leaf([5, 6], seed: 45)
        let labels = [0, 3, 1, 2, 3]

        let logits = try model.forward(x.value)
        let (lossValue, delta) = try SoftmaxCrossEntropy()(logits, labels: labels.map(Int32.init))
        let dx = try model.backward(delta)

        let w1 = Variable(first.weight.value.copy(), requiresGrad: true), b1 = Variable(first.bias!.value.copy(), requiresGrad: true)
        let w2 = Variable(second.weight.value.copy(), requiresGrad: true), b2 = Variable(second.bias!.value.copy(), requiresGrad: true)
        let h = relu(try matmul(x, transpose(w1)) + b1)
        let out = try matmul(h, transpose(w2)) + b2
        let loss = try crossEntropy(out, labels: labels)
        try loss.backward()

        XCTAssertEqual(try loss.item(), lossValue, accuracy: 1e-5 * max(1, abs(lossValue)))
        func assertClose(_ a: Tensor?, _ b: Tensor, _ name: String) {
            guard let a else { return XCTFail("\(name): no grad") }
            XCTAssertEqual(a.shape, b.shape, name)
            let scale = max(b.scalars.map(abs).max() ?? 0, 1e-12)
            XCTAssertGreaterThan(scale, 1e-6, "\(name): an all-zero gradient proves nothing")
            for i in 0..<b.count {
                XCTAssertLessThanOrEqual(abs(a.data[i] - b.data[i]) / scale, 1e-5, "\(name)[\(i)]: \(a.data[i]) vs \(b.data[i])")
            }
        }
        assertClose(w1.grad, first.weight.grad, "dW1")
        assertClose(b1.grad, first.bias!.grad, "db1")
        assertClose(w2.grad, second.weight.grad, "dW2")
        assertClose(b2.grad, second.bias!.grad, "db2")
        assertClose(x.grad, dx, "dX")
    }
}

/// A Bool set on one thread and read on another.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Bool?
    func set(_ v: Bool) { lock.lock(); value = v; lock.unlock() }
    func get() -> Bool? { lock.lock(); defer { lock.unlock() }; return value }
}
