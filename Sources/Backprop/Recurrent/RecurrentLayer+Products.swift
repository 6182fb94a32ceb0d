extension RecurrentLayer {
    /// Steps per block of the dW_hh product in backward: a block's δG rows are still in cache.
    /// On 2 slices 1–2 % faster per step than one product over all steps (medians of 8–10
    /// alternating bench-rnn runs: 10.16 → 9.95 and 10.35 → 10.24 ms); the same on one core.
    static let weightBlockSteps = 4

    /// `backprop bench-rnn`'s floor: the matrix products of the last forward and backward pass
    /// alone, issued as those passes issue them (`ForwardProducts`, `BackwardProducts`: the same
    /// calls on the same buffers and batch slices, the slices run concurrently by `BatchSlices`),
    /// without the gate kernels, copies and sums around them. Needs a completed forward and
    /// backward pass; leaves the layer's buffers and gradients meaningless (backward refuses to run
    /// until the next forward).
    package func runProductsOnly() throws {
        guard tape.backwardBuffersSized else {
            throw BackpropError.invalidUse(where: summary, detail: "runProductsOnly needs a forward and a backward pass first")
        }
        savedOutput.clear()
        try tape.runProductsOnly(truncation: truncation, inputGradient: needsInputGradient)
    }
}

extension RecurrentTape {
    /// `RecurrentLayer.runProductsOnly` on this tape's buffers.
    func runProductsOnly(truncation: Int?, inputGradient: Bool) throws {
        guard backwardBuffersSized else {
            throw BackpropError.invalidUse(where: name, detail: "runProductsOnly needs a forward and a backward pass first")
        }
        let t = steps, first = max(0, t - (truncation ?? t))
        try forEachSlice { _, samples in
            for s in self.stages {
                let products = ForwardProducts(self, s, samples)
                try products.input()
                for step in 0..<t { try products.recurrent(step) }
            }
        }
        // As backward: the products write, then add up.
        for s in stages { s.gradients.begin(slices: slices, into: ownsGradients ? s.ownGradients : nil) }
        try forEachSlice { slice, samples in
            for k in stride(from: self.numLayers - 1, through: 0, by: -1) {
                var products = BackwardProducts(self, self.stages[k], samples, slice: slice, first: first,
                                                inputGradient: k > 0 || inputGradient)
                for step in stride(from: t - 1, through: first, by: -1) { try products.step(step) }
                try products.finish()
            }
        }
        for s in stages { s.gradients.finish() }
    }
}

/// The forward pass's matrix products for one stage and one batch slice (the rows n0·T ..< (n0 + m)·T
/// in slice-step order; see `RecurrentLayer`'s layout and products).
struct ForwardProducts {
    let tape: RecurrentTape, s: RecurrentLayer.Stage
    let n0, m, t, h, gh, f: Int
    let gru: Bool
    /// W_hhᵀ's columns whose product is added to Gx (GRU: r and z), and GRU's n columns.
    let whh, whhN: Matrix

    init(_ tape: RecurrentTape, _ s: RecurrentLayer.Stage, _ samples: Range<Int>) {
        self.tape = tape
        self.s = s
        n0 = samples.lowerBound; m = samples.count
        t = tape.steps; h = tape.hiddenSize; gh = tape.cell.gateCount * h; f = s.inputSize
        gru = tape.cell == .gru
        whh = Matrix(s.weightHHTransposed, rows: h, columns: gru ? 2 * h : gh, stride: gh)
        whhN = Matrix(s.weightHHTransposed, offset: 2 * h, rows: h, columns: h, stride: gh)
    }

    /// Gx = X·W_ihᵀ   [M·T, G·H] = [M·T, F]·[F, G·H], all the slice's steps in one product.
    func input() throws {
        let rows = m * t
        try gemm(Matrix(s.stepInput, offset: n0 * t * f, rows: rows, columns: f), Matrix(s.weightIH.value), transposeB: true,
                 into: Matrix(s.gates, offset: n0 * t * gh, rows: rows, columns: gh), caller: tape.name)
    }

