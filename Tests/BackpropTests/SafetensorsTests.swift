import Foundation
import XCTest
@testable import Backprop

final class SafetensorsTests: XCTestCase {
    // MARK: - Helpers

    static func fixture(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures") else {
            throw BackpropError.io(path: name, reason: "fixture missing from the test bundle")
        }
        return url.path
    }

    /// 8-byte little-endian length, the header bytes as given (no padding), then `data`.
    func file(_ header: String, _ data: [UInt8] = []) -> [UInt8] {
        file(Array(header.utf8), data)
    }

    func file(_ header: [UInt8], _ data: [UInt8] = []) -> [UInt8] {
        let n = UInt64(header.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + header + data
    }

    /// Absolute file offset of the first occurrence of `marker` in `header` (as laid out by `file`).
    func offset(of marker: String, in header: String) -> Int {
        let h = Array(header.utf8), m = Array(marker.utf8)
        for i in 0...(h.count - m.count) where Array(h[i..<(i + m.count)]) == m { return 8 + i }
        XCTFail("marker \(marker) not in header"); return -1
    }

    /// Asserts that reading `bytes` fails with `badFile` naming the path, `offset` (when given), and
    /// a reason containing `reason`.
    func assertBadFile(_ bytes: [UInt8], offset expectedOffset: Int?, _ reason: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        let path = "/data/model.safetensors"
        XCTAssertThrowsError(try SafetensorsFile.read(data: bytes, path: path), file: file, line: line) { error in
            guard case let BackpropError.badFile(p, off, why) = error else {
                return XCTFail("expected badFile, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(p, path, file: file, line: line)
            XCTAssertNotNil(off, "every corruption error names an offset: \(why)", file: file, line: line)
            if let expectedOffset { XCTAssertEqual(off, expectedOffset, "\(why)", file: file, line: line) }
            XCTAssertTrue(why.contains(reason), "reason '\(why)' lacks '\(reason)'", file: file, line: line)
            XCTAssertTrue("\(error)".contains(path), file: file, line: line)
        }
    }

    func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

    // MARK: - Interoperability with Python's safetensors

    /// A file written by `safetensors.numpy.save_file` (scripts/make-interop.py), PyTorch names.
    func testReadsNumpyWrittenFile() throws {
        let f = try SafetensorsFile.read(path: try Self.fixture("interop_numpy"))
        XCTAssertEqual(Set(f.order), ["0.weight", "0.bias", "2.weight", "2.bias"])
        XCTAssertEqual(f.order.count, 4)
        XCTAssertEqual(f.metadata, [:])
        let expected: [(String, [Int], Float)] = [("0.weight", [3, 2], 0), ("0.bias", [3], 10),
                                                  ("2.weight", [2, 3], 20), ("2.bias", [2], 30)]
        for (name, shape, base) in expected {
            let t = try f.tensor(name)
            XCTAssertEqual(t.shape, shape, name)
            XCTAssertEqual(t.scalars, (0..<t.count).map { base + 0.25 * Float($0) }, name)
            XCTAssertEqual(f.dtypes[name], "F32")
        }
    }

    /// A file written by `safetensors.torch.save_file` with every dtype the reader converts.
    func testReadsEveryDtype() throws {
        let f = try SafetensorsFile.read(path: try Self.fixture("interop_dtypes"))
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(f.dtypes["f64"], "F64")
        XCTAssertEqual(f.dtypes["i64"], "I64")
        XCTAssertEqual(f.dtypes["bf16"], "BF16")
        XCTAssertEqual(try f.tensor("f64").shape, [2, 2])
        XCTAssertEqual(try f.tensor("f64").scalars, [1.5, -2.0, Float(1e-3 as Double), 3.0e38])
        XCTAssertEqual(try f.tensor("f16").scalars, [0.5, -1.0, 65504, 0x1p-14, 0x1p-24, 0])
        XCTAssertEqual(bits(try f.tensor("bf16")), [Float(1).bitPattern, Float(-3.5).bitPattern,
                                                    Float(0.15625).bitPattern, 1_900_675_072])
        XCTAssertEqual(try f.tensor("i64").scalars, [0, 3, 1, 2, -7])
        XCTAssertEqual(try f.int64Values("i64"), [0, 3, 1, 2, -7])
        XCTAssertEqual(try f.int32Values("i64"), [0, 3, 1, 2, -7])
        // Beyond 2^24 a Float32 would round: only exact access, and a clear error otherwise.
        XCTAssertEqual(try f.int64Values("i64_big"), [(1 << 40) + 1, -(1 << 62)])
        XCTAssertNil(f.tensors["i64_big"])
        XCTAssertThrowsError(try f.tensor("i64_big")) { error in
            XCTAssertTrue("\(error)".contains("int64Values"), "\(error)")
        }
        XCTAssertThrowsError(try f.int32Values("i64_big"))
        XCTAssertEqual(try f.tensor("i32").shape, [2, 2])
        XCTAssertEqual(try f.tensor("i32").scalars, [-5, 7, 16_777_216, -16_777_216])
        XCTAssertEqual(try f.tensor("i16").scalars, [-32768, 32767])
        XCTAssertEqual(try f.tensor("i8").scalars, [-128, 5, 127])
        XCTAssertEqual(try f.tensor("u8").scalars, [0, 128, 255])
        XCTAssertEqual(try f.int64Values("u8"), [0, 128, 255])
        XCTAssertEqual(try f.tensor("bool").scalars, [1, 0, 1])
        XCTAssertEqual(try f.tensor("scalar").shape, [])
        XCTAssertEqual(try f.tensor("scalar").scalars, [2.5])
        XCTAssertEqual(try f.tensor("empty").shape, [0, 3])
        XCTAssertThrowsError(try f.int64Values("scalar"))      // 2.5 is not an integer
        XCTAssertThrowsError(try f.int64Values("missing"))
    }

    // MARK: - Writing

    /// The content of the committed `ours_written.safetensors`; scripts/make-interop.py --check
    /// reads that file with Python's safetensors and expects exactly this.
    static func oursWrittenContent() throws -> SafetensorsFile {
        SafetensorsFile(tensors: [
            "0.weight": try Tensor((0..<6).map { Float($0) * 0.5 - 1 }, shape: [2, 3]),
            "0.bias": Tensor([1.5, -2.25, 3e-8]),
            "layer.norm/π": try Tensor([-0.0, 1e30, 1 / 3, -7], shape: [1, 2, 2]),
            "scalar": try Tensor([42], shape: []),
            "empty": try Tensor(zeros: [0, 4]),
        ], metadata: ["format": "pt", "note": "quote \" backslash \\ newline \n unicode é ✓"])
    }

    /// Our writer reproduces the committed file byte for byte (so the file that Python's safetensors
    /// reads in `make-interop.py --check` is what the writer produces today). Set
    /// BACKPROP_REGENERATE_FIXTURES=1 to rewrite it.
    func testWriterMatchesCommittedFile() throws {
        let bytes = try Self.oursWrittenContent().serialized()
        if ProcessInfo.processInfo.environment["BACKPROP_REGENERATE_FIXTURES"] == "1" {
            let dest = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Fixtures/ours_written.safetensors").path
            try Self.oursWrittenContent().write(to: dest)
            print("wrote \(dest)")
        }
        let committed = try SafetensorsFile.readWholeFile(try Self.fixture("ours_written"))
        XCTAssertEqual(bytes, committed, "writer output differs from the committed ours_written.safetensors")
        // Header length makes the data start 8-byte aligned, padding is spaces.
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual((8 + n) % 8, 0)
        XCTAssertEqual(bytes[8], UInt8(ascii: "{"))
    }

    func testRoundTrip() throws {
        let original = try Self.oursWrittenContent()
        let back = try SafetensorsFile.read(data: try original.serialized(), path: "mem")
        XCTAssertEqual(back.order, original.tensors.keys.sorted())
        XCTAssertEqual(back.metadata, original.metadata)
        for (name, t) in original.tensors {
            let r = try back.tensor(name)
            XCTAssertEqual(r.shape, t.shape, name)
            XCTAssertEqual(bits(r), bits(t), name)    // bit-exact, including −0
            XCTAssertEqual(back.dtypes[name], "F32")
        }
        // Through a real file, twice (the second write replaces the first atomically).
        let dir = try temporaryDirectory()
        let path = dir + "/model.safetensors"
        try original.write(to: path)
        var changed = original
        changed.tensors["0.bias"] = Tensor([9, 8, 7])
        try changed.write(to: path)
        let fromDisk = try SafetensorsFile.read(path: path)
        XCTAssertEqual(try fromDisk.tensor("0.bias").scalars, [9, 8, 7])
        XCTAssertEqual(bits(try fromDisk.tensor("layer.norm/π")), bits(try original.tensor("layer.norm/π")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"],
                       "no temporary file may remain")
    }

    func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "backprop-safetensors-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// A failed write leaves what was there intact and no temporary file behind.
    func testFailedWriteLeavesExistingFileAndNoTemporary() throws {
        let dir = try temporaryDirectory()
        // The destination is a non-empty directory: the final rename fails after the data was written.
        let target = dir + "/taken"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: target + "/keep"))
        XCTAssertThrowsError(try SafetensorsFile.oursForFailureTest().write(to: target)) { error in
            guard case let BackpropError.io(path, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, target)
            XCTAssertTrue(reason.contains("rename"), reason)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["taken"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target + "/keep")), Data([1, 2, 3]))

        // A directory that does not exist: a clear error naming the directory.
        XCTAssertThrowsError(try SafetensorsFile.oursForFailureTest().write(to: dir + "/missing/m.safetensors")) { error in
            guard case let BackpropError.io(_, reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("cannot create a temporary file in \(dir)/missing"), reason)
            XCTAssertTrue(reason.contains("No such file or directory"), reason)
        }

        // A full device: /dev/full accepts open and fails every write with ENOSPC. The rename is
        // never reached, so nothing is replaced; the error says the disk is full.
        if FileManager.default.fileExists(atPath: "/dev/full") {
            let bytes = try SafetensorsFile.oursForFailureTest().serialized()
            let fd = open("/dev/full", O_WRONLY)
            XCTAssertGreaterThanOrEqual(fd, 0)
            defer { close(fd) }
            XCTAssertThrowsError(try AtomicFile.writeFully(fd, bytes, path: "/dev/full")) { error in
                XCTAssertTrue("\(error)".contains("No space left on device"), "\(error)")
            }
        }
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try SafetensorsFile.read(path: "/nonexistent/x.safetensors")) { error in
            guard case let BackpropError.io(path, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/x.safetensors")
            XCTAssertTrue(reason.contains("No such file"), reason)
        }
    }

    func testWriterRejectsReservedName() {
        let f = SafetensorsFile(tensors: ["__metadata__": Tensor([1])])
        XCTAssertThrowsError(try f.serialized())
    }

    // MARK: - Corrupt files: each is a badFile error naming the file and the byte offset

    func testTooShortAndAbsurdHeaderLengths() {
        assertBadFile([], offset: 0, "too short")
        assertBadFile([1, 0, 0, 0, 0, 0, 0], offset: 0, "too short")
        assertBadFile(Array(file("{}").prefix(9)), offset: 0, "runs past the end")
        // Header length 1000 in a 16-byte file.
        assertBadFile([0xE8, 0x03, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8), offset: 0, "runs past the end")
        // 200 MB and 2^64 − 1: refused before anything is allocated.
        assertBadFile([0x00, 0xC2, 0xEB, 0x0B, 0, 0, 0, 0] + Array("{}".utf8), offset: 0, "limit")
        assertBadFile([UInt8](repeating: 0xFF, count: 8) + Array("{}".utf8), offset: 0, "limit")
    }

    func testEmptyHeaderObjectIsAValidEmptyFile() throws {
        let f = try SafetensorsFile.read(data: file("{}      "), path: "e")
        XCTAssertTrue(f.tensors.isEmpty)
        XCTAssertTrue(f.order.isEmpty)
    }

    func testInvalidUTF8AndJSON() {
        // 0xFF inside a key: not UTF-8.
        let bad: [UInt8] = Array("{\"a".utf8) + [0xFF] + Array("\":{}}".utf8)
        assertBadFile(file(bad), offset: 11, "UTF-8")
        // Overlong encoding of '/' (0xC0 0xAF) and a lone surrogate (ED A0 80).
        assertBadFile(file(Array("{\"".utf8) + [0xC0, 0xAF] + Array("\":1}".utf8)), offset: 10, "UTF-8")
        assertBadFile(file(Array("{\"".utf8) + [0xED, 0xA0, 0x80] + Array("\":1}".utf8)), offset: 10, "UTF-8")
        assertBadFile(file("{\"a\": {"), offset: 15, "expected a string key")
        assertBadFile(file("{\"a\": [1,"), offset: 17, "unexpected end")
        assertBadFile(file("{\"a\" 1}"), offset: 13, "expected ':'")
        assertBadFile(file("[1, 2]"), offset: 8, "must be a JSON object")
        assertBadFile(file("{} x"), offset: 11, "after the JSON object")
        assertBadFile(file(""), offset: 8, "unexpected end")
        assertBadFile(file("{\"a\": tru}"), offset: 17, "expected 'true'")
        assertBadFile(file("{\"a\": \"\\q\"}"), offset: 15, "invalid escape")
        assertBadFile(file("{\"a\": 01}"), offset: 14, "leading zero")
        assertBadFile(file(String(repeating: "[", count: 100)), offset: nil, "nesting")
    }

    func testEntryFieldsAreValidated() {
        func entry(_ fields: String) -> String { "{\"w\":{\(fields)}}" }
        let good = "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"
        XCTAssertNoThrow(try SafetensorsFile.read(data: file(entry(good), [0, 0, 128, 63]), path: "ok"))
        var h = entry("\"shape\":[1],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "{\"shape", in: h), "missing field 'dtype'")
        h = entry("\"dtype\":\"F32\",\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "{\"dtype", in: h), "missing field 'shape'")
        h = entry("\"dtype\":\"F32\",\"shape\":[1]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "{\"dtype", in: h), "missing field 'data_offsets'")
        h = "{\"w\":[1]}"
        assertBadFile(file(h), offset: 13, "entry must be an object")
        h = entry("\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "\"Q7\"", in: h), "unknown dtype 'Q7'")
        h = entry("\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "\"U16\"", in: h), "unsupported dtype 'U16'")
        h = entry("\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "7", in: h), "dtype must be a string")
        h = entry("\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: ":3,", in: h) + 1, "shape must be an array")
        h = entry("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "-1", in: h), "negative dimension")
        h = entry("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "1.5", in: h), "must be integers")
        h = entry("\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "9999", in: h), "must be integers")
        h = entry("\"dtype\":\"F32\",\"shape\":[65536,65536],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "65536]", in: h), "too large")
        h = entry("\"dtype\":\"F32\",\"shape\":[9223372036854775807,9223372036854775807],\"data_offsets\":[0,4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "9223", in: h), "too large")
        h = entry("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "[0]", in: h), "[begin, end]")
        h = entry("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]")
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "-4", in: h), "non-negative")
        h = "{\"__metadata__\":{\"k\":1}}"
        assertBadFile(file(h), offset: offset(of: "1", in: h), "must be a string")
        h = "{\"__metadata__\":[\"k\"]}"
        assertBadFile(file(h), offset: offset(of: "[", in: h), "__metadata__ must be an object")
        h = "{\"w\":{\(good)},\"w\":{\(good)}}"
        assertBadFile(file(h, [0, 0, 0, 0]), offset: offset(of: "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", in: h),
                      "duplicate key 'w'")
    }

    func testOffsetsMustMatchShapesAndTileTheBuffer() {
        let four = [UInt8](repeating: 0, count: 4), eight = [UInt8](repeating: 0, count: 8)
        // Shape [2] of F32 needs 8 bytes; the offsets span 12.
        var h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}"
        assertBadFile(file(h, eight + four), offset: offset(of: "[0,12]", in: h), "needs 8 bytes")
        // End beyond the buffer.
        h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
        assertBadFile(file(h, four), offset: offset(of: "[0,8]", in: h), "run past the data buffer")
        // Begin after end.
        h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}"
        assertBadFile(file(h, four), offset: offset(of: "[4,0]", in: h), "begin after end")
        // Overlap.
        h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
        assertBadFile(file(h, eight + four), offset: offset(of: "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}", in: h), "overlap")
        // Gap.
        h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}"
        assertBadFile(file(h, eight + four), offset: offset(of: "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}", in: h), "gap")
        // Trailing bytes the header does not describe.
        h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        assertBadFile(file(h, eight), offset: 8 + h.utf8.count + 4, "trailing bytes")
        // A header with no tensors must have an empty buffer.
        assertBadFile(file("{}", four), offset: 10, "trailing bytes")
        // I64 with the size of an F32 tensor.
        h = "{\"t\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        assertBadFile(file(h, four), offset: offset(of: "[0,4]", in: h), "needs 8 bytes")
    }

    /// Random byte corruptions of a valid file either still parse or give a badFile error with an
    /// offset; nothing crashes or reads out of bounds.
    func testRandomCorruptionsAreRejectedOrParsed() throws {
        let bytes = try Self.oursWrittenContent().serialized()
        var rng = SeededGenerator(seed: 42)
        var rejected = 0
        for trial in 0..<3000 {
            var b = bytes
            for _ in 0...(trial % 3) {
                // Mostly the length field and header, sometimes the data.
                let i = Int(rng.next() % UInt64(trial % 4 == 0 ? b.count : min(b.count, 8 + 200)))
                b[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            do {
                _ = try SafetensorsFile.read(data: b, path: "fuzz")
            } catch BackpropError.badFile(path: "fuzz", offset: .some, reason: _) {
                rejected += 1
            } catch {
                XCTFail("trial \(trial): \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
    }

    /// Every single-byte truncation of a valid file is rejected with a badFile error, never a crash.
    func testEveryTruncationIsRejected() throws {
        let bytes = try Self.oursWrittenContent().serialized()
        for cut in 0..<bytes.count {
            XCTAssertThrowsError(try SafetensorsFile.read(data: Array(bytes[0..<cut]), path: "t")) { error in
                guard case BackpropError.badFile(path: "t", offset: .some, reason: _) = error else {
                    return XCTFail("cut at \(cut): \(error)")
                }
            }
        }
    }
}

extension SafetensorsFile {
    static func oursForFailureTest() throws -> SafetensorsFile {
        SafetensorsFile(tensors: ["w": try Tensor([1, 2, 3, 4], shape: [2, 2])], metadata: ["k": "v"])
    }
}
