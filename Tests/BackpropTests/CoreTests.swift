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