    /// G_t += h_{t−1}·W_hhᵀ   [M, G·H] = [M, H]·[H, G·H]   (GRU: [M, 2H], then [M, H] into its own
    /// buffer); none at step 0 when h_0 = 0.
    func recurrent(_ step: Int) throws {
        guard step > 0 || !tape.zeroInitialHidden else { return }
        let hPrev = Matrix(s.previous, offset: (n0 * t + step * m) * h, rows: m, columns: h)
        try gemm(hPrev, whh, into: Matrix(s.gates, offset: (n0 * t + step * m) * gh, rows: m, columns: whh.columns, stride: gh),
                 beta: 1, caller: tape.name)
        if gru {
            try gemm(hPrev, whhN, into: Matrix(s.hiddenGates, offset: (n0 * t + step * m) * h, rows: m, columns: h),
                     caller: tape.name)
        }
    }
}

/// The backward pass's matrix products for one stage and one batch slice, step by step from the
/// last (`step`), then `finish`. Weight gradients go to the slice's buffers of the stage's
/// `SliceGradients` (slice 0: the parameters' `grad`, or a graph call's `ownGradients`), with the β
/// it gives for the first product.
struct BackwardProducts {
    let tape: RecurrentTape, s: RecurrentLayer.Stage
    let n0, m, t, h, gh, f: Int
    let gru: Bool
    /// W_hh's rows that δG multiplies (GRU: r, z; then the n rows with δ of W_hn h + b_hn).
    let whh, whhN: Matrix
    /// The first step backpropagated through (truncation), the lowest step whose H_prev rows
    /// enter dW_hh (not step 0 when h_0 = 0), and whether δh_0 is computed (a given state).
    let first, lowestStep: Int
    let initialStateGradient: Bool
    /// A narrow dW_ih (F < 64) is gathered step by step into its transpose `weightIHTransposed`.
    let narrow: Bool
    let slice: Int
    let weightIHTransposed, weightHH: Tensor
    let weightHHBeta: Float
    /// The gate columns per product of δh_{t−1} = δG_t·W_hh, so that each product fits OpenBLAS's
    /// small-matrix kernels (`SmallProducts.blockWidth`; not where a block would make OpenBLAS
    /// malloc). Batch slices of 64, H = 128, LSTM: 5 products over 112 columns or fewer instead of
    /// one over 512, backward 0.89–0.95× the time (medians of 20 alternating bench-rnn runs, Xeon).
    let deltaBlock: Int
    /// Whether `finish` computes δ of the input, dX = δGx·W_ih.
    let inputGradient: Bool
    private var blockEnd: Int, firstBlock = true

    init(_ tape: RecurrentTape, _ s: RecurrentLayer.Stage, _ samples: Range<Int>, slice: Int, first: Int,
         inputGradient: Bool) {
        self.tape = tape
        self.s = s
        n0 = samples.lowerBound; m = samples.count
        t = tape.steps; h = tape.hiddenSize; gh = tape.cell.gateCount * h; f = s.inputSize
        gru = tape.cell == .gru
        whh = Matrix(s.weightHH.value, rows: gru ? 2 * h : gh, columns: h)
        whhN = Matrix(s.weightHH.value, offset: 2 * h * h, rows: h, columns: h)
        self.first = first
        lowestStep = max(first, tape.zeroInitialHidden ? 1 : 0)
        initialStateGradient = first == 0 && tape.stateGiven
        narrow = f < 64
        self.slice = slice
        weightIHTransposed = s.scratch[slice].weightIHTransposed
        (weightHH, weightHHBeta) = s.gradients.target(1, slice: slice)
        let (m, h) = (m, h)
        deltaBlock = SmallProducts.blockWidth(total: whh.rows, perUnit: m * h) { SmallProducts.productAllocates(m, $0, h) }
        self.inputGradient = inputGradient
        blockEnd = t
    }

