import XCTest
import Backprop
@testable import BackpropData

final class IDXTests: DataTestCase {
    // 3 images of 2 × 3 pixels: 0, 1, …, 17; labels 2, 0, 1.
    let pixels = (0..<18).map { UInt8($0 * 14) }
    let labels: [UInt8] = [2, 0, 1]

    func writeSet(gzip: Bool) throws -> (images: String, labels: String) {
        let ext = gzip ? ".gz" : ""
        let i = path("img-idx3-ubyte" + ext), l = path("lab-idx1-ubyte" + ext)
        try IDX.write(.init(dimensions: [3, 2, 3], bytes: pixels), to: i, gzip: gzip)
        try IDX.write(.init(dimensions: [3], bytes: labels), to: l, gzip: gzip)
        return (i, l)
    }

    func testRawRoundTripHasTheExactLayout() throws {
        let (i, l) = try writeSet(gzip: false)
        // The file is the header (magic 0x00000803, 3, 2, 3 big-endian) followed by the pixels.
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: i)))
        XCTAssertEqual(bytes, idxHeader(dims: [3, 2, 3]) + pixels)
        XCTAssertEqual(Array(bytes[0..<4]), [0, 0, 8, 3])
        let images = try IDX.readImages(path: i)
        XCTAssertEqual(images.count, 3); XCTAssertEqual(images.rows, 2); XCTAssertEqual(images.columns, 3)
        XCTAssertEqual(images.pixels, pixels)
        XCTAssertEqual(try IDX.readLabels(path: l), labels)
        let set = try Dataset.loadIDX(images: i, labels: l)
        XCTAssertEqual(set.count, 3); XCTAssertEqual(set.featureCount, 6); XCTAssertEqual(set.classCount, 3)
        XCTAssertEqual(Array(try set.pixels(of: 1)), Array(pixels[6..<12]))
    }

    func testGzipRoundTrip() throws {
        let (i, l) = try writeSet(gzip: true)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: i)))
        XCTAssertEqual(Array(bytes[0..<2]), [0x1F, 0x8B])
        XCTAssertEqual(try IDX.readImages(path: i).pixels, pixels)
        XCTAssertEqual(try IDX.readLabels(path: l), labels)
    }

    func testGzipLargerThanOneChunkAndConcatenatedMembers() throws {
        // 100 images of 28 × 28 (78 400 bytes > the 64 KiB inflate chunk), split into two gzip members.
        var rng = SeededGenerator(seed: 3)
        let data = (0..<(100 * 784)).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 60) }
        let raw = try IDX.encode(.init(dimensions: [100, 28, 28], bytes: data))
        let p = try write(try Gzip.compress(Array(raw[..<30000])) + Gzip.compress(Array(raw[30000...])), "two-members.gz")
        let images = try IDX.readImages(path: p)
        XCTAssertEqual(images.count, 100)
        XCTAssertEqual(images.pixels, data)
    }

    func testBadMagic() throws {
        let p = try write([0x12, 0x34, 0x08, 0x03] + idxHeader(dims: [1, 1, 1]).dropFirst(4) + [0], "bad-magic")
        assertBadFile(try IDX.readImages(path: p), path: p, offset: 0, reason: "bad magic number 0x12340803")
    }

    func testUnsupportedElementType() throws {
        let p = try write(idxHeader(type: 0x0D, dims: [1, 1, 1]) + [0, 0, 0, 0], "float-idx")
        assertBadFile(try IDX.readImages(path: p), path: p, offset: 2, reason: "element type 0xD (float32)")
    }

    func testWrongDimensionCount() throws {
        // A label file (1 dimension) read as images, and an image file read as labels.
        let (i, l) = try writeSet(gzip: false)
        assertBadFile(try IDX.readImages(path: l), path: l, offset: 3, reason: "declares 1 dimension, expected 3")
        assertBadFile(try IDX.readLabels(path: i), path: i, offset: 3, reason: "declares 3 dimensions, expected 1")
        let zero = try write([0, 0, 8, 0], "rank0")
        assertBadFile(try IDX.read(path: zero), path: zero, offset: 3, reason: "declares 0 dimensions")
    }

    func testTruncatedHeaderAndData() throws {
        let header = try write(Array(idxHeader(dims: [3, 2, 3]).prefix(10)), "short-header")
        assertBadFile(try IDX.readImages(path: header), path: header, offset: 10, reason: "truncated")
        let data = try write(idxHeader(dims: [3, 2, 3]) + pixels.dropLast(2), "short-data")
        assertBadFile(try IDX.readImages(path: data), path: data, offset: 16 + 16, reason: "truncated")
        let labels = try write(idxHeader(dims: [5]) + [1, 2], "short-labels")
        assertBadFile(try IDX.readLabels(path: labels), path: labels, offset: 10, reason: "file ends after 2")
    }

    func testTruncatedGzipData() throws {
        // A gzip stream that is complete but holds less than the header claims: offset in the decompressed data.
        let p = try write(try Gzip.compress(idxHeader(dims: [3, 2, 3]) + pixels.dropLast(5)), "short.gz")
        assertBadFile(try IDX.readImages(path: p), path: p, offset: 16 + 13, reason: "data ends after 13")
    }

    func testExtraBytes() throws {
        let raw = try write(idxHeader(dims: [3, 2, 3]) + pixels + [9, 9], "extra")
        assertBadFile(try IDX.readImages(path: raw), path: raw, offset: 16 + 18, reason: "2 extra bytes")
        let gz = try write(try Gzip.compress(idxHeader(dims: [3]) + labels + [7]), "extra.gz")
        assertBadFile(try IDX.readLabels(path: gz), path: gz, offset: 8 + 3, reason: "extra bytes")
    }

    func testHugeClaimedCountIsRefusedBeforeAllocating() throws {
        // 2^31 images of 28 × 28 would be 1.6 TB: refused at the count field (offset 4).
        let p = try write(idxHeader(dims: [1 << 31, 28, 28]) + [1, 2, 3], "huge")
        assertBadFile(try IDX.readImages(path: p), path: p, offset: 4, reason: "header claims 2147483648 × … elements, more than the limit of \(IDX.defaultByteLimit) bytes")
        let labels = try write(idxHeader(dims: [UInt32.max]), "huge-labels")
        assertBadFile(try IDX.readLabels(path: labels), path: labels, offset: 4, reason: "4294967295 elements, more than the limit")
        // Under the limit but more than the file holds: "truncated", still before allocating.
        let big = try write(idxHeader(dims: [1_000_000, 28, 28]) + [1, 2, 3], "big")
        assertBadFile(try IDX.readImages(path: big), path: big, offset: 19, reason: "truncated: header claims 1000000 × 28 × 28")
        // A smaller limit applies to gzip headers too.
        let gz = try write(try Gzip.compress(idxHeader(dims: [2000])), "limit.gz")
        assertBadFile(try IDX.readLabels(path: gz, maxBytes: 1000), path: gz, offset: 4, reason: "more than the limit of 1000 bytes")
    }

    func testCorruptGzipStream() throws {
        let good = try Gzip.compress(idxHeader(dims: [3, 2, 3]) + pixels)
        // Byte 10 starts the deflate data; 0xFF makes its first block type 3 (invalid).
        var corrupt = good
        corrupt[10] = 0xFF
        let p = try write(corrupt, "corrupt.gz")
        assertBadFile(try IDX.readImages(path: p), path: p, offset: 11, reason: "corrupt gzip stream: invalid block type")
        // A wrong CRC-32 in the trailer (8 bytes from the end).
        var badCRC = good
        badCRC[good.count - 8] ^= 0x01
        let q = try write(badCRC, "crc.gz")
        assertBadFile(try IDX.readImages(path: q), path: q, offset: good.count - 4, reason: "incorrect data check")
        // Cut short: the stream ends inside the compressed data.
        let cut = try write(Array(good.prefix(good.count - 12)), "cut.gz")
        assertBadFile(try IDX.readImages(path: cut), path: cut, offset: good.count - 12, reason: "gzip stream ends early")
        // Garbage after the gzip member.
        let tail = try write(good + [0x41, 0x42, 0x43], "tail.gz")
        assertBadFile(try IDX.readImages(path: tail), path: tail, offset: good.count, reason: "3 unexpected bytes after the end of the gzip stream")
    }

    func testImageAndLabelCountsMustAgree() throws {
        let (i, _) = try writeSet(gzip: false)
        let l = path("two-labels")
        try IDX.write(.init(dimensions: [2], bytes: [0, 1]), to: l)
        assertBadFile(try Dataset.loadIDX(images: i, labels: l), path: l, offset: 4, reason: "holds 2 labels but \(i) holds 3 images")
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try IDX.readImages(path: path("absent"))) { error in
            guard case .io(let p, _)? = error as? BackpropError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, self.path("absent"))
        }
    }

    func testLoadMNISTFindsRawAndGzipNames() throws {
        let img = IDX.Contents(dimensions: [2, 2, 2], bytes: [0, 1, 2, 3, 4, 5, 6, 7])
        try IDX.write(img, to: path("train-images-idx3-ubyte.gz"), gzip: true)
        try IDX.write(.init(dimensions: [2], bytes: [9, 4]), to: path("train-labels-idx1-ubyte"))
        try IDX.write(.init(dimensions: [1, 2, 2], bytes: [7, 7, 7, 7]), to: path("t10k-images-idx3-ubyte"))
        try IDX.write(.init(dimensions: [1], bytes: [3]), to: path("t10k-labels.idx1-ubyte.gz"), gzip: true)
        let (train, test) = try Dataset.loadMNIST(directory: dir)
        XCTAssertEqual(train.count, 2); XCTAssertEqual(train.labels, [9, 4]); XCTAssertEqual(train.classCount, 10)
        XCTAssertEqual(test.count, 1); XCTAssertEqual(test.images, [7, 7, 7, 7]); XCTAssertEqual(test.rows, 2)
        try FileManager.default.removeItem(atPath: path("t10k-images-idx3-ubyte"))
        XCTAssertThrowsError(try Dataset.loadMNIST(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("t10k-images-idx3-ubyte"), "\(error)")
        }
    }

    /// Several threads write one destination at once for a while, IDX and PGM files (both go
    /// through `AtomicFile`), while this thread reads it. Each write has its own temporary file,
    /// so every write succeeds, every read sees exactly one writer's bytes, and no temporary file
    /// is left. With one fixed temporary name per process, the writers truncated and renamed each
    /// other's temporary file: renames failed with ENOENT and the destination mixed writers.
    func testConcurrentWritesToOneFileLeaveOneWholeFile() throws {
        let writers = 4, side = 512, size = side * side
        let destination = path("labels-idx1-ubyte"), picture = path("digit.pgm")
        let contents = (0..<writers).map { w in
            IDX.Contents(dimensions: [size], bytes: [UInt8](repeating: UInt8(w + 1), count: size))
        }
        let idxFiles = try contents.map { try IDX.encode($0) }
        let pgmFiles = try contents.map { try PGM.encode(width: side, height: side, pixels: $0.bytes) }
        final class Failures: @unchecked Sendable {
            let lock = NSLock()
            var errors: [String] = []
            func add(_ error: Error) { lock.lock(); errors.append("\(error)"); lock.unlock() }
        }
        let failures = Failures()
        let deadline = Date().addingTimeInterval(0.3), group = DispatchGroup()
        for w in 0..<writers {
            group.enter()
            Thread {   // a thread each, so the writers interleave even when one core is free
                var writes = 0
                repeat {
                    do {
                        try IDX.write(contents[w], to: destination)
                        try PGM.write(path: picture, width: side, height: side, pixels: contents[w].bytes)
                    } catch { failures.add(error) }
                    writes += 1
                } while writes < 3 || Date() < deadline
                group.leave()
            }.start()
        }
        var reads = 0, torn = 0
        while group.wait(timeout: .now() + .milliseconds(1)) == .timedOut {
            if let idx = try? Array(Data(contentsOf: URL(fileURLWithPath: destination))) {
                reads += 1
                if !idxFiles.contains(idx) { torn += 1 }
            }
        }
        XCTAssertEqual(failures.errors.first, nil, "\(failures.errors.count) writes failed")
        XCTAssertEqual(torn, 0, "reads that were not one writer's whole file, of \(reads)")
        XCTAssertTrue(idxFiles.contains(try Array(Data(contentsOf: URL(fileURLWithPath: destination)))), "the IDX file is one writer's, whole")
        XCTAssertTrue(pgmFiles.contains(try Array(Data(contentsOf: URL(fileURLWithPath: picture)))), "the PGM file is one writer's, whole")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["digit.pgm", "labels-idx1-ubyte"])
    }
}
