import Backprop

/// Netpbm grey images (PGM), for `backprop predict`: binary `P5` and plain-text `P2`, with a
/// maximum value of at most 255 (one byte per pixel). Pixels are rescaled to 0…255 when the
/// maximum is smaller: round(v · 255 / maxval).
///
///     P5            ← magic (P2 for the text form)
///     # comment     ← comments run from '#' to the end of the line, anywhere in the header
///     28 28         ← width height
///     255           ← maxval, then ONE whitespace byte, then width × height bytes (P5)
///
/// Errors are `BackpropError.badFile` naming the file and the byte offset.
public enum PGM {
    /// Largest file accepted: 64 MiB.
    public static let byteLimit = 64 << 20

    public static func read(path: String) throws -> (width: Int, height: Int, pixels: [UInt8]) {
        let bytes = try readFileBytes(path, limit: byteLimit)
        return try decode(bytes, path: path)
    }

    /// Parses PGM bytes; `path` only names the source in errors.
    public static func decode(_ b: [UInt8], path: String) throws -> (width: Int, height: Int, pixels: [UInt8]) {
        func bad(_ offset: Int, _ reason: String) -> BackpropError { .badFile(path: path, offset: offset, reason: reason) }
        guard b.count >= 2, b[0] == UInt8(ascii: "P"), b[1] == UInt8(ascii: "5") || b[1] == UInt8(ascii: "2") else {
            let shown = String(decoding: b.prefix(2), as: UTF8.self)
            throw bad(0, "not a PGM image: magic '\(shown)', expected 'P5' (binary) or 'P2' (text)")
        }
        let binary = b[1] == UInt8(ascii: "5")
        var i = 2

        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C }
        func skipSpaceAndComments() {
            while i < b.count {
                if isSpace(b[i]) { i += 1 } else if b[i] == UInt8(ascii: "#") {
                    while i < b.count, b[i] != 0x0A, b[i] != 0x0D { i += 1 }
                } else { break }
            }
        }
        // A decimal number, preceded by whitespace or comments.
        func number(_ what: String, requireSpaceBefore: Bool = true) throws -> (value: Int, offset: Int) {
            let before = i
            skipSpaceAndComments()
            if requireSpaceBefore, i == before, i < b.count {
                throw bad(i, "expected whitespace before the \(what)")
            }
            let start = i
            var value = 0
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
                value = value * 10 + Int(b[i] - UInt8(ascii: "0"))
                i += 1
                if value > 1 << 30 { throw bad(start, "\(what) is too large") }
            }
            guard i > start else {
                throw bad(start, i < b.count ? "expected the \(what) (a decimal number), found byte 0x\(String(b[i], radix: 16))"
                                             : "file ends before the \(what)")
            }
            return (value, start)
        }

        let (width, widthAt) = try number("width")
        let (height, _) = try number("height")
        let (maxval, maxAt) = try number("maximum value")
        guard width > 0, height > 0 else { throw bad(widthAt, "image size \(width) × \(height) is empty") }
        guard (1...255).contains(maxval) else {
            throw bad(maxAt, "maximum value \(maxval) is outside 1…255 (16-bit PGM is not supported)")
        }
        let (n, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, n <= b.count else {
            throw bad(widthAt, "header claims \(width) × \(height) pixels, more than the file's \(b.count) bytes can hold")
        }
        var pixels: [UInt8] = []
        pixels.reserveCapacity(n)
        if binary {
            guard i < b.count, isSpace(b[i]) else {
                throw bad(i, "expected one whitespace byte after the maximum value")
            }
            i += 1
            let available = b.count - i
            guard available >= n else {
                throw bad(b.count, "truncated: \(width) × \(height) = \(n) pixel bytes from byte \(i), file ends after \(available)")
            }
            guard available == n else {
                throw bad(i + n, "\(available - n) extra bytes after the \(n) pixel bytes")
            }
            for k in i..<(i + n) {
                guard b[k] <= maxval else { throw bad(k, "pixel value \(b[k]) exceeds the maximum value \(maxval)") }
                pixels.append(b[k])
            }
        } else {
            for k in 0..<n {
                let (v, at) = try number("pixel \(k)")
                guard v <= maxval else { throw bad(at, "pixel \(k) value \(v) exceeds the maximum value \(maxval)") }
                pixels.append(UInt8(v))
            }
            skipSpaceAndComments()
            guard i == b.count else { throw bad(i, "unexpected data after the \(n) pixels") }
        }
        if maxval != 255 {
            for k in 0..<n { pixels[k] = UInt8((Int(pixels[k]) * 255 + maxval / 2) / maxval) }
        }
        return (width, height, pixels)
    }

    /// Encodes a binary (P5) PGM with maxval 255.
    public static func encode(width: Int, height: Int, pixels: [UInt8]) throws -> [UInt8] {
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height) == (pixels.count, false) else {
            throw BackpropError.shapeMismatch(where: "PGM.encode", detail: "\(width) × \(height) image, \(pixels.count) pixels given")
        }
        return Array("P5\n\(width) \(height)\n255\n".utf8) + pixels
    }

    /// Writes a binary (P5) PGM atomically (`AtomicFile`), e.g. an MNIST example to try
    /// `backprop predict` on.
    public static func write(path: String, width: Int, height: Int, pixels: [UInt8]) throws {
        try AtomicFile.write(encode(width: width, height: height, pixels: pixels), to: path)
    }
}
