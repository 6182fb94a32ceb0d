import Foundation

// Pictures of a recorded graph: Graphviz DOT text, and a self-contained SVG drawn by our own
// layout (no Graphviz needed). One box per Variable reachable from the root through `inputs`:
// its op ("leaf" for a leaf that requires grad, "input" for one that does not), its shape, its
// value (the elements when there are at most 4, else min / mean / max) and, for a value with a
// `grad` (leaves, and results of ops after `retainGrad()`), ‖grad‖. Solid arrows input → op carry the forward values;
// dashed arrows op → input carry the backward δ, drawn only to the inputs the op noted as
// needing a gradient.

/// The graph under `root` as Graphviz DOT text (`dot -Tsvg`); `names` labels chosen variables
/// ("W1", "x", …) on the first line of their box.
public func graphDOT(_ root: Variable, title: String? = nil, names: [String: Variable] = [:]) -> String {
    let g = GraphPicture(root, names: names)
    var s = "digraph backprop {\n  rankdir=LR;\n"
    s += "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f7f7f7\", fontname=\"Helvetica\", fontsize=11];\n"
    if let title { s += "  label=\(dotQuoted(title));\n  labelloc=t;\n" }
    for (i, node) in g.nodes.enumerated() {
        let label = node.lines.map(dotEscaped).joined(separator: "\\n")
        let fill = node.variable.isLeaf ? (node.variable.requiresGrad ? "#e8f0fe" : "#f1f1f1") : "#fff4e0"
        s += "  n\(i) [label=\"\(label)\", fillcolor=\"\(fill)\"];\n"
    }
    for e in g.forwardEdges { s += "  n\(e.from) -> n\(e.to) [color=\"#333333\"];\n" }
    for e in g.backwardEdges {
        s += "  n\(e.from) -> n\(e.to) [style=dashed, color=\"#d9480f\", fontcolor=\"#d9480f\", label=\"δ\", constraint=false];\n"
    }
    s += "}\n"
    return s
}

/// How `graphSVG` orders the ranks (the depths) of a graph.
public enum GraphLayout: Sendable {
    /// Columns left → right, the root rightmost.
    case leftToRight
    /// Rows top → bottom, the root at the bottom.
    case topToBottom
    /// Left → right for a graph of at most 4 ranks, top → bottom for a deeper one (it stays
    /// narrow enough to read when a page scales it down).
    case automatic
}

/// The graph under `root` as a self-contained SVG: ops ranked by depth (the longest path from
/// the leaves, then each value moved next to its nearest consumer, so a leaf sits beside the op
/// that reads it), forward arrows solid, backward δ arrows dashed beside them.
public func graphSVG(_ root: Variable, title: String? = nil, names: [String: Variable] = [:],
                     layout: GraphLayout = .automatic) -> String {
    var picture = GraphPicture(root, names: names)
    picture.layOut()
    let ranks = (picture.nodes.map(\.column).max() ?? 0) + 1
    switch layout {
    case .leftToRight: picture.vertical = false
    case .topToBottom: picture.vertical = true
    case .automatic: picture.vertical = ranks > 4
    }
    picture.layOut()   // again: the sizes along a rank differ between the two
    return picture.svg(title: title)
}

/// The walked graph and its layout.
struct GraphPicture {
    struct Node {
        let variable: Variable
        var lines: [String]
        var column = 0          // the rank: a column left → right, or a row top → bottom
        var position = 0.0      // where the box starts along its rank (top, or left)
    }
    struct Edge { let from: Int; let to: Int; let slot: Int }
    /// Ranks as rows top → bottom rather than columns left → right.
    var vertical = false   // slot: the input's position in the op

    var nodes: [Node] = []
    /// input → op, one per input slot.
    var forwardEdges: [Edge] = []
    /// op → input, one per input slot whose input needs a gradient.
    var backwardEdges: [Edge] = []
    /// For each backward edge, the index of the forward edge of the same input slot.
    var backwardEdgeForward: [Int] = []

