import Foundation
import XCTest
import Backprop
import BackpropData

/// Files without metadata rebuilt from their tensors' shapes (`--arch FAMILY` alone), at sizes
/// other than MNIST's, against gradients PyTorch computed (scripts/make-size-fixtures.py);
/// flags that disagree with a file; `eval`'s confusion matrix.
final class ShapeInferenceCLITests: XCTestCase {
    func testGradsOfEveryFamilyAtOtherSizesMatchPyTorch() throws {
        let expected = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: try CLI.fixture("sizes_grads.json")))) as? [String: Any])
        // The LSTM case is the documented example: only the family and --hidden, which agrees.
        for (family, extra) in [("mlp", [String]()), ("lstm", ["--hidden", "7"]), ("gru", []), ("rnn", ["--num-layers", "1"])] {
            let r = try CLI.run(["grads", "--model", try CLI.fixture("sizes_\(family).safetensors"),
                                 "--batch", try CLI.fixture("sizes_\(family)_batch.safetensors"), "--arch", family, "--json"] + extra)
            XCTAssertEqual(r.status, 0, "\(family): \(r.stderr)")
            let ours = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], family)
            let ref = try XCTUnwrap(expected[family] as? [String: Any])
            let refLoss = try XCTUnwrap(ref["loss"] as? Double)
            XCTAssertEqual(try XCTUnwrap(ours["loss"] as? Double), refLoss, accuracy: 1e-5 * abs(refLoss), family)
            let og = try XCTUnwrap(ours["gradients"] as? [String: [Double]])
            let rg = try XCTUnwrap(ref["gradients"] as? [String: [Double]])
            XCTAssertEqual(Set(og.keys), Set(rg.keys), family)
            for (name, values) in rg {
                let mine = try XCTUnwrap(og[name], name)
                XCTAssertEqual(mine.count, values.count, name)
                let scale = values.map(abs).max() ?? 0
                for (a, b) in zip(mine, values) {
                    XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(b), scale * 1e-2) + 1e-9, "\(family) \(name)")
                }
            }
        }
    }

    func testFlagsThatDisagreeWithTheFileNameBoth() throws {
        let lstm = try CLI.fixture("sizes_lstm.safetensors"), lstmBatch = try CLI.fixture("sizes_lstm_batch.safetensors")
        let mlp = try CLI.fixture("sizes_mlp.safetensors"), mlpBatch = try CLI.fixture("sizes_mlp_batch.safetensors")
        let cases: [([String], [String])] = [
            (["--model", lstm, "--batch", lstmBatch, "--arch", "lstm", "--hidden", "8"], ["--hidden 8", "hidden size 7", "sizes_lstm"]),
            (["--model", lstm, "--batch", lstmBatch, "--arch", "lstm", "--num-layers", "2"], ["--num-layers 2", "1 layer"]),
            (["--model", lstm, "--batch", lstmBatch, "--arch", "lstm", "--classes", "10"], ["--classes 10", "3 classes", "fc.weight"]),
            (["--model", lstm, "--batch", lstmBatch, "--arch", "gru"], ["4 gates", "lstm", "not gru"]),
            (["--model", lstm, "--batch", lstmBatch, "--arch", "mlp"], ["0.weight", "not an MLP"]),
            (["--model", mlp, "--batch", mlpBatch, "--arch", "mlp", "--layers", "5,7,3"], ["--layers 5,7,3", "5,7,4,3"]),
            (["--model", mlp, "--batch", mlpBatch], ["no architecture", "--arch", "ModelFile.load(into:from:)"]),
            (["--model", try CLI.fixture("sizes_rnn.safetensors"), "--batch", mlpBatch, "--arch", "rnn"], ["input has shape [4, 5]"]),
        ]
        for (args, needles) in cases {
            let r = try CLI.run(["grads"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            for n in needles { XCTAssertTrue(r.stderr.contains(n), "\(args): stderr should mention \(n): \(r.stderr)") }
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
        }
    }

    func testEvalTakesStepsFromTheDataAndPrintsTheConfusionMatrix() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let model = try SequenceClassifier(kind: .gru, inputSize: 4, hiddenSize: 3, classes: 2, seed: 1)
        let path = dir.file("gru.safetensors")
        try ModelFile.save(model, to: path)   // no metadata: eval rebuilds it from the shapes and the 4×4 images
        let r = try CLI.run(["eval", "--model", path, "--arch", "gru", "--data", dir.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let matrix = try XCTUnwrap(object["confusion_matrix"] as? [[Int]])
        XCTAssertEqual(matrix.count, 2)
        XCTAssertEqual(matrix.flatMap { $0 }.reduce(0, +), 100)
        let accuracy = try XCTUnwrap(object["test_accuracy"] as? Double)
        XCTAssertEqual(accuracy, Double(matrix[0][0] + matrix[1][1]) / 100, accuracy: 1e-12)
        XCTAssertEqual((object["per_class_accuracy"] as? [Any])?.count, 2)
        let text = try CLI.run(["eval", "--model", path, "--arch", "gru", "--data", dir.path])
        XCTAssertTrue(text.stdout.contains("confusion matrix") && text.stdout.contains("true\\pred"), text.stdout)
    }
}
