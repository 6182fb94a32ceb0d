import Foundation
import XCTest
@testable import Backprop

/// Replays the committed fuzz corpus (Fixtures/corpus/{safetensors,arch}) through the
/// safetensors reader, the model-file loader and the architecture parser: each file must parse
/// or throw `BackpropError`, never trap. `scripts/fuzz` grows the corpus.
final class CorpusReplayTests: XCTestCase {
    static func corpus(_ kind: String) throws -> [String] {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures folder not bundled")
        }
        let dir = root.appendingPathComponent("corpus/\(kind)").path
        return try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { dir + "/" + $0 }
    }

    @discardableResult
    func parsesOrRejects(_ file: String, _ what: String, _ body: () throws -> Void) -> Bool {
        do { try body(); return true } catch is BackpropError { return false } catch {
            XCTFail("\(what) on \(file): not a BackpropError: \(error)")
            return false
        }
    }

    func testEveryCorpusFileParsesOrThrowsBackpropError() throws {
        var files = 0, parsed = 0
        for kind in ["safetensors", "arch"] {
            for file in try CorpusReplayTests.corpus(kind) {
                files += 1
                if parsesOrRejects(file, "SafetensorsFile.read", {
                    let f = try SafetensorsFile.read(path: file)
                    for name in f.order { _ = try? f.int64Values(name) }
                    _ = try SafetensorsFile.read(data: f.serialized(), path: "again")
                }) { parsed += 1 }
                if parsesOrRejects(file, "ModelFile.load", { _ = try ModelFile.load(file) }) { parsed += 1 }
                let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
                if parsesOrRejects(file, "Architecture(json:)", { _ = try Architecture(json: text, source: file) }) { parsed += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(files, 20, "the corpus is committed")
        XCTAssertGreaterThanOrEqual(parsed, 5, "the seeds (valid files) parse")
    }

    func testSeedsParse() throws {
        for file in try CorpusReplayTests.corpus("safetensors") where file.contains("/seed-") {
            XCTAssertNoThrow(try SafetensorsFile.read(path: file), file)
        }
        XCTAssertNoThrow(try ModelFile.load(try CorpusReplayTests.corpus("safetensors").first { $0.hasSuffix("seed-model-3-2-2.safetensors") } ?? ""))
        for file in try CorpusReplayTests.corpus("arch") where file.contains("/seed-") {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            XCTAssertNoThrow(try Architecture(json: text, source: file), file)
        }
    }
}
