import XCTest
@testable import Backprop

/// Initialisers against PyTorch's `torch.nn.init` formulas (bounds and standard deviations are
/// re-derived here from fan-in/fan-out), orthogonality to 1e-4, and determinism per seed.
final class InitializerTests: XCTestCase {
    func filled(_ shape: [Int], _ initializer: Initializer, seed: UInt64 = 1) throws -> Tensor {
        let t = try Tensor(zeros: shape)
        var rng = SeededGenerator(seed: seed)
        try initializer.fill(t, using: &rng)
        return t
    }

    /// Largest |(A·Aᵀ or Aᵀ·A) − gain²·I| entry, in Double, for A viewed as rows × (count/rows).
    func orthogonalityError(_ t: Tensor, gain: Double = 1) -> Double {
        let rows = t.shape[0], cols = t.count / rows
        let tall = rows >= cols
        let k = tall ? cols : rows, len = tall ? rows : cols
        func at(_ vector: Int, _ i: Int) -> Double { Double(tall ? t.data[i * cols + vector] : t.data[vector * cols + i]) }
        var worst = 0.0
        for a in 0..<k {
            for b in 0..<k {
                var dot = 0.0
                for i in 0..<len { dot += at(a, i) * at(b, i) }
                worst = max(worst, abs(dot - (a == b ? gain * gain : 0)))
            }
        }
        return worst
    }

    func testFansMatchPyTorch() {
        XCTAssertTrue(Initializer.fans([30, 20]) == (20, 30))
        XCTAssertTrue(Initializer.fans([16, 8, 3, 3]) == (72, 144))   // conv weight [out, in, kh, kw]
    }

    func testOrthogonalTallWideSquareAndConv() throws {
        let tall = try filled([64, 16], .orthogonal())
        XCTAssertLessThan(orthogonalityError(tall), 1e-4)              // WᵀW ≈ I
        let wide = try filled([16, 64], .orthogonal())
        XCTAssertLessThan(orthogonalityError(wide), 1e-4)              // WWᵀ ≈ I
        let square = try filled([32, 32], .orthogonal(), seed: 3)
        XCTAssertLessThan(orthogonalityError(square), 1e-4)
        let conv = try filled([8, 2, 3, 3], .orthogonal())             // 8 × 18, rows orthonormal
        XCTAssertLessThan(orthogonalityError(conv), 1e-4)
        // gain scales it: WᵀW ≈ gain²·I
        let scaled = try filled([64, 16], .orthogonal(gain: 2))
        XCTAssertLessThan(orthogonalityError(scaled, gain: 2), 4e-4)
        XCTAssertGreaterThan(orthogonalityError(scaled, gain: 1), 1)  // and is not just I
        // not a trivial matrix (e.g. the identity padded with zeros)
        XCTAssertGreaterThan(tall.scalars.filter { $0 != 0 }.count, tall.count / 2)
        XCTAssertThrowsError(try filled([5], .orthogonal()))
    }

    func testUniformBoundsMatchPyTorch() throws {
        let shape = [200, 100]                                          // fan_in 100, fan_out 200
        let cases: [(Initializer, Float)] = [
            (.pytorchDefault, 1 / Float(100).squareRoot()),             // kaiming_uniform(a=√5): 1/√fan_in
            (.xavierUniform(), (6 / Float(300)).squareRoot()),          // √(6/(fan_in+fan_out))
            (.xavierUniform(gain: 0.5), 0.5 * (6 / Float(300)).squareRoot()),
            (.kaimingUniform(), Float(2).squareRoot() * (3 / Float(100)).squareRoot()),   // √2·√(3/fan_in)
            (.kaimingUniform(gain: 1), (3 / Float(100)).squareRoot()),
        ]
        for (initializer, bound) in cases {
            let t = try filled(shape, initializer)
            let lo = try XCTUnwrap(t.minimum()), hi = try XCTUnwrap(t.maximum())
            XCTAssertGreaterThanOrEqual(lo, -bound, "\(initializer)")
            XCTAssertLessThanOrEqual(hi, bound, "\(initializer)")
            XCTAssertGreaterThan(hi, 0.99 * bound, "\(initializer)")    // the whole range is used
            XCTAssertLessThan(lo, -0.99 * bound, "\(initializer)")
            // U(−b, b) has standard deviation b/√3
            XCTAssertEqual(t.standardDeviation(), bound / Float(3).squareRoot(), accuracy: 0.02 * bound, "\(initializer)")
        }
        // PyTorch's default is kaiming_uniform with gain √(2/(1+5)) = √(1/3)
        let viaKaiming = try filled(shape, .kaimingUniform(gain: (Float(1) / 3).squareRoot()))
        let viaDefault = try filled(shape, .pytorchDefault)
        for i in 0..<viaDefault.count { XCTAssertEqual(viaKaiming.data[i], viaDefault.data[i], accuracy: 1e-6) }
    }

    func testNormalStandardDeviationsMatchPyTorch() throws {
        let shape = [400, 250]                                          // 100 000 samples
        let cases: [(Initializer, Float)] = [
            (.xavierNormal(), (2 / Float(650)).squareRoot()),           // √(2/(fan_in+fan_out))
            (.xavierNormal(gain: 3), 3 * (2 / Float(650)).squareRoot()),
            (.kaimingNormal(), Float(2).squareRoot() / Float(250).squareRoot()),  // gain/√fan_in
            (.kaimingNormal(gain: 1), 1 / Float(250).squareRoot()),
        ]
        for (initializer, std) in cases {
            let t = try filled(shape, initializer, seed: 17)
            let measured = t.standardDeviation()
            print("\(initializer): std \(measured) (PyTorch formula \(std))")
            XCTAssertEqual(measured, std, accuracy: 0.05 * std, "\(initializer)")
            XCTAssertEqual(t.mean(), 0, accuracy: 0.05 * std, "\(initializer)")
        }
    }

    func testConstantsAndErrors() throws {
        XCTAssertEqual(try filled([3, 2], .zeros).scalars, [Float](repeating: 0, count: 6))
        XCTAssertEqual(try filled([3, 2], .constant(0.25)).scalars, [Float](repeating: 0.25, count: 6))
        XCTAssertThrowsError(try filled([3, 0], .pytorchDefault)) { error in
            guard case BackpropError.invalidArgument = error else { return XCTFail("\(error)") }
        }
    }

    func testDeterminismPerSeed() throws {
        let all: [Initializer] = [.pytorchDefault, .xavierUniform(), .xavierNormal(), .kaimingUniform(),
                                  .kaimingNormal(), .orthogonal()]
        for initializer in all {
            let a = try filled([12, 7], initializer, seed: 5)
            let b = try filled([12, 7], initializer, seed: 5)
            let c = try filled([12, 7], initializer, seed: 6)
            XCTAssertEqual(a.scalars, b.scalars, "\(initializer)")
            XCTAssertNotEqual(a.scalars, c.scalars, "\(initializer)")
        }
        // Dense layers built from equal seeds are equal.
        XCTAssertEqual(try Dense(5, 4, seed: 3).weight.value.scalars, try Dense(5, 4, seed: 3).weight.value.scalars)
    }
}
