import XCTest
@testable import Backprop

/// Conv2D with the batch split into concurrent slices (`threads`): the same outputs and
/// gradients as one slice, up to rounding in the slice-ordered sum of dW and db.
final class ConvSliceTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-1, 1, using: &rng)
        return t
    }

    /// |a − b| ≤ 1e-5 · max(1, |b|) element by element.
    private func assertClose(_ a: Tensor, _ b: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        let x = a.scalars, y = b.scalars
        for (i, (u, v)) in zip(x, y).enumerated() where abs(u - v) > 1e-5 * max(1, abs(v)) {
            XCTFail("\(what) element \(i): \(u) vs \(v)", file: file, line: line)
            return
        }
    }

    private struct Case {
        var c: Int, o: Int, k: (Int, Int), s: (Int, Int), p: (Int, Int), h: Int, w: Int
        var bias = true, group = 1, inputGradient = true
    }

    func testSlicesGiveSameOutputsAndGradients() throws {
        let cases = [
            Case(c: 2, o: 4, k: (5, 5), s: (1, 1), p: (2, 2), h: 9, w: 8),                       // LeNet-like
            Case(c: 3, o: 2, k: (3, 2), s: (2, 1), p: (1, 0), h: 7, w: 6, bias: false),           // strided, padded
            Case(c: 4, o: 3, k: (1, 1), s: (1, 1), p: (0, 0), h: 5, w: 5),                        // pointwise
            Case(c: 2, o: 3, k: (3, 3), s: (1, 1), p: (1, 1), h: 6, w: 6, group: 2),              // imagesPerGemm 2
            Case(c: 1, o: 3, k: (3, 3), s: (1, 1), p: (0, 0), h: 6, w: 7, inputGradient: false),  // first layer
        ]
        let blasThreads = BLAS.threadCount
        for (index, c) in cases.enumerated() {
            let x = try random([7, c.c, c.h, c.w], seed: UInt64(100 + index))    // 7 images: uneven slices
            var results: [(y: Tensor, dx: Tensor, dw: Tensor, db: Tensor?)] = []
            for slices in 1...3 {
                var rng = SeededGenerator(seed: UInt64(200 + index))
                let conv = try Conv2D(inChannels: c.c, outChannels: c.o, kernelSize: c.k, stride: c.s, padding: c.p,
                                      bias: c.bias, rng: &rng)
                conv.useThreads(slices)
                conv.imagesPerGemm = c.group
                conv.needsInputGradient = c.inputGradient
                let y = try conv.forward(x).copy()
                let dy = try random(y.shape, seed: UInt64(300 + index))
                // Twice: the first backward overwrites the zeroed gradient (β = 0), the second adds.
                _ = try conv.backward(dy)
                _ = try conv.forward(x)   // each backward pairs with its own forward
                let dx = try conv.backward(dy).copy()
                XCTAssertEqual(BLAS.threadCount, blasThreads, "BLAS threads restored")
                results.append((y, dx, conv.weight.grad.copy(), conv.bias?.grad.copy()))
                // a second step after zeroGrad reuses the buffers and gives the same result
                conv.zeroGrad()
                _ = try conv.forward(x)
                _ = try conv.backward(dy); _ = try conv.forward(x); _ = try conv.backward(dy)
                assertClose(conv.weight.grad, results.last!.dw, "case \(index) slices \(slices): repeated dW")
            }
            if !c.inputGradient { XCTAssertEqual(results[0].dx.count, 0) }
            for slices in 2...3 {
                let r = results[slices - 1], one = results[0]
                let what = "case \(index) slices \(slices)"
                assertClose(r.y, one.y, "\(what): y")
                assertClose(r.dx, one.dx, "\(what): dx")
                assertClose(r.dw, one.dw, "\(what): dW")
                if let db = r.db, let db1 = one.db { assertClose(db, db1, "\(what): db") }
            }
        }
    }

    func testGradientCheckWithTwoSlices() throws {
        // finite differences (step 1e-2) on inputs and parameters; maxError < 2e-3
        var rng = SeededGenerator(seed: 11)
        let conv = try Conv2D(inChannels: 2, outChannels: 3, kernelSize: (3, 3), stride: (1, 1), padding: (1, 1), rng: &rng)
        conv.useThreads(2)
        let x = try random([3, 2, 5, 5], seed: 12)
        let report = try GradientCheck.check(conv, input: x)
        XCTAssertLessThan(report.maxError, 2e-3, "\(report)")
        XCTAssertGreaterThan(report.checked, 0)
    }

    func testMoreSlicesThanImages() throws {
        var rng = SeededGenerator(seed: 13)
        let conv = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: (3, 3), stride: (1, 1), padding: (1, 1), rng: &rng)
        let x = try random([2, 1, 4, 4], seed: 14)
        let y1 = try conv.forward(x).copy()
        conv.useThreads(8)
        assertClose(try conv.forward(x), y1, "y with 8 threads for 2 images")
        let empty = try Tensor(zeros: [0, 1, 4, 4])
        XCTAssertEqual(try conv.forward(empty).shape, [0, 2, 4, 4])
        conv.zeroGrad()
        _ = try conv.backward(try Tensor(zeros: [0, 2, 4, 4]))
        XCTAssertEqual(conv.weight.grad.scalars, [Float](repeating: 0, count: 18))
    }
}
