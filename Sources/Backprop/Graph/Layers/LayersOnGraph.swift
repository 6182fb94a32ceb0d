/// Built-in layers applied to `Variable`s: `layer(x)` records one graph node per call, holding
/// that call's saved tensors, so one layer can be used at several places of one graph (its
/// parameter gradients add up, as in PyTorch) and weights can be tied. Parameters enter the graph
/// as their `Parameter.variable` leaves, so a graph's backward adds into the same `grad` that the
/// layer API and the optimizers use. The math is the layer's own (Dense's `forward`/`backward`
/// row-block functions, the activations' graph ops), not a second copy.
public protocol GraphLayer: Layer {
    /// This layer's forward on the graph: a new value and, when recording, its node.
    func callAsFunction(_ x: Variable) throws -> Variable
}

extension Dense: GraphLayer {
    /// Y = X·Wᵀ + b on the graph (`Dense.forward` / `Dense.backward`: the layer's own math).
    /// As PyTorch's `nn.Linear`, an input with leading dimensions `[N, T, …, in]` maps its last
    /// dimension: `[N, T, …, out]`. Otherwise, as the layer API, each of the N rows is one
    /// input of `in` values (`[N, C, H, W]` with C·H·W = in reads as `[N, in]`).
    public func callAsFunction(_ x: Variable) throws -> Variable {
        if x.value.rank > 2, x.shape.last == inFeatures { return try applyingToLastDimension(x) }
        try requireFeatures(x.value, inFeatures, layer: summary)
        let xv = x.value, w = weight.value, n = xv.rows, out = outFeatures, inF = inFeatures, name = summary
        let y = Tensor(uninitializedShape: [n, out])
        let b = bias?.value
        let forward = { try Dense.forward(rows: 0..<n, x: xv, weight: w, bias: b, into: y, caller: name) }
        try forward()
        let weightLeaf = weight.variable, biasLeaf = bias?.variable
        var inputs = [x, weightLeaf]
        if let biasLeaf { inputs.append(biasLeaf) }
        let xShape = xv.shape, wShape = [out, inF], bShape = [out]
        return Variable.result(name, inputs, y, saving: [xv, w], forward: forward) { dy, needs in
            // dW and db go straight into the parameters' grad (β = 0 or 1), as the layer API writes them.
            let dx = needs[0] ? graphTensor(xShape) : nil
            let dW = GradientTarget(for: weightLeaf, shape: wShape)
            let db = biasLeaf.map { GradientTarget(for: $0, shape: bShape) }
            if let db, db.beta == 0 { db.buffer.data.update(repeating: 0, count: out) }   // Dense.backward adds into db
            try Dense.backward(rows: 0..<n, x: xv, dy: dy, weight: w, weightGradient: (dW.buffer, dW.beta),
                               biasGradient: db?.buffer, inputGradient: dx, caller: name)
            return InputGradients(dx, dW.finish(), db?.finish())
        }
    }
}

extension ReLU: GraphLayer {
    public func callAsFunction(_ x: Variable) throws -> Variable { relu(x) }
}

extension Tanh: GraphLayer {
    public func callAsFunction(_ x: Variable) throws -> Variable { tanh(x) }
}

extension Sigmoid: GraphLayer {
    public func callAsFunction(_ x: Variable) throws -> Variable { sigmoid(x) }
}

extension GELU: GraphLayer {
    public func callAsFunction(_ x: Variable) throws -> Variable { gelu(x, approximate: approximate) }
}

extension Flatten: GraphLayer {
    public func callAsFunction(_ x: Variable) throws -> Variable {
        guard x.value.rank >= 2 else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, …] with at least 2 dimensions, got \(x.shape)")
        }
        return try reshape(x, [x.shape[0], -1])
    }
}

extension Sequential: GraphLayer {
    /// The layers in order on the graph. Every layer must be a `GraphLayer`; one that is not yet
    /// is a typed error naming it. Unlike the layer API, an instance may appear at several places.
    public func callAsFunction(_ x: Variable) throws -> Variable {
        var v = x
        for (i, layer) in layers.enumerated() {
            guard let g = layer as? GraphLayer else {
                throw BackpropError.invalidArgument("\(summary): layer \(i), \(layer.summary), cannot run on the graph yet")
            }
            v = try g(v)
        }
        return v
    }
}
