import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing the safetensors format (Hugging Face), the engine's model and fixture files.
///
///     bytes 0..<8         N, the header length, UInt64 little-endian
///     bytes 8..<8+N       UTF-8 JSON object, padded with spaces (0x20):
///                           { "__metadata__": {"key": "value", …},          (optional, strings only)
///                             "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, … }
///     bytes 8+N..<end     the data buffer; each tensor occupies buffer[begin..<end], row-major, little-endian
///
/// Like the reference implementation (huggingface/safetensors, `tensor.rs`), the reader refuses
/// headers above 100 MB, requires `end − begin = elements × dtype size`, and requires the tensors'
/// byte ranges to tile the buffer exactly: sorted by `begin` they start at 0, each begins where
/// the previous one ends (no gap, no overlap), and the last ends at the end of the file.
/// Every violation is a `BackpropError.badFile(path:offset:reason:)` naming the absolute byte offset.
///
/// Reading turns F32, F64, F16, BF16, I64, I32, I16, I8, U8 and BOOL tensors into Float32 tensors
/// (integers only when every value is exactly representable in Float32, |v| ≤ 2^24; F64 rounds to
/// nearest). The original dtype of each tensor is kept in `dtypes`; integer tensors can be read
/// exactly with `int64Values(_:)`. Writing stores F32 only, names sorted, and is atomic.
public struct SafetensorsFile {
    /// The tensors as Float32 (integer tensors with values beyond ±2^24 are absent here; read them
    /// with `int64Values`).
    public var tensors: [String: Tensor]
    /// The `__metadata__` string map (empty when absent).
    public var metadata: [String: String]
    /// Tensor names in the order they appear in the header (for a file built in memory: sorted;
    /// not updated when `tensors` changes — `serialized()` always writes names sorted).
    public var order: [String]
    /// Original dtype of each tensor read from a file (`"F32"`, `"I64"`, …); `"F32"` for tensors
    /// added in memory.
    public var dtypes: [String: String]
    /// Raw little-endian bytes of every non-F32 tensor read from a file, for exact access.
    private var raw: [String: [UInt8]] = [:]
    /// Path of the file this came from (for error messages), or `"<memory>"`.
    public private(set) var path: String = "<memory>"

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    /// A file to be written: `tensors` must be Float32 (every `Tensor` is).
    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
        self.order = tensors.keys.sorted()
        self.dtypes = tensors.mapValues { _ in "F32" }
    }

    /// The tensor named `name`, or a `badFile` error naming the file and the missing tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            if dtypes[name] != nil {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "tensor '\(name)' (\(dtypes[name] ?? "?")) has values not representable as Float32; read it with int64Values")
            }
            throw BackpropError.badFile(path: path, offset: nil, reason: "no tensor named '\(name)'")
        }
        return t
    }

    /// Exact values of an integer (I64, I32, I16, I8, U8, BOOL) tensor, or of a float tensor whose
    /// values are all whole numbers within Int64 range.
    public func int64Values(_ name: String) throws -> [Int64] {
        guard let dtype = dtypes[name] else {
            throw BackpropError.badFile(path: path, offset: nil, reason: "no tensor named '\(name)'")
        }
        if let bytes = raw[name], let kind = SafetensorsDType(rawValue: dtype), kind.isInteger {
            return bytes.withUnsafeBytes { kind.int64Values($0) }
        }
        let t = try tensor(name)
        var out = [Int64](); out.reserveCapacity(t.count)
        for i in 0..<t.count {
            let v = t.data[i]
            guard v.rounded() == v, abs(v) < 9.2e18 else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "tensor '\(name)' (\(dtype)) holds \(v) at index \(i), not an integer")
            }
            out.append(Int64(v))
        }
        return out
    }

    /// Integer labels as `[Int32]` (what `SoftmaxCrossEntropy` takes), range-checked.
    public func int32Values(_ name: String) throws -> [Int32] {
        try int64Values(name).enumerated().map { i, v in
            guard let w = Int32(exactly: v) else {
                throw BackpropError.badFile(path: path, offset: nil, reason: "tensor '\(name)' value \(v) at index \(i) does not fit Int32")
            }
            return w
        }
    }

    // MARK: - Reading

    /// Reads and validates a safetensors file.
    public static func read(path: String) throws -> SafetensorsFile {
        try read(data: readWholeFile(path), path: path)
    }

    /// Parses and validates safetensors bytes; `path` names the source in error messages.
    public static func read(data: [UInt8], path: String) throws -> SafetensorsFile {
        func bad(_ offset: Int?, _ reason: String) -> BackpropError {
            .badFile(path: path, offset: offset, reason: reason)
        }
        guard data.count >= 8 else {
            throw bad(0, "file is \(data.count) bytes, too short for the 8-byte header length")
        }
        var n64: UInt64 = 0
        for i in 0..<8 { n64 |= UInt64(data[i]) << (8 * UInt64(i)) }
        guard n64 <= UInt64(maxHeaderLength) else {
            throw bad(0, "header length \(n64) exceeds the \(maxHeaderLength)-byte limit")
        }
        let headerLength = Int(n64)
        guard 8 + headerLength <= data.count else {
            throw bad(0, "header length \(headerLength) runs past the end of the file (\(data.count) bytes)")
        }
        let dataStart = 8 + headerLength
        let bufferLength = data.count - dataStart

        // JSON header (the reader validates UTF-8 and reports absolute offsets); only the
        // format's space padding may follow the object.
        var reader = JSONReader(bytes: data, range: 8..<dataStart, path: path, document: "header")
        let root = try reader.readValue()
        guard reader.isAtEnd else {
            let at = reader.position
            throw reader.fail(at, "unexpected byte 0x\(String(data[at], radix: 16)) after the JSON object (only space padding may follow)")
        }
        guard case let .object(members) = root.kind else {
            throw bad(root.offset, "header must be a JSON object, found \(root.kind.typeName)")
        }

        var metadata: [String: String] = [:]
        struct Entry { let name: String; let dtype: SafetensorsDType; let dtypeName: String
                       let shape: [Int]; let count: Int; let begin: Int; let end: Int; let offset: Int }
        var entries: [Entry] = []
        var seen = Set<String>()
        for member in members {
            guard seen.insert(member.key).inserted else {
                throw bad(member.keyOffset, "duplicate key '\(member.key)' in header")
            }
            let value = member.value
            if member.key == "__metadata__" {
                guard case let .object(pairs) = value.kind else {
                    throw bad(value.offset, "__metadata__ must be an object of strings, found \(value.kind.typeName)")
                }
                for pair in pairs {
                    guard case let .string(s) = pair.value.kind else {
                        throw bad(pair.value.offset, "__metadata__ value for '\(pair.key)' must be a string, found \(pair.value.kind.typeName)")
                    }
                    guard metadata.updateValue(s, forKey: pair.key) == nil else {
                        throw bad(pair.keyOffset, "duplicate key '\(pair.key)' in __metadata__")
                    }
                }
                continue
            }
            let name = member.key
            guard case let .object(fields) = value.kind else {
                throw bad(value.offset, "tensor '\(name)': entry must be an object, found \(value.kind.typeName)")
            }
            func field(_ key: String) throws -> JSONValue {
                guard let f = fields.first(where: { $0.key == key }) else {
                    throw bad(value.offset, "tensor '\(name)': missing field '\(key)'")
                }
                return f.value
            }
            let dtypeNode = try field("dtype")
            guard case let .string(dtypeName) = dtypeNode.kind else {
                throw bad(dtypeNode.offset, "tensor '\(name)': dtype must be a string, found \(dtypeNode.kind.typeName)")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                let known = SafetensorsDType.otherKnown.contains(dtypeName)
                throw bad(dtypeNode.offset, "tensor '\(name)': \(known ? "unsupported" : "unknown") dtype '\(dtypeName)' (supported: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let shapeNode = try field("shape")
            guard case let .array(dims) = shapeNode.kind else {
                throw bad(shapeNode.offset, "tensor '\(name)': shape must be an array, found \(shapeNode.kind.typeName)")
            }
            var shape: [Int] = []
            var count = 1
            for d in dims {
                guard case let .integer(v) = d.kind else {
                    throw bad(d.offset, "tensor '\(name)': shape entries must be integers, found \(d.kind.typeName)")
                }
                guard v >= 0 else { throw bad(d.offset, "tensor '\(name)': negative dimension \(v) in shape") }
                let (m, o) = count.multipliedReportingOverflow(by: v)
                guard !o, m <= Int(Int32.max) else {
                    throw bad(d.offset, "tensor '\(name)': shape is too large (more than 2^31 elements)")
                }
                count = m
                shape.append(v)
            }
            let offsetsNode = try field("data_offsets")
            guard case let .array(offs) = offsetsNode.kind, offs.count == 2 else {
                throw bad(offsetsNode.offset, "tensor '\(name)': data_offsets must be an array [begin, end]")
            }
            var be: [Int] = []
            for o in offs {
                guard case let .integer(v) = o.kind, v >= 0 else {
                    throw bad(o.offset, "tensor '\(name)': data_offsets entries must be non-negative integers")
                }
                be.append(v)
            }
            let (begin, end) = (be[0], be[1])
            guard begin <= end else {
                throw bad(offsetsNode.offset, "tensor '\(name)': data_offsets [\(begin), \(end)] has begin after end")
            }
            guard end <= bufferLength else {
                throw bad(offsetsNode.offset, "tensor '\(name)': data_offsets [\(begin), \(end)] run past the data buffer (\(bufferLength) bytes, file offsets \(dataStart)..<\(data.count))")
            }
            let bytes = count * dtype.size   // ≤ 2^31 · 8, no overflow on 64-bit
            guard end - begin == bytes else {
                throw bad(offsetsNode.offset, "tensor '\(name)': shape \(shape) of \(dtypeName) needs \(bytes) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, dtypeName: dtypeName, shape: shape, count: count,
                                 begin: begin, end: end, offset: value.offset))
        }

        // The byte ranges must tile the buffer: no gap, no overlap, nothing left over.
        var cursor = 0
        for e in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            if e.begin < cursor {
                throw bad(e.offset, "tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] overlap the previous tensor, which ends at \(cursor)")
            }
            if e.begin > cursor {
                throw bad(e.offset, "tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] leave a gap of \(e.begin - cursor) bytes after offset \(cursor) (file offset \(dataStart + cursor))")
            }
            cursor = e.end
        }
        guard cursor == bufferLength else {
            throw bad(dataStart + cursor, "the tensors cover \(cursor) bytes of the \(bufferLength)-byte data buffer; \(bufferLength - cursor) trailing bytes are not described by the header")
        }

        var file = SafetensorsFile()
        file.path = path
        file.metadata = metadata
        file.order = entries.map(\.name)
        for e in entries {
            file.dtypes[e.name] = e.dtypeName
            try data.withUnsafeBytes { all in
                let src = UnsafeRawBufferPointer(rebasing: all[(dataStart + e.begin)..<(dataStart + e.end)])
                if e.dtype != .f32 { file.raw[e.name] = Array(src) }
                if let t = try e.dtype.floatTensor(src, shape: e.shape, count: e.count) {
                    file.tensors[e.name] = t
                }
            }
        }
        return file
    }

    // MARK: - Writing

    /// The file's bytes: header with `__metadata__` first and tensors sorted by name, laid out
    /// contiguously in that order, header padded with spaces so the data starts 8-byte aligned.
    public func serialized() throws -> [UInt8] {
        let names = tensors.keys.sorted()
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }
                .joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for name in names {
            guard name != "__metadata__" else {
                throw BackpropError.invalidArgument("safetensors: a tensor cannot be named __metadata__")
            }
            guard let t = tensors[name] else { continue }
            let bytes = t.count * 4
            if !first { header += "," }
            first = false
            header += "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        var out = [UInt8](); out.reserveCapacity(8 + headerBytes.count + offset)
        let n = UInt64(headerBytes.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        out += headerBytes
        for name in names {
            guard let t = tensors[name] else { continue }
            #if _endian(little)
            out.append(contentsOf: UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
            #else
            for i in 0..<t.count {
                let bits = t.data[i].bitPattern
                for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(k)))) }
            }
            #endif
        }
        return out
    }

    /// Writes the file atomically: a temporary file in the same directory is written, fsynced and
    /// renamed over `path`. On any failure the temporary file is removed and an existing file at
    /// `path` is left untouched; the error (`BackpropError.io`) says what failed (e.g. "no space
    /// left on device", "permission denied").
    public func write(to path: String) throws {
        try AtomicFile.write(try serialized(), to: path)
    }

    /// The whole file at `path` (a regular file no larger than this machine's memory).
    static func readWholeFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw BackpropError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw BackpropError.io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw BackpropError.io(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        // The whole file is held in memory: one larger than the machine's memory is refused
        // before allocating (a 100 GB file, sparse or not, must not abort the process).
        let memory = ProcessInfo.processInfo.physicalMemory
        guard memory == 0 || UInt64(size) <= memory else {
            throw BackpropError.badFile(path: path, offset: nil,
                                        reason: "file is \(size) bytes, more than this machine's \(memory) bytes of memory")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while done < size {
                let r = systemRead(fd, buffer.baseAddress! + done, size - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw BackpropError.io(path: path, reason: "read failed: \(String(cString: strerror(errno)))")
                }
                if r == 0 { break }
                done += r
            }
        }
        if done < size { bytes.removeLast(size - done) }
        return bytes
    }
}

