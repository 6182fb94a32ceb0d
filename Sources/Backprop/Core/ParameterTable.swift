import Foundation

/// The parameter table: every parameter of a model with its statistics, values and gradient norm,
/// as text (what the regression example prints after its first step).
extension Layer {
    /// A readable table of every named parameter, one row each: its name, shape, the mean,
    /// standard deviation, minimum and maximum of its value, the L2 norm of its gradient, and
    /// its first `valuesShown` values and gradients — to see each layer's gradient with your
    /// own eyes after a backward pass.
    ///
    ///     name      shape    mean      std     min     max      ‖grad‖  values               grads
    ///     0.weight  [3, 4]   0.0123  0.2871  -0.4876  0.4912   0.3127  [0.1, -0.3, …]       [0.02, …]
    public func parameterTable(valuesShown: Int = 4) -> String {
        let shown = max(valuesShown, 0)
        func number(_ v: Float?) -> String {
            guard let v else { return "-" }
            return String(format: "%.4g", Double(v))
        }
        func firstValues(_ t: Tensor) -> String {
            let k = min(shown, t.count)
            var parts = (0..<k).map { number(t.data[$0]) }
            if t.count > k { parts.append("…") }
            return "[" + parts.joined(separator: ", ") + "]"
        }
        let header = ["name", "shape", "mean", "std", "min", "max", "‖grad‖", "values", "grads"]
        let numeric: Set<Int> = [2, 3, 4, 5, 6]
        var rows: [[String]] = []
        var total = 0
        for (name, p) in namedParameters {
            let v = p.value, g = p.grad
            total += v.count
            rows.append([name, "\(v.shape)", number(v.mean()), number(v.standardDeviation()),
                         number(v.minimum()), number(v.maximum()), number(g.l2Norm()),
                         firstValues(v), firstValues(g)])
        }
        var lines = ["\(summary): \(rows.count) parameter tensor\(rows.count == 1 ? "" : "s"), \(total) values"]
        guard !rows.isEmpty else { return lines[0] }
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        func format(_ row: [String]) -> String {
            row.indices.map { c -> String in
                let pad = String(repeating: " ", count: widths[c] - row[c].count)
                return numeric.contains(c) ? pad + row[c] : row[c] + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        lines.append(format(header))
        for row in rows { lines.append(format(row)) }
        return lines.joined(separator: "\n")
    }
}
