import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import Backprop

final class GraphPictureTests: XCTestCase {
    /// (a + b) × c after backward: a.grad = b.grad = [4], c.grad = [-1].
    private func abc() throws -> (y: Variable, a: Variable, b: Variable, c: Variable) {
        let a = Variable(try Tensor([2], shape: [1]), requiresGrad: true)
        let b = Variable(try Tensor([-3], shape: [1]), requiresGrad: true)
        let c = Variable(try Tensor([4], shape: [1]), requiresGrad: true)
        let y = try (a + b) * c
        try y.backward()
        return (y, a, b, c)
    }

    private func count(_ needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

    /// Elements of the parsed SVG: name and attributes, in document order (fails on bad XML).
    private func parseXML(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> [(name: String, attributes: [String: String], text: String)] {
        final class Collector: NSObject, XMLParserDelegate {
            var elements: [(name: String, attributes: [String: String], text: String)] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
                elements.append((name, attributes, ""))
                open.append(elements.count - 1)
            }
            func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
                _ = open.popLast()
            }
            func parser(_ parser: XMLParser, foundCharacters string: String) {
                // Only the text directly inside an element, not the line breaks between elements.
                if let i = open.last, elements.count - 1 == i { elements[i].text += string }
            }
            var open: [Int] = []   // the elements started and not yet ended
        }
        let parser = XMLParser(data: Data(s.utf8))
        let collector = Collector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        return collector.elements
    }

