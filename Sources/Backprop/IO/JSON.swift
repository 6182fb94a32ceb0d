/// A strict JSON reader (RFC 8259) over a byte range of a file that keeps the absolute byte
/// offset of every value, so that a format built on JSON can say where its input is wrong.
/// `SafetensorsFile` reads its header with it (Foundation's `JSONSerialization` reports no
/// offsets).
///
/// - `readValue()` reads one value with the white space around it; what may follow it is the
///   caller's business (`position`, `isAtEnd`).
/// - Strings: UTF-8 is validated (no overlong forms, surrogates, truncated sequences or bytes
///   beyond U+10FFFF), control bytes are refused, every escape is checked (`\u` surrogate
///   halves must pair).
/// - Numbers: RFC 8259's grammar (no leading zeros, no `+`, digits after `.` and `e`); an integer
///   that fits `Int` is `.integer`, any other number `.number(Double)`.
/// - Objects keep their members in input order, duplicate keys included: the format decides.
/// - Nesting deeper than `maxDepth` is refused, so hostile input cannot exhaust the stack.
/// - Every error is `BackpropError.badFile(path:offset:reason:)` with the absolute offset and a
///   reason `"invalid JSON <document>: …"`, where `document` names what is read (`"header"`).
struct JSONReader {
    let bytes: [UInt8]
    private var i: Int           // the next byte to read
    let end: Int
    let path: String
    let document: String
    private var depth = 0
    static let maxDepth = 64

    /// A reader of `bytes[range]`; `path` and `document` name the input in errors.
    init(bytes: [UInt8], range: Range<Int>, path: String, document: String) {
        self.bytes = bytes; self.i = range.lowerBound; self.end = range.upperBound
        self.path = path; self.document = document
    }

    /// Absolute offset of the next byte to read.
    var position: Int { i }
    /// True when every byte of the range has been read.
    var isAtEnd: Bool { i == end }

    /// The error for `reason` at absolute offset `at`, worded like the reader's own errors.
    func fail(_ at: Int, _ reason: String) -> BackpropError {
        .badFile(path: path, offset: at, reason: "invalid JSON \(document): \(reason)")
    }

