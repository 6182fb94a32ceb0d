import BackpropKernels

/// 2-d convolution, PyTorch's `nn.Conv2d`: input `[N, C, H, W]` (NCHW), weight
/// `[out, C, kh, kw]`, bias `[out]`, output `[N, out, Ho, Wo]` with
/// `Ho = (H + 2·ph − kh) / sh + 1` and `Wo = (W + 2·pw − kw) / sw + 1` (floor).
///
/// A stride-1 convolution with at least 16 terms per kernel row (C·kw ≥ 16, one image per product:
/// LeNet's second layer) takes the row lowering instead of the im2col columns below: kh products
/// over a quarter of the columns' memory, see `Conv2D+RowLowering`. The math is the same.
///
/// Every other product is a `gemm` on im2col columns (products slightly above OpenBLAS's
/// small-matrix limits cut into blocks, see `SmallProducts`, on cores that have those kernels:
/// `BLAS.hasSmallMatrixKernels`; elsewhere one product each). For a group of G images (`imagesPerGemm`),
/// `cols` is `[C·kh·kw, G·Ho·Wo]`: row (c, i, j), column (g, oy, ox) holds
/// `x[g, c, oy·sh − ph + i, ox·sw − pw + j]` (zero in the padding). In forward, with the small
/// kernels, its rows may be padded to a multiple of 16 columns (`forwardColumns`: no product then leaves the tail in which
/// OpenBLAS mallocs on every call); the padding columns' outputs are discarded.
///
///     forward   Y   = W·cols + b      [out, G·P] = [out, K]·[K, G·P]     sgemm NoTrans/NoTrans
///     backward  dW += dY·colsᵀ        [out, K]   = [out, G·P]·[G·P, K]   sgemm NoTrans/Trans
///                 (above the small-matrix limit transposed: dWᵀ += cols·dYᵀ, [K, out] = [K, G·P]·[G·P, out],
///                 NoTrans/NoTrans in row blocks, then added into dW: `weightGradientTransposed`)
///               db += Σ dY over N, Ho, Wo
///               dcols = Wᵀ·dY         [K, G·P]   = [K, out]·[out, G·P]   sgemm Trans/NoTrans
///               dX  = col2im(dcols)   (accumulating: overlapping windows add up)
///                 (without the small kernels dcols is summed with β = 1 into a buffer that
///                 col2im clears after reading, `bp_col2im_consume`: OpenBLAS's packed path would
///                 otherwise zero it in a pass of its own)
///
/// with K = C·kh·kw and P = Ho·Wo. With G = 1 the product writes straight into the image's
/// slice of Y, which is already `[out, P]`, and the bias is fused by pre-filling Y and running
/// sgemm with β = 1. With G > 1, or padded columns, the product goes into a scratch
/// `[out, G·P]` (rows padded as the columns) that is then scattered into NCHW with the bias added. The columns are recomputed in backward (cheaper
/// than keeping `[K, N·P]` for the whole batch). A 1×1 kernel with stride 1 and no padding skips im2col: the image itself is the
/// `[C, H·W]` column matrix.
///
/// im2col and col2im are C kernels (`bp_im2col`, `bp_col2im` in BackpropKernels, run with the
/// widest instruction set the CPU has). im2col first copies an image into a zero-bordered
/// `[C, H+2ph, W+2pw]` plane, so that every column row is a branch-free copy of `Wo` values per
/// output row in whole vectors; col2im adds the column rows into one such plane per channel
/// (small enough to stay in L1) and crops it into δ of the input, except under AVX-512 with
/// stride 1, where it sums each row of δ in registers from masked loads of the column rows and
/// writes it once (the same sums in the same order).
///
/// `needsInputGradient = false` (a first layer) skips dcols and col2im, a third of the backward
/// arithmetic; backward then returns an empty tensor, as `Dense` does.
public final class Conv2D: Layer {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: (height: Int, width: Int)
    public let stride: (height: Int, width: Int)
    public let padding: (height: Int, width: Int)
    public let weight: Parameter
    public let bias: Parameter?
    public var isTraining = true
    /// Images whose columns go through one gemm (G above). 1 writes Y in place and keeps the
    /// columns of one image in cache; larger groups make fewer, larger products (slower on
    /// LeNet's shapes at 1 and 2 threads, measured).
    public var imagesPerGemm = 1
    /// When false (a first layer: training sets it, see `Layer`), backward computes only the
    /// parameter gradients, skipping dcols = Wᵀ·dY and col2im, and returns an empty tensor.
    public var needsInputGradient = true
    /// Whether a stride-1 convolution may take the row lowering (`Conv2D+RowLowering`); tests turn
    /// it off to compare it with im2col's.
    var allowsRowLowering = true

