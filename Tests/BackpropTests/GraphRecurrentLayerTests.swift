import XCTest
@testable import Backprop
import BackpropOptim

/// RNN, LSTM, GRU and SequenceClassifier on the graph: the layer API's values and gradients,
/// finite differences of the graph's gradients, one layer used on two sequences of one graph,
/// and training through the graph step for step against the layer API.
final class GraphRecurrentLayerTests: XCTestCase {
    // Sizes that are not multiples of 4 or 8 (the gate kernels' vector tails run too).
    let n = 3, t = 4, f = 5, h = 7

    static let cells: [RecurrentKind] = [.rnn(.tanh), .rnn(.relu), .lstm, .gru]

    func random(_ shape: [Int], seed: UInt64, range: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let x = try Tensor(zeros: shape)
        x.fillUniform(-range, range, using: &rng)
        return x
    }

    func make(_ cell: RecurrentKind, layers: Int = 1, sequences: Bool = true, truncation: Int? = nil,
              seed: UInt64 = 3) throws -> RecurrentLayer {
        var rng = SeededGenerator(seed: seed)
        return try RecurrentLayer.make(cell, inputSize: f, hiddenSize: h, numLayers: layers,
                                       returnSequences: sequences, truncation: truncation, rng: &rng)
    }

    func assertClose(_ a: [Float], _ b: [Float], _ what: String, tolerance: Float = 1e-6,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(what): element count", file: file, line: line)
        let scale = max(b.map(abs).max() ?? 1, 1e-6)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
        XCTAssertLessThanOrEqual(worst, tolerance * scale, what, file: file, line: line)
    }

    // MARK: - (1) The graph computes what the layer API computes

    /// Output, δ of the input and every parameter gradient (and ∂L/∂h_0, ∂L/∂c_0) of one graph
    /// call equal the layer API's forward/backward on the same input: every cell, one and two
    /// stacked layers, sequences and last step, one and two batch slices, with and without an
    /// initial state, with truncation.
    func testGraphMatchesTheLayerAPI() throws {
        var cases = 0
        for cell in Self.cells {
            for (layers, sequences, threads, state, truncation) in [
                (1, true, 1, false, nil), (2, true, 2, false, nil), (1, false, 1, true, nil), (2, false, 2, true, nil),
                (2, true, 1, true, 2),
            ] as [(Int, Bool, Int, Bool, Int?)] {
                let what = "\(cell), \(layers) layers, sequences \(sequences), \(threads) slices, state \(state), truncation \(String(describing: truncation))"
                let layer = try make(cell, layers: layers, sequences: sequences, truncation: truncation)
                layer.useThreads(threads)
                let x = try random([n, t, f], seed: 11)
                let dy = try random(sequences ? [n, t, h] : [n, h], seed: 12)
                let h0 = state ? try random([layers, n, h], seed: 13, range: 0.8) : nil
                let c0 = state && cell == .lstm ? try random([layers, n, h], seed: 14, range: 0.8) : nil

                layer.zeroGrad()
                let y = try layer.forward(x, initialHidden: h0, initialCell: c0).copy()
                let dx = try layer.backward(dy).copy()
                let layerGrads = layer.parameters.map(\.grad.scalars)
                let dh0 = layer.initialHiddenGradient.scalars, dc0 = layer.initialCellGradient.scalars
                layer.initialHidden = nil
                layer.initialCell = nil

                layer.zeroGrad()
                let xv = Variable(x.copy(), requiresGrad: true)
                let h0v = h0.map { Variable($0.copy(), requiresGrad: true) }
                let c0v = c0.map { Variable($0.copy(), requiresGrad: true) }
                let yv = try layer(xv, initialHidden: h0v, initialCell: c0v)
                XCTAssertEqual(yv.shape, y.shape, what)
                XCTAssertEqual(yv.op, layer.summary, what)
                assertClose(yv.value.scalars, y.scalars, "\(what): output")
                try yv.backward(gradient: dy)
                assertClose(xv.grad?.scalars ?? [], dx.scalars, "\(what): δ of the input")
                for (p, expected) in zip(layer.namedParameters, layerGrads) {
                    assertClose(p.parameter.grad.scalars, expected, "\(what): \(p.name)")
                }
                if let h0v { assertClose(h0v.grad?.scalars ?? [], dh0, "\(what): ∂L/∂h_0") }
                if let c0v { assertClose(c0v.grad?.scalars ?? [], dc0, "\(what): ∂L/∂c_0") }
                cases += 1
            }
        }
        XCTAssertEqual(cases, 20)
    }

