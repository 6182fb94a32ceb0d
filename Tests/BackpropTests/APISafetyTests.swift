import XCTest
@testable import Backprop
import BackpropOptim

/// Misuse of the layer API gets PyTorch's answer or a typed error naming the layer, never memory
/// corruption or silent wrong gradients. The first five tests are the cases found by using the
/// library as a new user would; the rest pin the contract around them.
final class APISafetyTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let t = try Tensor(zeros: shape)
        t.fillUniform(-1, 1, using: &rng)
        return t
    }

    func assertInvalidUse(_ body: @autoclosure () throws -> Any, mentioning words: [String],
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let .invalidUse(location, detail)? = error as? BackpropError else {
                return XCTFail("expected invalidUse, got \(error)", file: file, line: line)
            }
            let text = location + ": " + detail
            for word in words { XCTAssertTrue(text.contains(word), "\"\(word)\" not in: \(text)", file: file, line: line) }
        }
    }

    /// Parameter gradients of `model` by name, copied.
    func gradients(_ model: Layer) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter.grad.scalars) })
    }

    // MARK: - The five cases

    /// 1. One ReLU instance at two places of a Sequential, at widths 16 and 8. It used to write
    /// 4×16 floats into a 4×8 buffer in backward (heap corruption); now forward refuses the model,
    /// and the same chain run by hand (no container to check it) is refused by backward.
    func testOneInstanceAtTwoPlacesIsRefused() throws {
        let relu = ReLU()
        let d1 = try Dense(10, 16, seed: 0), d2 = try Dense(16, 8, seed: 1), d3 = try Dense(8, 3, seed: 2)
        let model = Sequential(d1, relu, d2, relu, d3)
        let x = try Tensor(zeros: [4, 10]); x.fill(0.5)
        assertInvalidUse(try model(x), mentioning: ["Sequential", "ReLU", "positions 1 and 3"])
        // Nested inside another container, too.
        let nested = Sequential(d1, Residual(Sequential(relu)), try Dense(16, 16, seed: 3), relu)
        assertInvalidUse(try nested(x), mentioning: ["positions 1.0.0 and 3"])
        // By hand: forward works (each call is well-formed), backward finds that the ReLU's second
        // call overwrote the activations the layer after its first place saved.
        let y = try d3(try relu(try d2(try relu(try d1(x)))))
        let dy = try Tensor(zeros: y.shape); dy.fill(1)
        let g = try relu.backward(try d3.backward(dy))
        assertInvalidUse(try d2.backward(g), mentioning: ["Dense(16 → 8)", "resized or overwritten"])
        // The heap is intact: allocate and compute freely.
        let big = try Tensor(zeros: [256, 256]); big.fill(1)
        XCTAssertEqual(big.scalars.reduce(0, +), 65536)
    }

    /// 2. The input resized between forward and backward (a loader reusing its buffer for a smaller
    /// last batch). Backward used to write 4×16 floats into a 1×16 buffer.
    func testInputResizedBetweenForwardAndBackward() throws {
        let d = try Dense(16, 8, seed: 4)
        let x = try random([4, 16], seed: 5)
        let y = try d(x)
        let dy = try random(y.shape, seed: 6)
        x.resize(to: [1, 16])
        assertInvalidUse(try d.backward(dy), mentioning: ["Dense(16 → 8)", "resized or overwritten"])
        // Written in place (fill, assign, subscript) counts the same: the gradient would be another input's.
        for change in [{ x.fill(0) }, { try? x.assign([Float](repeating: 1, count: x.count)) }, { x[0, 3] = 2 }] as [() -> Void] {
            x.resize(to: [4, 16]); x.fill(0.25)
            _ = try d(x)
            change()
            assertInvalidUse(try d.backward(dy), mentioning: ["resized or overwritten"])
        }
        // A fresh forward makes the layer usable again, with the right gradients.
        _ = try d(x)
        d.zeroGrad()
        XCTAssertEqual(try d.backward(dy).shape, [4, 16])
        let expected = try Dense(16, 8, seed: 4)
        _ = try expected(x.copy())
        _ = try expected.backward(dy)
        XCTAssertEqual(d.weight.grad.scalars, expected.weight.grad.scalars)
    }

    /// 3. One Tanh at two places of equal widths: the shapes fit, so nothing failed and the
    /// gradients were wrong (relative error 0.67). Refused in a container; refused by backward by hand.
    func testSharedElementwiseLayerNeverGivesWrongGradients() throws {
        let tanh = Tanh()
        let a = try Dense(6, 6, seed: 7), b = try Dense(6, 6, seed: 8)
        assertInvalidUse(try Sequential(a, tanh, b, tanh)(try random([3, 6], seed: 9)), mentioning: ["Tanh", "positions 1 and 3"])
        let x = try random([3, 6], seed: 9)
        let y = try tanh(try b(try tanh(try a(x))))
        let g = try tanh.backward(try random(y.shape, seed: 10))
        // b saved the first Tanh's output, which the second call overwrote (same shape).
        assertInvalidUse(try b.backward(g), mentioning: ["Dense(6 → 6)", "resized or overwritten"])
    }

    /// 4. A second forward (a logging batch) before backward: backward pairs with the most recent
    /// forward. Its gradients are that batch's (documented), and a δ shaped for the earlier batch
    /// is a shape error, never an out-of-bounds read.
    func testBackwardPairsWithTheMostRecentForward() throws {
        let model = Sequential(try Dense(5, 7, seed: 11), ReLU(), try Dense(7, 2, seed: 12))
        let train = try random([4, 5], seed: 13), logging = try random([4, 5], seed: 14)
        let dy = try random([4, 2], seed: 15)
        _ = try model(train)
        _ = try model(logging)
        model.zeroGrad()
        _ = try model.backward(dy)
        let got = gradients(model)
        model.zeroGrad()
        _ = try model(logging)
        _ = try model.backward(dy)
        XCTAssertEqual(got, gradients(model), "the gradients are the most recent forward's")
        // A logging batch of another size: the training batch's δ no longer fits.
        _ = try model(train)
        _ = try model(try random([2, 5], seed: 16))
        XCTAssertThrowsError(try model.backward(dy)) {
            guard case .shapeMismatch(let location, _)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertEqual(location, "Dense(7 → 2)")
        }
    }

    /// 5. Layers built without a seed draw from the default generator: two are different, and
    /// `manualSeed` repeats them exactly. Recurrent layers need no generator either.
    func testUnseededLayersDifferAndManualSeedRepeats() throws {
        manualSeed(42)
        let a = try Dense(8, 8), b = try Dense(8, 8)
        XCTAssertNotEqual(a.weight.value.scalars, b.weight.value.scalars)
        let p = try Dropout(p: 0.5), q = try Dropout(p: 0.5)
        let ones = try Tensor(zeros: [4, 32]); ones.fill(1)
        let mp = try p(ones).scalars, mq = try q(ones).scalars
        XCTAssertNotEqual(mp, mq, "two default dropouts draw different masks")
        let lstm = try LSTM(inputSize: 3, hiddenSize: 4), gru = try GRU(inputSize: 3, hiddenSize: 4), rnn = try RNN(inputSize: 3, hiddenSize: 4)
        let conv = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3)
        manualSeed(42)
        XCTAssertEqual(try Dense(8, 8).weight.value.scalars, a.weight.value.scalars)
        XCTAssertEqual(try Dense(8, 8).weight.value.scalars, b.weight.value.scalars)
        XCTAssertEqual(try Dropout(p: 0.5)(ones).scalars, mp)
        XCTAssertEqual(try Dropout(p: 0.5)(ones).scalars, mq)
        XCTAssertEqual(try LSTM(inputSize: 3, hiddenSize: 4).stateDict.map(\.tensor.scalars), lstm.stateDict.map(\.tensor.scalars))
        XCTAssertEqual(try GRU(inputSize: 3, hiddenSize: 4).stateDict.map(\.tensor.scalars), gru.stateDict.map(\.tensor.scalars))
        XCTAssertEqual(try RNN(inputSize: 3, hiddenSize: 4).stateDict.map(\.tensor.scalars), rnn.stateDict.map(\.tensor.scalars))
        XCTAssertEqual(try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3).weight.value.scalars, conv.weight.value.scalars)
        // An explicit seed does not touch the default generator.
        manualSeed(7)
        _ = try Dense(8, 8, seed: 1)
        let afterSeeded = try Dense(8, 8).weight.value.scalars
        manualSeed(7)
        XCTAssertEqual(try Dense(8, 8).weight.value.scalars, afterSeeded)
    }

    // MARK: - The rest of the contract

    func testBackwardBeforeForwardAndTwiceAreRefused() throws {
        var layers: [Layer] = [try Dense(3, 3, seed: 1), ReLU(), Tanh(), Sigmoid(), LeakyReLU(), GELU(), Softmax(),
                               try Dropout(p: 0.3, seed: 2), try BatchNorm(features: 3, kind: .d1)]
        layers.append(Residual(try Dense(3, 3, seed: 3)))
        for layer in layers {
            let dy = try random([4, 3], seed: 17)
            assertInvalidUse(try layer.backward(dy), mentioning: ["before forward"])
            _ = try layer(try random([4, 3], seed: 18))
            _ = try layer.backward(dy)
            assertInvalidUse(try layer.backward(dy), mentioning: ["twice"])
            _ = try layer(try random([4, 3], seed: 18))
            XCTAssertNoThrow(try layer.backward(dy), layer.summary)
        }
        let conv = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, seed: 4), pool = try MaxPool2D(kernelSize: 2)
        let avg = try AvgPool2D(kernelSize: 2), lstm = try LSTM(inputSize: 2, hiddenSize: 3, seed: 5)
        for (layer, shape) in [(conv, [2, 1, 6, 6]), (pool, [2, 1, 6, 6]), (avg, [2, 1, 6, 6]), (lstm, [2, 4, 2])] as [(Layer, [Int])] {
            let x = try random(shape, seed: 19)
            let y = try layer(x)
            let dy = try random(y.shape, seed: 20)
            _ = try layer.backward(dy)
            assertInvalidUse(try layer.backward(dy), mentioning: ["twice", layer.summary])
        }
    }

    /// A δ of the wrong shape is a shape error and leaves the layer ready for the right δ.
    func testWrongDeltaLeavesTheForwardUsable() throws {
        let model = Sequential(try Dense(4, 6, seed: 21), ReLU(), try Dense(6, 2, seed: 22))
        let x = try random([3, 4], seed: 23)
        _ = try model(x)
        XCTAssertThrowsError(try model.backward(try Tensor(zeros: [3, 5])))
        XCTAssertThrowsError(try model.backward(try Tensor(zeros: [2, 2])))
        XCTAssertEqual(try model.backward(try random([3, 2], seed: 24)).shape, [3, 4])
    }

    /// The output a layer returned, resized or refilled by the user before backward.
    func testOutputChangedByTheUserIsRefused() throws {
        let tanh = Tanh()
        let y = try tanh(try random([2, 5], seed: 25))
        let dy = try random([2, 5], seed: 26)
        y.resize(to: [1, 2])
        XCTAssertThrowsError(try tanh.backward(dy))
        let conv = try Conv2D(inChannels: 1, outChannels: 1, kernelSize: 3, seed: 27)
        let out = try conv(try random([2, 1, 5, 5], seed: 28))
        let dOut = try random(out.shape, seed: 29)
        out.resize(to: [1, 1, 3, 3])
        assertInvalidUse(try conv.backward(dOut), mentioning: ["Conv2D"])
    }

    /// `useThreads` between forward and backward: backward runs forward's stretch plan (in-place
    /// ReLU, folded mask), so the gradients are those of an unchanged run up to the order in which
    /// per-slice weight gradients are summed.
    func testThreadsChangedBetweenForwardAndBackward() throws {
        func model() throws -> Sequential {
            Sequential(try Conv2D(inChannels: 1, outChannels: 3, kernelSize: 3, padding: 1, seed: 30), ReLU(),
                       try MaxPool2D(kernelSize: 2), Flatten(), try Dense(3 * 4 * 4, 5, seed: 31), ReLU(), try Dense(5, 2, seed: 32))
        }
        let x = try random([6, 1, 8, 8], seed: 33), dy = try random([6, 2], seed: 34)
        for (before, after) in [(2, 1), (1, 2), (3, 2)] {
            let reference = try model(), changed = try model()
            reference.useThreads(before); changed.useThreads(before)
            _ = try reference(x); _ = try changed(x)
            changed.useThreads(after)
            let dxRef = try reference.backward(dy).copy(), dx = try changed.backward(dy).copy()
            XCTAssertEqual(dx.scalars, dxRef.scalars, "\(before) → \(after) threads")
            let got = gradients(changed)
            for (name, expected) in gradients(reference) {
                let scale = expected.map(abs).max() ?? 1
                for (a, b) in zip(got[name] ?? [], expected) {
                    XCTAssertEqual(a, b, accuracy: 1e-5 * scale, "\(name), \(before) → \(after) threads")
                }
            }
            // The next forward runs with the new count.
            _ = try changed(x)
            XCTAssertNoThrow(try changed.backward(dy))
        }
    }

    /// Views handed to `gemm` are checked against the tensor they lie in: a block past its end,
    /// before its start or with rows that overrun it is a shape error naming the caller.
    func testGemmOperandsAreCheckedAgainstTheirTensor() throws {
        let a = try random([4, 6], seed: 40), b = try random([6, 3], seed: 41), c = try Tensor(zeros: [4, 3])
        try gemm(Matrix(a), Matrix(b), into: Matrix(c))
        // rows 2...3 of a: fine; rows 3...4: one row past the end.
        try gemm(Matrix(a, offset: 12, rows: 2, columns: 6), Matrix(b), into: Matrix(c, rows: 2, columns: 3))
        for bad in [Matrix(a, offset: 18, rows: 2, columns: 6), Matrix(a, offset: -1, rows: 2, columns: 6),
                    Matrix(a, rows: 2, columns: 6, stride: 20)] {
            XCTAssertThrowsError(try gemm(bad, Matrix(b), into: Matrix(c, rows: 2, columns: 3), caller: "Test")) {
                guard case .shapeMismatch(let location, let detail)? = $0 as? BackpropError else { return XCTFail("\($0)") }
                XCTAssertEqual(location, "Test")
                XCTAssertTrue(detail.contains("outside its tensor"), detail)
            }
        }
        // The output too, and a block moved past the end with `advanced`.
        XCTAssertThrowsError(try gemm(Matrix(a), Matrix(b), into: Matrix(c, offset: 3, rows: 4, columns: 3)))
        XCTAssertThrowsError(try gemm(Matrix(a).advanced(by: 6), Matrix(b), into: Matrix(c)))
        XCTAssertThrowsError(try transpose(Matrix(a, offset: 1, rows: 4, columns: 6), into: Matrix(try Tensor(zeros: [6, 4]))))
        // A tensor resized after the matrix was made is caught by its layer (ForwardRecord); a
        // matrix made after a shrink sees the new count.
        a.resize(to: [2, 6])
        XCTAssertThrowsError(try gemm(Matrix(a, rows: 4, columns: 6), Matrix(b), into: Matrix(c)))
    }

    /// An optimizer step (or a write to a weight) between a forward and its backward: backward
    /// would read the new weights (δX = δY·W), so it is refused, as PyTorch refuses a saved tensor
    /// modified in place. Stepping after backward, as a training loop does, is fine.
    func testParametersChangedBetweenForwardAndBackwardAreRefused() throws {
        let cases: [(Layer, [Int])] = [(try Dense(4, 3, seed: 50), [2, 4]),
                                       (try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, seed: 51), [2, 1, 5, 5]),
                                       (try BatchNorm(features: 4, kind: .d1), [3, 4]),
                                       (try LSTM(inputSize: 2, hiddenSize: 3, seed: 52), [2, 3, 2])]
        for (layer, shape) in cases {
            let x = try random(shape, seed: 53)
            let optimizer = try SGD(parameters: layer.parameters, lr: 0.1)
            let dy = try random(try layer(x).shape, seed: 54)
            _ = try layer.backward(dy)
            try optimizer.step()                                   // after backward: the usual loop
            _ = try layer(x)
            try optimizer.step()                                   // before backward
            assertInvalidUse(try layer.backward(dy), mentioning: [layer.summary, "parameter changed"])
            _ = try layer(x)
            layer.parameters[0].value.fill(0.5)                    // a write through Tensor's methods
            assertInvalidUse(try layer.backward(dy), mentioning: ["parameter changed"])
            _ = try layer(x)
            XCTAssertNoThrow(try layer.backward(dy), layer.summary)
        }
    }
}
