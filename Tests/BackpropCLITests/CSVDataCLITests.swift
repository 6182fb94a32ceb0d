import Foundation
import XCTest
import Backprop
import BackpropData

/// `train` and `eval` from Kaggle-style CSV files (`label,pixel0,…`), and clear errors for data
/// that is neither an IDX folder nor a CSV file.
final class CSVDataCLITests: XCTestCase {
    /// Two classes of 4×4 images as CSV text with a header: bright left half = 0, right = 1.
    func csv(_ n: Int, seed: UInt64) -> String {
        var rng = SeededGenerator(seed: seed)
        var lines = ["label," + (0..<16).map { "pixel\($0)" }.joined(separator: ",")]
        for _ in 0..<n {
            let label = Int(rng.next() % 2)
            var cells = [String(label)]
            for _ in 0..<4 {
                for c in 0..<4 { cells.append(String(((c < 2) == (label == 0) ? 195 : 0) + Int(rng.next() % 60))) }
            }
            lines.append(cells.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func testTrainAndEvalFromCSV() throws {
        let dir = try TempDir()
        let train = dir.file("train.csv"), test = dir.file("test.csv")
        try csv(300, seed: 1).write(toFile: train, atomically: true, encoding: .utf8)
        try csv(60, seed: 2).write(toFile: test, atomically: true, encoding: .utf8)
        let model = dir.file("m.safetensors")
        for args in [["--data", train], ["--train", train, "--test", test]] {
            let r = try CLI.run(["train"] + args + ["--epochs", "2", "--batch", "32", "--lr", "0.1", "--out", model, "--json"])
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            let last = try XCTUnwrap(r.stdout.split(separator: "\n").last.map(String.init))
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            XCTAssertGreaterThan(try XCTUnwrap(object["test_accuracy"] as? Double), 0.9, "\(args)")
        }
        let e = try CLI.run(["eval", "--model", model, "--data", test, "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["images"] as? Int, 60, "eval reads the whole CSV file")
    }

    func testDataThatIsNeitherSaysWhatWasExpected() throws {
        let dir = try TempDir()
        let text = dir.file("data.txt"), ragged = dir.file("ragged.csv"), good = dir.file("good.csv")
        try "hello\n".write(toFile: text, atomically: true, encoding: .utf8)
        try "label,a,b\n1,2,3\n0,4\n".write(toFile: ragged, atomically: true, encoding: .utf8)
        try csv(10, seed: 3).write(toFile: good, atomically: true, encoding: .utf8)
        let cases: [([String], [String])] = [
            (["train", "--data", text], ["data.txt", "expected", "IDX", "CSV"]),
            (["train", "--data", ragged], ["ragged.csv", "line 3", "expected 2"]),
            (["train", "--train", good], ["--train", "--test"]),
            (["train", "--train", good, "--test", text], ["data.txt", "not a .csv"]),
            (["train", "--data", dir.file("nothing")], ["nothing", "does not exist", "IDX"]),
        ]
        for (args, needles) in cases {
            let r = try CLI.run(args + ["--epochs", "1", "--out", dir.file("m.safetensors")])
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            for n in needles { XCTAssertTrue(r.stderr.contains(n), "\(args): stderr should mention \(n): \(r.stderr)") }
            XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.contains("--help") }.count, 1, r.stderr)
        }
    }
}
