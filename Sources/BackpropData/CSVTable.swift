import Backprop
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CSV of numbers, any of them decimals (`5.1`, `-3e-2`), one sample per line, with one column
/// chosen as the label (or a Float target) and every other column a feature:
///
///     sepal_length,sepal_width,petal_length,petal_width,species   ← optional header
///     5.1,3.5,1.4,0.2,0
///
///     let iris = try CSV.readTable(path: "iris.csv", target: .labelNamed("species"))
///
/// Lines end in `\n` or `\r\n`; blank lines are skipped; spaces or tabs around a cell are
/// allowed; the file may be gzip-compressed. Errors are `BackpropError.badFile` naming the file,
/// the byte offset and the line and cell.
extension CSV {
    /// Which column is learned, and as what.
    public enum Target: Sendable, Equatable {
        /// A class label (a whole number ≥ 0) in column `column` (from 0; −1 is the last).
        case label(column: Int)
        /// A class label in the column the header names.
        case labelNamed(String)
        /// A Float target in column `column` (from 0; −1 is the last), for regression.
        case value(column: Int)
        /// A Float target in the column the header names.
        case valueNamed(String)
    }

    /// Reads a CSV of numbers into a `TensorDataset` with samples of shape `[columns − 1]`.
    /// - Parameters:
    ///   - header: `true`/`false` forces whether the first non-blank line is a header; `nil`
    ///     detects it (a header has a cell that is not a number).
    ///   - target: the label or target column (default: a label in the first column, as in
    ///     MNIST-style CSV files).
    ///   - classes: when given, labels must lie in `0..<classes`.
    public static func readTable(path: String, header: Bool? = nil, target: Target = .label(column: 0),
                                 classes: Int? = nil, maxBytes: Int = defaultByteLimit) throws -> TensorDataset {
        let stream = try ByteStream(path: path, limit: maxBytes)
        var text = try stream.readToEnd()
        let note = stream.offsetNote
        let n = text.count
        text.append(0)  // strtod stops at the terminator
        func fail(_ offset: Int, _ line: Int?, _ reason: String) -> BackpropError {
            .badFile(path: path, offset: offset, reason: (line.map { "line \($0): " } ?? "") + reason + note)
        }
        var names: [String]? = nil
        var columns: Int? = nil
        var targetColumn: Int? = nil
        var features: [Float] = []
        var labels: [Int32] = []
        var values: [Float] = []
        var firstDataLine: Int? = nil

        try text.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let b = UnsafeMutableRawPointer(base).assumingMemoryBound(to: CChar.self)
            let comma = CChar(UInt8(ascii: ",")), newline = CChar(UInt8(ascii: "\n")), cr = CChar(UInt8(ascii: "\r"))
            let space = CChar(UInt8(ascii: " ")), tab = CChar(UInt8(ascii: "\t"))
            func atEndOfCell(_ i: Int) -> Bool {
                i >= n || b[i] == comma || b[i] == newline || (b[i] == cr && (i + 1 >= n || b[i + 1] == newline))
            }
            func cellText(_ start: Int) -> String {
                var end = start
                while !atEndOfCell(end), end - start < 24 { end += 1 }
                let bytes = (start..<end).map { UInt8(bitPattern: b[$0]) }
                return String(decoding: bytes, as: UTF8.self) + (end - start >= 24 ? "…" : "")
            }
            /// Parses the line from `i` into `cells` (numbers) or returns the first bad cell.
            func parseLine(_ i: inout Int, into cells: inout [Double]) -> (offset: Int, cell: Int, text: String)? {
                cells.removeAll(keepingCapacity: true)
                while true {
                    while i < n, b[i] == space || b[i] == tab { i += 1 }
                    let start = i
                    var end: UnsafeMutablePointer<CChar>? = nil
                    let v = atEndOfCell(i) ? Double.nan : strtod(b + i, &end)
                    var j = end.map { $0 - b } ?? i
                    while j < n, b[j] == space || b[j] == tab { j += 1 }
                    if j == start || !(abs(v) <= Double(Float.greatestFiniteMagnitude)) || !atEndOfCell(j) {
                        return (start, cells.count + 1, cellText(start))
                    }
                    cells.append(v)
                    i = j
                    if i < n, b[i] == comma { i += 1; continue }
                    if i < n, b[i] == cr { i += 1 }
                    if i < n, b[i] == newline { i += 1 }
                    return nil
                }
            }
            func skipLine(_ i: inout Int) -> String {
                let start = i
                while i < n, b[i] != newline { i += 1 }
                let bytes = (start..<i).map { UInt8(bitPattern: b[$0]) }
                if i < n { i += 1 }
                return String(decoding: bytes, as: UTF8.self)
            }

            var i = 0, line = 0
            var cells: [Double] = []
            while i < n {
                line += 1
                let lineStart = i
                if let next = csvBlankLineEnd(UnsafeRawPointer(b), count: n, from: i) {
                    i = next
                    continue
                }
                let isFirst = names == nil && columns == nil
                if isFirst, header == true {
                    names = skipLine(&i).split(separator: ",", omittingEmptySubsequences: false).map(cleanName)
                    continue
                }
                if let bad = parseLine(&i, into: &cells) {
                    if isFirst, header == nil {
                        i = lineStart
                        names = skipLine(&i).split(separator: ",", omittingEmptySubsequences: false).map(cleanName)
                        continue
                    }
                    throw fail(bad.offset, line, bad.text.isEmpty ? "cell \(bad.cell) is empty" : "cell \(bad.cell) '\(bad.text)' is not a number")
                }
                if columns == nil {
                    columns = cells.count
                    if let names, names.count != cells.count {
                        throw fail(lineStart, line, "\(cells.count) cells but the header has \(names.count) names")
                    }
                    targetColumn = try resolve(target, columns: cells.count, names: names, path: path)
                    firstDataLine = line
                    guard cells.count >= 2 else {
                        throw fail(lineStart, line, "one cell per line: a target column and at least one feature are needed")
                    }
                }
                guard let columns, let t = targetColumn, cells.count == columns else {
                    throw fail(lineStart, line, "\(cells.count) cells, expected \(columns ?? 0) as on line \(firstDataLine ?? 0)")
                }
                for (k, v) in cells.enumerated() where k != t { features.append(Float(v)) }
                switch target {
                case .label, .labelNamed:
                    let v = cells[t]
                    guard v >= 0, v == v.rounded(), v <= Double(Int32.max) else {
                        throw fail(lineStart, line, "cell \(t + 1): label \(v) is not a whole number ≥ 0")
                    }
                    if let classes, Int(v) >= classes {
                        throw fail(lineStart, line, "cell \(t + 1): label \(Int(v)) is outside the \(classes) classes 0..<\(classes)")
                    }
                    labels.append(Int32(v))
                case .value, .valueNamed:
                    values.append(Float(cells[t]))
                }
            }
        }
        guard let columns else {
            throw fail(n, nil, names == nil ? "no data lines (the file is empty)" : "a header but no data lines")
        }
        let shape = [columns - 1]
        switch target {
        case .label, .labelNamed:
            return try TensorDataset(features: features, sampleShape: shape, targets: .labels(labels))
        case .value, .valueNamed:
            return try TensorDataset(features: features, sampleShape: shape, targets: .values(values, shape: [1]))
        }
    }

    private static func cleanName(_ s: Substring) -> String {
        var t = s.trimmingCharacters(in: [" ", "\t", "\r", "\""])
        if t.hasPrefix("\u{FEFF}") { t.removeFirst() }
        return t
    }

    private static func resolve(_ target: Target, columns: Int, names: [String]?, path: String) throws -> Int {
        func index(_ c: Int) throws -> Int {
            let k = c < 0 ? columns + c : c
            guard k >= 0, k < columns else {
                throw BackpropError.badFile(path: path, offset: nil, reason: "target column \(c) outside the \(columns) columns")
            }
            return k
        }
        func named(_ name: String) throws -> Int {
            guard let names else {
                throw BackpropError.badFile(path: path, offset: nil, reason: "no header line to find column \"\(name)\" in")
            }
            guard let k = names.firstIndex(of: name) else {
                throw BackpropError.badFile(path: path, offset: nil,
                                            reason: "no column \"\(name)\" in the header (\(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", …" : ""))")
            }
            return k
        }
        switch target {
        case let .label(c), let .value(c): return try index(c)
        case let .labelNamed(name), let .valueNamed(name): return try named(name)
        }
    }
}

private extension Substring {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