    /// The layer's `initialHidden` property is the graph call's constant h_0 when none is passed,
    /// as in the layer API.
    func testInitialStatePropertyIsUsedAsAConstant() throws {
        for cell in [RecurrentKind.lstm, .gru] {
            let layer = try make(cell)
            let x = try random([n, t, f], seed: 21)
            layer.initialHidden = try random([1, n, h], seed: 22)
            let y = try layer.forward(x).copy()
            XCTAssertEqual(try layer(Variable(x)).value.scalars, y.scalars, "\(cell)")
            layer.initialHidden = nil
            XCTAssertNotEqual(try layer(Variable(x)).value.scalars, y.scalars, "\(cell): zeros differ")
        }
    }

    /// A SequenceClassifier on the graph: the logits and every gradient of its layer API.
    func testSequenceClassifierMatchesTheLayerAPI() throws {
        for cell in Self.cells {
            let model = try SequenceClassifier(kind: cell, inputSize: f, hiddenSize: h, numLayers: 2, classes: 4, seed: 5)
            let x = try random([n, t, f], seed: 31), dy = try random([n, 4], seed: 32)
            model.zeroGrad()
            let y = try model.forward(x).copy()
            let dx = try model.backward(dy).copy()
            let grads = model.parameters.map(\.grad.scalars)
            model.zeroGrad()
            let xv = Variable(x.copy(), requiresGrad: true)
            let yv = try model(xv)
            assertClose(yv.value.scalars, y.scalars, "\(cell): logits")
            try yv.backward(gradient: dy)
            assertClose(xv.grad?.scalars ?? [], dx.scalars, "\(cell): δ of the input")
            for (p, expected) in zip(model.namedParameters, grads) { assertClose(p.parameter.grad.scalars, expected, "\(cell): \(p.name)") }
        }
    }

    // MARK: - (2) Finite differences

    /// Central differences of L = Σ y ⊙ w (in Double) against the graph's gradients of the input,
    /// the initial state and every parameter.
    func testGraphGradientsMatchFiniteDifferences() throws {
        for cell in [RecurrentKind.rnn(.tanh), .lstm, .gru] {
            for sequences in [true, false] {
                let layer = try make(cell, layers: 2, sequences: sequences)
                let x = Variable(try random([n, t, f], seed: 41), requiresGrad: true)
                let h0 = Variable(try random([2, n, h], seed: 42, range: 0.8), requiresGrad: true)
                let c0 = cell == .lstm ? Variable(try random([2, n, h], seed: 43, range: 0.8), requiresGrad: true) : nil
                let w = try random(sequences ? [n, t, h] : [n, h], seed: 44)
                func loss() throws -> Double {
                    let y = try noGrad { try layer(x, initialHidden: h0, initialCell: c0) }.value
                    var s: Double = 0
                    for i in 0..<y.count { s += Double(y.data[i]) * Double(w.data[i]) }
                    return s
                }
                layer.zeroGrad()
                try layer(x, initialHidden: h0, initialCell: c0).backward(gradient: w)
                var tensors: [(String, Tensor, [Float])] = [("input", x.value, x.grad?.scalars ?? []),
                                                            ("h0", h0.value, h0.grad?.scalars ?? [])]
                if let c0 { tensors.append(("c0", c0.value, c0.grad?.scalars ?? [])) }
                for p in layer.namedParameters { tensors.append((p.name, p.parameter.value, p.parameter.grad.scalars)) }
                for (name, value, analytic) in tensors {
                    XCTAssertEqual(analytic.count, value.count, "\(cell) \(name)")
                    guard analytic.count == value.count else { continue }
                    var worst: Float = 0
                    for i in 0..<value.count {
                        let keep = value.data[i]
                        value.data[i] = keep + 1e-2
                        let up = try loss()
                        value.data[i] = keep - 1e-2
                        let down = try loss()
                        value.data[i] = keep
                        let numeric = Float((up - down) / 2e-2)
                        worst = max(worst, abs(numeric - analytic[i]) / max(1, abs(numeric)))
                    }
                    XCTAssertLessThan(worst, 2e-3, "\(cell), sequences \(sequences): \(name)")
                }
            }
        }
    }

    // MARK: - (3) One layer at two places of one graph