    init(_ root: Variable, names: [String: Variable]) {
        var nameOf: [ObjectIdentifier: String] = [:]
        for (name, v) in names.sorted(by: { $0.key < $1.key }) where nameOf[ObjectIdentifier(v)] == nil {
            nameOf[ObjectIdentifier(v)] = name
        }
        // Post-order, iteratively: every variable after its inputs, each once, in input order.
        var index: [ObjectIdentifier: Int] = [:]
        var order: [Variable] = []
        var onStack: Set<ObjectIdentifier> = [ObjectIdentifier(root)]
        var stack: [(Variable, Int)] = [(root, 0)]
        while let (v, next) = stack.popLast() {
            let inputs = v.inputs
            if next < inputs.count {
                stack.append((v, next + 1))
                let input = inputs[next]
                if onStack.insert(ObjectIdentifier(input)).inserted { stack.append((input, 0)) }
            } else {
                index[ObjectIdentifier(v)] = order.count
                order.append(v)
            }
        }
        for v in order {
            nodes.append(Node(variable: v, lines: GraphPicture.lines(v, name: nameOf[ObjectIdentifier(v)])))
            let to = index[ObjectIdentifier(v)]!
            let needs = v.node?.needsGrad ?? []
            for (k, input) in v.inputs.enumerated() {
                let from = index[ObjectIdentifier(input)]!
                forwardEdges.append(Edge(from: from, to: to, slot: k))
                if k < needs.count && needs[k] {
                    backwardEdges.append(Edge(from: to, to: from, slot: k))
                    backwardEdgeForward.append(forwardEdges.count - 1)
                }
            }
        }
    }

    static func lines(_ v: Variable, name: String?) -> [String] {
        let kind = v.op ?? (v.requiresGrad ? "leaf" : "input")
        var lines = [name.map { "\($0) · \(kind)" } ?? kind, "shape \(v.shape)"]
        let t = v.value
        if t.count <= 4 {
            lines.append("[" + t.scalars.map(number).joined(separator: ", ") + "]")
        } else {
            let xs = t.scalars
            let mean = xs.reduce(0.0) { $0 + Double($1) } / Double(xs.count)
            lines.append("min \(number(xs.min()!)) mean \(number(Float(mean))) max \(number(xs.max()!))")
        }
        if let grad = v.grad {   // leaves, and results of ops after retainGrad()
            lines.append("‖grad‖ \(number(grad.l2Norm()))")
        } else if v.isLeaf && v.requiresGrad {
            lines.append("grad: none yet")
        }
        return lines
    }

    static func number(_ x: Float) -> String { String(format: "%.4g", Double(x)) }

    // MARK: - Layout

    static let lineHeight = 16.0, padding = 8.0, charWidth = 7.0
    static let margin = 24.0
    /// Between ranks, and between boxes of a rank.
    var rankGap: Double { vertical ? 56 : 90 }
    var boxGap: Double { vertical ? 28 : 26 }

    var boxWidth: Double {
        let widest = nodes.flatMap(\.lines).map(\.count).max() ?? 4
        return max(110, Double(widest) * GraphPicture.charWidth + 2 * GraphPicture.padding)
    }
    func boxHeight(_ i: Int) -> Double {
        Double(nodes[i].lines.count) * GraphPicture.lineHeight + 2 * GraphPicture.padding
    }
    /// The box's size along its rank.
    func extent(_ i: Int) -> Double { vertical ? boxWidth : boxHeight(i) }
    /// The thickness of a rank: every box of the graph fits in it.
    var rankSize: Double { vertical ? (nodes.indices.map(boxHeight).max() ?? 0) : boxWidth }

