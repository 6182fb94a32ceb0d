import XCTest
@testable import Backprop

/// Finite differences for the graph's batched ops: `matmul` on rank-3 operands, `transpose(x,
/// dim0, dim1)`, softmax / logSoftmax / sum / mean over an axis of a rank-3 value, broadcasting
/// against trailing dimensions and against [… , 1], `LayerNorm` on `[N, T, F]`, and `argmax`.
/// Each value is also checked against a plain loop, and each gradient element by element against
/// central differences: L = Σ op(x) ⊙ w for fixed random w, h = 1e-2, L in Double, error
/// |a − n| / max(1, |a|, |n|) < 2e-3.
final class GraphBatchedOpsTests: XCTestCase {
    /// Uniform in [low, high] with |x| ≥ 0.1.
    static func leaf(_ shape: [Int], seed: UInt64, low: Float = -2, high: Float = 2, requiresGrad: Bool = true) throws -> Variable {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(low, high, using: &rng)
        for i in 0..<t.count where abs(t.data[i]) < 0.1 { t.data[i] = t.data[i] < 0 ? -0.1 - t.data[i] : 0.1 + t.data[i] }
        return Variable(t, requiresGrad: requiresGrad)
    }

    func leaf(_ shape: [Int], seed: UInt64, low: Float = -2, high: Float = 2) throws -> Variable {
        try Self.leaf(shape, seed: seed, low: low, high: high)
    }

