import Foundation
import XCTest

/// `backprop train --tensorboard DIR`: the event files hold each epoch's --json numbers, the
/// step series, the histograms and text; a file as DIR stops the run before training; --resume
/// continues the run in a second file. (scripts/check-tensorboard.py reads the same files with
/// the tensorboard package itself.)
final class TensorBoardCLITests: XCTestCase {
    /// What an event file holds: per tag, (step, kind, simple_value) with kind "scalar", "histo"
    /// or "tensor"; and whether a graph and the file_version record are there.
    struct Events {
        var series: [String: [(step: Int, kind: String, value: Float)]] = [:]
        var graphs = 0
        var fileVersions = 0
    }

    /// A protocol-buffer field walker: (field number, varint or the bytes of a 32/64-bit or
    /// length-delimited field).
    static func fields(_ b: ArraySlice<UInt8>) throws -> [(Int, UInt64, ArraySlice<UInt8>)] {
        struct Bad: Error {}
        var out: [(Int, UInt64, ArraySlice<UInt8>)] = [], i = b.startIndex
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < b.endIndex, shift < 64 else { throw Bad() }
                let byte = b[i]; i += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
        }
        while i < b.endIndex {
            let key = try varint()
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: out.append((field, try varint(), []))
            case 1, 5:
                let n = key & 7 == 1 ? 8 : 4
                guard i + n <= b.endIndex else { throw Bad() }
                out.append((field, 0, b[i..<(i + n)])); i += n
            case 2:
                let n = Int(try varint())
                guard n >= 0, i + n <= b.endIndex else { throw Bad() }
                out.append((field, 0, b[i..<(i + n)])); i += n
            default: throw Bad()
            }
        }
        return out
    }

    static func read(_ dir: String) throws -> (Events, files: Int) {
        var events = Events()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
        for name in names {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
            var i = 0
            while i < bytes.count {
                XCTAssertLessThanOrEqual(i + 12, bytes.count, "\(name): cut record")
                let n = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) })
                XCTAssertLessThanOrEqual(i + 16 + n, bytes.count, "\(name): cut record")
                guard i + 16 + n <= bytes.count else { break }
                var step = 0
                for (f, v, data) in try fields(bytes[(i + 12)..<(i + 12 + n)]) {
                    switch f {
                    case 2: step = Int(Int64(bitPattern: v))
                    case 3: events.fileVersions += String(decoding: data, as: UTF8.self) == "brain.Event:2" ? 1 : 0
                    case 4: events.graphs += 1
                    case 5:
                        for (vf, _, value) in try fields(data) where vf == 1 {
                            var tag = "", kind = "", x = Float.nan
                            for (k, _, d) in try fields(value) {
                                switch k {
                                case 1: tag = String(decoding: d, as: UTF8.self)
                                case 2: kind = "scalar"; x = Float(bitPattern: d.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                                case 5: kind = "histo"
                                case 8: kind = "tensor"
                                default: break
                                }
                            }
                            events.series[tag, default: []].append((step, kind, x))
                        }
                    default: break
                    }
                }
                i += 16 + n
            }
        }
        return (events, names.count)
    }

    static func records(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    static let epochTags = ["loss/train": "train_loss", "loss/test": "test_loss", "accuracy/train": "train_accuracy",
                            "accuracy/test": "test_accuracy", "lr": "learning_rate", "images_per_second": "images_per_second"]

    func checkEpochs(_ events: Events, _ records: [[String: Any]], file: StaticString = #filePath, line: UInt = #line) throws {
        let epochs = records.compactMap { $0["epoch"] as? Int }
        for (tag, key) in Self.epochTags {
            let s = events.series[tag] ?? []
            XCTAssertEqual(s.map(\.step), epochs, tag, file: file, line: line)
            for (e, r) in zip(s, records) {
                let expected = Float(try XCTUnwrap(r[key] as? Double))
                XCTAssertEqual(e.value, expected, "\(tag) epoch \(e.step)", file: file, line: line)
            }
        }
        for (e, r) in zip(epochs, records) {
            let norms = try XCTUnwrap(r["gradient_norms"] as? [String: Double])
            XCTAssertFalse(norms.isEmpty)
            for (name, norm) in norms {
                let point = events.series["grad_norm/" + name]?.first { $0.step == e }
                XCTAssertEqual(point?.value, Float(norm), "grad_norm/\(name) epoch \(e)", file: file, line: line)
                XCTAssertEqual(events.series["weight/" + name]?.filter { $0.step == e && $0.kind == "histo" }.count, 1,
                               "weight/\(name) epoch \(e)", file: file, line: line)
                XCTAssertEqual(events.series["grad/" + name]?.filter { $0.step == e && $0.kind == "histo" }.count, 1,
                               "grad/\(name) epoch \(e)", file: file, line: line)
            }
        }
    }

    func testEventFilesHoldTheJSONNumbers() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let logdir = dir.file("runs/tiny")
        let r = try CLI.run(["train", "--data", dir.path, "--epochs", "3", "--batch", "32", "--lr", "0.1", "--json",
                             "--layers", "16,8,2", "--out", dir.file("m.safetensors"), "--tensorboard", logdir, "--log-every", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try Self.records(r.stdout)
        XCTAssertEqual(records.count, 3)
        let (events, files) = try Self.read(logdir)
        XCTAssertEqual(files, 1)
        XCTAssertEqual(events.fileVersions, 1)
        XCTAssertEqual(events.graphs, 1)
        try checkEpochs(events, records)
        // 300 images in batches of 32: 10 steps per epoch, 30 in all; every 4th logged.
        XCTAssertEqual(events.series["loss/step"]?.map(\.step), Array(stride(from: 4, through: 30, by: 4)))
        XCTAssertEqual(events.series["grad_norm/total"]?.map(\.step), Array(stride(from: 4, through: 30, by: 4)))
        XCTAssertTrue(events.series["loss/step"]?.allSatisfy { $0.value.isFinite && $0.value > 0 } ?? false)
        XCTAssertEqual(events.series["flags"]?.map(\.kind), ["tensor"])
    }

    func testResumeContinuesTheRunInASecondFile() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let logdir = dir.file("tb")
        let common = ["--data", dir.path, "--batch", "32", "--lr", "0.1", "--json", "--layers", "16,8,2",
                      "--out", dir.file("m.safetensors"), "--tensorboard", logdir, "--log-every", "5"]
        let first = try CLI.run(["train", "--epochs", "2"] + common)
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try CLI.run(["train", "--epochs", "3", "--resume", dir.file("m.checkpoint.safetensors")] + common)
        XCTAssertEqual(second.status, 0, second.stderr)
        let records = try Self.records(first.stdout) + Self.records(second.stdout)
        XCTAssertEqual(records.compactMap { $0["epoch"] as? Int }, [1, 2, 3])
        let (events, files) = try Self.read(logdir)
        XCTAssertEqual(files, 2)
        XCTAssertEqual(events.graphs, 1)  // the resumed run does not write the graph again
        try checkEpochs(events, records)
        XCTAssertEqual(events.series["loss/step"]?.map(\.step), [5, 10, 15, 20, 25, 30])
        XCTAssertEqual(events.series["flags"]?.map(\.step), [0, 2])
    }

    func testUnusableDirectoryStopsTheRunBeforeTraining() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path)
        let plain = dir.file("plain")
        XCTAssertTrue(FileManager.default.createFile(atPath: plain, contents: Data("x".utf8)))
        for bad in [plain, plain + "/below", "/proc/backprop-tb"] {
            let r = try CLI.run(["train", "--data", dir.path, "--epochs", "1", "--json", "--layers", "16,8,2",
                                 "--out", dir.file("m.safetensors"), "--tensorboard", bad])
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertTrue(r.stderr.contains(bad), "\(bad): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", bad)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("m.safetensors")))
        }
        let r = try CLI.run(["train", "--data", dir.path, "--epochs", "1", "--tensorboard", dir.file("t"), "--log-every", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--log-every"), r.stderr)
    }
}
