import Foundation
import XCTest
import Backprop
@testable import BackpropData
#if canImport(Glibc)
import Glibc
#endif

/// Data files claiming absurd sizes are refused before the claimed amount is allocated.
final class AbsurdSizeTests: DataTestCase {
    /// A sparse file of `size` bytes starting with `prefix` (takes no disk space), or skip.
    func sparse(_ name: String, size: Int, prefix: [UInt8]) throws -> String {
        let p = try write(prefix, name)
        guard truncate(p, off_t(size)) == 0 else { throw XCTSkip("cannot make a sparse \(size)-byte file here") }
        return p
    }

    func testIDXClaiming2To31ImagesRawAndGzip() throws {
        let header = idxHeader(dims: [1 << 31, 28, 28])
        let raw = try write(header, "huge")
        assertBadFile(try IDX.readImages(path: raw), path: raw, offset: 4, reason: "more than the limit")
        let gz = try write(try Gzip.compress(header + [UInt8](repeating: 0, count: 1000)), "huge.gz")
        assertBadFile(try IDX.readImages(path: gz), path: gz, offset: 4, reason: "more than the limit")
        // Eight dimensions of 2^32 − 1: the product overflows Int; caught at the second size.
        let overflow = try write(idxHeader(dims: [UInt32](repeating: .max, count: 8)), "overflow")
        assertBadFile(try IDX.read(path: overflow), path: overflow, offset: 4, reason: "more than the limit")
    }

    func testFilesLargerThanTheLimitAreNotRead() throws {
        // 2 GiB (sparse) IDX file whose header matches its size: refused by size before reading.
        let n = 1 << 31
        let idx = try sparse("big-idx", size: 8 + n, prefix: idxHeader(dims: [UInt32(n)]))
        XCTAssertThrowsError(try IDX.readLabels(path: idx)) { error in
            XCTAssertEqual(error as? BackpropError, .badFile(path: idx, offset: nil,
                reason: "file is \(8 + n) bytes, more than the limit of \(IDX.defaultByteLimit) bytes"))
        }
        let csv = try sparse("big.csv", size: 3 << 30, prefix: Array("1,2,3\n".utf8))
        XCTAssertThrowsError(try CSV.read(path: csv)) { error in
            XCTAssertTrue("\(error)".contains("more than the limit of \(CSV.defaultByteLimit) bytes"), "\(error)")
        }
        let pgm = try sparse("big.pgm", size: 100 << 20, prefix: Array("P5 10000 10000 255\n".utf8))
        XCTAssertThrowsError(try PGM.read(path: pgm)) { error in
            XCTAssertTrue("\(error)".contains("more than the limit of \(PGM.byteLimit) bytes"), "\(error)")
        }
    }

    func testPGMClaimingAHugeImage() throws {
        let p = try write(Array("P5 1000000000 1000000000 255\n".utf8) + [1, 2, 3], "huge.pgm")
        assertBadFile(try PGM.read(path: p), path: p, offset: 3, reason: "more than the file's")
        let q = try write(Array("P2 99999999999 1 255\n".utf8), "wide.pgm")
        assertBadFile(try PGM.read(path: q), path: q, offset: 3, reason: "too large")
    }
}