    /// Reads one value, skipping the white space before and after it.
    mutating func readValue() throws -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        return value
    }

    private mutating func skipWhitespace() {
        while i < end, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func parseValue() throws -> JSONValue {
        guard i < end else { throw fail(i, "unexpected end of \(document)") }
        let start = i
        switch bytes[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return JSONValue(offset: start, kind: .string(try parseString()))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try literal("true"); return JSONValue(offset: start, kind: .bool(true))
        case UInt8(ascii: "f"): try literal("false"); return JSONValue(offset: start, kind: .bool(false))
        case UInt8(ascii: "n"): try literal("null"); return JSONValue(offset: start, kind: .null)
        default: throw fail(i, "unexpected byte 0x\(String(bytes[i], radix: 16))")
        }
    }

    private mutating func literal(_ word: String) throws {
        for c in word.utf8 {
            guard i < end, bytes[i] == c else { throw fail(i, "expected '\(word)'") }
            i += 1
        }
    }

    private mutating func enter() throws {
        depth += 1
        guard depth <= JSONReader.maxDepth else { throw fail(i, "nesting deeper than \(JSONReader.maxDepth)") }
    }

    private mutating func parseObject() throws -> JSONValue {
        let start = i
        try enter(); defer { depth -= 1 }
        i += 1
        var members: [(key: String, keyOffset: Int, value: JSONValue)] = []
        skipWhitespace()
        if i < end, bytes[i] == UInt8(ascii: "}") { i += 1; return JSONValue(offset: start, kind: .object(members)) }
        while true {
            skipWhitespace()
            guard i < end, bytes[i] == UInt8(ascii: "\"") else { throw fail(i, "expected a string key") }
            let keyOffset = i
            let key = try parseString()
            skipWhitespace()
            guard i < end, bytes[i] == UInt8(ascii: ":") else { throw fail(i, "expected ':'") }
            i += 1
            skipWhitespace()
            members.append((key: key, keyOffset: keyOffset, value: try parseValue()))
            skipWhitespace()
            guard i < end else { throw fail(i, "unexpected end of \(document) inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return JSONValue(offset: start, kind: .object(members)) }
            throw fail(i, "expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        let start = i
        try enter(); defer { depth -= 1 }
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if i < end, bytes[i] == UInt8(ascii: "]") { i += 1; return JSONValue(offset: start, kind: .array(items)) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard i < end else { throw fail(i, "unexpected end of \(document) inside an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return JSONValue(offset: start, kind: .array(items)) }
            throw fail(i, "expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < end, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        let intStart = i
        let intDigits = digits()
        guard intDigits > 0 else { throw fail(i, "expected a digit") }
        guard !(intDigits > 1 && bytes[intStart] == UInt8(ascii: "0")) else { throw fail(intStart, "leading zero in a number") }
        var isInteger = true
        if i < end, bytes[i] == UInt8(ascii: ".") {
            i += 1; isInteger = false
            guard digits() > 0 else { throw fail(i, "expected a digit after '.'") }
        }
        if i < end, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1; isInteger = false
            if i < end, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail(i, "expected a digit in the exponent") }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if isInteger, let v = Int(text) { return JSONValue(offset: start, kind: .integer(v)) }
        return JSONValue(offset: start, kind: .number(Double(text) ?? .infinity))
    }

    /// Parses a string at `i` (which holds the opening quote), validating UTF-8 and escapes.
    private mutating func parseString() throws -> String {
        i += 1
        var scalars = String.UnicodeScalarView()
        while true {
            guard i < end else { throw fail(i, "unterminated string") }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") { i += 1; return String(scalars) }
            if b < 0x20 { throw fail(i, "control byte 0x\(String(b, radix: 16)) inside a string") }
            if b == UInt8(ascii: "\\") {
                i += 1
                guard i < end else { throw fail(i, "unterminated escape") }
                let e = bytes[i]; i += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{8}")
                case UInt8(ascii: "f"): scalars.append("\u{c}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    let at = i - 2
                    var code = try hex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard i + 1 < end, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail(at, "unpaired surrogate escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail(at, "invalid surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let s = Unicode.Scalar(code) else { throw fail(at, "escape \\u\(String(code, radix: 16)) is not a Unicode scalar") }
                    scalars.append(s)
                default: throw fail(i - 2, "invalid escape '\\\(Character(Unicode.Scalar(e)))'")
                }
                continue
            }
            scalars.append(try utf8Scalar())
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= end else { throw fail(i, "truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail(i, "invalid hex digit in \\u escape")
            }
            v = v << 4 | d; i += 1
        }
        return v
    }

    /// Decodes one UTF-8 scalar at `i`, rejecting overlong forms, surrogates and truncation.
    private mutating func utf8Scalar() throws -> Unicode.Scalar {
        let start = i
        let b0 = bytes[i]
        let length: Int, initial: UInt32, minimum: UInt32
        switch b0 {
        case 0x00...0x7F: i += 1; return Unicode.Scalar(b0)
        case 0xC2...0xDF: length = 2; initial = UInt32(b0 & 0x1F); minimum = 0x80
        case 0xE0...0xEF: length = 3; initial = UInt32(b0 & 0x0F); minimum = 0x800
        case 0xF0...0xF4: length = 4; initial = UInt32(b0 & 0x07); minimum = 0x10000
        default: throw fail(start, "invalid UTF-8 byte 0x\(String(b0, radix: 16))")
        }
        guard start + length <= end else { throw fail(start, "truncated UTF-8 sequence") }
        var v = initial
        for k in 1..<length {
            let b = bytes[start + k]
            guard b & 0xC0 == 0x80 else { throw fail(start + k, "invalid UTF-8 continuation byte 0x\(String(b, radix: 16))") }
            v = v << 6 | UInt32(b & 0x3F)
        }
        guard v >= minimum, let s = Unicode.Scalar(v) else { throw fail(start, "invalid UTF-8 sequence (overlong, surrogate or beyond U+10FFFF)") }
        i += length
        return s
    }
}

/// One JSON value and the absolute byte offset where it starts.
struct JSONValue {
    indirect enum Kind {
        case object([(key: String, keyOffset: Int, value: JSONValue)])
        case array([JSONValue])
        case string(String)
        case integer(Int)
        case number(Double)     // fractions, exponents, integers beyond Int
        case bool(Bool)
        case null

        /// "an object", "an array", …: for messages saying what was found instead.
        var typeName: String {
            switch self {
            case .object: "an object"
            case .array: "an array"
            case .string: "a string"
            case .integer: "an integer"
            case .number: "a non-integer number"
            case .bool: "a boolean"
            case .null: "null"
            }
        }
    }
    let offset: Int      // absolute byte offset in the file
    let kind: Kind
}