/// read(2) from whichever C library was imported above; inside `SafetensorsFile` a bare `read`
/// would name its own `read(path:)`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

private func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

// MARK: - Dtypes

enum SafetensorsDType: String, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    /// Dtypes of the format this reader does not convert.
    static let otherKnown: Set<String> = ["U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"]

    var size: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }

    var isInteger: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u8, .bool: true
        default: false
        }
    }

    func int64Values(_ b: UnsafeRawBufferPointer) -> [Int64] {
        let n = b.count / size
        return (0..<n).map { i in
            switch self {
            case .i64: Int64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            case .i32: Int64(Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            case .i16: Int64(Int16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            case .i8: Int64(Int8(bitPattern: b[i]))
            case .u8, .bool: Int64(b[i])
            default: 0
            }
        }
    }

    /// A Float32 tensor of the values, or nil for an integer tensor that Float32 cannot hold exactly.
    func floatTensor(_ b: UnsafeRawBufferPointer, shape: [Int], count: Int) throws -> Tensor? {
        if isInteger {
            let values = int64Values(b)
            guard values.allSatisfy({ abs($0) <= 1 << 24 }) else { return nil }
            return try Tensor(values.map { Float($0) }, shape: shape)
        }
        let t = Tensor(uncheckedShape: shape)
        let p = t.data
        #if _endian(little)
        if self == .f32 {
            if let base = b.baseAddress, count > 0 { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: count * 4) }
            return t
        }
        #endif
        for i in 0..<count {
            switch self {
            case .f32: p[i] = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            case .f64: p[i] = Float(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            case .bf16: p[i] = Float(bitPattern: UInt32(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            case .f16: p[i] = halfToFloat(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            default: break
            }
        }
        return t
    }
}

/// IEEE 754 binary16 → binary32 (exact: every half value is a float value).
func halfToFloat(_ h: UInt16) -> Float {
    let sign: Float = (h & 0x8000) != 0 ? -1 : 1
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = Float(h & 0x3FF)
    switch exponent {
    case 0: return sign * mantissa * 0x1p-24                     // zero and subnormals
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default: return sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }
}
