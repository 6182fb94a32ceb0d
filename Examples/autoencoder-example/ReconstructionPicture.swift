import Foundation

/// The figure: test digits (top row) above their reconstructions (bottom row), ink dark on
/// white, one `<path>` per shade (each run of equal shade along a pixel row is one `M…h…v…h…z`),
/// so the file stays small.
enum ReconstructionPicture {
    static let cell = 3

    static func svg(originals: [Float], reconstructions: [Float], count: Int, rows: Int, columns: Int, title: String) -> String {
        let pad = 10, left = 112, top = 34
        let w = columns * cell, h = rows * cell
        let width = left + count * (w + pad) + pad
        let height = top + 2 * (h + pad) + pad
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(pad)\" y=\"20\" font-size=\"14\">\(title)</text>\n"
        s += "<text x=\"\(pad)\" y=\"\(top + h / 2 + 4)\">test digit</text>\n"
        s += "<text x=\"\(pad)\" y=\"\(top + h + pad + h / 2 + 4)\">reconstruction</text>\n"
        var paths: [Int: String] = [:]   // shade level → path data
        for (row, images) in [originals, reconstructions].enumerated() {
            for k in 0..<count {
                let x0 = left + k * (w + pad), y0 = top + row * (h + pad)
                s += "<rect x=\"\(x0)\" y=\"\(y0)\" width=\"\(w)\" height=\"\(h)\" fill=\"none\" stroke=\"#bbb\"/>\n"
                for i in 0..<rows {
                    var j = 0
                    while j < columns {
                        let shade = level(images[(k * rows + i) * columns + j])
                        guard shade > 0 else { j += 1; continue }
                        var end = j + 1
                        while end < columns, level(images[(k * rows + i) * columns + end]) == shade { end += 1 }
                        paths[shade, default: ""] += "M\(x0 + j * cell) \(y0 + i * cell)h\((end - j) * cell)v\(cell)h-\((end - j) * cell)z"
                        j = end
                    }
                }
            }
        }
        for (shade, d) in paths.sorted(by: { $0.key < $1.key }) {
            let g = 255 - shade * 255 / 16
            s += "<path fill=\"\(String(format: "#%02x%02x%02x", g, g, g))\" d=\"\(d)\"/>\n"
        }
        s += "</svg>\n"
        return s
    }

    /// Ink 0…1 as 17 shades, 0 for (nearly) white.
    static func level(_ v: Float) -> Int { Int((min(max(v, 0), 1) * 16).rounded()) }
}
