import Foundation
import XCTest
@testable import Backprop

/// Agreement with PyTorch (fixtures written by scripts/make-conv-reference.py, float64 reference
/// rounded to float32): a small CNN (conv → ReLU → max-pool → batch-norm → flatten → dense) and a
/// residual conv block (conv → Residual(conv, BN, ReLU, conv, BN) → ReLU → avg-pool → flatten →
/// dense), both with cross-entropy in training mode. Checked: loss, every parameter gradient, the
/// input gradient, the running statistics after the step, and eval-mode logits.
///
/// Tolerance: |ours − torch| ≤ 1e-5 + 1e-4·|torch| per element (Float32 accumulation against a
/// float64 reference over sums of a few hundred terms); running statistics ≤ 1e-6 + 2e-6·|torch|.
final class ConvReferenceTests: XCTestCase {
    private func fixture(_ name: String) throws -> SafetensorsFile {
        guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures") else {
            throw BackpropError.io(path: name, reason: "fixture missing from the test bundle")
        }
        return try SafetensorsFile.read(path: url.path)
    }

    private func tensor(_ file: SafetensorsFile, _ name: String) throws -> Tensor {
        guard let t = file.tensors[name] else {
            throw BackpropError.badFile(path: file.path, offset: nil, reason: "no tensor \(name)")
        }
        return t
    }

    private func assertClose(_ ours: Tensor, _ reference: Tensor, _ what: String,
                             absolute: Float = 1e-5, relative: Float = 1e-4,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(ours.count, reference.count, "\(what): element count", file: file, line: line)
        guard ours.count == reference.count else { return }
        var worst: Float = 0, at = 0
        if ProcessInfo.processInfo.environment["CONV_REF_VERBOSE"] != nil {
            let e = (0..<ours.count).map { abs(ours.data[$0] - reference.data[$0]) / max(1e-3, abs(reference.data[$0])) }.max() ?? 0
            print("\(what): max relative difference \(e)")
        }
        for i in 0..<ours.count {
            let excess = abs(ours.data[i] - reference.data[i]) - (absolute + relative * abs(reference.data[i]))
            if excess > worst { worst = excess; at = i }
        }
        XCTAssertEqual(worst, 0, "\(what)[\(at)]: ours \(ours.data[at]) vs torch \(reference.data[at])", file: file, line: line)
    }

    /// Loads the weights, runs one training step (forward, loss, backward) and compares.
    private func check(_ model: Sequential, against name: String) throws {
        let file = try fixture(name)
        for (pname, p) in model.namedParameters {
            let w = try tensor(file, pname)
            XCTAssertEqual(w.shape, p.shape, pname)
            try p.value.assign(w)
        }
        let x = try tensor(file, "input")
        let labels = try tensor(file, "target").scalars.map { Int32($0) }
        let loss = try SoftmaxCrossEntropy()
        model.train()
        model.zeroGrad()
        let logits = try model(x)
        let (value, delta) = try loss(logits, labels: labels)
        let dx = try model.backward(delta)
        XCTAssertEqual(value, try tensor(file, "loss").data[0], accuracy: 1e-5 + 1e-4 * abs(value), "\(name) loss")
        assertClose(dx, try tensor(file, "grad.input"), "\(name) grad.input")
        for (pname, p) in model.namedParameters {
            assertClose(p.grad, try tensor(file, "grad.\(pname)"), "\(name) grad.\(pname)")
        }
        var buffers = 0
        for (bname, b) in model.namedBuffers {
            assertClose(b, try tensor(file, "after.\(bname)"), "\(name) \(bname)", absolute: 1e-6, relative: 2e-6)
            buffers += 1
        }
        XCTAssertGreaterThan(buffers, 0)
        model.eval()
        assertClose(try model(x), try tensor(file, "eval.output"), "\(name) eval logits")
    }

    func testSmallCNNMatchesPyTorch() throws {
        var rng = SeededGenerator(seed: 0)
        let model = Sequential([
            try Conv2D(inChannels: 2, outChannels: 4, kernelSize: (3, 2), padding: 1, rng: &rng),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            try BatchNorm2d(4),
            Flatten(),
            try Dense(48, 3, rng: &rng),
        ])
        try check(model, against: "conv_ref_cnn")
    }

    func testResidualBlockMatchesPyTorch() throws {
        var rng = SeededGenerator(seed: 0)
        let model = Sequential([
            try Conv2D(inChannels: 2, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng),
            try Architectures.residualBlock(channels: 3, rng: &rng),
            ReLU(),
            try AvgPool2D(kernelSize: 2),
            Flatten(),
            try Dense(27, 4, rng: &rng),
        ])
        XCTAssertEqual(model.namedBuffers.map(\.name),
                       ["1.block.1.running_mean", "1.block.1.running_var", "1.block.1.num_batches_tracked",
                        "1.block.4.running_mean", "1.block.4.running_var", "1.block.4.num_batches_tracked"])
        try check(model, against: "conv_ref_residual")
    }

    /// A second convolution with stride 1 and C·kw = 4·4 = 16 terms per kernel row: it runs through
    /// the row lowering (`Conv2D+RowLowering`), its δ of the input flowing into the first one.
    func testRowLoweredConvolutionMatchesPyTorch() throws {
        var rng = SeededGenerator(seed: 0)
        let conv = try Conv2D(inChannels: 4, outChannels: 5, kernelSize: (5, 4), stride: (1, 1), padding: (2, 1), rng: &rng)
        let model = Sequential([
            try Conv2D(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng),
            ReLU(),
            conv,
            try BatchNorm2d(5),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            Flatten(),
            try Dense(60, 3, rng: &rng),
        ])
        try check(model, against: "conv_ref_rows")
        XCTAssertTrue(conv.plan.rows, "the second convolution took the row lowering")
    }
}
