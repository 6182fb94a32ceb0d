import BackpropKernels

/// The row lowering: Conv2D's products for a stride-1 convolution without im2col's `[C·kh·kw, P]`
/// columns. The same math as `Conv2D.forward`/`backward` (the plain definition, kept there and
/// used for every other convolution); only the lowering and the calls differ.
///
/// For a stride-1 convolution, output row oy reads padded input rows oy … oy + kh − 1. The
/// "row columns" `R` are `[C·kw, (H + 2ph)·Wo]`: row (c, j) holds plane c of the zero-bordered
/// image shifted left by j, cut to Wo columns. That is im2col of a 1 × kw kernel over all H + 2ph
/// padded rows (`rowGeometry`), so `bp_im2col` writes R and `bp_col2im` is its adjoint. The columns
/// of kernel row i are then the window of R starting at column i·Wo, a plain matrix with R's row
/// stride, and
///
///     forward   Y    = Σ_i W_i·R[:, i·Wo …]       [out, P] += [out, C·kw]·[C·kw, P]     kh products, NoTrans/NoTrans
///     backward  dW_iᵀ += R[:, i·Wo …]·dYᵀ         [C·kw, out] += [C·kw, P]·[P, out]     kh products, NoTrans/NoTrans
///               dR[:, i·Wo …] += W_iᵀ·dY          [C·kw, P] += [C·kw, out]·[out, P]     kh products, Trans/NoTrans
///               dX   = adjoint of R (dR)          (col2im of the 1 × kw geometry)
///
/// with `W_i = W[:, :, i, :]` as `[out, C·kw]`, laid out by `layRowWeights` once per pass — the layer
/// in `beginForward` (for every slice's images, and kept while W is bit for bit the same,
/// `layRowWeightsIfChanged`), the graph's op in each of its calls. Where OpenBLAS has its small
/// kernels the forward's columns are padded as `forwardColumns` pads im2col's (LeNet's conv2: 196
/// → 208, into a scratch copied out with the bias), so that no product takes the shape in which
/// OpenBLAS mallocs.
///
/// R holds C·kw·(H + 2ph)·Wo floats instead of C·kh·kw·Ho·Wo: for LeNet's conv2 (16 → 32, 5×5,
/// 14×14, padding 2) 80 × 252 instead of 400 × 196, a quarter of the lowering's writes, and the
/// reads of its adjoint sum kw instead of kh·kw terms per position. The products do the same
/// multiply-adds as im2col's, in kh calls with C·kw terms each.
///
/// Measured stand-alone on LeNet's conv2, one image, 1 thread (Intel Xeon, family 6 model 207,
/// OpenBLAS 0.3.21, best of 3000): the forward with its lowering 38.5 µs against 48.6 µs through
/// im2col under `SkylakeX`, 80.2 against 85.6 µs under `Zen`; the lowering alone 2.4 µs against
/// 7.6 µs; the backward products as fast as im2col's within 5 % either way. In the layer, both
/// lowerings alternating in one process (`ConvArchitectureTests.testRowLoweringTiming`): the LeNet
/// training step 0.904× (`SkylakeX`) and 0.958× (`Zen`), single-sample inference 0.925× and 1.006×.
/// Where C·kw is small the kh products have too few terms (LeNet's conv1, C = 1: 7.0 µs against
/// 6.0 µs under `SkylakeX`), hence the rule in `lowersByRows`.
///
/// dW is always summed transposed (rows ordered (i, c, j)) in the workspace and added into dW once
/// per backward (`Conv2D.finishWeightGradient`). dR accumulates with β = 1 into a buffer its
/// adjoint clears after reading, as dcols does without OpenBLAS's small kernels.
extension Conv2D {
    /// Whether a convolution of this shape takes the row lowering: stride 1 both ways, a kernel
    /// taller than one row, at least 16 terms (C·kw) per product, and one image per product.
    static func lowersByRows(channels: Int, kernel: (height: Int, width: Int), stride: (height: Int, width: Int),
                             imagesPerProduct g: Int) -> Bool {
        stride == (1, 1) && kernel.height > 1 && channels * kernel.width >= 16 && g == 1
    }

    /// The row lowering's sizes in `pl` (stride 1, see `lowersByRows`): terms per product C·kw, the
    /// forward product's columns (P, or padded as `forwardColumns` pads them) and terms per call,
    /// and R's row stride: room for the last kernel row's window of padded columns, rounded up to
    /// 16 floats (rows start on 64-byte boundaries).
    static func planRows(_ pl: inout Plan, channels: Int, kernel: (height: Int, width: Int)) {
        let ck = channels * kernel.width
        let (columns, terms) = Conv2D.forwardColumns(pl.outChannels, ck, pl.p, smallKernels: pl.smallMatrixKernels)
        let m = SmallProducts.kernelColumns
        pl.rows = true
        pl.rowTerms = ck
        pl.rowProductColumns = columns
        pl.rowForwardTerms = terms
        pl.rowStride = ((kernel.height - 1) * pl.wo + columns + m - 1) / m * m
        pl.rowGeometry = rowGeometry(pl.geometry)
        pl.transposedWeightGradient = true
    }

    /// The geometry whose im2col columns are the row columns R of `g` (stride 1): a 1 × kw kernel
    /// over the image with its vertical border, giving H + 2ph output rows of Wo.
    static func rowGeometry(_ g: bp_conv_geometry) -> bp_conv_geometry {
        var r = g
        r.kernel_h = 1
        r.out_h = g.height + 2 * g.pad_h
        return r
    }