    /// One LSTM on two different sequences (different batch and length) in one graph whose losses
    /// are summed: the parameter gradients are the sum of the two separate runs, and each input
    /// receives its own run's gradient.
    func testLayerUsedOnTwoSequencesSumsItsGradients() throws {
        for cell in Self.cells {
            let layer = try make(cell, layers: 2, sequences: true)
            let x1 = try random([n, t, f], seed: 51), x2 = try random([n + 2, t + 3, f], seed: 52)
            let w1 = try random([n, t, h], seed: 53), w2 = try random([n + 2, t + 3, h], seed: 54)
            func separate(_ x: Tensor, _ w: Tensor) throws -> (dx: [Float], grads: [[Float]]) {
                layer.zeroGrad()
                let xv = Variable(x, requiresGrad: true)
                try sum(try layer(xv) * Variable(w)).backward()
                return (xv.grad?.scalars ?? [], layer.parameters.map(\.grad.scalars))
            }
            let first = try separate(x1, w1), second = try separate(x2, w2)
            // The layer API gives the same as the separate graph runs.
            layer.zeroGrad()
            _ = try layer.forward(x1)
            let layerDx1 = try layer.backward(w1).scalars
            assertClose(first.dx, layerDx1, "\(cell): graph run 1 against the layer API")

            layer.zeroGrad()
            let a = Variable(x1, requiresGrad: true), b = Variable(x2, requiresGrad: true)
            let loss = try sum(try layer(a) * Variable(w1)) + sum(try layer(b) * Variable(w2))
            try loss.backward()
            for (k, p) in layer.namedParameters.enumerated() {
                assertClose(p.parameter.grad.scalars, zip(first.grads[k], second.grads[k]).map { $0 + $1 }, "\(cell): \(p.name)",
                            tolerance: 1e-5)
            }
            assertClose(a.grad?.scalars ?? [], first.dx, "\(cell): δ of sequence 1")
            assertClose(b.grad?.scalars ?? [], second.dx, "\(cell): δ of sequence 2")
        }
    }

    /// A graph call neither reads nor disturbs the layer API's pending forward: forward, a graph
    /// call (forward and backward) of another batch, then the layer's backward gives what it gives
    /// without the graph call in between. A later graph call (reusing a spare tape) never
    /// overwrites an earlier call's result.
    func testGraphCallsKeepTheirOwnState() throws {
        for cell in Self.cells {
            let layer = try make(cell, layers: 2)
            let x = try random([n, t, f], seed: 61), dy = try random([n, t, h], seed: 62)
            layer.zeroGrad()
            _ = try layer.forward(x)
            let alone = try layer.backward(dy).scalars
            let aloneGrads = layer.parameters.map(\.grad.scalars)

            layer.zeroGrad()
            let y = try layer.forward(x)
            let expected = y.scalars
            let other = try random([n + 1, t + 1, f], seed: 63)
            let graphY = try layer(Variable(other, requiresGrad: true))
            try sum(graphY).backward()
            XCTAssertEqual(y.scalars, expected, "\(cell): the graph call left the layer's output alone")
            layer.zeroGrad()
            assertClose(try layer.backward(dy).scalars, alone, "\(cell): δ of the input")
            for (g, e) in zip(layer.parameters.map(\.grad.scalars), aloneGrads) { assertClose(g, e, "\(cell): gradients") }

            // The first graph node is gone after this: its tape is reused by the next calls.
            let kept = try layer(Variable(x)).value
            let keptValues = kept.scalars
            for seed in 64..<67 { _ = try layer(Variable(try random([n, t, f], seed: UInt64(seed)))) }
            XCTAssertEqual(kept.scalars, keptValues, "\(cell): a later call overwrote an earlier result")
            XCTAssertLessThanOrEqual(layer.spareTapes.count, RecurrentLayer.spareTapeLimit)
            XCTAssertFalse(layer.spareTapes.isEmpty, "\(cell): tapes of finished calls are kept for reuse")
        }
    }

    /// Once a call's node is gone its tape serves the next call: warm calls of one shape run on
    /// the same buffers (nothing of the passes' state is allocated again).
    func testWarmGraphCallsReuseTheirTape() throws {
        for cell in Self.cells {
            let layer = try make(cell, layers: 2)
            let x = try random([n, t, f], seed: 91)
            try sum(try layer(Variable(x, requiresGrad: true))).backward()   // the graph is gone after this line
            XCTAssertEqual(layer.spareTapes.count, 1, "\(cell)")
            let tape = try XCTUnwrap(layer.spareTapes.first)
            func buffers() -> [[UnsafeMutablePointer<Float>]] {
                tape.stages.map { [$0.gates.data, $0.gateGradient.data, $0.previous.data, $0.stepInput.data, $0.inputGradient.data] }
            }
            let before = buffers()
            for _ in 0..<3 { try sum(try layer(Variable(x, requiresGrad: true))).backward() }
            XCTAssertEqual(layer.spareTapes.count, 1, "\(cell)")
            XCTAssertTrue(layer.spareTapes.first === tape, "\(cell): the same tape")
            XCTAssertEqual(buffers(), before, "\(cell): the same buffers")
        }
    }

    // MARK: - (4) Training through the graph

