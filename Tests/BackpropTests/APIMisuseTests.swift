import Backprop
import XCTest

/// Call sequences `APISequenceFuzzer` found mishandled, each now refused before anything changes.
final class APIMisuseTests: XCTestCase {
    /// An instance appended a second time after a forward: backward ran it at the new place with
    /// δ meant for another layer, adding to its gradients, before the first place threw.
    func testBackwardRefusesAnInstanceAppendedAgainAfterForward() throws {
        let norm = try BatchNorm1d(3)
        let model = Sequential(try Dense(2, 3, seed: 1), norm)
        _ = try model.forward(try Tensor([0.5, -1, 2, 0.25, -0.75, 1.5], shape: [3, 2]))
        model.zeroGrad()
        model.append(norm)
        let delta = try Tensor([1, -2, 0.5, 0.25, 3, -1, 2, 1, -0.5], shape: [3, 3])
        XCTAssertThrowsError(try model.backward(delta)) { error in
            guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("positions 1 and 2"), detail)
        }
        for (name, p) in model.namedParameters {
            XCTAssertTrue(p.grad.scalars.allSatisfy { $0 == 0 }, "\(name) changed")
        }
    }

    /// Flatten, alone or as a whole model: backward before forward threw `invalidArgument` (every
    /// other layer: `invalidUse`), and a second backward for one forward was accepted.
    func testFlattenRefusesBackwardBeforeForwardAndTwice() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3, 1])
        let delta = try Tensor([1, 1, 1, 1, 1, 1], shape: [2, 3])
        for model in [Flatten(), Sequential(Flatten())] as [Layer] {
            XCTAssertThrowsError(try model.backward(delta), model.summary) { error in
                guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(detail.contains("before"), detail)
            }
            _ = try model.forward(x)
            XCTAssertEqual(try model.backward(delta).shape, [2, 3, 1])
            XCTAssertThrowsError(try model.backward(delta), model.summary) { error in
                guard case let BackpropError.invalidUse(_, detail) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(detail.contains("twice"), detail)
            }
            _ = try model.forward(x)
            XCTAssertEqual(try model.backward(delta).shape, [2, 3, 1])
        }
    }
}
