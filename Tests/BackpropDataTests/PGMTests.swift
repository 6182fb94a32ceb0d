import XCTest
import Backprop
@testable import BackpropData

final class PGMTests: DataTestCase {
    func testBinaryRoundTrip() throws {
        let pixels: [UInt8] = [0, 17, 128, 255, 3, 4]
        let p = path("digit.pgm")
        try PGM.write(path: p, width: 3, height: 2, pixels: pixels)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: p)))
        XCTAssertEqual(bytes, Array("P5\n3 2\n255\n".utf8) + pixels)
        let image = try PGM.read(path: p)
        XCTAssertEqual(image.width, 3); XCTAssertEqual(image.height, 2); XCTAssertEqual(image.pixels, pixels)
    }

    func testASCIIFixtureWithCommentsAndSmallMaxval() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "tiny", withExtension: "pgm", subdirectory: "Fixtures"))
        let image = try PGM.read(path: url.path)
        XCTAssertEqual(image.width, 4); XCTAssertEqual(image.height, 3)
        // maxval 15: v ↦ round(v · 255 / 15) = 17 v exactly.
        XCTAssertEqual(image.pixels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15].map { UInt8($0 * 17) })
        // maxval 7: round(v · 255 / 7): 3 ↦ 109.29 → 109, 4 ↦ 145.71 → 146.
        let q = try write("P2 2 1 7 3 4", "seven.pgm")
        XCTAssertEqual(try PGM.read(path: q).pixels, [109, 146])
    }

    func testBadHeaders() throws {
        let p6 = try write("P6\n1 1\n255\n\u{0}\u{0}\u{0}", "colour.ppm")
        assertBadFile(try PGM.read(path: p6), path: p6, offset: 0, reason: "not a PGM image: magic 'P6'")
        let wide = try write("P5\n2 1\n65535\n\u{0}\u{0}\u{0}\u{0}", "wide.pgm")
        assertBadFile(try PGM.read(path: wide), path: wide, offset: 7, reason: "maximum value 65535 is outside 1…255")
        let word = try write("P2\n2 x\n255\n1 2\n", "word.pgm")
        assertBadFile(try PGM.read(path: word), path: word, offset: 5, reason: "expected the height")
        let empty = try write("P5\n0 3\n255\n", "empty.pgm")
        assertBadFile(try PGM.read(path: empty), path: empty, offset: 3, reason: "image size 0 × 3 is empty")
        let huge = try write("P5\n100000 100000\n255\n\u{0}", "huge.pgm")
        assertBadFile(try PGM.read(path: huge), path: huge, offset: 3, reason: "more than the file's")
    }

    func testBadPixelData() throws {
        let short = try write(Array("P5\n2 2\n255\n".utf8) + [1, 2, 3], "short.pgm")
        assertBadFile(try PGM.read(path: short), path: short, offset: 14, reason: "truncated")
        let extra = try write(Array("P5\n1 1\n255\n".utf8) + [1, 2], "extra.pgm")
        assertBadFile(try PGM.read(path: extra), path: extra, offset: 12, reason: "1 extra bytes")
        let above = try write(Array("P5\n2 1\n100\n".utf8) + [100, 101], "above.pgm")
        assertBadFile(try PGM.read(path: above), path: above, offset: 12, reason: "pixel value 101 exceeds the maximum value 100")
        let text = try write("P2 2 1 255 1 300", "text.pgm")
        assertBadFile(try PGM.read(path: text), path: text, offset: 13, reason: "pixel 1 value 300 exceeds")
        let missing = try write("P2 2 1 255 1", "missing.pgm")
        assertBadFile(try PGM.read(path: missing), path: missing, offset: 12, reason: "file ends before the pixel 1")
    }
}