    /// SGD with momentum on a SequenceClassifier through the graph (`crossEntropy`) against the
    /// layer API (`SoftmaxCrossEntropy`), step for step: the same losses and parameters.
    func testTrainingThroughTheGraphMatchesTheLayerAPI() throws {
        for cell in Self.cells {
            let a = try SequenceClassifier(kind: cell, inputSize: f, hiddenSize: h, classes: 3, seed: 7)
            let b = try SequenceClassifier(kind: cell, inputSize: f, hiddenSize: h, classes: 3, seed: 7)
            a.needsInputGradient = false
            let sa = try SGD(parameters: a.parameters, lr: 0.5, momentum: 0.9)
            let sb = try SGD(parameters: b.parameters, lr: 0.5, momentum: 0.9)
            let labels = [0, 2, 1, 1, 0]
            for step in 0..<4 {
                let x = try random([5, t, f], seed: 70 + UInt64(step))
                sa.zeroGrad()
                let (lossA, delta) = try SoftmaxCrossEntropy()(try a(x), labels: labels.map(Int32.init))
                _ = try a.backward(delta)
                try sa.step()
                sb.zeroGrad()
                let lossB = try crossEntropy(try b(Variable(x)), labels: labels)
                try lossB.backward()
                try sb.step()
                XCTAssertEqual(try lossB.item(), lossA, accuracy: 1e-5, "\(cell) step \(step): loss")
                for (p, q) in zip(a.namedParameters, b.namedParameters) {
                    assertClose(q.parameter.value.scalars, p.parameter.value.scalars, "\(cell) step \(step): \(p.name)", tolerance: 1e-5)
                }
            }
        }
    }

    // MARK: - Errors

    func testShapeErrorsAreTypedAndNameTheLayer() throws {
        let lstm = try make(.lstm), gru = try make(.gru)
        func expectShapeError(_ body: @autoclosure () throws -> Variable, _ what: String, line: UInt = #line) {
            XCTAssertThrowsError(try body(), what, line: line) { error in
                guard case .shapeMismatch(let place, let detail)? = error as? BackpropError else {
                    return XCTFail("\(what): \(error)", line: line)
                }
                XCTAssertTrue(place.hasPrefix("LSTM") || place.hasPrefix("GRU"), "\(what): \(place)", line: line)
                XCTAssertFalse(detail.isEmpty, line: line)
            }
        }
        expectShapeError(try lstm(Variable(try random([n, f], seed: 1))), "rank 2")
        expectShapeError(try lstm(Variable(try random([n, t, f + 1], seed: 1))), "features")
        expectShapeError(try lstm(Variable(try random([0, t, f], seed: 1))), "empty batch")
        expectShapeError(try lstm(Variable(try random([n, t, f], seed: 1)), initialHidden: Variable(try random([1, n + 1, h], seed: 2))),
                         "h_0 shape")
        expectShapeError(try lstm(Variable(try random([n, t, f], seed: 1)), initialHidden: nil,
                                  initialCell: Variable(try random([2, n, h], seed: 2))), "c_0 shape")
        XCTAssertThrowsError(try gru(Variable(try random([n, t, f], seed: 1)), initialHidden: nil,
                                     initialCell: Variable(try random([1, n, h], seed: 2)))) { error in
            guard case .invalidArgument(let message)? = error as? BackpropError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("GRU"), message)
        }
        // A wrong δ for the graph result is refused by the graph, before the layer's backward.
        let y = try lstm(Variable(try random([n, t, f], seed: 1), requiresGrad: true))
        XCTAssertThrowsError(try y.backward(gradient: try random([n, h], seed: 3)))
        // An optimizer step between the call and its backward is refused (W_ih, W_hh were saved).
        let optimizer = try SGD(parameters: lstm.parameters, lr: 0.1)
        let loss = sum(try lstm(Variable(try random([n, t, f], seed: 4))))
        try sum(try lstm(Variable(try random([n, t, f], seed: 4)))).backward()
        try optimizer.step()
        XCTAssertThrowsError(try loss.backward()) { error in
            guard case .invalidUse(let place, _)? = error as? BackpropError else { return XCTFail("\(error)") }
            XCTAssertTrue(place.hasPrefix("LSTM"), place)
        }
    }

    /// Sequential accepts recurrent layers on the graph.
    func testSequentialWithARecurrentLayerRunsOnTheGraph() throws {
        let model = Sequential(try make(.gru, sequences: false), try Dense(h, 2, seed: 9))
        let x = try random([n, t, f], seed: 81)
        let y = try model.forward(x).copy()
        XCTAssertEqual(try model(Variable(x)).value.scalars, y.scalars)
    }
}