    /// Batch slices processed concurrently, one thread each (default `Parallelism.defaultThreads`:
    /// every processor; set with `useThreads`), as in
    /// `RecurrentLayer.threads`: the images of a batch are split into this many contiguous
    /// slices, each with its own column buffers and single-threaded BLAS calls (OpenBLAS is set
    /// to 1 thread meanwhile and restored after). Outputs and δ of the input are disjoint per
    /// image; weight and bias gradients are summed over slices in slice order, so results are
    /// deterministic for a given value (and differ from 1 only by rounding).
    public internal(set) var threads = Parallelism.defaultThreads
    public func useThreads(_ count: Int) { threads = Swift.max(1, count) }

    var input = ForwardRecord()                 // x: backward rebuilds its columns
    /// W laid out for the row lowering (`plan.rows`) by `beginForward`; backward reads it too (W is
    /// checked unchanged since the forward).
    let rowWeights = Tensor(uncheckedShape: [0])
    /// The values of W that `rowWeights` was laid out from: a forward whose W is bit for bit the
    /// same (inference, one call per sample) keeps the layout; any other W, however it was written
    /// (a write through `data` moves no version), lays it out again.
    let rowWeightsSource = Tensor(uncheckedShape: [0])
    var savedOutput = ForwardRecord()           // the output, whose shape δ must have
    let output = Tensor(uncheckedShape: [0])
    let inputGradient = Tensor(uncheckedShape: [0])
    var slices: [SliceBuffers] = []
    let batchSlices = BatchSlices()
    var plan = Plan()
    var outputGradient: Tensor?                         // δ of the output, set by beginBackward
    lazy var sliceGradients = SliceGradients(parameters)  // each slice's dW, db
    lazy var parametersAtForward = ParameterRecords(parameters)   // W is read again by backward (dcols = Wᵀ·dY)

