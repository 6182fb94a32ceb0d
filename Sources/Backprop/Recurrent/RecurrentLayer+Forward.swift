extension RecurrentLayer {
    /// Sets `initialHidden` / `initialCell` and runs `forward` (on an error they keep their old values).
    public func forward(_ x: Tensor, initialHidden: Tensor?, initialCell: Tensor? = nil) throws -> Tensor {
        let saved = (self.initialHidden, self.initialCell)
        self.initialHidden = initialHidden
        self.initialCell = initialCell
        do {
            return try forward(x)
        } catch {
            (self.initialHidden, self.initialCell) = saved
            throw error
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try checkInput(x, initialHidden: initialHidden, initialCell: initialCell)
        savedOutput.clear()   // the buffers are about to change: no backward until this forward completes
        let y = try tape.forward(x, initialHidden: initialHidden, initialCell: initialCell, threads: threads, name: cachedSummary)
        savedInput.save(x)
        parametersAtForward.save()
        savedOutput.save(y)
        return y
    }

    /// Checks a forward pass's input `[N, T, F]` (N, T > 0) and initial state against the layer:
    /// `.shapeMismatch` / `.invalidArgument` naming the layer and the shapes.
    func checkInput(_ x: Tensor, initialHidden: Tensor?, initialCell: Tensor?) throws {
        guard x.rank == 3 else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "expected batch-first input [N, T, \(inputSize)], got \(x.shape) (rank \(x.rank))")
        }
        let n = x.shape[0], t = x.shape[1], f = x.shape[2]
        guard f == inputSize else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "expected \(inputSize) features per step ([N, T, \(inputSize)]), got \(x.shape)")
        }
        guard t > 0, n > 0 else {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "input \(x.shape) has no \(t == 0 ? "time steps (T = 0)" : "samples (N = 0)")")
        }
        var stateShape: [Int] { [numLayers, n, hiddenSize] }   // built only when a state is given
        if let h0 = initialHidden, h0.shape != stateShape {
            throw BackpropError.shapeMismatch(
                where: summary, detail: "initial hidden state must be [numLayers, N, H] = \(stateShape) for input \(x.shape), got \(h0.shape)")
        }
        if let c0 = initialCell {
            guard cell == .lstm else {
                throw BackpropError.invalidArgument("\(summary): only an LSTM has an initial cell state")
            }
            guard c0.shape == stateShape else {
                throw BackpropError.shapeMismatch(
                    where: summary, detail: "initial cell state must be [numLayers, N, H] = \(stateShape) for input \(x.shape), got \(c0.shape)")
            }
        }
    }
}

extension RecurrentTape {
    /// The forward pass of the layer on `x` `[N, T, F]` from the state h_0 = `initialHidden`,
    /// c_0 = `initialCell` (`[numLayers, N, H]` or nil for zeros), in `threads` batch slices:
    /// the top layer's output `[N, T, H]`, or its last step `[N, H]` without `returnSequences`
    /// (a tensor of this tape). The caller has checked the shapes (`RecurrentLayer.checkInput`).
    func forward(_ x: Tensor, initialHidden: Tensor?, initialCell: Tensor?, threads: Int, name: String) throws -> Tensor {
        self.name = name
        backwardBuffersSized = false
        let n = x.shape[0], t = x.shape[1], h = hiddenSize
        batch = n
        steps = t
        slices = BatchSlices.count(threads: threads, items: n)
        stateGiven = initialHidden != nil || initialCell != nil
        zeroInitialHidden = initialHidden == nil
        var input = x
        for s in stages {
            try prepareForward(s, input: input)
            input = s.output
        }
        let h0 = initialHidden?.data, c0 = initialCell?.data
        try forEachSlice { _, samples in
            for (k, s) in self.stages.enumerated() {
                try self.forwardSlice(s, samples, h0: h0.map { $0 + k * n * h }, c0: c0.map { $0 + k * n * h })
            }
        }
        let top = stages[numLayers - 1].output
        if returnSequences { return top }
        lastOutput.resize(n, h)
        for i in 0..<n { (lastOutput.data + i * h).update(from: top.data + (i * t + t - 1) * h, count: h) }
        return lastOutput
    }

