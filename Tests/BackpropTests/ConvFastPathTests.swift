import XCTest
@testable import Backprop

/// The fast paths behind LeNet's speed, each against a plain definition:
/// - MaxPool2D's 2×2/stride-2 C kernels, forward and backward, every version (8-wide, 4-wide with an overlapping last chunk, and
///   scalar rows), values and argmax routing, ties (first maximum wins) and NaN (first NaN wins);
/// - ReLU's SIMD loops on a length that is not a multiple of 8, with NaN, ±0 and negatives;
/// - Conv2D with `needsInputGradient = false` (same parameter gradients, empty δ of the input)
///   and the lazy zeroGrad (β = 0 on the first product): zeroGrad then two backward passes
///   give exactly twice the gradients of one.
/// All comparisons are exact except the conv gradients (Float sums in another order: 1e-5 relative).
final class ConvFastPathTests: XCTestCase {
    /// Max pooling by the definition: first maximum in row-major window order, first NaN wins.
    private func referenceMaxPool(_ x: [Float], planes: Int, h: Int, w: Int) -> (values: [Float], argmax: [Int]) {
        let ho = h / 2, wo = w / 2
        var values: [Float] = [], argmax: [Int] = []
        for p in 0..<planes {
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var best = -Float.infinity, at = -1
                    for dy in 0..<2 {
                        for dx in 0..<2 {
                            let i = (2 * oy + dy) * w + 2 * ox + dx, v = x[p * h * w + i]
                            if at < 0 || (!best.isNaN && (v > best || v.isNaN)) { best = v; at = i }
                        }
                    }
                    values.append(best); argmax.append(at)
                }
            }
        }
        return (values, argmax)
    }

    func testMaxPool2x2FastPathMatchesDefinition() throws {
        // Under every version of the C kernels this CPU runs (AVX-512, AVX2, baseline).
        defer { Kernels.limitInstructionSet(to: 4) }
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            try checkMaxPool2x2AgainstDefinition(level: level)
        }
    }

    private func checkMaxPool2x2AgainstDefinition(level: Int) throws {
        // Widths 6, 10, 28, 32, 34 give 3 (scalar), 5 (4-wide, overlapping), 14 (8-wide,
        // overlapping), 16 (8-wide exactly) and 17 outputs per row; heights include an odd one.
        for (index, (h, w)) in [(4, 6), (6, 10), (28, 28), (5, 32), (4, 34)].enumerated() {
            var rng = SeededGenerator(seed: UInt64(40 + index))
            let planes = 3
            let x = try Tensor(zeros: [1, planes, h, w])
            x.fillUniform(-1, 1, using: &rng)
            // Quantised values make ties common; a few NaNs, some in the same window.
            for i in 0..<x.count { x.data[i] = (x.data[i] * 4).rounded() / 4 }
            for i in stride(from: 3, to: x.count, by: 37) { x.data[i] = .nan }
            if x.count > 9 { x.data[8] = .nan; x.data[9] = .nan }
            let pool = try MaxPool2D(kernelSize: 2)
            let y = try pool(x)
            let expected = referenceMaxPool(x.scalars, planes: planes, h: h, w: w)
            XCTAssertEqual(y.shape, [1, planes, h / 2, w / 2])
            for (i, (a, b)) in zip(y.scalars, expected.values).enumerated() {
                XCTAssertTrue(a == b || (a.isNaN && b.isNaN), "level \(level), \(h)×\(w) output \(i): \(a) vs \(b)")
            }
            // Routing: δ j goes to the argmax position of output j, everything else is 0.
            let dy = try Tensor((0..<y.count).map { Float($0 + 1) }, shape: y.shape)
            let dx = try pool.backward(dy)
            var expectedDx = [Float](repeating: 0, count: x.count)
            let outPlane = (h / 2) * (w / 2)
            for j in 0..<y.count { expectedDx[(j / outPlane) * h * w + expected.argmax[j]] += Float(j + 1) }
            XCTAssertEqual(dx.scalars, expectedDx, "level \(level), \(h)×\(w) routing")
        }
    }

    func testReLUVectorLoops() throws {
        let values: [Float] = [-2, -0.0, 0, 0.5, .nan, 3, -1, 2, -4, 7, .nan, -0.25, 1e-30]
        let relu = ReLU()
        let y = try relu(try Tensor(values, shape: [1, 13]))
        let expected = values.map { $0.isNaN ? Float.nan : max($0, 0) }
        for (a, b) in zip(y.scalars, expected) { XCTAssertTrue(a == b || (a.isNaN && b.isNaN), "\(a) vs \(b)") }
        let dy = try Tensor((1...13).map(Float.init), shape: [1, 13])
        let dx = try relu.backward(dy)
        XCTAssertEqual(dx.scalars, (0..<13).map { y.data[$0] > 0 ? Float($0 + 1) : 0 })
    }

    func testConvWithoutInputGradientAndLazyZeroGrad() throws {
        var rng = SeededGenerator(seed: 50)
        let x = try Tensor(zeros: [3, 2, 9, 10]); x.fillUniform(-1, 1, using: &rng)
        let make = { try Conv2D(inChannels: 2, outChannels: 4, kernelSize: 5, padding: 2, seed: 51) }
        let full = try make(), first = try make()
        first.needsInputGradient = false
        let y = try full(x).copy()
        XCTAssertEqual(try first(x).scalars, y.scalars)
        let dy = try Tensor(zeros: y.shape); dy.fillUniform(-1, 1, using: &rng)
        full.zeroGrad(); first.zeroGrad()
        XCTAssertEqual(try full.backward(dy).shape, x.shape)
        XCTAssertEqual(try first.backward(dy).count, 0, "no δ of the input when it is not needed")
        let w1 = full.weight.grad.scalars, b1 = full.bias!.grad.scalars
        XCTAssertEqual(first.weight.grad.scalars, w1)
        XCTAssertEqual(first.bias!.grad.scalars, b1)
        XCTAssertGreaterThan(w1.map(abs).max() ?? 0, 0)
        // Dirty the buffers, zeroGrad (lazy), two passes: exactly 2× one pass, no stale values.
        full.weight.grad.fill(123); full.bias!.grad.fill(-7)
        full.zeroGrad()
        _ = try full(x)
        _ = try full.backward(dy)
        _ = try full(x)   // each backward pairs with its own forward
        _ = try full.backward(dy)
        for (a, b) in zip(full.weight.grad.scalars, w1) { XCTAssertEqual(a, 2 * b, accuracy: 1e-5 * max(1, abs(b))) }
        for (a, b) in zip(full.bias!.grad.scalars, b1) { XCTAssertEqual(a, 2 * b, accuracy: 1e-5 * max(1, abs(b))) }
    }
}