    /// The products of step `step`, after its gate kernel:
    ///
    ///     narrow inputs:  (dW_ih)ᵀ (+)= x_tᵀ·δGx_t      [F, G·H] = [F, M]·[M, G·H]   while δGx_t is in cache
    ///     δh_{t−1} (+)= δG_t·W_hh                       [M, H] = [M, G·H]·[G·H, H]   (GRU adds to its direct z·δh
    ///                                                   term; δh_0 only for a given state), in blocks of
    ///                                                   `deltaBlock` gate columns
    ///     dW_hh += δGhᵀ·H_prev over the last block of `weightBlockSteps` steps, when it is complete
    mutating func step(_ step: Int) throws {
        let row = n0 * t + step * m
        if narrow {
            try gemm(Matrix(s.stepInput, offset: row * f, rows: m, columns: f), transposeA: true,
                     Matrix(s.gateGradient, offset: row * gh, rows: m, columns: gh), into: Matrix(weightIHTransposed),
                     beta: step == t - 1 ? 0 : 1, caller: tape.name)
        }
        if step > first || initialStateGradient {
            var k0 = 0
            while k0 < whh.rows {   // in blocks of the gate columns (`deltaBlock`)
                let k = min(deltaBlock, whh.rows - k0)
                try gemm(Matrix(s.gateGradient, offset: row * gh + k0, rows: m, columns: k, stride: gh),
                         Matrix(s.weightHH.value, offset: k0 * h, rows: k, columns: h),
                         into: Matrix(tape.hiddenNext, offset: n0 * h, rows: m, columns: h),
                         beta: gru || k0 > 0 ? 1 : 0, caller: tape.name)
                k0 += k
            }
            if gru {
                try gemm(Matrix(s.hiddenGateGradient, offset: row * h, rows: m, columns: h), whhN,
                         into: Matrix(tape.hiddenNext, offset: n0 * h, rows: m, columns: h), beta: 1, caller: tape.name)
            }
        }
        if step >= lowestStep && (blockEnd - step == RecurrentLayer.weightBlockSteps || step == lowestStep) {
            try weightHHBlock(from: step)
        }
    }

    /// After the last `step`: dW_hh when no block ran (T = 1 with h_0 = 0: zeros for slices ≠ 0),
    /// a wide dW_ih in one product, and dX when wanted:
    ///
    ///     dW_ih += δGxᵀ·X     [G·H, F] = [G·H, M·T]·[M·T, F]    (F ≥ 64; narrow: `weightIHTransposed`)
    ///     dX = δGx·W_ih       [M·T, F] = [M·T, G·H]·[G·H, F]    into `stepInputGradient`, slice-step order
    mutating func finish() throws {
        if firstBlock { try weightHHBlock(from: blockEnd) }
        let rows = m * t
        let dgx = Matrix(s.gateGradient, offset: n0 * t * gh, rows: rows, columns: gh)
        if !narrow {
            let (dWih, beta) = s.gradients.target(0, slice: slice)
            try gemm(dgx, transposeA: true, Matrix(s.stepInput, offset: n0 * t * f, rows: rows, columns: f),
                     into: Matrix(dWih), beta: beta, caller: tape.name)
        }
        if inputGradient {
            try gemm(dgx, Matrix(s.weightIH.value), into: Matrix(s.stepInputGradient, offset: n0 * t * f, rows: rows, columns: f),
                     caller: tape.name)
        }
    }

    /// dW_hh += δGhᵀ·H_prev   [G·H, H] = [G·H, rows]·[rows, H] over the steps low ..< blockEnd while
    /// their δG rows are in cache (GRU: rows r, z from δGx, n from δ of W_hn h).
    private mutating func weightHHBlock(from low: Int) throws {
        let r0 = (n0 * t + low * m), used = (blockEnd - low) * m
        let beta: Float = firstBlock ? weightHHBeta : 1
        let hPrev = Matrix(s.previous, offset: r0 * h, rows: used, columns: h)
        try gemm(Matrix(s.gateGradient, offset: r0 * gh, rows: used, columns: whh.rows, stride: gh), transposeA: true, hPrev,
                 into: Matrix(weightHH, rows: whh.rows, columns: h), beta: beta, caller: tape.name)
        if gru {
            try gemm(Matrix(s.hiddenGateGradient, offset: r0 * h, rows: used, columns: h), transposeA: true, hPrev,
                     into: Matrix(weightHH, offset: 2 * h * h, rows: h, columns: h), beta: beta, caller: tape.name)
        }
        firstBlock = false
        blockEnd = low
    }
}
