import Backprop

/// The IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/), raw or gzip-compressed.
///
///     offset 0   u8 0, u8 0          magic, first half (always zero)
///     offset 2   u8 type             0x08 = unsigned byte (the only type read here)
///     offset 3   u8 n                number of dimensions
///     offset 4   u32 × n, big-endian sizes, outermost first
///     offset 4+4n  the data, row-major, one byte per element
///
/// MNIST images are magic 0x00000803 (3 dimensions: count, rows, columns); labels 0x00000801
/// (1 dimension: count). Everything is validated before the data is allocated: the magic, the
/// type, the dimension count, each size, and the total against the file (raw: exact; gzip: the
/// decompressed length, with truncation and trailing bytes detected) and against `maxBytes`.
/// Errors are `BackpropError.badFile` naming the file and the byte offset.
public enum IDX {
    /// Largest data (decompressed) a reader accepts by default: 1 GiB.
    public static let defaultByteLimit = 1 << 30

    /// An IDX array of unsigned bytes: its sizes (outermost first) and row-major elements.
    public struct Contents: Equatable, Sendable {
        public var dimensions: [Int]
        public var bytes: [UInt8]
        public init(dimensions: [Int], bytes: [UInt8]) {
            self.dimensions = dimensions
            self.bytes = bytes
        }
    }

    private static let typeNames: [UInt8: String] = [
        0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64",
    ]

    /// Reads an unsigned-byte IDX file with any number of dimensions (1…8), or exactly
    /// `expectedDimensions` when given.
    public static func read(path: String, expectedDimensions: Int? = nil,
                            maxBytes: Int = defaultByteLimit) throws -> Contents {
        let stream = try ByteStream(path: path, limit: maxBytes)
        func bad(_ offset: Int, _ reason: String) -> BackpropError {
            .badFile(path: path, offset: offset, reason: reason)
        }
        let magic = try stream.readExactly(4, what: "the IDX magic number")
        let magicValue = magic.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let magicText = "0x" + String(magicValue, radix: 16, uppercase: true).leftPadded(to: 8)
        guard magic[0] == 0, magic[1] == 0 else {
            throw bad(0, "bad magic number \(magicText): an IDX file starts with two zero bytes")
        }
        guard magic[2] == 0x08 else {
            let name = typeNames[magic[2]].map { " (\($0))" } ?? ""
            throw bad(2, "unsupported IDX element type 0x\(String(magic[2], radix: 16, uppercase: true))\(name) in magic \(magicText); only 0x08 (unsigned byte) is read")
        }
        let rank = Int(magic[3])
        if let expectedDimensions, rank != expectedDimensions {
            let want = "0x000008" + String(expectedDimensions, radix: 16).leftPadded(to: 2)
            throw bad(3, "magic \(magicText) declares \(rank) dimension\(rank == 1 ? "" : "s"), expected \(expectedDimensions) (magic \(want))")
        }
        guard (1...8).contains(rank) else {
            throw bad(3, "magic \(magicText) declares \(rank) dimensions; 1…8 are accepted")
        }
        let header = try stream.readExactly(4 * rank, what: "\(rank) dimension sizes")
        var dimensions: [Int] = []
        var total = 1
        for i in 0..<rank {
            let b = header[(4 * i)..<(4 * i + 4)]
            let size = Int(b.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow, product <= maxBytes else {
                let sizes = (dimensions + [size]).map(String.init).joined(separator: " × ")
                throw bad(4 + 4 * i, "header claims \(sizes)\(i + 1 < rank ? " × …" : "") elements, more than the limit of \(maxBytes) bytes")
            }
            dimensions.append(size)
            total = product
        }
        let dataStart = 4 + 4 * rank
        let shape = dimensions.map(String.init).joined(separator: " × ")
        let declared = rank == 1 ? "\(total) bytes" : "\(shape) = \(total) bytes"
        // Raw file: its length is known, so a wrong length is reported before any allocation.
        if let available = stream.remainingIfKnown {
            if available < total {
                throw bad(dataStart + available, "truncated: header claims \(declared) of data from byte \(dataStart), file ends after \(available)")
            }
            if available > total {
                throw bad(dataStart + total, "\(available - total) extra bytes after the \(declared) of data the header declares")
            }
        }
        // gzip: grow as data arrives (a header claiming more than the stream holds costs nothing).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(total, stream.isGzip ? 64 << 20 : total))
        let got = try stream.read(total, appendingTo: &bytes)
        guard got == total else {
            throw bad(dataStart + got, "truncated: header claims \(declared) of data from \(stream.describe(dataStart)), data ends after \(got)")
        }
        let end = stream.position
        guard try stream.atEnd() else {
            throw bad(end, "extra bytes after the \(declared) of data the header declares\(stream.offsetNote)")
        }
        return Contents(dimensions: dimensions, bytes: bytes)
    }

    /// Reads an image file (magic 0x00000803): `count` images of `rows × columns` bytes.
    public static func readImages(path: String, maxBytes: Int = defaultByteLimit) throws
        -> (count: Int, rows: Int, columns: Int, pixels: [UInt8]) {
        let c = try read(path: path, expectedDimensions: 3, maxBytes: maxBytes)
        guard c.dimensions[1] > 0, c.dimensions[2] > 0 else {
            throw BackpropError.badFile(path: path, offset: c.dimensions[1] > 0 ? 12 : 8,
                                        reason: "image size \(c.dimensions[1]) × \(c.dimensions[2]) is empty")
        }
        return (c.dimensions[0], c.dimensions[1], c.dimensions[2], c.bytes)
    }

    /// Reads a label file (magic 0x00000801): one byte per example.
    public static func readLabels(path: String, maxBytes: Int = defaultByteLimit) throws -> [UInt8] {
        try read(path: path, expectedDimensions: 1, maxBytes: maxBytes).bytes
    }

    /// The bytes of an unsigned-byte IDX file.
    public static func encode(_ contents: Contents) throws -> [UInt8] {
        guard (1...255).contains(contents.dimensions.count),
              contents.dimensions.allSatisfy({ $0 >= 0 && $0 <= Int(UInt32.max) }) else {
            throw BackpropError.invalidArgument("IDX dimensions \(contents.dimensions) cannot be written")
        }
        let total = contents.dimensions.reduce(1, *)
        guard total == contents.bytes.count else {
            throw BackpropError.shapeMismatch(where: "IDX.encode",
                                              detail: "dimensions \(contents.dimensions) hold \(total) bytes, \(contents.bytes.count) given")
        }
        var out: [UInt8] = [0, 0, 0x08, UInt8(contents.dimensions.count)]
        out.reserveCapacity(4 + 4 * contents.dimensions.count + total)
        for d in contents.dimensions {
            let v = UInt32(d)
            out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
        }
        out += contents.bytes
        return out
    }

    /// Writes an unsigned-byte IDX file, gzip-compressed when `gzip` is true, atomically
    /// (`AtomicFile`).
    public static func write(_ contents: Contents, to path: String, gzip: Bool = false) throws {
        var bytes = try encode(contents)
        if gzip { bytes = try Gzip.compress(bytes) }
        try AtomicFile.write(bytes, to: path)
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