    /// Columns: the longest path from the leaves, then each value moved right to just left of its
    /// nearest consumer (leaves sit next to the op that reads them). Rows: from the root leftwards,
    /// each box near the mean height of its consumers' inputs, boxes of a column kept apart.
    mutating func layOut() {
        guard !nodes.isEmpty else { return }
        var consumers = [[Edge]](repeating: [], count: nodes.count)
        var producers = [[Int]](repeating: [], count: nodes.count)
        for e in forwardEdges { consumers[e.from].append(e); producers[e.to].append(e.from) }
        for i in nodes.indices {   // post-order: inputs come first
            nodes[i].column = producers[i].map { nodes[$0].column + 1 }.max() ?? 0
        }
        for i in nodes.indices.reversed() where !consumers[i].isEmpty {
            nodes[i].column = consumers[i].map { nodes[$0.to].column }.min()! - 1
        }
        let last = nodes.map(\.column).max()!
        let minColumn = nodes.map(\.column).min()!
        for i in nodes.indices { nodes[i].column -= minColumn }
        let columns = last - minColumn
        var inputCount = [Int](repeating: 0, count: nodes.count)
        for e in forwardEdges { inputCount[e.to] += 1 }
        var members = [[Int]](repeating: [], count: columns + 1)
        for i in nodes.indices { members[nodes[i].column].append(i) }
        for c in stride(from: columns, through: 0, by: -1) {
            let members = members[c]
            // Where each box would like its centre: at its consumers' input slots.
            var desired: [(node: Int, y: Double)] = members.map { i in
                let targets = consumers[i].map { e -> Double in
                    let top = nodes[e.to].position, h = extent(e.to)
                    return top + h * Double(e.slot + 1) / Double(inputCount[e.to] + 1)
                }
                return (i, targets.isEmpty ? 0 : targets.reduce(0, +) / Double(targets.count))
            }
            desired.sort { $0.y < $1.y || ($0.y == $1.y && $0.node < $1.node) }
            var tops: [Double] = []
            var cursor = -Double.infinity
            for d in desired {
                let top = max(d.y - extent(d.node) / 2, cursor)
                tops.append(top)
                cursor = top + extent(d.node) + boxGap
            }
            // Shift the stack so its centres sit around the desired ones on average.
            let shift = zip(desired, tops).map { d, top in d.y - (top + extent(d.node) / 2) }.reduce(0, +) / Double(desired.count)
            for (d, top) in zip(desired, tops) { nodes[d.node].position = top + shift }
        }
        let top = nodes.map(\.position).min()!
        for i in nodes.indices { nodes[i].position -= top }
    }

    // MARK: - SVG

