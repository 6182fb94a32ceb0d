import Foundation
import XCTest
@testable import Backprop

/// Agreement with PyTorch (llm.c's test idea): `scripts/make-reference.py` ran each network and
/// optimizer in torch (float64 on float32-rounded inputs) and stored weights, batch, loss, every
/// gradient and every optimizer step in `Fixtures/ref_*.safetensors`. Here the engine rebuilds the
/// same network from the file's `__metadata__`, loads the weights by their PyTorch names, and must
/// reproduce every number within
///
///     |ours − torch| ≤ 1e-6 + 1e-5 · |torch|
///
/// (Float32 arithmetic against a float64 answer; the observed worst case is printed.)
/// The optimizer replays are in ReferenceOptimizerTests.swift.
final class ReferenceTests: XCTestCase {
    static let absoluteTolerance: Float = 1e-6
    static let relativeTolerance: Float = 1e-5

    static let activations = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"]
    static let losses = ["cross_entropy", "cross_entropy_smooth", "mse", "bce_with_logits"]
    static let optimizerCases = ["sgd_plain", "sgd_momentum", "sgd_dampening", "sgd_nesterov", "sgd_weight_decay",
                                 "adam_default", "adam_weight_decay", "adam_amsgrad", "adamw_default",
                                 "rmsprop_default", "rmsprop_momentum", "rmsprop_centered"]

    /// Largest error seen, as a fraction of the allowed error (≤ 1 passes).
    var worst: (ratio: Float, what: String) = (0, "")

    func load(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile.read(path: try SafetensorsTests.fixture(name))
    }

    static func allowed(_ reference: Float) -> Float { absoluteTolerance + relativeTolerance * abs(reference) }

    /// Index of the first element outside the tolerance (or not finite), nil when all agree.
    static func firstMismatch(_ ours: [Float], _ reference: [Float]) -> Int? {
        zip(ours, reference).enumerated().first { !($0.element.0.isFinite && abs($0.element.0 - $0.element.1) <= allowed($0.element.1)) }?.offset
    }

    /// Compares element-wise; returns false (after one failure message) on the first mismatch.
    @discardableResult
    func assertClose(_ ours: [Float], _ reference: [Float], _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) -> Bool {
        guard ours.count == reference.count else {
            XCTFail("\(what): \(ours.count) values, reference has \(reference.count)", file: file, line: line)
            return false
        }
        for (i, (a, b)) in zip(ours, reference).enumerated() {
            let ratio = abs(a - b) / Self.allowed(b)
            if ratio > worst.ratio { worst = (ratio, "\(what)[\(i)]: ours \(a), torch \(b)") }
        }
        if let i = Self.firstMismatch(ours, reference) {
            XCTFail("\(what)[\(i)]: ours \(ours[i]), torch \(reference[i]), |diff| \(abs(ours[i] - reference[i])) > \(Self.allowed(reference[i]))",
                    file: file, line: line)
            return false
        }
        return true
    }

    // MARK: - Networks

    /// Builds a layer list from the fixture's JSON architecture (what make-reference.py wrote).
    func buildLayers(_ description: Any, source: String) throws -> [Layer] {
        guard let items = description as? [[String: Any]] else {
            throw BackpropError.badFile(path: source, offset: nil, reason: "architecture is not a list of layers")
        }
        return try items.map { item -> Layer in
            switch item["type"] as? String {
            case "Linear":
                guard let i = item["in"] as? Int, let o = item["out"] as? Int else {
                    throw BackpropError.badFile(path: source, offset: nil, reason: "Linear without in/out: \(item)")
                }
                return try Dense(i, o)
            case "ReLU": return ReLU()
            case "LeakyReLU":
                let slope = (item["negative_slope"] as? Double).map { Float($0) } ?? 0.01
                return LeakyReLU(negativeSlope: slope)
            case "Sigmoid": return Sigmoid()
            case "Tanh": return Tanh()
            case "GELU":
                XCTAssertEqual(item["approximate"] as? String, "none")
                return GELU(approximate: .none)
            case "Residual":
                return Residual(Sequential(try buildLayers(item["block"] ?? [], source: source)))
            default:
                throw BackpropError.badFile(path: source, offset: nil, reason: "unknown layer \(item)")
            }
        }
    }