    /// ∂/∂x of L = Σ f(inputs) ⊙ w against central differences, for every input with requiresGrad
    /// and every element of `parameters` (whose gradients the graph adds into their `grad`).
    /// Returns the largest error.
    @discardableResult
    static func checkGradients(_ inputs: [Variable], parameters: [Parameter] = [], tolerance: Float = 2e-3, seed: UInt64 = 99,
                               file: StaticString = #filePath, line: UInt = #line,
                               _ f: ([Variable]) throws -> Variable) throws -> Float {
        let y = try f(inputs)
        XCTAssertFalse(y.isLeaf, "the op recorded nothing", file: file, line: line)
        var rng = SeededGenerator(seed: seed)
        let w = try Tensor(zeros: y.shape)
        w.fillUniform(-1, 1, using: &rng)
        for x in inputs { x.grad = nil }
        for p in parameters { p.zeroGrad() }
        try sum(y * Variable(w)).backward()
        func numericLoss() throws -> Double {
            let out = try noGrad { try f(inputs) }
            var s: Double = 0
            for i in 0..<out.value.count { s += Double(out.value.data[i]) * Double(w.data[i]) }
            return s
        }
        var tensors: [(String, Tensor, Tensor)] = []
        for (n, x) in inputs.enumerated() where x.requiresGrad {
            guard let g = x.grad else { XCTFail("input \(n) received no grad", file: file, line: line); continue }
            XCTAssertEqual(g.shape, x.shape, file: file, line: line)
            tensors.append(("input \(n)", x.value, g))
        }
        for (n, p) in parameters.enumerated() { tensors.append(("parameter \(n) \(p.shape)", p.value, p.grad.copy())) }
        var checked = 0, worst: Float = 0, worstAt = ""
        let h: Float = 1e-2
        for (name, value, g) in tensors {
            for i in 0..<value.count {
                let saved = value.data[i]
                value.data[i] = saved + h
                let plus = try numericLoss()
                value.data[i] = saved - h
                let minus = try numericLoss()
                value.data[i] = saved
                let numeric = Float((plus - minus) / (2 * Double(h)))
                let a = g.data[i]
                let err = abs(a - numeric) / max(1, abs(a), abs(numeric))
                if err > worst { worst = err; worstAt = "\(name)[\(i)]: backward \(a), finite difference \(numeric)" }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
        XCTAssertLessThan(worst, tolerance, worstAt, file: file, line: line)
        return worst
    }

    func checkGradients(_ inputs: [Variable], file: StaticString = #filePath, line: UInt = #line,
                        _ f: ([Variable]) throws -> Variable) throws {
        try Self.checkGradients(inputs, file: file, line: line, f)
    }

    func assertShapeMismatch(_ op: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Variable) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let BackpropError.shapeMismatch(location, _)? = error as? BackpropError else {
                return XCTFail("expected a shape mismatch, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(location, op, file: file, line: line)
        }
    }

    // MARK: - Batched matmul

    func testBatchTimesBatch() throws {
        let a = try leaf([3, 2, 4], seed: 1), b = try leaf([3, 4, 5], seed: 2)
        let c = try matmul(a, b)
        XCTAssertEqual(c.shape, [3, 2, 5])
        for n in 0..<3 {
            for i in 0..<2 {
                for j in 0..<5 {
                    var s: Float = 0
                    for k in 0..<4 { s += a.value.data[(n * 2 + i) * 4 + k] * b.value.data[(n * 4 + k) * 5 + j] }
                    XCTAssertEqual(c.value.data[(n * 2 + i) * 5 + j], s, accuracy: 1e-4)
                }
            }
        }
        try checkGradients([a, b]) { try matmul($0[0], $0[1]) }
        b.requiresGrad = false
        try checkGradients([a, b]) { try matmul($0[0], $0[1]) }
    }

    func testBatchTimesMatrix() throws {
        let a = try leaf([3, 2, 4], seed: 3), b = try leaf([4, 5], seed: 4)
        let c = try matmul(a, b)
        XCTAssertEqual(c.shape, [3, 2, 5])
        for r in 0..<6 {
            for j in 0..<5 {
                var s: Float = 0
                for k in 0..<4 { s += a.value.data[r * 4 + k] * b.value.data[k * 5 + j] }
                XCTAssertEqual(c.value.data[r * 5 + j], s, accuracy: 1e-4)
            }
        }
        try checkGradients([a, b]) { try matmul($0[0], $0[1]) }
    }

    func testMatmulShapesThatDoNotFit() throws {
        let a = try leaf([2, 3, 4], seed: 5)
        assertShapeMismatch("matmul") { try matmul(a, try self.leaf([2, 5, 6], seed: 6)) }   // K differs
        assertShapeMismatch("matmul") { try matmul(a, try self.leaf([3, 4, 5], seed: 7)) }   // batch differs
        assertShapeMismatch("matmul") { try matmul(a, try self.leaf([5, 6], seed: 8)) }
        assertShapeMismatch("matmul") { try matmul(try self.leaf([3, 2], seed: 9), a) }      // [M, K]·[B, K, N]: not supported
        assertShapeMismatch("matmul") { try matmul(a, try self.leaf([4], seed: 10)) }
        // Empty batches multiply to empty results.
        XCTAssertEqual(try matmul(Variable(try Tensor(zeros: [0, 3, 4])), Variable(try Tensor(zeros: [0, 4, 2]))).shape, [0, 3, 2])
    }

    // MARK: - transpose(x, dim0, dim1)

    func testTransposeSwapsTwoDimensions() throws {
        let x = try leaf([2, 3, 4], seed: 11)
        func at(_ v: Variable, _ i: Int, _ j: Int, _ k: Int) -> Float {
            v.value.data[(i * v.shape[1] + j) * v.shape[2] + k]
        }
        let last = try transpose(x, 1, 2)
        XCTAssertEqual(last.shape, [2, 4, 3])
        let first = try transpose(x, 0, 2)
        XCTAssertEqual(first.shape, [4, 3, 2])
        let lead = try transpose(x, 1, 0)
        XCTAssertEqual(lead.shape, [3, 2, 4])
        for i in 0..<2 {
            for j in 0..<3 {
                for k in 0..<4 {
                    XCTAssertEqual(at(last, i, k, j), at(x, i, j, k))
                    XCTAssertEqual(at(first, k, j, i), at(x, i, j, k))
                    XCTAssertEqual(at(lead, j, i, k), at(x, i, j, k))
                }
            }
        }
        XCTAssertEqual(try transpose(x, -1, -2).value.scalars, last.value.scalars)
        XCTAssertEqual(try transpose(x, 1, 1).value.scalars, x.value.scalars)
        for (d0, d1) in [(1, 2), (0, 2), (0, 1), (2, 2)] {
            try checkGradients([x]) { try transpose($0[0], d0, d1) }
        }
        // On a 2-d value, the same as transpose(x).
        let m = try leaf([3, 5], seed: 12)
        XCTAssertEqual(try transpose(m, 0, 1).value.scalars, try transpose(m).value.scalars)
        XCTAssertEqual(try transpose(m, 0, 1).shape, [5, 3])
        try checkGradients([m]) { try transpose($0[0], 0, 1) }
        assertShapeMismatch("transpose") { try transpose(x, 1, 3) }
        assertShapeMismatch("transpose") { try transpose(x, -4, 0) }
        assertShapeMismatch("transpose") { try transpose(Variable(try Tensor(zeros: [])), 0, 0) }
    }

    // MARK: - Reductions and softmax over an axis of a rank-3 value

    func testSoftmaxAndLogSoftmaxOverTheLastAxisOfRank3() throws {
        let x = try leaf([2, 3, 5], seed: 13)
        let p = try softmax(x, axis: -1), lp = try logSoftmax(x)
        for r in 0..<6 {
            let row = (0..<5).map { x.value.data[r * 5 + $0] }
            let m = row.max() ?? 0
            let z = row.map { expf($0 - m) }.reduce(0, +)
            for j in 0..<5 {
                XCTAssertEqual(p.value.data[r * 5 + j], expf(row[j] - m) / z, accuracy: 1e-6)
                XCTAssertEqual(lp.value.data[r * 5 + j], row[j] - m - logf(z), accuracy: 1e-5)
            }
        }
        try checkGradients([x]) { try softmax($0[0], axis: -1) }
        try checkGradients([x]) { try logSoftmax($0[0], axis: 2) }
        try checkGradients([x]) { try softmax($0[0], axis: 1) }
    }

    func testSumAndMeanOverAnAxisOfRank3() throws {
        let x = try leaf([2, 3, 4], seed: 14)
        let m1 = try mean(x, axis: 1)
        XCTAssertEqual(m1.shape, [2, 4])
        for i in 0..<2 {
            for k in 0..<4 {
                let s = (0..<3).map { x.value.data[(i * 3 + $0) * 4 + k] }.reduce(0, +)
                XCTAssertEqual(m1.value.data[i * 4 + k], s / 3, accuracy: 1e-5)
            }
        }
        XCTAssertEqual(try sum(x, axis: -1, keepDim: true).shape, [2, 3, 1])
        for axis in [0, 1, 2, -1] {
            try checkGradients([x]) { try sum($0[0], axis: axis) }
            try checkGradients([x]) { try mean($0[0], axis: axis, keepDim: true) }
        }
    }

    // MARK: - Broadcasting at any rank

    func testBroadcastingAgainstTrailingDimensionsAndColumns() throws {
        let x = try leaf([2, 3, 4], seed: 15), px = try leaf([2, 3, 4], seed: 15, low: 0.5, high: 2)
        let row = try leaf([3, 4], seed: 16), vector = try leaf([4], seed: 17), leadingOne = try leaf([1, 3, 4], seed: 18)
        let column = try leaf([2, 3, 1], seed: 19), pcolumn = try leaf([2, 3, 1], seed: 19, low: 0.5, high: 2)
        // Values: element (i, j, k) of x with the broadcast operand's matching element.
        let sumRow = try x + row, productColumn = try x * column, differenceVector = try vector - x
        for i in 0..<2 {
            for j in 0..<3 {
                for k in 0..<4 {
                    let e = (i * 3 + j) * 4 + k
                    XCTAssertEqual(sumRow.value.data[e], x.value.data[e] + row.value.data[j * 4 + k])
                    XCTAssertEqual(productColumn.value.data[e], x.value.data[e] * column.value.data[i * 3 + j])
                    XCTAssertEqual(differenceVector.value.data[e], vector.value.data[k] - x.value.data[e])
                }
            }
        }
        XCTAssertEqual(try (leadingOne + x).shape, [2, 3, 4])
        for small in [row, vector, leadingOne, column] {
            try checkGradients([x, small]) { try $0[0] + $0[1] }
            try checkGradients([x, small]) { try $0[1] - $0[0] }
            try checkGradients([x, small]) { try $0[0] * $0[1] }
            try checkGradients([px, small]) { try $0[1] / $0[0] }
        }
        try checkGradients([x, pcolumn]) { try $0[0] / $0[1] }
        assertShapeMismatch("+") { try x + (try self.leaf([2, 4], seed: 20)) }
        assertShapeMismatch("*") { try x * (try self.leaf([2, 1, 4], seed: 21)) }
        assertShapeMismatch("-") { try x - (try self.leaf([3, 1], seed: 22)) }
        assertShapeMismatch("/") { try x / (try self.leaf([5, 3, 4], seed: 23)) }
    }

    // MARK: - LayerNorm on [N, T, F]

    func testLayerNormOverTheLastDimensionOfRank3() throws {
        var rng = SeededGenerator(seed: 24)
        let ln = try LayerNorm(4)
        ln.weight.value.fillUniform(0.5, 1.5, using: &rng)
        ln.bias.value.fillUniform(-0.5, 0.5, using: &rng)
        let x = try leaf([2, 3, 4], seed: 25)
        let y = try ln(x)
        XCTAssertEqual(y.shape, [2, 3, 4])
        // The same as on the rows of [N·T, F], and as the formula.
        let flat = try ln(try reshape(x, [6, 4]))
        for i in 0..<24 { XCTAssertEqual(y.value.data[i], flat.value.data[i], accuracy: 1e-6) }
        for r in 0..<6 {
            let row = (0..<4).map { x.value.data[r * 4 + $0] }
            let m = row.reduce(0, +) / 4
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 4
            for j in 0..<4 {
                let expected = (row[j] - m) / (v + 1e-5).squareRoot() * ln.weight.value.data[j] + ln.bias.value.data[j]
                XCTAssertEqual(y.value.data[r * 4 + j], expected, accuracy: 1e-4)
            }
        }
        try Self.checkGradients([x], parameters: [ln.weight, ln.bias]) { try ln($0[0]) }
        XCTAssertThrowsError(try ln(try leaf([2, 4, 3], seed: 26)))
        // Rank 1, [F]: one row.
        let v = try leaf([4], seed: 27)
        XCTAssertEqual(try ln(v).value.scalars, try ln(try reshape(v, [1, 4])).value.scalars)
        try Self.checkGradients([v], parameters: [ln.weight, ln.bias]) { try ln($0[0]) }
    }

    func testArgmax() throws {
        let x = try Variable([0, 3, 1, 2,
                              5, -1, 5, 0,
                              -3, -2, -4, -9], shape: [3, 4])
        XCTAssertEqual(try argmax(x), [1, 0, 1])
        XCTAssertEqual(try argmax(try reshape(x, [3, 2, 2])), [1, 1, 0, 0, 1, 0])
        XCTAssertThrowsError(try argmax(Variable(try Tensor(zeros: [3, 0]))))
        XCTAssertThrowsError(try argmax(Variable(try Tensor(zeros: []))))
    }
}
