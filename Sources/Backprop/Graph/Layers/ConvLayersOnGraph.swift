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
        let y = Tensor(uncheckedShape: [pl.n, pl.outChannels, pl.ho, pl.wo])
        let workspace = SliceBuffers()
        workspace.prepare(pl, inputGradient: false)
        try Conv2D.forward(images: 0..<pl.n, x: xv, weight: w, bias: bias?.value, plan: pl, workspace: workspace,
                           into: y, caller: name)
        var inputs = [x, weight.variable]
        if let bias { inputs.append(bias.variable) }
        return Variable.result(name, inputs, y, saving: [xv, w]) { dy, needs in
            let dx = needs[0] ? Tensor(uncheckedShape: xv.shape) : nil
            let dW = Tensor(uncheckedShape: w.shape)                               // zeros
            let db = hasBias ? Tensor(uncheckedShape: [pl.outChannels]) : nil       // zeros, added into
            if pl.n > 0 {
                let workspace = SliceBuffers()
                workspace.prepare(pl, inputGradient: dx != nil)
                try Conv2D.backward(images: 0..<pl.n, x: xv, dy: dy, weight: w, plan: pl, workspace: workspace,
                                    weightGradient: (dW, 0), biasGradient: db, inputGradient: dx, caller: name)
            }
            return hasBias ? [dx, dW, db] : [dx, dW]
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
        let y = Tensor(uncheckedShape: outShape)
        let argmax = MaxPoolIndices(count: y.count)
        MaxPool2D.forward(images: images, x: xv, geometry: g, into: y, argmax: argmax.base)
        return Variable.result(summary, [x], y) { dy, _ in
            let dx = Tensor(uncheckedShape: inShape)
            MaxPool2D.backward(images: images, dy: dy, argmax: argmax.base, geometry: g, reluMask: nil, into: dx)
            return [dx]
        }
    }
}

extension AvgPool2D: GraphLayer {
    /// Average pooling on the graph (`AvgPool2D.forward`/`backward`).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        let inShape = x.shape, g = geometry, includePad = countIncludePad
        let y = Tensor(uncheckedShape: outShape)
        AvgPool2D.forward(x.value, geometry: g, countIncludePad: includePad, into: y)
        return Variable.result(summary, [x], y) { dy, _ in
            let dx = Tensor(uncheckedShape: inShape)
            AvgPool2D.backward(dy, geometry: g, countIncludePad: includePad, into: dx)
            return [dx]
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
        let training = isTraining
        let update = training ? try beginTrainingPass(x.shape, n: n, s: s) : nil
        let y = Tensor(uncheckedShape: x.shape), normalized = Tensor(uncheckedShape: x.shape)
        let inverseStd = Tensor(uncheckedShape: [features])
        let gamma = weight?.value
        BatchNorm.forward(x.value, n: n, s: s, gamma: gamma, beta: bias?.value, eps: eps,
                          runningMean: runningMean, runningVar: runningVar, update: update,
                          into: y, normalized: normalized, invStd: inverseStd)
        var inputs = [x]
        if let weight, let bias { inputs += [weight.variable, bias.variable] }
        let affine = inputs.count == 3, c = features
        return Variable.result(summary, inputs, y, saving: gamma.map { [$0] } ?? []) { dy, needs in
            let dx = Tensor(uncheckedShape: dy.shape)
            let dGamma = affine ? Tensor(uncheckedShape: [c]) : nil     // zeros, added into
            let dBeta = affine ? Tensor(uncheckedShape: [c]) : nil
            BatchNorm.backward(dy, n: n, s: s, normalized: normalized, invStd: inverseStd, gamma: gamma,
                               trainingStatistics: training, gammaGradient: dGamma, betaGradient: dBeta, into: dx)
            return affine ? [needs[0] ? dx : nil, dGamma, dBeta] : [dx]
        }
    }
}

extension Dropout: GraphLayer {
    /// Dropout on the graph: in training mode (p > 0) a mask drawn per call from the layer's
    /// generator (the draws the layer API makes; with `freezeMask`, the layer's frozen mask) and
    /// kept by the node; in eval mode the identity (`x` itself, as PyTorch returns its input).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        guard isTraining && p > 0 else { return x }
        let mask: Tensor
        if freezeMask {
            mask = frozenOrFreshMask(for: x.shape).copy()
        } else {
            mask = Tensor(uncheckedShape: x.shape)
            Dropout.drawMask(into: mask, p: p, using: &rng)
        }
        let y = Tensor(uncheckedShape: x.shape)
        elementwiseMultiply(x.value.data, mask.data, into: y.data, count: y.count)
        return Variable.result(summary, [x], y, saving: [mask]) { dy, _ in
            let dx = Tensor(uncheckedShape: dy.shape)
            elementwiseMultiply(dy.data, mask.data, into: dx.data, count: dy.count)
            return [dx]
        }
    }
}

extension LeakyReLU: GraphLayer {
    /// Leaky ReLU on the graph (`LeakyReLU.forward`/`backward`, reading the saved input).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        let xv = x.value, a = negativeSlope
        let y = Tensor(uncheckedShape: x.shape)
        LeakyReLU.forward(xv, a, into: y)
        return Variable.result(summary, [x], y, saving: [xv]) { dy, _ in
            let dx = Tensor(uncheckedShape: dy.shape)
            LeakyReLU.backward(xv, dy, a, into: dx)
            return [dx]
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
