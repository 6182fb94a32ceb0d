/// The convolutional family and the remaining element-wise layers on the graph (`GraphLayer`):
/// Conv2D, MaxPool2D, AvgPool2D, BatchNorm, Dropout, LeakyReLU, Softmax and Residual.
///
/// As for `Dense`, each call records one node that holds its own saved tensors (captured by its
/// backward; those that other code can reach — the input, the weights — are also listed in
/// `saving:` for the version check), and runs the layer's own math: the static functions its
/// layer API calls (`Conv2D.forward`/`backward`, `MaxPool2D.forward`/`backward`, …), here on the
/// whole batch at once with buffers of the call's own. Nothing of a call is kept by the layer
/// instance, so a layer may appear at several places of one graph.

extension Conv2D: GraphLayer {
    /// The convolution on the graph: `Conv2D.forward` over the whole batch; backward rebuilds the
    /// columns from the saved input (`Conv2D.backward`), as the layer does.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let pl = try plan(for: x.shape)
        let xv = x.value, w = weight.value, name = summary, hasBias = bias != nil
        let y = Tensor(uninitializedShape: [pl.n, pl.outChannels, pl.ho, pl.wo])
        let workspace = SliceBuffers(), b = bias?.value
        let forward = {
            workspace.prepare(pl, inputGradient: false)
            if pl.rows { Conv2D.layRowWeights(w, pl, into: workspace.rowWeights) }
            try Conv2D.forward(images: 0..<pl.n, x: xv, weight: w, rowWeights: workspace.rowWeights, bias: b, plan: pl,
                               workspace: workspace, into: y, caller: name)
        }
        try forward()
        var inputs = [x, weight.variable]
        if let bias { inputs.append(bias.variable) }
        let xShape = xv.shape, wShape = w.shape, bShape = [pl.outChannels]
        let backWorkspace = SliceBuffers()   // the call's own, kept for a replayed backward
        return Variable.result(name, inputs, y, saving: [xv, w], forward: forward) { dy, needs in
            let dx = needs[0] ? graphTensor(xShape, zeroed: true) : nil
            let dW = graphTensor(wShape, zeroed: true)
            let db = hasBias ? graphTensor(bShape, zeroed: true) : nil       // added into
            if pl.n > 0 {
                backWorkspace.prepare(pl, inputGradient: dx != nil)
                backWorkspace.transposedBeta = 0
                if pl.rows && dx != nil { Conv2D.layRowWeights(w, pl, into: backWorkspace.rowWeights) }
                try Conv2D.backward(images: 0..<pl.n, x: xv, dy: dy, weight: w, rowWeights: backWorkspace.rowWeights, plan: pl,
                                    workspace: backWorkspace,
                                    weightGradient: pl.transposedWeightGradient ? nil : (dW, 0), biasGradient: db,
                                    inputGradient: dx, caller: name)
                Conv2D.finishWeightGradient(pl, workspace: backWorkspace, into: (dW, 0))
            }
            return InputGradients(dx, dW, db)
        }
    }
}

/// Int32 storage owned by one graph call (the max pooling's argmax indices).
final class MaxPoolIndices {
    let base: UnsafeMutablePointer<Int32>
    init(count: Int) {
        base = .allocate(capacity: Swift.max(count, 1))
        base.initialize(repeating: 0, count: Swift.max(count, 1))
    }
    deinit { base.deallocate() }
}

extension MaxPool2D: GraphLayer {
    /// Max pooling on the graph (`MaxPool2D.forward`/`backward`); the node keeps the argmax
    /// indices of its call.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        let xv = x.value, inShape = x.shape, g = geometry, images = 0..<inShape[0]
        let y = Tensor(uninitializedShape: outShape)
        let argmax = MaxPoolIndices(count: y.count)
        let forward = { MaxPool2D.forward(images: images, x: xv, geometry: g, into: y, argmax: argmax.base) }
        forward()
        return Variable.result(summary, [x], y, forward: forward) { dy, _ in
            let dx = graphTensor(inShape, zeroed: true)
            MaxPool2D.backward(images: images, dy: dy, argmax: argmax.base, geometry: g, reluMask: nil, into: dx)
            return InputGradients(dx)
        }
    }
}

extension AvgPool2D: GraphLayer {
    /// Average pooling on the graph (`AvgPool2D.forward`/`backward`).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        let inShape = x.shape, g = geometry, includePad = countIncludePad
        let y = Tensor(uncheckedShape: outShape), xv = x.value
        let forward = { AvgPool2D.forward(xv, geometry: g, countIncludePad: includePad, into: y) }
        forward()
        return Variable.result(summary, [x], y, forward: forward) { dy, _ in
            let dx = graphTensor(inShape, zeroed: true)
            AvgPool2D.backward(dy, geometry: g, countIncludePad: includePad, into: dx)
            return InputGradients(dx)
        }
    }
}

