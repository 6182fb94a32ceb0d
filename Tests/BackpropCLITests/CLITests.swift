import Foundation
import XCTest
import Backprop
import BackpropData

/// The `backprop` command line, run as a user runs it: a subprocess, its exit status and output.
final class CLITests: XCTestCase {
    func testTrainWritesJSONLinesModelCheckpointAndReportThenEvalAgrees() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let model = dir.file("m.safetensors")
        let r = try CLI.run(["train", "--data", dir.path, "--epochs", "3", "--batch", "32", "--lr", "0.1",
                             "--seed", "5", "--out", model, "--report", dir.file("r.svg"), "--log", dir.file("log.txt"), "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, r.stdout)
        var last: [String: Any] = [:]
        for line in lines {
            last = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["epoch", "train_loss", "test_loss", "test_accuracy", "seconds", "images_per_second", "gradient_norms"] {
                XCTAssertNotNil(last[key], "missing \(key) in \(line)")
            }
        }
        let accuracy = try XCTUnwrap(last["test_accuracy"] as? Double)
        XCTAssertGreaterThan(accuracy, 0.9, "two clearly separable classes")
        XCTAssertLessThanOrEqual(accuracy, 1)
        XCTAssertTrue(r.stderr.isEmpty, "no progress line when stderr is not a terminal: \(r.stderr)")
        // Model file rebuilds alone, checkpoint exists, report is an SVG with labelled axes, log has 3 lines.
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.file("m.checkpoint.safetensors")))
        let svg = try String(contentsOfFile: dir.file("r.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("epoch") && svg.contains("test accuracy"))
        XCTAssertEqual(try String(contentsOfFile: dir.file("log.txt"), encoding: .utf8).split(separator: "\n").count, 3)
        let e = try CLI.run(["eval", "--model", model, "--data", dir.path, "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let evalObject = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(evalObject["test_accuracy"] as? Double), accuracy, accuracy: 1e-9)
        // No temporary files left behind by the atomic writes.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    func testGradsOfAPyTorchFileMatchPyTorch() throws {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: try CLI.fixture("torch_grads.json")))) as? [String: Any]
        for (loss, batch) in [("cross-entropy", "batch.safetensors"), ("mse", "batch_mse.safetensors")] {
            let r = try CLI.run(["grads", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,6,3",
                                 "--batch", try CLI.fixture(batch), "--loss", loss, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let ours = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            let ref = try XCTUnwrap(expected?[loss] as? [String: Any])
            XCTAssertEqual(try XCTUnwrap(ours["loss"] as? Double), try XCTUnwrap(ref["loss"] as? Double), accuracy: 1e-5)
            let og = try XCTUnwrap(ours["gradients"] as? [String: [Double]])
            let rg = try XCTUnwrap(ref["gradients"] as? [String: [Double]])
            XCTAssertEqual(Set(og.keys), ["0.weight", "0.bias", "2.weight", "2.bias"])
            for (name, values) in rg {
                let mine = try XCTUnwrap(og[name], name)
                XCTAssertEqual(mine.count, values.count, name)
                for (a, b) in zip(mine, values) { XCTAssertEqual(a, b, accuracy: 1e-6 + 1e-5 * abs(b), "\(loss) \(name)") }
            }
        }
        let table = try CLI.run(["grads", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,6,3",
                                 "--batch", try CLI.fixture("batch.safetensors")])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("0.weight") && table.stdout.contains("grad"), table.stdout)
    }

    func testPredictReadsPGM() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let model = dir.file("m.safetensors")
        XCTAssertEqual(try CLI.run(["train", "--data", dir.path, "--epochs", "2", "--batch", "32", "--lr", "0.1", "--out", model]).status, 0)
        var left: [UInt8] = [], right: [UInt8] = []
        for _ in 0..<4 { left += [250, 250, 5, 5]; right += [5, 5, 250, 250] }
        try PGM.write(path: dir.file("left.pgm"), width: 4, height: 4, pixels: left)
        try PGM.write(path: dir.file("right.pgm"), width: 4, height: 4, pixels: right)
        let r = try CLI.run(["predict", "--model", model, dir.file("left.pgm"), dir.file("right.pgm")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].contains("left.pgm: 0"), r.stdout)
        XCTAssertTrue(lines[1].contains("right.pgm: 1"), r.stdout)
    }

    func testBadInputGivesOneLineAndNonZeroExit() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let cases: [([String], String)] = [
            (["train", "--no-such-flag"], "no-such-flag"),
            (["train", "--data", dir.file("missing")], "missing"),
            (["train", "--data", dir.path, "--layers", "784,10"], "16 features"),
            (["train", "--data", dir.path, "--batch", "0"], "--batch"),
            (["train", "--data", dir.path, "--optimizer", "lbfgs"], "--optimizer"),
            (["train", "--data", dir.path, "--out", "/nonexistent-dir/m.safetensors"], "does not exist"),
            (["eval", "--model", try CLI.fixture("torch_mlp.safetensors"), "--data", dir.path], "architecture"),
            (["eval", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,7,3", "--data", dir.path], "0.weight"),
            (["grads", "--model", try CLI.fixture("torch_mlp.safetensors"), "--layers", "8,6,3",
              "--batch", try CLI.fixture("torch_mlp.safetensors")], "input"),
            (["predict", "--model", dir.file("none.safetensors"), "x.pgm"], "none.safetensors"),
        ]
        for (args, needle) in cases {
            let r = try CLI.run(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): stderr should mention \(needle): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), "\(args) trapped: \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("model.safetensors")))
    }

    func testInfoReportsTheActiveCoreAndReplacesAForcedSlowOne() throws {
        let r = try CLI.run(["info", "--json"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let best = try XCTUnwrap(info["cpu_best_core"] as? String)
        XCTAssertEqual(info["detected_core"] as? String, "Prescott")
        if best != "Prescott" {
            XCTAssertEqual((info["core"] as? String)?.lowercased(), best.lowercased(),
                           "a forced SSE3 core must be replaced by the CPU's best: \(r.stdout)")
        }
        let kept = try CLI.run(["info", "--json"], environment: ["BACKPROP_BLAS_CORE": "Prescott"])
        XCTAssertTrue(kept.stdout.contains("\"core\":\"Prescott\""), kept.stdout)
    }
}
