extension RecurrentLayer {
    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, try savedOutput.peek(summary), layer: summary)
        _ = try savedInput.peek(summary)
        try parametersAtForward.check(summary)
        if let k = truncation, k <= 0 {
            throw BackpropError.invalidArgument("\(summary): truncation must be positive (or nil), got \(k)")
        }
        _ = try savedOutput.take(summary)
        return try tape.backward(dy, truncation: truncation, inputGradient: needsInputGradient)
    }
}

extension RecurrentTape {
    /// The backward pass of the last `forward` with δ of its output `dy` (its shape, checked by
    /// the caller), through the last `truncation` steps (nil: all). Weight and bias gradients are
    /// added into the parameters' `grad` (or, with `ownsGradients`, written into the stages'
    /// `ownGradients`); ∂L/∂h_0, ∂L/∂c_0 and the hidden gradient norms into the tape. Returns δ of
    /// the input `[N, T, F]` (a tensor of this tape), empty when `inputGradient` is false.
    func backward(_ dy: Tensor, truncation: Int?, inputGradient: Bool) throws -> Tensor {
        let n = batch, t = steps
        let first = max(0, t - (truncation ?? t))              // first step backpropagated through
        prepareBackward(inputGradient: inputGradient)

        // Each slice runs all layers, top first; δ of the top layer's outputs is given for every
        // step, or only the last one.
        try forEachSlice { slice, samples in
            var delta = dy.data
            var deltaAllSteps = self.returnSequences
            for k in stride(from: self.numLayers - 1, through: 0, by: -1) {
                let s = self.stages[k]
                try self.backwardSlice(s, samples, slice: slice, layer: k, delta: delta, allSteps: deltaAllSteps,
                                       first: first, norms: k == self.numLayers - 1, inputGradient: k > 0 || inputGradient)
                delta = s.inputGradient.data
                deltaAllSteps = true
            }
        }
        for s in stages { s.gradients.finish() }   // slices 1, 2, … add their gradients, in order
        if hiddenGradientNorms.count != t { hiddenGradientNorms = [Float](repeating: 0, count: t) }
        for step in 0..<t {
            var total: Float = 0
            for k in 0..<slices { total += sliceNorms.data[k * t + step] }
            hiddenGradientNorms[step] = total / Float(n)
        }
        return stages[0].inputGradient
    }

    /// Sizes backward's buffers for the last forward pass's shapes (before the slices run).
    private func prepareBackward(inputGradient: Bool) {
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        if stateGiven { initialHiddenGradient.resize(numLayers, n, h) } else { initialHiddenGradient.resize(0) }
        if stateGiven && cell == .lstm { initialCellGradient.resize(numLayers, n, h) } else { initialCellGradient.resize(0) }
        hiddenNext.resize(n, h)
        cellNext.resize(n, h)
        zeroRow.resize(h)
        zeroRow.fill(0)
        sliceNorms.resize(slices, t)
        sliceNorms.fill(0)
        for (k, s) in stages.enumerated() {
            s.gateGradient.resize(n * t, gh)
            if cell == .gru { s.hiddenGateGradient.resize(n * t, h) }
            if let x = s.input {
                if k > 0 || inputGradient {
                    s.inputGradient.resize(to: x.shape)
                    s.stepInputGradient.resize(n * t, s.inputSize)
                } else {
                    s.inputGradient.resize(0)
                }
            }
            // (dW_ih)ᵀ of a narrow input, gathered per step (`BackwardProducts`)
            let narrow = s.inputSize < 64
            while s.scratch.count < slices { s.scratch.append(RecurrentLayer.SliceScratch()) }
            for g in s.scratch.prefix(slices) {
                g.biasSum.resize(cell == .gru ? gh + h : gh)
                if narrow { g.weightIHTransposed.resize(s.inputSize, gh) }
            }
            s.gradients.begin(slices: slices, into: ownsGradients ? s.ownGradients : nil)
        }
        backwardBuffersSized = true
    }

