import Foundation
import XCTest
@testable import Backprop
import BackpropOptim

/// torch.optim agreement: `scripts/make-reference.py` ran a few steps of each optimizer case on
/// fixed parameters `w` [3, 4], `b` [4] and a fixed gradient sequence (float64) and stored the
/// parameters after every step in `Fixtures/ref_optim_<case>.safetensors`; the engine's optimizer,
/// built from the hyper-parameters in the file's `__metadata__`, must reproduce every step within
/// ReferenceTests' tolerance |ours − torch| ≤ 1e-6 + 1e-5 · |torch|.
extension ReferenceTests {
    /// Builds the optimizer the fixture's metadata describes; `override` replaces metadata entries
    /// (used to show that a wrong setting is caught).
    func makeOptimizer(_ f: SafetensorsFile, _ parameters: [Parameter], fixture: String,
                       override: [String: String] = [:]) throws -> Optimizer {
        let m = f.metadata.merging(override) { _, new in new }
        func number(_ key: String) throws -> Float {
            guard let s = m[key], let v = Float(s) else {
                throw BackpropError.badFile(path: fixture, offset: nil, reason: "metadata \(key) missing or not a number")
            }
            return v
        }
        func flag(_ key: String) -> Bool { m[key] == "true" }
        switch m["optimizer"] {
        case "SGD":
            return try SGD(parameters: parameters, lr: number("lr"), momentum: number("momentum"),
                           dampening: number("dampening"), weightDecay: number("weight_decay"),
                           nesterov: flag("nesterov"))
        case "Adam", "AdamW":
            let betas = (m["betas"] ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                .split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard betas.count == 2 else { throw BackpropError.badFile(path: fixture, offset: nil, reason: "betas") }
            if m["optimizer"] == "Adam" {
                return try Adam(parameters: parameters, lr: number("lr"), betas: (betas[0], betas[1]), eps: number("eps"),
                                weightDecay: number("weight_decay"), amsgrad: flag("amsgrad"))
            }
            return try AdamW(parameters: parameters, lr: number("lr"), betas: (betas[0], betas[1]), eps: number("eps"),
                             weightDecay: number("weight_decay"), amsgrad: flag("amsgrad"))
        case "RMSprop":
            return try RMSProp(parameters: parameters, lr: number("lr"), alpha: number("alpha"), eps: number("eps"),
                               weightDecay: number("weight_decay"), momentum: number("momentum"),
                               centered: flag("centered"))
        default:
            throw BackpropError.badFile(path: fixture, offset: nil, reason: "unknown optimizer \(m["optimizer"] ?? "nil")")
        }
    }

    func testOptimizersMatchTorchOptim() throws {
        for name in Self.optimizerCases {
            let fixture = "ref_optim_\(name)"
            let f = try load(fixture)
            let w = Parameter(try f.tensor("init.w").copy())
            let b = Parameter(try f.tensor("init.b").copy())
            let optimizer = try makeOptimizer(f, [w, b], fixture: fixture)
            guard let steps = Int(f.metadata["steps"] ?? ""), steps > 0 else {
                return XCTFail("\(fixture): steps missing")
            }
            for k in 0..<steps {
                try w.grad.assign(try f.tensor("grad.\(k).w"))
                try b.grad.assign(try f.tensor("grad.\(k).b"))
                try optimizer.step()
                let okW = assertClose(w.value.scalars, try f.tensor("param.\(k).w").scalars, "\(fixture) step \(k) w")
                let okB = assertClose(b.value.scalars, try f.tensor("param.\(k).b").scalars, "\(fixture) step \(k) b")
                if !(okW && okB) { break }
            }
        }
        XCTAssertEqual(Self.optimizerCases.count, 12)
        print("ReferenceTests optimizers: worst error \(worst.ratio) of the tolerance at \(worst.what)")
    }

    /// Replays a fixture with one setting changed and returns the first step at which the
    /// parameters leave the tolerance (nil if they never do).
    func firstDivergentStep(_ name: String, override: [String: String]) throws -> Int? {
        let fixture = "ref_optim_\(name)"
        let f = try load(fixture)
        let w = Parameter(try f.tensor("init.w").copy()), b = Parameter(try f.tensor("init.b").copy())
        let optimizer = try makeOptimizer(f, [w, b], fixture: fixture, override: override)
        for k in 0..<(Int(f.metadata["steps"] ?? "") ?? 0) {
            try w.grad.assign(try f.tensor("grad.\(k).w"))
            try b.grad.assign(try f.tensor("grad.\(k).b"))
            try optimizer.step()
            let refW = try f.tensor("param.\(k).w").scalars, refB = try f.tensor("param.\(k).b").scalars
            if Self.firstMismatch(w.value.scalars, refW) != nil || Self.firstMismatch(b.value.scalars, refB) != nil { return k }
        }
        return nil
    }

    /// The replay can fail: each distinguishing setting, switched off, is caught.
    func testOptimizerReplayDetectsWrongSettings() throws {
        XCTAssertNil(try firstDivergentStep("sgd_nesterov", override: [:]))
        XCTAssertEqual(try firstDivergentStep("sgd_momentum", override: ["momentum": "0"]), 1)   // step 0 is plain SGD
        XCTAssertNotNil(try firstDivergentStep("sgd_nesterov", override: ["nesterov": "false"]))
        XCTAssertNotNil(try firstDivergentStep("sgd_dampening", override: ["dampening": "0"]))
        XCTAssertNotNil(try firstDivergentStep("sgd_weight_decay", override: ["weight_decay": "0"]))
        XCTAssertNotNil(try firstDivergentStep("adam_amsgrad", override: ["amsgrad": "false"]))
        XCTAssertNotNil(try firstDivergentStep("adam_weight_decay", override: ["weight_decay": "0"]))
        XCTAssertNotNil(try firstDivergentStep("adamw_default", override: ["optimizer": "Adam"]))   // coupled vs decoupled decay
        XCTAssertNotNil(try firstDivergentStep("rmsprop_centered", override: ["centered": "false"]))
        XCTAssertNotNil(try firstDivergentStep("rmsprop_momentum", override: ["momentum": "0"]))
    }
}