    func testDOTOfReadmeExample() throws {
        let (y, _, _, _) = try abc()
        let dot = graphDOT(y)
        XCTAssertTrue(dot.hasPrefix("digraph"))
        let nodeLines = dot.split(separator: "\n").filter { $0.range(of: #"^  n\d+ \[label="#, options: .regularExpression) != nil }
        XCTAssertEqual(nodeLines.count, 5)
        let labels = nodeLines.map { $0.split(separator: "\"")[1] }
        XCTAssertEqual(labels.filter { $0.hasPrefix("leaf\\n") }.count, 3)
        XCTAssertEqual(labels.filter { $0.hasPrefix("add\\n") }.count, 1)
        XCTAssertEqual(labels.filter { $0.hasPrefix("mul\\n") }.count, 1)
        // Values and leaf gradient norms: ‖a.grad‖ = ‖b.grad‖ = 4, ‖c.grad‖ = 1; y = -4, a + b = -1.
        XCTAssertEqual(labels.filter { $0.contains("‖grad‖ 4") }.count, 2)
        XCTAssertEqual(labels.filter { $0.contains("‖grad‖ 1") }.count, 1)
        XCTAssertTrue(labels.contains { $0.hasPrefix("mul\\n") && $0.contains("[-4]") && !$0.contains("grad") })
        XCTAssertTrue(labels.contains { $0.hasPrefix("add\\n") && $0.contains("[-1]") && $0.contains("shape [1]") })
        // 4 forward edges (a, b → add; add, c → mul) and 4 backward δ edges, dashed.
        let edges = dot.split(separator: "\n").filter { $0.contains(" -> ") }
        XCTAssertEqual(edges.filter { !$0.contains("dashed") }.count, 4)
        XCTAssertEqual(edges.filter { $0.contains("style=dashed") }.count, 4)
    }

    func testDOTDirectionsAndInputsWithoutGrad() throws {
        // x requires no grad: a forward edge from it, no δ edge to it; the Float constant is an input too.
        let x = Variable(try Tensor([1, 2], shape: [2]))
        let w = Variable(try Tensor([3, 4], shape: [2]), requiresGrad: true)
        let loss = sum(try x * w * 2)
        try loss.backward()
        let dot = graphDOT(loss, names: ["x": x, "w": w])
        let edges = dot.split(separator: "\n").filter { $0.contains(" -> ") }
        XCTAssertEqual(edges.filter { !$0.contains("dashed") }.count, 5)   // x, w → mul; mul, 2 → mul; mul → sum
        XCTAssertEqual(edges.filter { $0.contains("dashed") }.count, 3)    // sum → mul → mul → w
        XCTAssertTrue(dot.contains("x · input\\nshape [2]\\n[1, 2]\""))
        XCTAssertTrue(dot.contains("w · leaf\\nshape [2]\\n[3, 4]\\n‖grad‖ 4.472"))   // grad = 2x = [2, 4], ‖·‖ = √20
        // Forward edges go from a lower node number (inputs first) to a higher one; backward the other way.
        for e in edges {
            let ns = e.matches(of: /n(\d+)/).map { Int($0.1)! }
            XCTAssertEqual(ns.count, 2)
            if e.contains("dashed") { XCTAssertGreaterThan(ns[0], ns[1], String(e)) } else { XCTAssertLessThan(ns[0], ns[1], String(e)) }
        }
    }

    func testSVGOfReadmeExample() throws {
        let (y, a, _, _) = try abc()
        let svg = graphSVG(y, title: "(a + b) × c", names: ["a": a])
        let elements = parseXML(svg)
        XCTAssertEqual(elements.first?.name, "svg")
        XCTAssertEqual(elements.filter { $0.name == "rect" }.count, 5)
        XCTAssertEqual(elements.filter { $0.attributes["class"] == "forward" }.count, 4)
        XCTAssertEqual(elements.filter { $0.attributes["class"] == "backward" }.count, 4)
        XCTAssertTrue(elements.filter { $0.attributes["class"] == "backward" }.allSatisfy { $0.attributes["stroke-dasharray"] != nil })
        let texts = elements.filter { $0.name == "text" }.map(\.text)
        XCTAssertTrue(texts.contains("a · leaf"))
        XCTAssertEqual(texts.filter { $0 == "‖grad‖ 4" }.count, 2)
        XCTAssertTrue(texts.contains("(a + b) × c"))
        assertBoxesApart(elements)
        // Arrowheads are markers defined in the file.
        XCTAssertEqual(elements.filter { $0.name == "marker" }.count, 2)
    }

    private func assertBoxesApart(_ elements: [(name: String, attributes: [String: String], text: String)],
                                  file: StaticString = #filePath, line: UInt = #line) {
        let rects = elements.filter { $0.name == "rect" }.map { r -> (Double, Double, Double, Double) in
            (Double(r.attributes["x"]!)!, Double(r.attributes["y"]!)!, Double(r.attributes["width"]!)!, Double(r.attributes["height"]!)!)
        }
        for i in rects.indices { for j in rects.indices where i < j {
            let (p, q) = (rects[i], rects[j])
            let apart = p.0 + p.2 <= q.0 || q.0 + q.2 <= p.0 || p.1 + p.3 <= q.1 || q.1 + q.3 <= p.1
            XCTAssertTrue(apart, "boxes \(i) and \(j) overlap", file: file, line: line)
        } }
    }

    /// Forward arrows run left → right (or top → bottom), backward ones the other way, and every
    /// box lies inside the picture.
    func testLayoutsOfRegressionGraph() throws {
        let (loss, names) = try Self.regressionGraph()
        var widths: [Double] = []
        for layout in [GraphLayout.leftToRight, .topToBottom] {
            let elements = parseXML(graphSVG(loss, title: "regression", names: names, layout: layout))
            assertBoxesApart(elements)
            let vertical = layout == .topToBottom
            let (a1, a2) = vertical ? ("y1", "y2") : ("x1", "x2")
            for e in elements where e.attributes["class"] == "forward" || e.attributes["class"] == "backward" {
                let (p, q) = (Double(e.attributes[a1]!)!, Double(e.attributes[a2]!)!)
                if e.attributes["class"] == "forward" { XCTAssertLessThan(p, q, "\(layout)") } else { XCTAssertGreaterThan(p, q, "\(layout)") }
            }
            let svg = elements.first!.attributes
            let (width, height) = (Double(svg["width"]!)!, Double(svg["height"]!)!)
            for r in elements where r.name == "rect" {
                let (x, y) = (Double(r.attributes["x"]!)!, Double(r.attributes["y"]!)!)
                XCTAssertGreaterThanOrEqual(x, 0); XCTAssertGreaterThanOrEqual(y, 0)
                XCTAssertLessThanOrEqual(x + Double(r.attributes["width"]!)!, width)
                XCTAssertLessThanOrEqual(y + Double(r.attributes["height"]!)!, height)
            }
            widths.append(width)
        }
        // 8 ranks (W1, transpose, matmul, add, relu, matmul, add, mse): far narrower top → bottom.
        XCTAssertLessThan(widths[1], widths[0] / 2)
        // .automatic picks top → bottom for 8 ranks and left → right for the 3 of (a + b) × c.
        XCTAssertEqual(graphSVG(loss, names: names), graphSVG(loss, names: names, layout: .topToBottom))
        let (y, _, _, _) = try abc()
        XCTAssertEqual(graphSVG(y), graphSVG(y, layout: .leftToRight))
    }

    func testTextIsEscaped() throws {
        let a = Variable(try Tensor([1], shape: [1]), requiresGrad: true)
        let y = a * 3
        try y.backward()
        let svg = graphSVG(y, title: "a < b & c", names: ["\"x\" <&>": a])
        XCTAssertTrue(svg.contains("a &lt; b &amp; c"))
        XCTAssertFalse(svg.contains("a < b & c"))
        let elements = parseXML(svg)
        let texts = elements.filter { $0.name == "text" }.map(\.text)
        XCTAssertTrue(texts.contains("a < b & c"))
        XCTAssertTrue(texts.contains("\"x\" <&> · leaf"))
        // A control character XML cannot hold becomes U+FFFD; the file still parses.
        XCTAssertTrue(parseXML(graphSVG(y, title: "bell \u{07} nul \u{0}")).contains { $0.text == "bell \u{FFFD} nul \u{FFFD}" })
        let dot = graphDOT(y, title: "say \"hi\"\\", names: ["q\"": a])
        XCTAssertTrue(dot.contains(#"label="say \"hi\"\\";"#))
        XCTAssertTrue(dot.contains(#"[label="q\" · leaf\n"#))
    }

    func testLargeValuesAreSummarised() throws {
        let x = Variable(try Tensor([1, 2, 3, 4, 10], shape: [5]), requiresGrad: true)
        let dot = graphDOT(relu(x))
        XCTAssertTrue(dot.contains("min 1 mean 4 max 10"))
        XCTAssertTrue(dot.contains("grad: none yet"))
        XCTAssertFalse(dot.contains("[1, 2, 3"))
    }

    func testLongChainIsWalkedIteratively() throws {
        var v = Variable(try Tensor([1], shape: [1]), requiresGrad: true)
        for _ in 0..<20_000 { v = v + 1 }
        let dot = graphDOT(v)
        XCTAssertEqual(count(" -> ", in: dot), 2 * 20_000 + 20_000)   // value and constant forward, δ to the value
    }

    // MARK: - The README's pictures

    /// Linear(1,2) → ReLU → Linear(2,1) on y = 2x + 3 with MSE, weights of `RegressionExample.model()`.
    static func regressionGraph() throws -> (loss: Variable, names: [String: Variable]) {
        let model = try RegressionExample.model()
        let dense = model.layers.compactMap { $0 as? Dense }
        let (xt, yt) = try RegressionExample.data(count: 5)
        let x = Variable(xt), y = Variable(yt)
        let w1 = Variable(dense[0].weight.value.copy(), requiresGrad: true)    // [2, 1]
        let b1 = Variable(dense[0].bias!.value.copy(), requiresGrad: true)     // [2]
        let w2 = Variable(dense[1].weight.value.copy(), requiresGrad: true)    // [1, 2]
        let b2 = Variable(dense[1].bias!.value.copy(), requiresGrad: true)     // [1]
        let h = relu(try matmul(x, transpose(w1)) + b1)
        let prediction = try matmul(h, transpose(w2)) + b2
        let loss = try mse(prediction, y)
        try loss.backward()
        return (loss, ["x": x, "y": y, "W1": w1, "b1": b1, "W2": w2, "b2": b2])
    }

    func testRegressionPicture() throws {
        let (loss, names) = try Self.regressionGraph()
        XCTAssertEqual(names["W1"]!.shape, [2, 1])
        XCTAssertEqual(names["W2"]!.shape, [1, 2])
        let elements = parseXML(graphSVG(loss, names: names))
        // 6 named leaves + transpose, matmul, add, relu, transpose, matmul, add, mse.
        XCTAssertEqual(elements.filter { $0.name == "rect" }.count, 14)
        XCTAssertEqual(elements.filter { $0.attributes["class"] == "forward" }.count, 13)
        XCTAssertEqual(elements.filter { $0.attributes["class"] == "backward" }.count, 11)   // none to x, y
        let texts = elements.filter { $0.name == "text" }.map(\.text)
        for name in ["x · input", "y · input", "W1 · leaf", "b1 · leaf", "W2 · leaf", "b2 · leaf", "mse", "relu", "transpose"] {
            XCTAssertTrue(texts.contains(name), name)
        }
        XCTAssertEqual(texts.filter { $0.hasPrefix("‖grad‖ ") }.count, 4)
    }

    /// Writes docs/graph-abc.svg and docs/graph-regression.svg when BACKPROP_WRITE_PICTURES=1.
    func testWritePictures() throws {
        guard ProcessInfo.processInfo.environment["BACKPROP_WRITE_PICTURES"] == "1" else {
            throw XCTSkip("set BACKPROP_WRITE_PICTURES=1 to write docs/graph-*.svg")
        }
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs")
        let (y, a, b, c) = try abc()
        try graphSVG(y, title: "(a + b) × c after backward", names: ["a": a, "b": b, "c": c])
            .write(to: docs.appendingPathComponent("graph-abc.svg"), atomically: true, encoding: .utf8)
        let (loss, names) = try Self.regressionGraph()
        try graphSVG(loss, title: "Linear(1,2) → ReLU → Linear(2,1), MSE on y = 2x + 3 (5 samples) after backward", names: names)
            .write(to: docs.appendingPathComponent("graph-regression.svg"), atomically: true, encoding: .utf8)
    }
}