    func checkNetwork(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fixture = "ref_net_\(name)"
        let f = try load(fixture)
        guard let json = f.metadata["architecture"]?.data(using: .utf8) else {
            return XCTFail("\(fixture): no architecture in metadata", file: file, line: line)
        }
        let model = Sequential(try buildLayers(try JSONSerialization.jsonObject(with: json), source: fixture))

        // Weights by name; the file must hold exactly the model's parameters (plus batch and results).
        let nonParameters: Set<String> = ["input", "target", "loss"]
        let fileParameters = Set(f.order.filter { !$0.hasPrefix("grad.") && !nonParameters.contains($0) })
        XCTAssertEqual(Set(model.namedParameters.map(\.name)), fileParameters, "\(fixture): parameter names", file: file, line: line)
        for (pname, p) in model.namedParameters {
            let t = try f.tensor(pname)
            XCTAssertEqual(t.shape, p.shape, "\(fixture): \(pname)", file: file, line: line)
            try p.value.assign(t)
        }

        let x = try f.tensor("input")
        let y = try model.forward(x)
        let loss: Float, dy: Tensor
        switch f.metadata["loss"] {
        case "SoftmaxCrossEntropy":
            let smoothing = Float(f.metadata["label_smoothing"] ?? "") ?? -1
            XCTAssertEqual(f.dtypes["target"], "I64")
            (loss, dy) = try SoftmaxCrossEntropy(labelSmoothing: smoothing)(y, labels: try f.int32Values("target"))
        case "MeanSquaredError":
            (loss, dy) = try MeanSquaredError()(y, target: try f.tensor("target"))
        case "BinaryCrossEntropyWithLogits":
            (loss, dy) = try BinaryCrossEntropyWithLogits()(y, target: try f.tensor("target"))
        default:
            return XCTFail("\(fixture): unknown loss \(f.metadata["loss"] ?? "nil")", file: file, line: line)
        }
        assertClose([loss], try f.tensor("loss").scalars, "\(fixture) loss", file: file, line: line)

        model.zeroGrad()
        let dx = try model.backward(dy)
        assertClose(dx.scalars, try f.tensor("grad.input").scalars, "\(fixture) grad.input", file: file, line: line)
        for (pname, p) in model.namedParameters {
            assertClose(p.grad.scalars, try f.tensor("grad." + pname).scalars, "\(fixture) grad.\(pname)",
                        file: file, line: line)
        }
    }

    func testActivationNetworksMatchPyTorch() throws {
        for activation in Self.activations {
            for loss in Self.losses { try checkNetwork("\(activation)_\(loss)") }
        }
        print("ReferenceTests networks: worst error \(worst.ratio) of the tolerance at \(worst.what)")
    }

    func testResidualNetworksMatchPyTorch() throws {
        for loss in Self.losses { try checkNetwork("residual_\(loss)") }
        print("ReferenceTests residual: worst error \(worst.ratio) of the tolerance at \(worst.what)")
    }

    /// The comparison can fail: a gradient off by 1e-3 is caught, and so is a network built with
    /// the wrong activation (ReLU where the fixture used LeakyReLU 0.01).
    func testComparisonDetectsWrongNumbers() throws {
        let f = try load("ref_net_tanh_mse")
        let reference = try f.tensor("grad.0.weight").scalars
        var perturbed = reference
        perturbed[3] += 1e-3
        XCTAssertEqual(Self.firstMismatch(perturbed, reference), 3)
        XCTAssertNil(Self.firstMismatch(reference, reference))
        XCTAssertEqual(Self.firstMismatch([.nan], [0]), 0)

        let leaky = try load("ref_net_leaky_relu_mse")
        let json = try XCTUnwrap(leaky.metadata["architecture"]?.data(using: .utf8))
        var layers = try buildLayers(try JSONSerialization.jsonObject(with: json), source: "leaky")
        XCTAssertTrue(layers[1] is LeakyReLU)
        layers[1] = ReLU()
        let model = Sequential(layers)
        for (pname, p) in model.namedParameters { try p.value.assign(try leaky.tensor(pname)) }
        let (_, dy) = try MeanSquaredError()(try model.forward(try leaky.tensor("input")), target: try leaky.tensor("target"))
        model.zeroGrad()
        let dx = try model.backward(dy)
        XCTAssertNotNil(Self.firstMismatch(dx.scalars, try leaky.tensor("grad.input").scalars),
                        "ReLU in place of LeakyReLU must disagree with the reference")
    }
}