    func svg(title: String?) -> String {
        let w = boxWidth, m = GraphPicture.margin
        let titleHeight = title == nil ? 0.0 : 34.0
        let ranks = Double((nodes.map(\.column).max() ?? 0) + 1)
        let along = nodes.indices.map { nodes[$0].position + extent($0) }.max() ?? 0   // the longest rank
        let across = ranks * rankSize + (ranks - 1) * rankGap
        let legendHeight = 34.0
        let titleWidth = Double(title?.count ?? 0) * 9 + 2 * m
        let width = max(2 * m + (vertical ? along : across), 480, titleWidth)
        let height = 2 * m + titleHeight + (vertical ? across : along) + legendHeight
        let top = m + titleHeight
        // Centre the drawing horizontally under the title.
        let left = (width - (vertical ? along : across)) / 2
        func x(_ i: Int) -> Double {
            left + (vertical ? nodes[i].position : Double(nodes[i].column) * (rankSize + rankGap))
        }
        func y(_ i: Int) -> Double {
            top + (vertical ? Double(nodes[i].column) * (rankSize + rankGap) : nodes[i].position)
        }

        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" font-family="sans-serif" font-size="12" style="background:#ffffff">
        <defs>
        <marker id="fwd" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333333"/></marker>
        <marker id="bwd" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#d9480f"/></marker>
        </defs>

        """
        if let title {
            s += "<text x=\"\(f(width / 2))\" y=\"\(f(m + 14))\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(xmlEscaped(title))</text>\n"
        }
        // Arrows first, boxes over them.
        var inputCount = [Int](repeating: 0, count: nodes.count)
        var outCount = [Int](repeating: 0, count: nodes.count)        // forward edges leaving each node
        var outPosition = [Int](repeating: 0, count: forwardEdges.count)   // edge k is the j-th leaving its input
        for (k, e) in forwardEdges.enumerated() {
            inputCount[e.to] += 1
            outPosition[k] = outCount[e.from]
            outCount[e.from] += 1
        }
        // Ends of the forward edge k: the right side of its input, the left side of its op.
        func ends(_ k: Int) -> (x1: Double, y1: Double, x2: Double, y2: Double) {
            let e = forwardEdges[k]
            let a1 = extent(e.from) * Double(outPosition[k] + 1) / Double(outCount[e.from] + 1)
            let a2 = extent(e.to) * Double(e.slot + 1) / Double(inputCount[e.to] + 1)
            if vertical { return (x(e.from) + a1, y(e.from) + boxHeight(e.from), x(e.to) + a2, y(e.to)) }
            return (x(e.from) + w, y(e.from) + a1, x(e.to), y(e.to) + a2)
        }
        let offset = 4.0
        for k in forwardEdges.indices {
            let (x1, y1, x2, y2) = ends(k)
            let (nx, ny) = normal(x1, y1, x2, y2)
            s += "<line class=\"forward\" x1=\"\(f(x1 - nx * offset))\" y1=\"\(f(y1 - ny * offset))\" x2=\"\(f(x2 - nx * offset))\" y2=\"\(f(y2 - ny * offset))\" stroke=\"#333333\" stroke-width=\"1.4\" marker-end=\"url(#fwd)\"/>\n"
        }
        for (e, k) in zip(backwardEdges, backwardEdgeForward) {
            // The forward edge of the same slot, drawn the other way and offset to the other side.
            precondition(forwardEdges[k].to == e.from && forwardEdges[k].slot == e.slot)
            let (x1, y1, x2, y2) = ends(k)
            let (nx, ny) = normal(x1, y1, x2, y2)
            s += "<line class=\"backward\" x1=\"\(f(x2 + nx * offset))\" y1=\"\(f(y2 + ny * offset))\" x2=\"\(f(x1 + nx * offset))\" y2=\"\(f(y1 + ny * offset))\" stroke=\"#d9480f\" stroke-width=\"1.4\" stroke-dasharray=\"5,3\" marker-end=\"url(#bwd)\"/>\n"
        }
        for i in nodes.indices {
            let v = nodes[i].variable
            let fill = v.isLeaf ? (v.requiresGrad ? "#e8f0fe" : "#f1f1f1") : "#fff4e0"
            let stroke = v.isLeaf ? (v.requiresGrad ? "#1c5dbf" : "#888888") : "#b86e00"
            s += "<g class=\"node\">\n"
            s += "<rect x=\"\(f(x(i)))\" y=\"\(f(y(i)))\" width=\"\(f(w))\" height=\"\(f(boxHeight(i)))\" rx=\"6\" fill=\"\(fill)\" stroke=\"\(stroke)\" stroke-width=\"1.2\"/>\n"
            for (l, line) in nodes[i].lines.enumerated() {
                let ty = y(i) + GraphPicture.padding + Double(l) * GraphPicture.lineHeight + 12
                let weight = l == 0 ? " font-weight=\"bold\"" : ""
                s += "<text x=\"\(f(x(i) + GraphPicture.padding))\" y=\"\(f(ty))\"\(weight)>\(xmlEscaped(line))</text>\n"
            }
            s += "</g>\n"
        }
        // Legend.
        let ly = height - m - 8
        s += "<g class=\"legend\" font-size=\"11\">\n"
        s += "<path d=\"M\(f(m)),\(f(ly)) h36\" stroke=\"#333333\" stroke-width=\"1.4\" marker-end=\"url(#fwd)\"/>\n"
        s += "<text x=\"\(f(m + 44))\" y=\"\(f(ly + 4))\">forward: values</text>\n"
        s += "<path d=\"M\(f(m + 170)),\(f(ly)) h36\" stroke=\"#d9480f\" stroke-width=\"1.4\" stroke-dasharray=\"5,3\" marker-end=\"url(#bwd)\"/>\n"
        s += "<text x=\"\(f(m + 214))\" y=\"\(f(ly + 4))\">backward: δ = ∂(root)/∂(value)</text>\n"
        s += "</g>\n</svg>\n"
        return s
    }

    /// The unit normal of the segment (x1, y1) → (x2, y2) (pointing down for a rightward segment).
    private func normal(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double) -> (Double, Double) {
        let dx = x2 - x1, dy = y2 - y1, n = max((dx * dx + dy * dy).squareRoot(), 1e-9)
        return (-dy / n, dx / n)
    }

    private func f(_ x: Double) -> String { String(format: "%.1f", x) }
}

/// Text for XML content and attribute values.
private func xmlEscaped(_ s: String) -> String {
    var out = ""
    for ch in s {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        // Characters XML 1.0 cannot hold at all (control characters other than tab and line breaks).
        case _ where ch.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" && $0 != "\n" && $0 != "\r" }
            || ch.unicodeScalars.contains { $0.value == 0xFFFE || $0.value == 0xFFFF }:
            out += "\u{FFFD}"
        default: out.append(ch)
        }
    }
    return out
}

/// Text inside a DOT double-quoted string (no newlines: callers join lines with `\n`).
private func dotEscaped(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n")
}

private func dotQuoted(_ s: String) -> String { "\"" + dotEscaped(s) + "\"" }