    /// The designated initialiser: kernel, stride and padding as (height, width).
    /// Weight and bias get PyTorch's default, kaiming_uniform(a = √5) = U(−1/√fan_in, 1/√fan_in)
    /// with fan_in = C·kh·kw, and the same bound for the bias.
    public init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int),
                padding: (Int, Int) = (0, 0), bias: Bool = true,
                initializer: Initializer = .pytorchDefault, rng: inout SeededGenerator) throws {
        let description = "Conv2D(\(inChannels) → \(outChannels), \(kernelSize.0)×\(kernelSize.1))"
        guard inChannels > 0, outChannels > 0 else {
            throw BackpropError.invalidArgument("\(description): channel counts must be positive")
        }
        guard kernelSize.0 > 0, kernelSize.1 > 0 else {
            throw BackpropError.invalidArgument("\(description): kernel size must be positive")
        }
        guard stride.0 > 0, stride.1 > 0 else {
            throw BackpropError.invalidArgument("\(description): stride \(stride) must be positive")
        }
        guard padding.0 >= 0, padding.1 >= 0 else {
            throw BackpropError.invalidArgument("\(description): padding \(padding) must not be negative")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = (kernelSize.0, kernelSize.1)
        self.stride = (stride.0, stride.1)
        self.padding = (padding.0, padding.1)
        weight = Parameter(try Tensor(zeros: [outChannels, inChannels, kernelSize.0, kernelSize.1]))
        try initializer.fill(weight.value, using: &rng)
        if bias {
            let b = Parameter(try Tensor(zeros: [outChannels]))
            let bound = 1 / Float(inChannels * kernelSize.0 * kernelSize.1).squareRoot()
            b.value.fillUniform(-bound, bound, using: &rng)
            self.bias = b
        } else {
            self.bias = nil
        }
    }


    /// Square kernel, equal stride and padding in both directions (`Conv2d(1, 6, 5)`).
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, rng: inout SeededGenerator) throws {
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: (kernelSize, kernelSize),
                      stride: (stride, stride), padding: (padding, padding), bias: bias, rng: &rng)
    }

    /// Rectangular kernel, equal stride and padding in both directions.
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, rng: inout SeededGenerator) throws {
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: (stride, stride), padding: (padding, padding), bias: bias, rng: &rng)
    }

    /// Square kernel, default initialisation from `seed` (or the default generator's next seed).
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: stride, padding: padding, bias: bias, rng: &rng)
    }

    /// Rectangular kernel, default initialisation from `seed` (or the default generator's next seed).
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: stride, padding: padding, bias: bias, rng: &rng)
    }

    public var summary: String {
        var s = "Conv2D(\(inChannels) → \(outChannels), \(kernelSize.height)×\(kernelSize.width)"
        if stride != (1, 1) {
            s += stride.height == stride.width ? ", stride \(stride.height)" : ", stride \(stride.height)×\(stride.width)"
        }
        if padding != (0, 0) {
            s += padding.height == padding.width ? ", padding \(padding.height)" : ", padding \(padding.height)×\(padding.width)"
        }
        return s + (bias == nil ? ", no bias)" : ")")
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list = [(name: "weight", parameter: weight)]
        if let bias { list.append((name: "bias", parameter: bias)) }
        return list
    }

    /// Output shape for an input shape; throws a shape error naming the layer if it does not fit.
    public func outputShape(for shape: [Int]) throws -> [Int] {
        guard shape.count == 4 else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, \(inChannels), H, W], got \(shape)")
        }
        guard shape[1] == inChannels else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "expected \(inChannels) input channels, got input \(shape)")
        }
        let h = shape[2] + 2 * padding.height, w = shape[3] + 2 * padding.width
        guard shape[2] > 0, shape[3] > 0, h >= kernelSize.height, w >= kernelSize.width else {
            throw BackpropError.shapeMismatch(
                where: summary,
                detail: "input \(shape) padded to \(h)×\(w) is smaller than the \(kernelSize.height)×\(kernelSize.width) kernel")
        }
        return [shape[0], outChannels, (h - kernelSize.height) / stride.height + 1, (w - kernelSize.width) / stride.width + 1]
    }

    var isPointwise: Bool {
        kernelSize == (1, 1) && stride == (1, 1) && padding == (0, 0)
    }

    // MARK: - Forward and backward over the whole batch (its images split over `threads` slices)

    public func forward(_ x: Tensor) throws -> Tensor {
        let count = sliceCount(x.shape.first ?? 0)
        let y = try beginForward(x, slices: count)
        try batchSlices.run(count: count, items: plan.n) { slice, images in try self.forward(images: images, slice: slice) }
        return y
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let count = sliceCount(plan.n)
        let dx = try beginBackward(dy, slices: count)
        try batchSlices.run(count: count, items: plan.n) { slice, images in try self.backward(images: images, slice: slice) }
        endBackward(slices: count)
        return dx
    }

    // MARK: - The layer's pass on a range of images (one slice's buffers, the layer's gradients)

    public func forward(images: Range<Int>, slice: Int) throws {
        guard let x = input.tensor else { throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward") }
        try Conv2D.forward(images: images, x: x, weight: weight.value, rowWeights: rowWeights, bias: bias?.value, plan: plan,
                           workspace: slices[slice], into: output, caller: summary)
    }

    public func backward(images: Range<Int>, slice: Int) throws {
        guard let x = input.tensor, let dy = outputGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        guard !images.isEmpty else { return }   // nothing written: `finish` treats the slice's gradients as zero
        let db = bias == nil ? nil : sliceGradients.zeroedTarget(1, slice: slice)
        try Conv2D.backward(images: images, x: x, dy: dy, weight: weight.value, rowWeights: rowWeights, plan: plan,
                            workspace: slices[slice],
                            weightGradient: plan.transposedWeightGradient ? nil : sliceGradients.target(0, slice: slice),
                            biasGradient: db,
                            inputGradient: needsInputGradient ? inputGradient : nil, caller: summary)
    }

    // MARK: - The math, on a range of images (the layer's slices and the graph's calls share it)

    /// Y[images] = W·cols(X[images]) + b, written into `output` (shaped `[N, out, Ho, Wo]` for
    /// `plan`), with `workspace` sized for `plan` (`SliceBuffers.prepare`). Under the row lowering
    /// (`plan.rows`) the products read `rowWeights`, W laid out by `layRowWeights`.
    static func forward(images: Range<Int>, x: Tensor, weight: Tensor, rowWeights: Tensor, bias: Tensor?, plan pl: Plan,
                        workspace buffers: SliceBuffers, into output: Tensor, caller: @autoclosure () -> String) throws {
        if pl.rows {
            try forwardRows(images: images, x: x, rowWeights: rowWeights, bias: bias, plan: pl, workspace: buffers, into: output,
                            caller: caller())
            return
        }
        let p = pl.p, k = pl.k, outChannels = pl.outChannels
        let out = output.data, xData = x.data
        var n0 = images.lowerBound
        while n0 < images.upperBound {
            let gs = min(pl.g, images.upperBound - n0), n = gs * p
            // The group's columns [K, gs·P], rows `ld` apart (padded so that no product leaves
            // OpenBLAS's mallocing tail, see `forwardColumns`): the image itself for a pointwise
            // convolution (gs = 1, never padded: see `plan(for:)`).
            let (ld, terms) = Conv2D.forwardColumns(outChannels, k, n, smallKernels: pl.smallMatrixKernels)
            let colsM = pl.pointwise ? Matrix(x, offset: n0 * pl.imageSize, rows: k, columns: ld)
                                     : Matrix(buffers.columns, rows: k, columns: ld)
            if !pl.pointwise {
                for i in 0..<gs {
                    im2col(pl, xData + (n0 + i) * pl.imageSize, into: colsM.base + i * p, rowStride: ld, padded: buffers.padded.data)
                }
            }
            // One image whose columns are not padded: the product lands in Y itself, which is
            // already [out, P], with the bias pre-filled (β = 1). Otherwise it goes into a
            // scratch [out, ld] that is scattered into NCHW with the bias added.
            let inPlace = gs == 1 && ld == p
            let product = inPlace ? Matrix(output, offset: n0 * pl.outImageSize, rows: outChannels, columns: p)
                                  : Matrix(buffers.scratch, rows: outChannels, columns: ld)
            if inPlace, let bias {
                let b = bias.data
                bp_fill_rows(product.base, outChannels, p, p, b)
            }
            for t0 in Swift.stride(from: 0, to: k, by: terms) {   // Y (+)= W[:, t0…]·cols[t0…, :]
                let tb = Swift.min(terms, k - t0)
                try gemm(Matrix(weight, offset: t0, rows: outChannels, columns: tb, stride: k),
                         colsM.advanced(by: t0 * ld, rows: tb), into: product,
                         beta: t0 > 0 || (inPlace && bias != nil) ? 1 : 0, caller: caller())
            }
            if !inPlace {
                for i in 0..<gs {
                    bp_copy_rows_adding(product.base + i * p, ld, out + (n0 + i) * pl.outImageSize, outChannels, p, bias?.data)
                }
            }
            n0 += gs
        }
    }

    /// For `images` (not empty) of the pass `plan` describes:
    /// dW = β·dW + Σ dY·colsᵀ (β of `weightGradient` for the first product, then 1) — or, when
    /// `plan.transposedWeightGradient` (then `weightGradient` is nil), dWᵀ += Σ cols·dYᵀ into the
    /// workspace, which `finishWeightGradient` adds into dW once the caller's calls are done —,
    /// db += Σ dY (if given), and dX[images] = col2im(Wᵀ·dY) (if `inputGradient` is given).
    /// Under the row lowering (`plan.rows`) dX's products read `rowWeights` (`layRowWeights` of W).
    static func backward(images: Range<Int>, x: Tensor, dy: Tensor, weight: Tensor, rowWeights: Tensor, plan pl: Plan,
                         workspace buffers: SliceBuffers, weightGradient: (buffer: Tensor, beta: Float)?,
                         biasGradient db: Tensor?, inputGradient: Tensor?, caller: @autoclosure () -> String) throws {
        let p = pl.p, k = pl.k, outChannels = pl.outChannels
        let wM = Matrix(weight, rows: outChannels, columns: k)
        let dyData = dy.data, xData = x.data
        // db += Σ dY over the images and every output position
        if let db {
            for i in images {
                let image = dyData + i * pl.outImageSize
                for o in 0..<outChannels { db.data[o] += VectorLoops.sum(image + o * p, count: p) }
            }
        }
        guard (weightGradient == nil) == pl.transposedWeightGradient else {
            throw BackpropError.invalidUse(where: caller(), detail: "a weight-gradient target must be given exactly when dW is not summed transposed")
        }
        if pl.rows {
            try backwardRows(images: images, x: x, dy: dy, rowWeights: rowWeights, plan: pl, workspace: buffers,
                             inputGradient: inputGradient, caller: caller())
            return
        }
        let dwM = weightGradient.map { Matrix($0.buffer, rows: outChannels, columns: k) }
        var weightBeta = weightGradient?.beta ?? 1
        var n0 = images.lowerBound
        while n0 < images.upperBound {
            let gs = min(pl.g, images.upperBound - n0), ld = gs * p
            // dY of the group as [out, gs·P]
            let dyM = gs == 1 ? Matrix(dy, offset: n0 * pl.outImageSize, rows: outChannels, columns: ld)
                              : Matrix(buffers.scratch, rows: outChannels, columns: ld)
            if gs > 1 {
                for i in 0..<gs {
                    let image = dyData + (n0 + i) * pl.outImageSize
                    for o in 0..<outChannels { VectorLoops.copy(image + o * p, to: dyM.base + o * ld + i * p, count: p) }
                }
            }
            if pl.pointwise, let dwM {
                let xM = Matrix(x, offset: n0 * pl.imageSize, rows: k, columns: p)
                // dW += dY·Xᵀ ; dX = Wᵀ·dY
                try gemm(dyM, xM, transposeB: true, into: dwM, beta: weightBeta, caller: caller())
                weightBeta = 1
                if let inputGradient {
                    try gemm(wM, transposeA: true, dyM, into: Matrix(inputGradient, offset: n0 * pl.imageSize, rows: k, columns: p),
                             caller: caller())
                }
            } else {
                let colsM = Matrix(buffers.columns, rows: k, columns: ld), cols = colsM.base
                for i in 0..<gs {
                    im2col(pl, xData + (n0 + i) * pl.imageSize, into: cols + i * p, rowStride: ld, padded: buffers.padded.data)
                }
                if let dwM {
                    // dW += dY·colsᵀ
                    try gemm(dyM, colsM, transposeB: true, into: dwM, beta: weightBeta, caller: caller())
                    weightBeta = 1
                } else {
                    // dWᵀ (+)= cols·dYᵀ in row blocks, in the workspace (`finishWeightGradient`)
                    let dyT = Matrix(buffers.outputGradientTransposed, rows: ld, columns: outChannels)
                    try transpose(dyM, into: dyT, caller: caller())
                    let rb = Conv2D.weightGradientRows(out: outChannels, k: k, terms: ld, smallKernels: pl.smallMatrixKernels)
                    for r0 in Swift.stride(from: 0, to: k, by: rb) {
                        let rc = Swift.min(rb, k - r0)
                        try gemm(colsM.advanced(by: r0 * ld, rows: rc), dyT,
                                 into: Matrix(buffers.weightGradientTransposed, offset: r0 * outChannels, rows: rc, columns: outChannels),
                                 beta: buffers.transposedBeta, caller: caller())
                    }
                    buffers.transposedBeta = 1
                }
                if let inputGradient {
                    // dcols = Wᵀ·dY. Where OpenBLAS has no small kernels, a product with β = 0 first zeroes
                    // C in a pass of its own (LeNet's conv2 under `Zen`: 80.6 µs against 63.3 µs with
                    // β = 1): there dcols accumulates into a buffer kept zero by col2im, which clears
                    // the image's columns once it has read them (`bp_col2im_consume`).
                    let dcols = buffers.columnGradient.data
                    let accumulate = !pl.smallMatrixKernels
                    if accumulate && buffers.columnGradientZeroStride != ld {
                        buffers.columnGradient.fill(0)
                    }
                    buffers.columnGradientZeroStride = 0     // until col2im has cleared it again
                    let block = Conv2D.columnBlock(k, outChannels, ld, smallKernels: pl.smallMatrixKernels)
                    for c0 in Swift.stride(from: 0, to: ld, by: block) {
                        let cb = Swift.min(block, ld - c0)
                        try gemm(wM, transposeA: true, dyM.advanced(by: c0, columns: cb),
                                 into: Matrix(buffers.columnGradient, offset: c0, rows: k, columns: cb, stride: ld),
                                 beta: accumulate ? 1 : 0, caller: caller())
                    }
                    for i in 0..<gs {
                        col2im(pl, dcols + i * p, rowStride: ld, into: inputGradient.data + (n0 + i) * pl.imageSize,
                               padded: buffers.planeGradient.data, consume: accumulate)
                    }
                    if accumulate { buffers.columnGradientZeroStride = ld }
                }
            }
            n0 += gs
        }
    }

    /// dW = β·dW + (dWᵀ)ᵀ: adds the transposed weight gradient the workspace summed over its calls
    /// (`plan.transposedWeightGradient`) into `target`, once per backward pass and workspace.
    static func finishWeightGradient(_ pl: Plan, workspace buffers: SliceBuffers, into target: (buffer: Tensor, beta: Float)) {
        guard buffers.transposedBeta != 0 else { return }
        buffers.transposedBeta = 0
        let out = pl.outChannels, k = pl.k
        let dwt = buffers.weightGradientTransposed.data, dw = target.buffer.data
        if pl.rows {   // rows ordered (i, c, j): `rowWeightColumn`
            let kernel = (pl.geometry.kernel_h, pl.geometry.kernel_w), c = pl.geometry.channels
            for r in 0..<k {
                let column = rowWeightColumn(r, channels: c, kernel: kernel), from = dwt + r * out
                if target.beta == 0 {
                    for o in 0..<out { dw[o * k + column] = from[o] }
                } else {
                    for o in 0..<out { dw[o * k + column] += from[o] }
                }
            }
            return
        }
        for o in 0..<out {
            let row = dw + o * k
            if target.beta == 0 {
                for r in 0..<k { row[r] = dwt[r * out + o] }
            } else {
                for r in 0..<k { row[r] += dwt[r * out + o] }
            }
        }
    }

    // MARK: - im2col / col2im

    /// Writes one image's `[K, Ho·Wo]` columns; row r starts at `cols + r·rowStride` (C kernel).
    static func im2col(_ pl: Plan, _ x: UnsafeMutablePointer<Float>, into cols: UnsafeMutablePointer<Float>, rowStride ld: Int,
                       padded: UnsafeMutablePointer<Float>) {
        var g = pl.geometry
        bp_im2col(&g, x, padded, cols, ld)
    }

    /// Writes one image's input gradient from its column gradients (overlapping windows add up;
    /// C kernel, overwrites dx; `padded` is scratch for one zero-bordered plane).
    static func col2im(_ pl: Plan, _ cols: UnsafeMutablePointer<Float>, rowStride ld: Int, into dx: UnsafeMutablePointer<Float>,
                       padded: UnsafeMutablePointer<Float>, consume: Bool = false) {
        var g = pl.geometry
        if consume { bp_col2im_consume(&g, cols, ld, padded, dx) } else { bp_col2im(&g, cols, ld, padded, dx) }
    }
}

/// PyTorch's name for `Conv2D`.
public typealias Conv2d = Conv2D
