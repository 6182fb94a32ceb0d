import XCTest
@testable import Backprop

/// `RecurrentLayer.runProductsOnly` (bench-rnn's floor) issues the layer's own products.
final class RecurrentProductsTests: XCTestCase {
    /// Run alone after a backward pass, the products recompute that pass's δW_hh bit for bit (the
    /// same calls, in the same blocks, on the same δG and H_prev rows), for every cell, with and
    /// without an initial state (step 0's products) and truncation.
    func testProductsOnlyRepeatBackwardsWeightProducts() throws {
        let (n, t, f, h) = (3, 6, 5, 11)
        for cell in RecurrentTests.cells {
            for (stateGiven, truncation) in [(false, nil), (true, nil), (false, 4), (true, 2)] as [(Bool, Int?)] {
                var rng = SeededGenerator(seed: 5)
                let layer = try RecurrentLayer.make(cell, inputSize: f, hiddenSize: h, numLayers: 2,
                                                    truncation: truncation, rng: &rng)
                let x = try Tensor(zeros: [n, t, f]); x.fillUniform(-1, 1, using: &rng)
                let dy = try Tensor(zeros: [n, t, h]); dy.fillUniform(-1, 1, using: &rng)
                if stateGiven {
                    let h0 = try Tensor(zeros: [2, n, h]); h0.fillUniform(-0.5, 0.5, using: &rng)
                    layer.initialHidden = h0
                }
                let what = "\(cell), state \(stateGiven), truncation \(String(describing: truncation))"
                _ = try layer.forward(x)
                XCTAssertThrowsError(try layer.runProductsOnly(), "before backward: \(what)")
                layer.zeroGrad()
                _ = try layer.backward(dy)
                let weightHH = layer.stages.map { $0.weightHH.grad.scalars }
                layer.zeroGrad()
                try layer.runProductsOnly()
                XCTAssertEqual(layer.stages.map { $0.weightHH.grad.scalars }, weightHH, what)
                XCTAssertThrowsError(try layer.backward(dy), "backward after the products alone: \(what)")
                _ = try layer.forward(x)
                _ = try layer.backward(dy)
            }
        }
    }
}
