import XCTest
@testable import Backprop

/// `CapturedGraph`: a recorded graph replayed step after step gives what running the same code
/// afresh (an ordinary graph) gives — the loss and every gradient, with parameters that change
/// between steps and new input values each step — for every op and every layer on the graph;
/// shapes that change are recorded afresh; ops that cannot be replayed fall back; errors are
/// typed; once warm a replay keeps its buffers.
final class CapturedGraphTests: XCTestCase {
    /// A model: its trainable leaves (parameters' leaves or plain leaves with requiresGrad) and
    /// the step's body over the input leaves.
    typealias Setup = (leaves: [Variable], body: ([Variable]) throws -> Variable)

    func random(_ shape: [Int], seed: UInt64, range: Float = 1) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-range, range, using: &rng)
        return t
    }

    func labels(_ n: Int, classes: Int, seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return try Tensor((0..<n).map { _ in Float(rng.next() % UInt64(classes)) }, shape: [n])
    }

    /// Runs two setups made alike over the same input sets: one through an ordinary graph built
    /// afresh each step, one through a `CapturedGraph`; after each step both take the same SGD
    /// step on their leaves. Losses and gradients must agree at every step.
    func assertReplayMatchesFreshGraph(_ make: () throws -> Setup, inputs: [[Tensor]], tolerance: Float = 1e-6,
                                       file: StaticString = #filePath, line: UInt = #line) throws -> CapturedGraph {
        let fresh = try make(), replayed = try make()
        let step = CapturedGraph(replayed.body)
        for (s, batch) in inputs.enumerated() {
            for v in fresh.leaves + replayed.leaves { v.grad = nil }
            let a = try fresh.body(batch.map { Variable($0.copy()) })
            try a.backward()
            let b = try step.forward(batch)
            try step.backward()
            XCTAssertEqual(b.shape, a.shape, "step \(s): shape", file: file, line: line)
            XCTAssertEqual(b.value.scalars, a.value.scalars, "step \(s): loss", file: file, line: line)
            for (k, (u, v)) in zip(fresh.leaves, replayed.leaves).enumerated() {
                let gu = u.grad?.scalars ?? [], gv = v.grad?.scalars ?? []
                XCTAssertEqual(gu.count, gv.count, "step \(s): leaf \(k) gradient count", file: file, line: line)
                let worst = zip(gu, gv).map { abs($0 - $1) }.max() ?? 0
                let scale = max(gu.map(abs).max() ?? 0, 1e-3)
                XCTAssertLessThanOrEqual(worst, tolerance * scale, "step \(s): leaf \(k) gradient", file: file, line: line)
                XCTAssertFalse(gu.isEmpty || gu.allSatisfy { $0 == 0 }, "step \(s): leaf \(k) got no gradient", file: file, line: line)
            }
            for v in fresh.leaves + replayed.leaves {   // SGD, so the next step runs on other weights
                guard let g = v.grad else { continue }
                for i in 0..<v.value.count { v.value.data[i] -= 0.05 * g.data[i] }
                v.value.markChanged()
            }
        }
        return step
    }

    func testEveryOpReplaysAsAFreshGraph() throws {
        func make() throws -> Setup {
            let w1 = Variable(try random([3, 5], seed: 1), requiresGrad: true)
            let b1 = Variable(try random([5], seed: 2), requiresGrad: true)
            let w3 = Variable(try random([2, 5, 2], seed: 3), requiresGrad: true)
            let body: ([Variable]) throws -> Variable = { inputs in
                let (x, target) = (inputs[0], inputs[1])
                let h = tanh(try matmul(x, w1) + b1)                                   // [4, 5]
                let s = try sigmoid(h) * h - exp(h * 0.1) / (2 + relu(h))
                let g = gelu(s, approximate: .tanh)
                let t = try transpose(try reshape(g, [2, 10]))                         // [10, 2]
                let c = try concat([g, g * 2], axis: 1)                                // [4, 10]
                let r = try rows(c, 1..<3)                                              // [2, 10]
                let m = try mean(r, axis: 1, keepDim: true)                             // [2, 1]
                let ls = try logSoftmax(c), sm = try softmax(c, axis: 0)
                let g3 = try reshape(g, [2, 2, 5])
                let b3 = try matmul(g3, try transpose(g3, 1, 2))                        // [2, 2, 2]
                let p3 = try matmul(g3, w3)                                             // [2, 2, 2]
                var loss = try sum(ls * sm) + mean(log(sigmoid(m) + 1))
                loss = try loss + crossEntropy(c, target: target) + mean(b3) + sum(p3 * p3)
                loss = try loss + mse(g, -h) + sum(t) * 0.01 + sum(try sum(r / (exp(r) + 1), axis: 0))
                return loss
            }
            return ([w1, b1, w3], body)
        }
        let batches = try (0..<4).map { i in [try random([4, 3], seed: 10 + UInt64(i)), try labels(4, classes: 10, seed: 20 + UInt64(i))] }
        let step = try assertReplayMatchesFreshGraph(make, inputs: batches)
        XCTAssertNil(step.replayBlocker)
        XCTAssertEqual(step.captures, 1)
    }

    func testConvolutionalLayersReplayAsAFreshGraph() throws {
        func make() throws -> Setup {
            let model = Sequential([
                try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, seed: 1),
                try BatchNorm(features: 2, kind: .d2),
                LeakyReLU(negativeSlope: 0.1),
                try MaxPool2D(kernelSize: 2),
                try Dropout(p: 0.3, seed: 4),
                try AvgPool2D(kernelSize: (1, 1)),
                Flatten(),
                try Dense(18, 8, seed: 2),
                try LayerNorm(8),
                SiLU(),
                try Dense(8, 4, seed: 3),
            ])
            return (model.namedParameters.map(\.parameter.variable), { inputs in
                try crossEntropy(try model(inputs[0]), target: inputs[1])
            })
        }
        let batches = try (0..<3).map { i in [try random([3, 1, 6, 6], seed: 30 + UInt64(i)), try labels(3, classes: 4, seed: 40 + UInt64(i))] }
        let step = try assertReplayMatchesFreshGraph(make, inputs: batches)
        XCTAssertNil(step.replayBlocker)
        XCTAssertEqual(step.captures, 1)
    }

    func testRecurrentLayersReplayAsAFreshGraph() throws {
        for kind in [RecurrentKind.lstm, .gru, .rnn] {
            func make() throws -> Setup {
                let model = try SequenceClassifier(kind: kind, inputSize: 3, hiddenSize: 4, numLayers: 2, classes: 3, seed: 5)
                return (model.namedParameters.map(\.parameter.variable), { inputs in
                    try crossEntropy(try model(inputs[0]), target: inputs[1])
                })
            }
            let batches = try (0..<3).map { i in [try random([2, 5, 3], seed: 50 + UInt64(i)), try labels(2, classes: 3, seed: 60 + UInt64(i))] }
            let step = try assertReplayMatchesFreshGraph(make, inputs: batches, tolerance: 1e-5)
            XCTAssertNil(step.replayBlocker, "\(kind)")
            XCTAssertEqual(step.captures, 1, "\(kind)")
        }
    }

    /// A batch of another size is recorded afresh (and the graph for it kept until the next change).
    func testAnotherShapeIsRecordedAfresh() throws {
        func make() throws -> Setup {
            let model = Sequential([try Dense(6, 5, seed: 1), ReLU(), try Dense(5, 3, seed: 2)])
            return (model.namedParameters.map(\.parameter.variable), { inputs in
                try crossEntropy(try model(inputs[0]), target: inputs[1])
            })
        }
        let sizes = [4, 4, 3, 3, 4]
        let batches = try sizes.enumerated().map { i, n in [try random([n, 6], seed: 70 + UInt64(i)), try labels(n, classes: 3, seed: 80 + UInt64(i))] }
        let step = try assertReplayMatchesFreshGraph(make, inputs: batches)
        XCTAssertEqual(step.captures, 2, "one recording for 4 rows, one for 3, both kept")
        let one = CapturedGraph(keep: 1, try make().body)
        for batch in batches { try one.forward(batch) }
        XCTAssertEqual(one.captures, 3, "keeping one recording: 4, then 3, then 4 again")
    }

    /// Once warm, a replay hands back the same value and keeps the same backward buffers.
    func testAWarmReplayKeepsItsTensors() throws {
        let model = Sequential([try Dense(6, 5, seed: 1), ReLU(), try Dense(5, 3, seed: 2)])
        let step = CapturedGraph { inputs in try crossEntropy(try model(inputs[0]), target: inputs[1]) }
        let x = try random([4, 6], seed: 1), t = try labels(4, classes: 3, seed: 2)
        let first = try step.forward([x, t])
        try step.backward()
        let buffers = step.backwardBufferCount
        XCTAssertGreaterThan(buffers, 0)
        for _ in 0..<3 {
            let again = try step.forward([x, t])
            XCTAssertTrue(again === first)
            XCTAssertTrue(again.value === first.value)
            try step.backward()
            XCTAssertEqual(step.backwardBufferCount, buffers)
        }
    }

    /// An op that cannot be replayed (labels or indices given as Swift arrays) makes every call
    /// run the body afresh: still the right gradients, and the op named.
    func testAnOpThatCannotReplayFallsBackAndIsNamed() throws {
        var calls = 0
        let embedding = try Embedding(5, 3, seed: 1)
        let step = CapturedGraph { _ in
            calls += 1
            return sum(try embedding([1, 3, 1]))
        }
        for _ in 0..<3 {
            embedding.weight.zeroGrad()
            try step.forward([])
            try step.backward()
        }
        XCTAssertEqual(step.replayBlocker, "Embedding(5, 3)")
        XCTAssertEqual(calls, 3)
        XCTAssertEqual(Array(embedding.weight.grad.scalars[3..<6]), [2, 2, 2], "row 1 used twice")

        let dense = try Dense(2, 3, seed: 1)
        let byArray = CapturedGraph { inputs in try crossEntropy(try dense(inputs[0]), labels: [0, 2]) }
        try byArray.forward([try random([2, 2], seed: 3)])
        XCTAssertEqual(byArray.replayBlocker, "crossEntropy")
    }

    func testMisuseIsATypedError() throws {
        let dense = try Dense(2, 3, seed: 1)
        let step = CapturedGraph { inputs in try crossEntropy(try dense(inputs[0]), target: inputs[1]) }
        XCTAssertThrowsError(try step.backward()) { XCTAssertTrue("\($0)".contains("forward")) }
        let x = try random([2, 2], seed: 3)
        try step.forward([x, try Tensor([0, 2], shape: [2])])
        try step.backward()
        XCTAssertThrowsError(try step.backward(), "a second backward for one forward")
        // A bad label on a replay is the op's typed error; the next good call works.
        XCTAssertThrowsError(try step.forward([x, try Tensor([0, 3], shape: [2])])) { error in
            guard case BackpropError.invalidArgument(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("row 1"), m)
        }
        XCTAssertThrowsError(try step.forward([x, try Tensor([0.5, 1], shape: [2])]))
        let loss = try step.forward([x, try Tensor([1, 2], shape: [2])])
        try step.backward()
        XCTAssertTrue(loss.value.data[0].isFinite)
        // Inputs of the wrong shape for the body are its shape error, not a crash.
        XCTAssertThrowsError(try step.forward([try random([2, 5], seed: 4), try Tensor([0, 1], shape: [2])]))
        // backward(gradient:) of the wrong shape.
        try step.forward([x, try Tensor([1, 2], shape: [2])])
        XCTAssertThrowsError(try step.backward(gradient: try Tensor(zeros: [2])))
    }

    /// A parameter changed between forward and backward (an optimizer step in the wrong place)
    /// is refused, as in an ordinary graph.
    func testAParameterChangedBeforeBackwardIsRefused() throws {
        let dense = try Dense(2, 3, seed: 1)
        let step = CapturedGraph { inputs in try crossEntropy(try dense(inputs[0]), target: inputs[1]) }
        let x = try random([2, 2], seed: 3), t = try Tensor([0, 2], shape: [2])
        for _ in 0..<2 {
            try step.forward([x, t])
            try step.backward()
        }
        try step.forward([x, t])
        dense.weight.value.fill(0.5)
        XCTAssertThrowsError(try step.backward()) { error in
            guard case BackpropError.invalidUse = error else { return XCTFail("\(error)") }
        }
    }
}
