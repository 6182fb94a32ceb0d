import Foundation
import XCTest
@testable import Backprop

/// Agreement with PyTorch: `scripts/make-rnn-reference.py` ran nn.RNN / nn.LSTM / nn.GRU (one and
/// two layers) in torch, float64 on float32-rounded weights and inputs, and stored weights, input,
/// loss, every gradient and the per-step hidden-gradient norms in `Fixtures/rnn-reference/`.
/// The engine loads the weights by their state_dict names and must reproduce every number within
///
///     |ours − torch| ≤ 1e-6 + 1e-5 · |torch|  (as ReferenceTests)
///
/// (Float32 arithmetic against a float64 answer; the observed worst case is printed.)
final class RecurrentReferenceTests: XCTestCase {
    static let absoluteTolerance: Float = 1e-6
    static let relativeTolerance: Float = 1e-5
    var worst: (ratio: Float, what: String) = (0, "")

    func load(_ name: String) throws -> SafetensorsFile {
        guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors",
                                          subdirectory: "Fixtures/rnn-reference") else {
            throw BackpropError.io(path: name, reason: "fixture missing from the test bundle")
        }
        return try SafetensorsFile.read(path: url.path)
    }

    func assertClose(_ ours: Tensor, _ reference: Tensor, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(ours.count, reference.count, "\(what): element count", file: file, line: line)
        for (i, (a, b)) in zip(ours.scalars, reference.scalars).enumerated() {
            let allowed = Self.absoluteTolerance + Self.relativeTolerance * abs(b)
            let ratio = abs(a - b) / allowed
            if ratio > worst.ratio { worst = (ratio, "\(what)[\(i)]: ours \(a), torch \(b)") }
            if !(ratio <= 1) {
                XCTFail("\(what)[\(i)]: ours \(a), torch \(b), |diff| \(abs(a - b)) > \(allowed)", file: file, line: line)
                return
            }
        }
    }

    func loadParameters(_ layer: Layer, from f: SafetensorsFile, _ what: String) throws {
        for (name, p) in layer.namedParameters {
            let t = try f.tensor(name)
            XCTAssertEqual(t.shape, p.shape, "\(what) \(name) layout")
            try p.value.assign(t)
        }
    }

    static let kinds: [(String, RecurrentKind)] = [("rnn", .rnn), ("lstm", .lstm), ("gru", .gru)]

    /// fc(rnn(x)[0][:, -1]) with cross-entropy: loss, logits, every gradient, hidden-gradient norms.
    /// H = 11: one 8-lane vector and a 3-element scalar tail per row in the gate kernels. Run
    /// with the batch in 1 and 3 concurrent slices (N = 4: slices of 1, 1 and 2 samples).
    func testClassifierMatchesPyTorch() throws {
        for (name, kind) in Self.kinds {
            for (layers, threads) in [(1, 1), (2, 1), (1, 3), (2, 3)] {
                let what = "classifier-\(name)-l\(layers) (threads \(threads))"
                let f = try load("classifier-\(name)-l\(layers)")
                let x = try f.tensor("input")
                let fcWeight = try f.tensor("fc.weight")
                let model = try SequenceClassifier(kind: kind, inputSize: x.shape[2], hiddenSize: fcWeight.shape[1],
                                                   numLayers: layers, classes: fcWeight.shape[0])
                model.rnn.useThreads(threads)
                XCTAssertEqual(Set(model.namedParameters.map(\.name)),
                               Set(f.order.filter { $0.hasPrefix("rnn.") || $0.hasPrefix("fc.") }), what)
                try loadParameters(model, from: f, what)
                let labels = try f.int32Values("labels")
                let logits = try model.forward(x)
                assertClose(logits, try f.tensor("logits"), "\(what) logits")
                let loss = try SoftmaxCrossEntropy()
                let (value, delta) = try loss(logits, labels: labels)
                assertClose(Tensor([value]), try f.tensor("loss"), "\(what) loss")
                model.zeroGrad()
                let dx = try model.backward(delta)
                for (pname, p) in model.namedParameters {
                    assertClose(p.grad, try f.tensor("grad." + pname), "\(what) grad.\(pname)")
                }
                assertClose(dx, try f.tensor("grad.input"), "\(what) grad.input")
                assertClose(Tensor(model.hiddenGradientNorms), try f.tensor("hidden_grad_norms"),
                            "\(what) hidden_grad_norms")
            }
        }
        print("classifier vs torch: worst error \(worst.ratio) of the allowed, at \(worst.what)")
    }

    /// Two stacked layers with h0 (c0), loss Σ output ⊙ w: output and every gradient including h0, c0.
    func testLayerWithInitialStateMatchesPyTorch() throws {
        for (name, kind) in Self.kinds {
          for threads in [1, 2] {
            let what = "layer-\(name)-l2 (threads \(threads))"
            let f = try load("layer-\(name)-l2")
            let x = try f.tensor("input"), h0 = try f.tensor("h0")
            var rng = SeededGenerator(seed: 0)
            let layer = try RecurrentLayer.make(kind, inputSize: x.shape[2], hiddenSize: h0.shape[2], numLayers: 2,
                                                rng: &rng)
            layer.useThreads(threads)
            try loadParameters(layer, from: f, what)
            let c0 = kind == .lstm ? try f.tensor("c0") : nil
            let y = try layer.forward(x, initialHidden: h0, initialCell: c0)
            assertClose(y, try f.tensor("output"), "\(what) output")
            layer.zeroGrad()
            let dx = try layer.backward(try f.tensor("w"))
            for (pname, p) in layer.namedParameters {
                assertClose(p.grad, try f.tensor("grad." + pname), "\(what) grad.\(pname)")
            }
            assertClose(dx, try f.tensor("grad.input"), "\(what) grad.input")
            assertClose(layer.initialHiddenGradient, try f.tensor("grad.h0"), "\(what) grad.h0")
            if kind == .lstm { assertClose(layer.initialCellGradient, try f.tensor("grad.c0"), "\(what) grad.c0") }
          }
        }
        print("layer vs torch: worst error \(worst.ratio) of the allowed, at \(worst.what)")
    }
}