    /// One stage's backward pass for the samples `samples`; weight and bias gradients go to the
    /// parameters (slice 0) or the slice's own buffers.
    private func backwardSlice(_ s: RecurrentLayer.Stage, _ samples: Range<Int>, slice: Int, layer k: Int,
                               delta dy: UnsafeMutablePointer<Float>, allSteps: Bool, first: Int, norms: Bool,
                               inputGradient: Bool) throws {
        guard s.input != nil else { return }
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count
        let dgx = s.gateGradient.data + n0 * t * gh
        // GRU: δ of W_hn h + b_hn (the hidden side's r and z blocks share the input side's δ)
        let gru = cell == .gru, dhn = s.hiddenGateGradient.data + n0 * t * h
        // Steps outside the truncation window (the block's first rows) contribute nothing.
        if first > 0 {
            dgx.update(repeating: 0, count: first * m * gh)
            if gru { dhn.update(repeating: 0, count: first * m * h) }
        }
        let dhNext = hiddenNext.data + n0 * h
        dhNext.update(repeating: 0, count: m * h)
        (cellNext.data + n0 * h).update(repeating: 0, count: m * h)
        // Bias gradients: the step kernels sum δ rows into a zeroed scratch row [G·H] (GRU: and
        // [H] for b_hn), added to slice 0's parameter gradients or a slice's own buffers after:
        // δb_ih = δb_hh except for GRU's n block.
        let biasSum = s.scratch[slice].biasSum
        biasSum.fill(0)
        let normRow = sliceNorms.data + slice * t
        // The weight products run inside the step loop while their δG rows are in cache: a narrow
        // dW_ih (MNIST rows: F = 28) step by step as its transpose (one product over all rows had
        // to pack the whole δGx, cold, for 28 output columns; added in place below), dW_hh in
        // blocks of steps.
        var products = BackwardProducts(self, s, samples, slice: slice, first: first, inputGradient: inputGradient)
        for step in stride(from: t - 1, through: first, by: -1) {
            let normSum = backwardStep(s, samples, step, dy, allSteps, biasSums: biasSum.data)
            if norms { normRow[step] = normSum }
            try products.step(step)
        }
        try products.finish()
        let dbih = s.gradients.zeroedTarget(2, slice: slice), dbhh = s.gradients.zeroedTarget(3, slice: slice)
        let sv = biasSum.data, a = dbih.data, b = dbhh.data
        for j in 0..<gh { a[j] += sv[j] }
        if gru {
            for j in 0..<(2 * h) { b[j] += sv[j] }
            for j in 0..<h { b[2 * h + j] += sv[gh + j] }
        } else {
            for j in 0..<gh { b[j] += sv[j] }
        }
        // ∂L/∂h_0, ∂L/∂c_0 (cut to zero by truncation).
        if stateGiven {
            let dh0 = initialHiddenGradient.data + (k * n + n0) * h
            if first == 0 { dh0.update(from: dhNext, count: m * h) } else { dh0.update(repeating: 0, count: m * h) }
        }
        if stateGiven && cell == .lstm {
            let dc0 = initialCellGradient.data + (k * n + n0) * h
            if first == 0 { dc0.update(from: cellNext.data + n0 * h, count: m * h) } else { dc0.update(repeating: 0, count: m * h) }
        }
        // A narrow dW_ih: its transpose, gathered per step, written or added in place.
        if products.narrow {
            let (dWih, beta) = s.gradients.target(0, slice: slice)
            let src = UnsafePointer(products.weightIHTransposed.data), dst = dWih.data
            for r in 0..<gh {
                let row = dst + r * f
                if beta == 0 { for c in 0..<f { row[c] = src[c * gh + r] } } else { for c in 0..<f { row[c] += src[c * gh + r] } }
            }
        }
        if inputGradient {   // dX back to batch-first rows
            let dxs = s.stepInputGradient.data + n0 * t * f
            for i in 0..<m {
                for step in 0..<t {
                    (s.inputGradient.data + ((n0 + i) * t + step) * f).update(from: dxs + (step * m + i) * f, count: f)
                }
            }
        }
    }

    /// One backward step of the gate kernels (C) for the slice's rows: δ of the pre-activations
    /// into the gradient buffers, bias gradients summed into `biasSums` ([G·H], GRU: then [H] of
    /// b_hn), the recurrent δ updated in `hiddenNext` / `cellNext`. Returns Σ_i ‖δh_t of sample i‖.
    private func backwardStep(_ s: RecurrentLayer.Stage, _ samples: Range<Int>, _ step: Int, _ dy: UnsafeMutablePointer<Float>,
                              _ allSteps: Bool, biasSums: UnsafeMutablePointer<Float>) -> Float {
        let r = stepRows(samples, step), t = r.t, h = r.h, n0 = r.n0
        // δ arriving at h_t from above (batch-first): the output gradient rows, or (last step only) zeros.
        let (d, dStride): (UnsafeMutablePointer<Float>, Int) =
            allSteps ? (dy + (n0 * t + step) * h, t * h) : (step == t - 1 ? (dy + n0 * h, h) : (zeroRow.data, 0))
        let dh = hiddenNext.data + n0 * h
        switch cell {
        case .rnn(let act):
            return RNNCell.backwardStep(act, s, r, dy: d, dyStride: dStride, dh: dh, biasSums: biasSums)
        case .lstm:
            return LSTMCell.backwardStep(s, r, dy: d, dyStride: dStride, dh: dh, dc: cellNext.data + n0 * h, biasSums: biasSums)
        case .gru:
            return GRUCell.backwardStep(s, r, dy: d, dyStride: dStride, dh: dh, biasSums: biasSums)
        }
    }
}
