import Foundation
import XCTest

/// `backprop graph`: a model file's graph for one batch, with values and gradients, as DOT or SVG.
final class GraphCommandTests: XCTestCase {
    /// The DOT text names every parameter, and each parameter's ‖grad‖ there is PyTorch's (the
    /// same batch and model as `testGradsOfAPyTorchFileMatchPyTorch`).
    func testGraphOfAPyTorchFileShowsPyTorchsGradientNorms() throws {
        let dir = try TempDir()
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: try CLI.fixture("torch_grads.json")))) as? [String: Any]
        let reference = try XCTUnwrap((expected?["cross-entropy"] as? [String: Any])?["gradients"] as? [String: [Double]])
        let r = try CLI.run(["graph", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,6,3",
                             "--batch", try CLI.fixture("batch.safetensors"), "-o", dir.file("g.dot")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let dot = try String(contentsOfFile: dir.file("g.dot"), encoding: .utf8)
        XCTAssertTrue(dot.hasPrefix("digraph"), dot)
        XCTAssertTrue(dot.contains("loss · crossEntropy"), dot)
        XCTAssertTrue(dot.contains("input · leaf"), dot)
        for (name, grad) in reference {
            // "0.weight · leaf\nshape [6, 8]\n…\n‖grad‖ 0.1234"
            let label = try XCTUnwrap(dot.components(separatedBy: "\n").first { $0.contains("\"\(name) · leaf") }, name)
            let norm = try XCTUnwrap(label.components(separatedBy: "‖grad‖ ").last?.prefix { "0123456789.e-".contains($0) })
            let torchNorm = grad.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(try XCTUnwrap(Double(norm)), torchNorm, accuracy: 1e-3 * torchNorm, name)
        }
        // Every op's result shows its δ too (retainGrad), not only the leaves.
        let nodes = dot.components(separatedBy: "\n").filter { $0.contains("[label=") && !$0.contains("->") }
        XCTAssertGreaterThanOrEqual(nodes.count, 9)   // input, 4 parameters, Dense, relu, Dense, loss
        for node in nodes { XCTAssertTrue(node.contains("grad"), "a node without its gradient: \(node)") }

        let svg = try CLI.run(["graph", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,6,3",
                               "--batch", try CLI.fixture("batch.safetensors"), "--out", dir.file("g.svg")])
        XCTAssertEqual(svg.status, 0, svg.stderr)
        let text = try String(contentsOfFile: dir.file("g.svg"), encoding: .utf8)
        XCTAssertTrue(text.contains("<svg") && text.contains("2.bias"), text)
    }

    func testGraphOfATrainedMNISTModel() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let train = try CLI.run(["train", "--data", dir.path, "--layers", "16,8,2", "--epochs", "1", "--out", dir.file("m.safetensors")])
        XCTAssertEqual(train.status, 0, train.stderr)
        let r = try CLI.run(["graph", "--model", dir.file("m.safetensors"), "--data", dir.path, "--count", "3", "-o", dir.file("m.svg")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let svg = try String(contentsOfFile: dir.file("m.svg"), encoding: .utf8)
        XCTAssertTrue(svg.contains("shape [3, 16]") && svg.contains("0.weight"), svg)
    }

    func testBadArgumentsAreClearErrors() throws {
        let dir = try TempDir()
        let model = try CLI.fixture("torch_mlp.safetensors")
        let zero = try CLI.run(["graph", "--model", model, "--layers", "8,6,3", "--count", "0"])
        XCTAssertNotEqual(zero.status, 0)
        XCTAssertTrue(zero.stderr.contains("--count must be at least 1"), zero.stderr)
        let mse = try CLI.run(["graph", "--model", model, "--layers", "8,6,3", "--loss", "mse"])
        XCTAssertNotEqual(mse.status, 0)
        XCTAssertTrue(mse.stderr.contains("--loss mse needs --batch"), mse.stderr)
        let missing = try CLI.run(["graph", "--model", model, "--layers", "8,6,3", "--data", dir.file("nothing")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "graph.svg") && missing.status == 0)
    }
}
