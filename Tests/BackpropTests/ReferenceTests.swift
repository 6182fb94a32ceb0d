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

    struct NetworkRun {
        let file: SafetensorsFile
        let model: Sequential
        let loss: Float
        let inputGradient: [Float]
    }

    /// Rebuilds the fixture's network, loads its weights by name, runs forward, loss and backward.
    /// `replace` may swap top-level layers and `labelSmoothing` override the file's (both only to
    /// show that a wrong network is caught).
    func runNetwork(_ name: String, replace: (Int, Layer) -> Layer = { $1 }, labelSmoothing: Float? = nil,
                    file: StaticString = #filePath, line: UInt = #line) throws -> NetworkRun {
        let fixture = "ref_net_\(name)"
        let f = try load(fixture)
        guard let json = f.metadata["architecture"]?.data(using: .utf8) else {
            throw BackpropError.badFile(path: fixture, offset: nil, reason: "no architecture in metadata")
        }
        let layers = try buildLayers(try JSONSerialization.jsonObject(with: json), source: fixture)
        let model = Sequential(layers.enumerated().map { replace($0.offset, $0.element) })

        // Weights by name; the file must hold exactly the model's parameters (plus batch and results).
        let nonParameters: Set<String> = ["input", "target", "loss"]
        let fileParameters = Set(f.order.filter { !$0.hasPrefix("grad.") && !nonParameters.contains($0) })
        XCTAssertEqual(Set(model.namedParameters.map(\.name)), fileParameters, "\(fixture): parameter names", file: file, line: line)
        for (pname, p) in model.namedParameters {
            let t = try f.tensor(pname)
            XCTAssertEqual(t.shape, p.shape, "\(fixture): \(pname)", file: file, line: line)
            try p.value.assign(t)
        }

        let y = try model.forward(try f.tensor("input"))
        let loss: Float, dy: Tensor
        switch f.metadata["loss"] {
        case "SoftmaxCrossEntropy":
            let smoothing = labelSmoothing ?? Float(f.metadata["label_smoothing"] ?? "") ?? -1
            XCTAssertEqual(f.dtypes["target"], "I64", file: file, line: line)
            (loss, dy) = try SoftmaxCrossEntropy(labelSmoothing: smoothing)(y, labels: try f.int32Values("target"))
        case "MeanSquaredError":
            (loss, dy) = try MeanSquaredError()(y, target: try f.tensor("target"))
        case "BinaryCrossEntropyWithLogits":
            (loss, dy) = try BinaryCrossEntropyWithLogits()(y, target: try f.tensor("target"))
        default:
            throw BackpropError.badFile(path: fixture, offset: nil, reason: "unknown loss \(f.metadata["loss"] ?? "nil")")
        }
        model.zeroGrad()
        let dx = try model.backward(dy).scalars
        return NetworkRun(file: f, model: model, loss: loss, inputGradient: dx)
    }

    func checkNetwork(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try runNetwork(name, file: file, line: line)
        let f = run.file, fixture = "ref_net_\(name)"
        assertClose([run.loss], try f.tensor("loss").scalars, "\(fixture) loss", file: file, line: line)
        assertClose(run.inputGradient, try f.tensor("grad.input").scalars, "\(fixture) grad.input", file: file, line: line)
        for (pname, p) in run.model.namedParameters {
            assertClose(p.grad.scalars, try f.tensor("grad." + pname).scalars, "\(fixture) grad.\(pname)",
                        file: file, line: line)
        }
    }

    /// True when a run disagrees with its fixture anywhere (loss, input gradient, any parameter gradient).
    func disagrees(_ run: NetworkRun) throws -> Bool {
        if Self.firstMismatch([run.loss], try run.file.tensor("loss").scalars) != nil { return true }
        if Self.firstMismatch(run.inputGradient, try run.file.tensor("grad.input").scalars) != nil { return true }
        for (pname, p) in run.model.namedParameters
        where Self.firstMismatch(p.grad.scalars, try run.file.tensor("grad." + pname).scalars) != nil { return true }
        return false
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

    /// The comparison can fail: a gradient off by 1e-3 is caught, and so is a network that differs
    /// from the fixture's in one detail (activation, its slope, GELU's form, label smoothing, the skip).
    func testComparisonDetectsWrongNumbers() throws {
        let f = try load("ref_net_tanh_mse")
        let reference = try f.tensor("grad.0.weight").scalars
        var perturbed = reference
        perturbed[3] += 1e-3
        XCTAssertEqual(Self.firstMismatch(perturbed, reference), 3)
        XCTAssertNil(Self.firstMismatch(reference, reference))
        XCTAssertEqual(Self.firstMismatch([.nan], [0]), 0)

        // The unmodified runs agree, so the disagreements below come from the modification.
        XCTAssertFalse(try disagrees(try runNetwork("leaky_relu_mse")))
        XCTAssertTrue(try disagrees(try runNetwork("leaky_relu_mse") { i, l in i == 1 ? ReLU() : l }),
                      "ReLU in place of LeakyReLU(0.01)")
        XCTAssertTrue(try disagrees(try runNetwork("leaky_relu_mse") { i, l in i == 1 ? LeakyReLU(negativeSlope: 0.02) : l }),
                      "LeakyReLU(0.02) in place of LeakyReLU(0.01)")
        XCTAssertFalse(try disagrees(try runNetwork("gelu_bce_with_logits")))
        XCTAssertTrue(try disagrees(try runNetwork("gelu_bce_with_logits") { i, l in i == 1 ? GELU(approximate: .tanh) : l }),
                      "tanh-approximate GELU in place of the exact one")
        XCTAssertTrue(try disagrees(try runNetwork("tanh_cross_entropy_smooth", labelSmoothing: 0)),
                      "label smoothing 0 in place of 0.1")
        XCTAssertTrue(try disagrees(try runNetwork("residual_mse") { i, l in
            guard i == 1, let residual = l as? Residual else { return l }
            return BlockWithoutSkip(residual.block)
        }), "the residual block without its identity path")
    }
}

/// A residual's block with the residual's parameter names but no identity path (a deliberately
/// wrong network for `testComparisonDetectsWrongNumbers`).
private final class BlockWithoutSkip: Layer {
    let block: Layer
    init(_ block: Layer) { self.block = block }
    var summary: String { "BlockWithoutSkip(\(block.summary))" }
    var namedParameters: [(name: String, parameter: Parameter)] {
        block.namedParameters.map { (name: "block.\($0.name)", parameter: $0.parameter) }
    }
    var isTraining: Bool { get { block.isTraining } set { block.isTraining = newValue } }
    func forward(_ input: Tensor) throws -> Tensor { try block.forward(input) }
    func backward(_ outputGradient: Tensor) throws -> Tensor { try block.backward(outputGradient) }
}