    /// Sizes a stage's buffers for the batch (before the slices run: they only write rows).
    private func prepareForward(_ s: RecurrentLayer.Stage, input x: Tensor) throws {
        let n = batch, t = steps, h = hiddenSize, gh = cell.gateCount * h
        s.input = x
        s.stepInput.resize(n * t, s.inputSize)
        s.gates.resize(n * t, gh)
        s.previous.resize(n * t, h)
        s.output.resize(n, t, h)
        if cell == .gru { s.hiddenGates.resize(n * t, h) }
        if cell == .lstm {
            s.cells.resize(n * t, h)
            s.initialCell.resize(n, h)
        }
        s.combinedBias.resize(gh)
        let b = s.combinedBias.data, bih = s.biasIH.value.data, bhh = s.biasHH.value.data
        for j in 0..<gh { b[j] = bih[j] + bhh[j] }
        // The per-step products read W_hhᵀ [H, G·H] untransposed: OpenBLAS runs [M, H]·[H, G·H] ~5 %
        // faster than [M, H]·[G·H, H]ᵀ at these shapes (the B operand packs more cheaply).
        s.weightHHTransposed.resize(h, gh)
        try transpose(Matrix(s.weightHH.value), into: Matrix(s.weightHHTransposed), caller: name)
    }

    /// One stage's forward pass for the samples `samples` (the block of rows n0·T ..< (n0 + m)·T).
    private func forwardSlice(_ s: RecurrentLayer.Stage, _ samples: Range<Int>, h0: UnsafeMutablePointer<Float>?,
                              c0: UnsafeMutablePointer<Float>?) throws {
        guard let x = s.input else { return }
        let t = steps, h = hiddenSize, f = s.inputSize
        let n0 = samples.lowerBound, m = samples.count
        let products = ForwardProducts(self, s, samples)
        // The slice's input rows in step order: row (step, i) = x[n0 + i, step].
        let xs = s.stepInput.data + n0 * t * f
        for i in 0..<m {
            for step in 0..<t { (xs + (step * m + i) * f).update(from: x.data + ((n0 + i) * t + step) * f, count: f) }
        }

        // Gx = X·W_ihᵀ, all the slice's rows in one product. The biases are added by the gate
        // kernels while the step's rows are in cache.
        try products.input()

        // H_prev step 0 = h_0.
        let prev = s.previous.data + n0 * t * h
        if let h0 { prev.update(from: h0 + n0 * h, count: m * h) } else { prev.update(repeating: 0, count: m * h) }
        if cell == .gru && h0 == nil {   // GRU: h_0 = 0, no product for step 0's W_hn h
            (s.hiddenGates.data + n0 * t * h).update(repeating: 0, count: m * h)
        }
        if cell == .lstm {
            let c = s.initialCell.data + n0 * h
            if let c0 { c.update(from: c0 + n0 * h, count: m * h) } else { c.update(repeating: 0, count: m * h) }
        }
        for step in 0..<t {
            try products.recurrent(step)
            forwardStep(s, samples, step)
        }
    }

    /// One forward step of the gate kernels (C, BackpropKernels/recurrent.inc) for the slice's m
    /// consecutive rows of that step. Each writes h_t into `output` (batch-first, rows T apart)
    /// and into H_prev's rows of step + 1, the next step's product input.
    private func forwardStep(_ s: RecurrentLayer.Stage, _ samples: Range<Int>, _ step: Int) {
        let r = stepRows(samples, step)
        // The top layer's outputs before the last step are never read when only the last step is
        // returned (LSTM and GRU backward read their own buffers; an RNN's reads its outputs).
        let unread = !returnSequences && s === stages[numLayers - 1] && step + 1 < r.t && cell.gateCount > 1
        let out: UnsafeMutablePointer<Float>? = unread ? nil : s.output.data + (r.n0 * r.t + step) * r.h
        let next = step + 1 == r.t ? nil : s.previous.data + (r.row + r.m) * r.h
        switch cell {
        case .rnn(let act): RNNCell.forwardStep(act, s, r, out: out, next: next)
        case .lstm: LSTMCell.forwardStep(s, r, out: out, next: next)
        case .gru: GRUCell.forwardStep(s, r, out: out, next: next)
        }
    }
}