extension BatchNorm: GraphLayer {
    /// Batch normalisation on the graph (`BatchNorm.forward`/`backward`). Training mode
    /// normalises with the batch's statistics, differentiates through them, and updates the
    /// running statistics once per call (as PyTorch, also under `noGrad`); eval mode normalises
    /// with the running statistics. The node keeps its call's x̂ and 1/√(σ² + ε).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let (n, s) = try layout(x.shape)
        let training = isTraining, shape = x.shape
        let y = Tensor(uncheckedShape: x.shape), normalized = Tensor(uncheckedShape: x.shape)
        let inverseStd = Tensor(uncheckedShape: [features])
        let gamma = weight?.value, beta = bias?.value, xv = x.value, eps = self.eps
        let runningMean = self.runningMean, runningVar = self.runningVar
        let forward = {
            // The running statistics move once per call, and once per replay of it.
            let update = training ? try self.beginTrainingPass(shape, n: n, s: s) : nil
            BatchNorm.forward(xv, n: n, s: s, gamma: gamma, beta: beta, eps: eps,
                              runningMean: runningMean, runningVar: runningVar, update: update,
                              into: y, normalized: normalized, invStd: inverseStd)
        }
        try forward()
        var inputs = [x]
        if let weight, let bias { inputs += [weight.variable, bias.variable] }
        let affine = inputs.count == 3, cShape = [features]
        return Variable.result(summary, inputs, y, saving: gamma.map { [$0] } ?? [], forward: forward) { dy, needs in
            let dx = graphTensor(dy.shape)
            let dGamma = affine ? graphTensor(cShape, zeroed: true) : nil     // added into
            let dBeta = affine ? graphTensor(cShape, zeroed: true) : nil
            BatchNorm.backward(dy, n: n, s: s, normalized: normalized, invStd: inverseStd, gamma: gamma,
                               trainingStatistics: training, gammaGradient: dGamma, betaGradient: dBeta, into: dx)
            return affine ? InputGradients(needs[0] ? dx : nil, dGamma, dBeta) : InputGradients(dx)
        }
    }
}

extension Dropout: GraphLayer {
    /// Dropout on the graph: in training mode (p > 0) a mask drawn per call from the layer's
    /// generator (the draws the layer API makes; with `freezeMask`, the layer's frozen mask) and
    /// kept by the node; in eval mode the identity (`x` itself, as PyTorch returns its input).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        guard isTraining && p > 0 else { return x }
        let mask = Tensor(uninitializedShape: x.shape), y = Tensor(uninitializedShape: x.shape)
        let xv = x.value, shape = x.shape, frozen = freezeMask, p = self.p
        let forward = {
            // A fresh mask per call, and per replay of it (the frozen one with `freezeMask`).
            if frozen {
                mask.data.update(from: self.frozenOrFreshMask(for: shape).data, count: mask.count)
            } else {
                Dropout.drawMask(into: mask, p: p, using: &self.rng)
            }
            elementwiseMultiply(xv.data, mask.data, into: y.data, count: y.count)
        }
        forward()
        return Variable.result(summary, [x], y, saving: [mask], forward: forward) { dy, _ in
            let dx = graphTensor(dy.shape)
            elementwiseMultiply(dy.data, mask.data, into: dx.data, count: dy.count)
            return InputGradients(dx)
        }
    }
}

extension LeakyReLU: GraphLayer {
    /// Leaky ReLU on the graph (`LeakyReLU.forward`/`backward`, reading the saved input).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let xv = x.value, a = negativeSlope
        let y = Tensor(uninitializedShape: x.shape)
        let forward = { LeakyReLU.forward(xv, a, into: y) }
        forward()
        return Variable.result(summary, [x], y, saving: [xv], forward: forward) { dy, _ in
            let dx = graphTensor(dy.shape)
            LeakyReLU.backward(xv, dy, a, into: dx)
            return InputGradients(dx)
        }
    }
}

extension Softmax: GraphLayer {
    /// Softmax over the last dimension: the graph's `softmax` (the layer's `softmaxSlice` math).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        guard let c = x.shape.last, c > 0 else {
            throw BackpropError.shapeMismatch(where: summary, detail: "needs a non-empty last dimension, got input \(x.shape)")
        }
        return try softmax(x, axis: -1)
    }
}

extension Residual: GraphLayer {
    /// x + block(x) on the graph; the block must be a `GraphLayer` (a typed error otherwise).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        guard let f = block as? GraphLayer else {
            throw BackpropError.invalidArgument("\(summary): its block, \(block.summary), cannot run on the graph yet")
        }
        let fx = try f(x)
        guard fx.shape == x.shape else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "the block maps input \(x.shape) to \(fx.shape); a residual needs equal shapes")
        }
        return try x + fx
    }
}
