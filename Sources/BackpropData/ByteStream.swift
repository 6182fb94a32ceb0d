import Backprop
import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sequential reader over a file's bytes: the file itself, or — when it starts with the gzip
/// magic 1f 8b — its decompressed content, inflated in process by zlib a chunk at a time.
///
/// `position` counts bytes of the (decompressed) stream, so format errors name the offset a
/// reader of the uncompressed file would see; `describe(offset)` says which stream it is.
/// Decompressed output is bounded by `limit`: a gzip bomb fails before memory is spent on it.
final class ByteStream {
    let path: String
    let isGzip: Bool
    let limit: Int
    private(set) var position = 0
    private let file: [UInt8]
    private var inflater: Inflater?
    private var streamEnded = false
    private let scratch: UnsafeMutableRawBufferPointer   // 64 KiB inflate chunk

    static let gzipMagic: (UInt8, UInt8) = (0x1F, 0x8B)

    init(path: String, limit: Int) throws {
        self.path = path
        self.limit = limit
        // The file itself (compressed or not) is bounded by the same limit.
        file = try readFileBytes(path, limit: limit)
        isGzip = file.count >= 2 && file[0] == ByteStream.gzipMagic.0 && file[1] == ByteStream.gzipMagic.1
        if isGzip { inflater = try Inflater(path: path) }
        // Allocated last: nothing can throw afterwards, so deinit always frees it.
        scratch = .allocate(byteCount: 1 << 16, alignment: 64)
    }

    deinit { scratch.deallocate() }

    /// Bytes left in a raw file (exact); nil for gzip, whose length is known only by inflating.
    var remainingIfKnown: Int? { isGzip ? nil : file.count - position }

    /// "byte N" for raw files, "byte N of the decompressed stream" for gzip files.
    func describe(_ offset: Int) -> String { isGzip ? "byte \(offset) of the decompressed data" : "byte \(offset)" }

    /// For gzip files, " (in the decompressed data)" — the error's offset is not a file offset.
    var offsetNote: String { isGzip ? " (offset in the decompressed data)" : "" }

    /// Appends up to `count` bytes to `output`; returns how many were appended (fewer only at end).
    @discardableResult
    func read(_ count: Int, appendingTo output: inout [UInt8]) throws -> Int {
        precondition(count >= 0)
        if count == 0 { return 0 }
        if !isGzip {
            let n = min(count, file.count - position)
            output.append(contentsOf: file[position..<(position + n)])
            position += n
            return n
        }
        // Inflate a chunk at a time into a scratch buffer, then append: the output grows only
        // as data actually arrives, so a header claiming more than the stream holds costs nothing.
        var produced = 0
        while produced < count, !streamEnded {
            let want = min(scratch.count, count - produced)
            let got = try inflate(into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<want]))
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<got]))
            produced += got
            position += got
            if position > limit {
                throw BackpropError.badFile(path: path, offset: limit,
                                            reason: "decompressed data exceeds the limit of \(limit) bytes")
            }
        }
        return produced
    }

    /// Reads exactly `count` bytes or throws "truncated", naming what was being read.
    func readExactly(_ count: Int, what: String) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        let start = position
        let n = try read(count, appendingTo: &out)
        guard n == count else {
            throw BackpropError.badFile(path: path, offset: position,
                                        reason: "truncated: \(what) needs \(count) bytes from \(describe(start)), file ends after \(n)")
        }
        return out
    }

    /// Everything left in the stream (bounded by `limit`).
    func readToEnd() throws -> [UInt8] {
        if !isGzip {
            let rest = Array(file[position...])
            position = file.count
            return rest
        }
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, max(file.count * 4, 1 << 16)))
        while try read(1 << 20, appendingTo: &out) > 0 {}
        return out
    }

    /// True when no byte is left; otherwise consumes one byte (used to detect trailing data).
    func atEnd() throws -> Bool {
        var probe: [UInt8] = []
        return try read(1, appendingTo: &probe) == 0
    }

    // Inflates into `destination`; returns the byte count (0 only at the end of the stream).
    private func inflate(into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let inflater else { return 0 }
        var produced = 0
        try file.withUnsafeBufferPointer { input in
            let z = inflater.stream
            while produced < destination.count, !streamEnded {
                let consumed = inflater.consumed
                z.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress.map { $0 + consumed })
                z.pointee.avail_in = UInt32(input.count - consumed)
                z.pointee.next_out = destination.baseAddress.map { $0.assumingMemoryBound(to: Bytef.self) + produced }
                z.pointee.avail_out = UInt32(destination.count - produced)
                let status = CZlib.inflate(z, Z_NO_FLUSH)
                let used = Int(UInt32(input.count - consumed) - z.pointee.avail_in)
                let made = (destination.count - produced) - Int(z.pointee.avail_out)
                inflater.consumed += used
                produced += made
                switch status {
                case Z_OK:
                    if used == 0 && made == 0 {
                        throw BackpropError.badFile(path: path, offset: inflater.consumed,
                                                    reason: "gzip stream ends early (truncated file)")
                    }
                case Z_STREAM_END:
                    // Another gzip member may follow (concatenated gzip is legal); anything else is garbage.
                    let rest = input.count - inflater.consumed
                    if rest == 0 {
                        streamEnded = true
                    } else if rest >= 2, input[inflater.consumed] == ByteStream.gzipMagic.0,
                              input[inflater.consumed + 1] == ByteStream.gzipMagic.1 {
                        guard inflateReset(z) == Z_OK else {
                            throw BackpropError.badFile(path: path, offset: inflater.consumed, reason: "cannot reset zlib")
                        }
                    } else {
                        throw BackpropError.badFile(path: path, offset: inflater.consumed,
                                                    reason: "\(rest) unexpected bytes after the end of the gzip stream")
                    }
                case Z_BUF_ERROR:
                    if z.pointee.avail_in == 0 {
                        throw BackpropError.badFile(path: path, offset: inflater.consumed,
                                                    reason: "gzip stream ends early (truncated file)")
                    }
                default:
                    let message = z.pointee.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw BackpropError.badFile(path: path, offset: inflater.consumed,
                                                reason: "corrupt gzip stream: \(message)")
                }
            }
        }
        return produced
    }
}

