import Foundation

/// An SVG with two panels: loss (train and test) and test accuracy, per epoch, with axes,
/// ticks and labels. Plain text, opens in any browser.
enum SVGReport {
    static func render(_ records: [EpochRecord], title: String) -> String {
        let width = 940.0, height = 380.0, panel = 380.0, top = 50.0, plotH = 260.0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">\(escape(title))</text>

        """
        let epochs = records.map { Double($0.epoch) }
        let losses = records.flatMap { [$0.train_loss, $0.test_loss] }.filter(\.isFinite)
        let lossMax = niceCeil(losses.max() ?? 1)
        let accs = records.map { $0.test_accuracy * 100 }
        let accMin = max(0, floor((accs.min() ?? 0) - 1))
        svg += panelSVG(x0: 70, y0: top, w: panel, h: plotH, xs: epochs, series: [
            ("train loss", "#1f77b4", records.map(\.train_loss)),
            ("test loss", "#ff7f0e", records.map(\.test_loss)),
        ], yMin: 0, yMax: lossMax, yLabel: "loss", yFormat: "%.3g")
        svg += panelSVG(x0: 70 + panel + 70, y0: top, w: panel, h: plotH, xs: epochs, series: [
            ("test accuracy", "#2ca02c", accs),
        ], yMin: accMin, yMax: 100, yLabel: "test accuracy (%)", yFormat: "%.1f")
        svg += "</svg>\n"
        return svg
    }

    private static func panelSVG(x0: Double, y0: Double, w: Double, h: Double, xs: [Double],
                                 series: [(String, String, [Double])], yMin: Double, yMax: Double,
                                 yLabel: String, yFormat: String) -> String {
        let xMin = 1.0, xMax = max(2.0, xs.max() ?? 2)
        func px(_ x: Double) -> Double { x0 + (x - xMin) / (xMax - xMin) * w }
        func py(_ y: Double) -> Double { y0 + h - (min(max(y, yMin), yMax) - yMin) / max(yMax - yMin, 1e-12) * h }
        var s = "<g>\n<rect x=\"\(x0)\" y=\"\(y0)\" width=\"\(w)\" height=\"\(h)\" fill=\"none\" stroke=\"#333\"/>\n"
        for i in 0...5 {
            let v = yMin + (yMax - yMin) * Double(i) / 5
            let y = py(v)
            s += "<line x1=\"\(x0 - 4)\" y1=\"\(y)\" x2=\"\(x0 + w)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(x0 - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(String(format: yFormat, v))</text>\n"
        }
        let step = max(1, Int((xMax - xMin) / 10) + 1)
        var e = 1
        while Double(e) <= xMax {
            let x = px(Double(e))
            s += "<line x1=\"\(x)\" y1=\"\(y0 + h)\" x2=\"\(x)\" y2=\"\(y0 + h + 4)\" stroke=\"#333\"/>"
            s += "<text x=\"\(x)\" y=\"\(y0 + h + 18)\" text-anchor=\"middle\">\(e)</text>\n"
            e += step
        }
        s += "<text x=\"\(x0 + w / 2)\" y=\"\(y0 + h + 38)\" text-anchor=\"middle\">epoch</text>\n"
        s += "<text transform=\"translate(\(x0 - 50),\(y0 + h / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (k, (name, color, ys)) in series.enumerated() {
            let points = zip(xs, ys).filter { $0.1.isFinite }.map { "\(px($0.0)),\(py($0.1))" }
            if points.count > 1 {
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
            }
            for p in points {
                let xy = p.split(separator: ",")
                s += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(color)\"/>"
            }
            let ly = y0 + 16 + Double(k) * 16
            s += "\n<line x1=\"\(x0 + w - 120)\" y1=\"\(ly - 4)\" x2=\"\(x0 + w - 100)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            s += "<text x=\"\(x0 + w - 95)\" y=\"\(ly)\">\(escape(name))</text>\n"
        }
        return s + "</g>\n"
    }

    private static func niceCeil(_ v: Double) -> Double {
        guard v > 0, v.isFinite else { return 1 }
        let mag = pow(10, floor(log10(v)))
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * mag >= v { return m * mag }
        return 10 * mag
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}

/// One epoch's figures, as printed, logged as JSON and plotted.
struct EpochRecord: Codable {
    var epoch: Int
    var train_loss: Double
    var train_accuracy: Double
    var test_loss: Double
    var test_accuracy: Double
    var seconds: Double
    var images_per_second: Double
    var learning_rate: Double
    var gradient_norms: [String: Double]
}
