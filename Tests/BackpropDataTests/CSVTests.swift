import XCTest
import Backprop
@testable import BackpropData

final class CSVTests: DataTestCase {
    func testReadsHeaderCRLFBlankLinesAndSpaces() throws {
        let text = "label,1x1,1x2,2x1,2x2\n3,0,255,7,8\r\n\n1, 1 ,2,3,\t4\n"
        let p = try write(text, "small.csv")
        let set = try CSV.read(path: p)
        XCTAssertEqual(set.labels, [3, 1])
        XCTAssertEqual(set.images, [0, 255, 7, 8, 1, 2, 3, 4])
        XCTAssertEqual(set.rows, 2); XCTAssertEqual(set.columns, 2); XCTAssertEqual(set.classCount, 4)
        // Without a header and with a non-square pixel count: 1 × 3.
        let q = try write("0,1,2,3\n2,4,5,6", "noheader.csv")
        let flat = try CSV.read(path: q)
        XCTAssertEqual(flat.labels, [0, 2]); XCTAssertEqual(flat.rows, 1); XCTAssertEqual(flat.columns, 3)
        // An explicit shape.
        let shaped = try CSV.read(path: q, rows: 3, columns: 1)
        XCTAssertEqual(shaped.rows, 3); XCTAssertEqual(shaped.images, [1, 2, 3, 4, 5, 6])
    }

    func testGzipCSV() throws {
        let p = try write(try Gzip.compress(Array("5,9,8,7,6\n".utf8)), "one.csv.gz")
        let set = try CSV.read(path: p)
        XCTAssertEqual(set.labels, [5]); XCTAssertEqual(set.images, [9, 8, 7, 6])
    }

    func testBadCellNamesLineAndOffset() throws {
        let text = "label,a,b\n1,2,3\n4,x5,6\n"
        let p = try write(text, "bad.csv")
        // "x5" starts at byte 18 (10 + 6 + 2) on line 3.
        assertBadFile(try CSV.read(path: p), path: p, offset: 18, reason: "line 3: cell 2 (pixel 1) 'x5' is not an integer")
        let empty = try write("1,2,3\n4,5,\n", "empty.csv")
        assertBadFile(try CSV.read(path: empty), path: empty, offset: 10, reason: "line 2: cell 3 (pixel 2) is empty")
        let negative = try write("1,-2,3\n", "neg.csv", )
        assertBadFile(try CSV.read(path: negative), path: negative, offset: 2, reason: "'-2' is not an integer")
    }

    func testValuesOutside0To255() throws {
        let pixel = try write("1,2,3\n4,256,6\n", "pixel.csv")
        assertBadFile(try CSV.read(path: pixel), path: pixel, offset: 8, reason: "line 2: cell 2: pixel value 256 is outside 0…255")
        let label = try write("1,2,3\n\n300,5,6\n", "label.csv")
        assertBadFile(try CSV.read(path: label), path: label, offset: 7, reason: "line 3: cell 1: label 300 is outside 0…255")
        let long = try write("1,00000000000000000000001,3\n", "long.csv")
        XCTAssertEqual(try CSV.read(path: long).images, [1, 3])  // leading zeros are fine
        let huge = try write("1,99999999999999999999999,3\n", "huge.csv")
        assertBadFile(try CSV.read(path: huge), path: huge, offset: 2, reason: "outside 0…255")
    }

    func testWrongCellCount() throws {
        let fewer = try write("1,2,3\n4,5\n", "fewer.csv")
        assertBadFile(try CSV.read(path: fewer), path: fewer, offset: 6, reason: "line 2: 1 pixels, expected 2")
        let more = try write("1,2,3\n4,5,6,7\n", "more.csv")
        assertBadFile(try CSV.read(path: more), path: more, offset: 12, reason: "line 2: more than 2 pixels")
        let shaped = try write("1,2,3\n", "shaped.csv")
        assertBadFile(try CSV.read(path: shaped, rows: 2, columns: 2), path: shaped, offset: 0, reason: "2 pixels, expected 4")
        let headerOnly = try write("label,a\n", "header-only.csv")
        assertBadFile(try CSV.read(path: headerOnly), path: headerOnly, offset: 8, reason: "no data lines")
    }

    func testDecompressedSizeIsBounded() throws {
        // 400 000 bytes of CSV compress to about 1 KB; a 100 000-byte limit stops the inflation.
        let text = String(repeating: "0,0,0\n", count: 400_000 / 6)
        let p = try write(try Gzip.compress(Array(text.utf8)), "bomb.csv.gz")
        assertBadFile(try CSV.read(path: p, maxBytes: 100_000), path: p, offset: 100_000, reason: "exceeds the limit of 100000 bytes")
    }
}
