import Foundation

/// The figure: the digit (row t is token t) beside its attention matrix (row t: the weights
/// token t gives every token s, summing to 1; shade ∝ √(weight / largest weight), so small weights
/// stay visible), each drawn as one `<rect>` per run of equal shade along a row.
enum AttentionPicture {
    static let cell = 8
    static let top = 62

    static func svg(digit: [UInt8], rows: Int, columns: Int, attention: [Float], tokens: Int, title: String) -> String {
        let size = cell * max(rows, tokens)
        let gap = 60, left = 40
        let width = left + columns * cell + gap + tokens * cell + 20
        let height = top + size + 40
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"18\" font-size=\"14\">One head of self-attention over the \(tokens) rows of an MNIST digit</text>\n"
        s += "<text x=\"\(left)\" y=\"36\">\(escaped(title))</text>\n"
        // The digit: ink dark on white.
        s += "<text x=\"\(left)\" y=\"\(top - 8)\">input: row t = token t</text>\n"
        s += cells(x: left, y: top, rows: rows, columns: columns) { i, j in
            let v = Float(digit[i * columns + j]) / 255
            return v < 0.02 ? nil : grey(1 - v)
        }
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(columns * cell)\" height=\"\(rows * cell)\" fill=\"none\" stroke=\"#999\"/>\n"
        // The attention matrix: white (0) to dark blue (the largest weight).
        let ax = left + columns * cell + gap
        let peak = max(attention.max() ?? 1, 1e-6)
        s += "<text x=\"\(ax)\" y=\"\(top - 8)\">A = softmax(QKᵀ/√D), largest \(String(format: "%.2f", peak))</text>\n"
        s += cells(x: ax, y: top, rows: tokens, columns: tokens) { i, j in
            let v = (max(attention[i * tokens + j], 0) / peak).squareRoot()
            return v < 0.05 ? nil : blue(v)
        }
        s += "<rect x=\"\(ax)\" y=\"\(top)\" width=\"\(tokens * cell)\" height=\"\(tokens * cell)\" fill=\"none\" stroke=\"#999\"/>\n"
        s += "<text x=\"\(ax)\" y=\"\(top + tokens * cell + 16)\">key token s →</text>\n"
        s += "<text x=\"\(ax - 8)\" y=\"\(top + tokens * cell)\" transform=\"rotate(-90 \(ax - 8) \(top + tokens * cell))\">query token t →</text>\n"
        s += "</svg>\n"
        return s
    }

    /// One rect per run of cells of the same colour in a row; nil leaves the cell white.
    static func cells(x: Int, y: Int, rows: Int, columns: Int, colour: (Int, Int) -> String?) -> String {
        var s = ""
        for i in 0..<rows {
            var j = 0
            while j < columns {
                guard let c = colour(i, j) else { j += 1; continue }
                var end = j + 1
                while end < columns, colour(i, end) == c { end += 1 }
                s += "<rect x=\"\(x + j * cell)\" y=\"\(y + i * cell)\" width=\"\((end - j) * cell)\" height=\"\(cell)\" fill=\"\(c)\"/>\n"
                j = end
            }
        }
        return s
    }

    /// 32 shades, so runs merge.
    static func level(_ v: Float) -> Float { (min(max(v, 0), 1) * 31).rounded() / 31 }

    static func grey(_ v: Float) -> String {
        let g = Int(level(v) * 255)
        return String(format: "#%02x%02x%02x", g, g, g)
    }

    static func blue(_ v: Float) -> String {
        let t = level(v)
        let r = Int(255 - t * (255 - 8)), g = Int(255 - t * (255 - 48)), b = Int(255 - t * (255 - 107))
        return String(format: "#%02x%02x%02x", r, g, b)
    }

    static func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