    /// The weights `[out, C, kh, kw]` as the row lowering reads them, `[kh, out, C·kw]`, into `target`
    /// (resized; no allocation once it has held them).
    static func layRowWeights(_ weight: Tensor, _ pl: Plan, into target: Tensor) {
        let g = pl.geometry
        target.resize(pl.k * pl.outChannels)
        bp_row_weights(weight.data, target.data, pl.outChannels, g.channels, g.kernel_h, g.kernel_w)
    }

    /// `forward` under the row lowering (`plan.rows`), one image at a time, with the weights laid
    /// out by `layRowWeights`.
    static func forwardRows(images: Range<Int>, x: Tensor, rowWeights: Tensor, bias: Tensor?, plan pl: Plan,
                            workspace buffers: SliceBuffers, into output: Tensor, caller: @autoclosure () -> String) throws {
        let p = pl.p, out = pl.outChannels, ck = pl.rowTerms, wo = pl.wo, kh = pl.geometry.kernel_h
        let n = pl.rowProductColumns, ld = pl.rowStride, terms = pl.rowForwardTerms
        var g = pl.rowGeometry
        let inPlace = n == p
        for image in images {
            bp_im2col(&g, x.data + image * pl.imageSize, buffers.padded.data, buffers.columns.data, ld)
            // In place: Y's image is [out, P], the bias pre-filled (β = 1). Otherwise a scratch
            // [out, n] that is copied into Y with the bias added.
            let product = inPlace ? Matrix(output, offset: image * pl.outImageSize, rows: out, columns: p)
                                  : Matrix(buffers.scratch, rows: out, columns: n)
            if inPlace, let bias {
                bp_fill_rows(product.base, out, p, p, bias.data)
            }
            var beta: Float = inPlace && bias != nil ? 1 : 0
            for i in 0..<kh {
                for t0 in Swift.stride(from: 0, to: ck, by: terms) {   // Y (+)= W_i[:, t0…]·R[t0…, i·Wo…]
                    let tb = Swift.min(terms, ck - t0)
                    try gemm(Matrix(rowWeights, offset: i * out * ck + t0, rows: out, columns: tb, stride: ck),
                             Matrix(buffers.columns, offset: t0 * ld + i * wo, rows: tb, columns: n, stride: ld),
                             into: product, beta: beta, caller: caller())
                    beta = 1
                }
            }
            if !inPlace {
                bp_copy_rows_adding(product.base, n, output.data + image * pl.outImageSize, out, p, bias?.data)
            }
        }
    }

    /// `backward` under the row lowering (`plan.rows`) for `images`: dWᵀ (rows (i, c, j)) summed in
    /// the workspace (`finishWeightGradient` adds it into dW), and dX[images] if `inputGradient` is
    /// given. db is the caller's.
    static func backwardRows(images: Range<Int>, x: Tensor, dy: Tensor, rowWeights: Tensor, plan pl: Plan,
                             workspace buffers: SliceBuffers, inputGradient: Tensor?, caller: @autoclosure () -> String) throws {
        let p = pl.p, out = pl.outChannels, ck = pl.rowTerms, wo = pl.wo, kh = pl.geometry.kernel_h, ld = pl.rowStride
        var g = pl.rowGeometry
        if inputGradient != nil && buffers.columnGradientZeroStride != ld { buffers.columnGradient.fill(0) }
        let rows = Conv2D.weightGradientRows(out: out, k: ck, terms: p, smallKernels: pl.smallMatrixKernels)
        let block = Conv2D.columnBlock(ck, out, p, smallKernels: pl.smallMatrixKernels)
        let dyT = Matrix(buffers.outputGradientTransposed, rows: p, columns: out)
        for image in images {
            let dyM = Matrix(dy, offset: image * pl.outImageSize, rows: out, columns: p)
            bp_im2col(&g, x.data + image * pl.imageSize, buffers.padded.data, buffers.columns.data, ld)
            // dW_iᵀ (+)= R[:, i·Wo…]·dYᵀ
            try transpose(dyM, into: dyT, caller: caller())
            for i in 0..<kh {
                for r0 in Swift.stride(from: 0, to: ck, by: rows) {
                    let rc = Swift.min(rows, ck - r0)
                    try gemm(Matrix(buffers.columns, offset: r0 * ld + i * wo, rows: rc, columns: p, stride: ld), dyT,
                             into: Matrix(buffers.weightGradientTransposed, offset: (i * ck + r0) * out, rows: rc, columns: out),
                             beta: buffers.transposedBeta, caller: caller())
                }
            }
            buffers.transposedBeta = 1
            guard let inputGradient else { continue }
            // dR[:, i·Wo…] += W_iᵀ·dY into the kept-zero buffer, then dX from it (which clears it).
            buffers.columnGradientZeroStride = 0     // until the adjoint has cleared it again
            for i in 0..<kh {
                for c0 in Swift.stride(from: 0, to: p, by: block) {
                    let cb = Swift.min(block, p - c0)
                    try gemm(Matrix(rowWeights, offset: i * out * ck, rows: out, columns: ck), transposeA: true,
                             dyM.advanced(by: c0, columns: cb),
                             into: Matrix(buffers.columnGradient, offset: i * wo + c0, rows: ck, columns: cb, stride: ld),
                             beta: 1, caller: caller())
                }
            }
            bp_col2im_consume(&g, buffers.columnGradient.data, ld, buffers.planeGradient.data,
                              inputGradient.data + image * pl.imageSize)
            buffers.columnGradientZeroStride = ld
        }
    }

    /// The dW column of row r of the row lowering's dWᵀ: r = (i·C + c)·kw + j holds W[:, c, i, j].
    static func rowWeightColumn(_ r: Int, channels: Int, kernel: (height: Int, width: Int)) -> Int {
        let j = r % kernel.width, c = (r / kernel.width) % channels, i = r / (kernel.width * channels)
        return (c * kernel.height + i) * kernel.width + j
    }
}