/// Owns a zlib inflate state at a stable address.
private final class Inflater {
    let stream: UnsafeMutablePointer<z_stream>
    var consumed = 0

    init(path: String) throws {
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 + 16: gzip wrapper only (header and CRC-32 / length trailer checked).
        let status = inflateInit2_(stream, MAX_WBITS + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deallocate()
            throw BackpropError.io(path: path, reason: "zlib inflateInit2 failed (\(status))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }
}

/// gzip compression and decompression of in-memory bytes through zlib (no shell, no Foundation).
public enum Gzip {
    /// True when `bytes` start with the gzip magic 1f 8b.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// gzip-compresses `bytes` (level 0…9, default 6). Output is deterministic (no name, mtime 0).
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) throws -> [UInt8] {
        guard (0...9).contains(level) else { throw BackpropError.invalidArgument("gzip level \(level) outside 0...9") }
        var z = z_stream()
        guard deflateInit2_(&z, level, Z_DEFLATED, MAX_WBITS + 16, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw BackpropError.invalidArgument("zlib deflateInit2 failed")
        }
        defer { deflateEnd(&z) }
        let bound = Int(deflateBound(&z, uLong(bytes.count)))
        var status: Int32 = Z_OK
        let output = [UInt8](unsafeUninitializedCapacity: bound) { out, written in
            bytes.withUnsafeBufferPointer { input in
                z.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                z.avail_in = UInt32(input.count)
                z.next_out = out.baseAddress
                z.avail_out = UInt32(out.count)
                status = deflate(&z, Z_FINISH)
                written = out.count - Int(z.avail_out)
            }
        }
        guard status == Z_STREAM_END else {
            throw BackpropError.invalidArgument("zlib deflate failed (\(status))")
        }
        return output
    }
}

/// Reads a whole file into memory, refusing files larger than `limit` bytes before allocating.
func readFileBytes(_ path: String, limit: Int) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else {
        throw BackpropError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var info = stat()
    guard fstat(fileno(file), &info) == 0 else {
        throw BackpropError.io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
        throw BackpropError.io(path: path, reason: "not a regular file")
    }
    let size = Int(info.st_size)
    guard size <= limit else {
        throw BackpropError.badFile(path: path, offset: nil,
                                    reason: "file is \(size) bytes, more than the limit of \(limit) bytes")
    }
    var readError: Int32 = 0
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        initialized = size == 0 ? 0 : fread(buffer.baseAddress, 1, size, file)
        if initialized < size { readError = ferror(file) != 0 ? errno : -1 }
    }
    guard readError == 0 else {
        let why = readError > 0 ? String(cString: strerror(readError)) : "file shrank while reading"
        throw BackpropError.io(path: path, reason: "read failed after \(bytes.count) of \(size) bytes: \(why)")
    }
    return bytes
}
