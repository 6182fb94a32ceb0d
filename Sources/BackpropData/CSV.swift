import Backprop

/// MNIST-style CSV: one example per line, the label first, then the pixels, all integers 0…255:
///
///     label,1x1,1x2,…          ← optional header line (detected: its first cell is not a number)
///     5,0,0,0,…,0              ← label, then featureCount pixels
///
/// Lines end in `\n` or `\r\n`; blank lines are skipped; spaces or tabs around a cell are allowed.
/// Every line must have the same number of cells. The file may be gzip-compressed (`.csv.gz`).
/// Errors are `BackpropError.badFile` naming the file, the byte offset of the offending cell
/// (in the decompressed data for gzip) and the line and cell number.
public enum CSV {
    /// Largest file (decompressed) accepted by default: 2 GiB.
    public static let defaultByteLimit = 2 << 30

    /// Reads a CSV data set.
    /// - Parameters:
    ///   - header: `true`/`false` forces whether the first non-blank line is a header; `nil` detects it.
    ///   - rows, columns, channels: the image shape. When `rows` and `columns` are nil they are
    ///     inferred from the pixel count p: a square √p × √p when p is a perfect square
    ///     (28 × 28 for MNIST's 784), otherwise 1 × p.
    public static func read(path: String, header: Bool? = nil, rows: Int? = nil, columns: Int? = nil,
                            channels: Int = 1, maxBytes: Int = defaultByteLimit) throws -> Dataset {
        let stream = try ByteStream(path: path, limit: maxBytes)
        let text = try stream.readToEnd()
        var expected: Int? = nil
        if let rows, let columns {
            guard rows > 0, columns > 0, channels > 0 else {
                throw BackpropError.invalidArgument("CSV.read: image shape \(channels) × \(rows) × \(columns) must be positive")
            }
            expected = channels * rows * columns
        } else if rows != nil || columns != nil {
            throw BackpropError.invalidArgument("CSV.read: give both rows and columns, or neither")
        }
        let parsed = try parse(text, path: path, note: stream.offsetNote, header: header, featureCount: expected)
        let features = parsed.featureCount
        guard features > 0 else {
            throw BackpropError.badFile(path: path, offset: text.count, reason: "no data lines (label and pixels) found")
        }
        var shape = (rows: 1, columns: features)
        if let rows, let columns {
            shape = (rows, columns)
        } else if channels == 1 {
            let side = Int(Double(features).squareRoot().rounded())
            if side * side == features { shape = (side, side) }
        } else {
            guard features % channels == 0 else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "\(features) pixels per line cannot be split into \(channels) channels")
            }
            shape = (1, features / channels)
        }
        return try Dataset(images: parsed.images, labels: parsed.labels,
                           rows: shape.rows, columns: shape.columns, channels: channels)
    }

    /// Parses CSV text (see the type's documentation) into labels and row-major pixels.
    static func parse(_ text: [UInt8], path: String, note: String, header: Bool?,
                      featureCount: Int?) throws -> (labels: [UInt8], images: [UInt8], featureCount: Int) {
        var labels: [UInt8] = []
        var images: [UInt8] = []
        images.reserveCapacity(text.count / 2)
        var features = featureCount
        let comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9")

        try text.withUnsafeBufferPointer { b in
            let n = b.count
            var i = 0
            var line = 0
            var sawFirstLine = false

            func cellText(_ start: Int) -> String {
                var end = start
                while end < n, b[end] != comma, b[end] != newline, b[end] != cr, end - start < 24 { end += 1 }
                let s = String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
                return end - start >= 24 ? s + "…" : s
            }
            func fail(_ offset: Int, _ line: Int, _ reason: String) -> BackpropError {
                .badFile(path: path, offset: offset, reason: "line \(line): \(reason)\(note)")
            }

            while i < n {
                line += 1
                let lineStart = i
                // Blank line (possibly only spaces): skip.
                if let next = csvBlankLineEnd(UnsafeRawPointer(b.baseAddress), count: n, from: i) {
                    i = next
                    continue
                }
                // Header: the first non-blank line, when asked for or when it does not start with a digit.
                if !sawFirstLine {
                    sawFirstLine = true
                    var j = i   // the line's first character (it is not blank)
                    while b[j] == space || b[j] == tab { j += 1 }
                    let isHeader = header ?? !(b[j] >= zero && b[j] <= nine)
                    if isHeader {
                        while i < n, b[i] != newline { i += 1 }
                        i += 1
                        continue
                    }
                }
                var cell = 0
                var endOfLine = false
                while !endOfLine {
                    while i < n, b[i] == space || b[i] == tab { i += 1 }
                    let cellStart = i
                    var value = 0
                    var digits = 0
                    while i < n, b[i] >= zero, b[i] <= nine {
                        if value <= 255 { value = value * 10 + Int(b[i] - zero) }
                        digits += 1
                        i += 1
                    }
                    while i < n, b[i] == space || b[i] == tab { i += 1 }
                    let atDelimiter = i == n || b[i] == comma || b[i] == newline
                        || (b[i] == cr && (i + 1 == n || b[i + 1] == newline))
                    guard digits > 0, atDelimiter else {
                        let what = cell == 0 ? "label" : "pixel \(cell)"
                        let shown = cellText(cellStart)
                        throw fail(cellStart, line, shown.isEmpty
                            ? "cell \(cell + 1) (\(what)) is empty"
                            : "cell \(cell + 1) (\(what)) '\(shown)' is not an integer")
                    }
                    guard value <= 255 else {
                        let what = cell == 0 ? "label" : "pixel value"
                        throw fail(cellStart, line, "cell \(cell + 1): \(what) \(cellText(cellStart)) is outside 0…255")
                    }
                    if cell == 0 {
                        labels.append(UInt8(value))
                    } else {
                        if let features, cell > features {
                            throw fail(cellStart, line, "more than \(features) pixels (the label plus \(features) cells per line expected)")
                        }
                        images.append(UInt8(value))
                    }
                    cell += 1
                    if i < n, b[i] == comma {
                        i += 1
                    } else {
                        endOfLine = true
                        if i < n, b[i] == cr { i += 1 }
                        if i < n, b[i] == newline { i += 1 }
                    }
                }
                let pixels = cell - 1
                if let features {
                    guard pixels == features else {
                        throw fail(lineStart, line, "\(pixels) pixels, expected \(features) (as on the first line or from the image shape)")
                    }
                } else {
                    guard pixels > 0 else { throw fail(lineStart, line, "a label but no pixels") }
                    features = pixels
                }
            }
        }
        return (labels, images, features ?? 0)
    }
}

/// Where the next line starts when the line at byte `i` of `p` (`n` bytes) is blank — only spaces
/// and tabs, up to `\n`, `\r\n` or the end of the text (then `n`) — and nil when it holds
/// anything else. Both CSV readers skip blank lines with it.
func csvBlankLineEnd(_ p: UnsafeRawPointer?, count n: Int, from i: Int) -> Int? {
    guard let p else { return nil }
    let b = p.assumingMemoryBound(to: UInt8.self)
    let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
    var j = i
    while j < n, b[j] == space || b[j] == tab { j += 1 }
    if j == n { return n }
    if b[j] == newline { return j + 1 }
    if b[j] == cr && j + 1 < n && b[j + 1] == newline { return j + 2 }
    return nil
}
