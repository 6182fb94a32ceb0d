import BackpropKernels
import Foundation

/// Conv2D as a `BatchSliceable` layer: how a pass is planned and its buffers sized for S slices
/// (the same calls serve the plain `forward`/`backward`, which run the layer's own `threads` slices).
extension Conv2D: BatchSliceable {
    public var preferredImagesPerCall: Int { Swift.max(1, imagesPerGemm) }
    public var prefersBatchSlices: Bool { true }
    /// Backward reads x, δ of the output and W, never the output: a ReLU after it in a stretch
    /// runs in place over it.
    public var backwardReadsOutput: Bool { false }

    /// One slice's working buffers (or one graph call's).
    final class SliceBuffers {
        let columns = Tensor(uncheckedShape: [0])         // [K, G·P], forward's rows padded up to `widestStride`
        let columnGradient = Tensor(uncheckedShape: [0])  // [K, G·P]
        let scratch = Tensor(uncheckedShape: [0])         // [out, widestStride] when G > 1 or forward pads
        let padded = Tensor(uncheckedShape: [0])          // [C, H+2ph, W+2pw]: one zero-bordered image
        let planeGradient = Tensor(uncheckedShape: [0])   // [H+2ph, W+2pw]: col2im's accumulator
        let outputGradientTransposed = Tensor(uncheckedShape: [0])  // [G·P, out]: dYᵀ of a group
        let weightGradientTransposed = Tensor(uncheckedShape: [0])  // [K, out]: dWᵀ of the slice's images
        let rowWeights = Tensor(uncheckedShape: [0])      // [kh, out, C·kw]: W laid out for the row lowering (graph calls)
        /// β of the next product into `weightGradientTransposed`: 0 until the backward pass's
        /// first, then 1 until `Conv2D.finishWeightGradient` adds the sum into dW.
        var transposedBeta: Float = 0
        /// The row stride for which `columnGradient` is zero at every entry col2im reads (0: not
        /// known to be): dcols accumulates into it on cores without the small kernels.
        var columnGradientZeroStride = 0

        /// Sizes the buffers for `plan` (columns, padded plane, scratch; with `inputGradient` also
        /// the column gradient and col2im's plane). Storage is reused: nothing is allocated once
        /// the shapes have been seen. Under the row lowering the columns and their gradient are
        /// the row columns `[C·kw, rowStride]`.
        func prepare(_ pl: Plan, inputGradient: Bool) {
            let gp = pl.g * pl.p
            if !pl.pointwise {
                let (rows, stride) = pl.rows ? (pl.rowTerms, pl.rowStride) : (pl.k, pl.widestStride)
                let gradientColumns = pl.rows ? pl.rowStride : gp
                columns.resize(rows, stride)
                let c = pl.geometry.channels, hp = pl.h + 2 * pl.geometry.pad_h, wp = pl.w + 2 * pl.geometry.pad_w
                if inputGradient {
                    if columnGradient.rank != 2 || columnGradient.shape[0] != rows || columnGradient.shape[1] != gradientColumns {
                        columnGradient.resize(rows, gradientColumns)
                        columnGradientZeroStride = 0
                    }
                    planeGradient.resize(hp, wp)
                }
                if pl.transposedWeightGradient {
                    outputGradientTransposed.resize(gp, pl.outChannels)
                    weightGradientTransposed.resize(pl.k, pl.outChannels)
                }
                if padded.rank != 3 || padded.shape[0] != c || padded.shape[1] != hp || padded.shape[2] != wp {
                    padded.resize(c, hp, wp)
                    padded.fill(0)
                }
            }
            if pl.rows {
                if pl.rowProductColumns != pl.p { scratch.resize(pl.outChannels, pl.rowProductColumns) }
            } else if pl.g > 1 || Conv2D.forwardColumns(pl.outChannels, pl.k, pl.p, smallKernels: pl.smallMatrixKernels).stride != pl.p {
                scratch.resize(pl.outChannels, pl.widestStride)
            }
        }
    }

    /// The group size G (images per product) in a batch of `n`: `imagesPerGemm`, at most `n`.
    func groupSize(n: Int) -> Int {
        Swift.max(1, Swift.min(imagesPerGemm, n))
    }

    /// The slice count S for a batch of `n` images.
    func sliceCount(_ n: Int) -> Int { BatchSlices.count(threads: threads, items: n) }

    /// Sizes S slices' buffers for the current plan (in backward also the column gradient).
    func prepareSlices(_ count: Int, backward: Bool) {
        while slices.count < count { slices.append(SliceBuffers()) }
        for s in slices.prefix(count) { s.prepare(plan, inputGradient: backward && needsInputGradient) }
    }

    /// The sizes of one pass, worked out from its input shape by `plan(for:)`.
    struct Plan {
        var n = 0, h = 0, w = 0, ho = 0, wo = 0
        var k = 0, p = 0, g = 1                 // K = C·kh·kw, P = Ho·Wo, G images per gemm
        /// The widest row stride the forward's columns and scratch can take (`forwardColumns` of
        /// at most G·P columns): G·P rounded up to a multiple of 16.
        var widestStride: Int {
            let n = Swift.max(g * p, 1), m = SmallProducts.kernelColumns
            return (n + m - 1) / m * m
        }
        var outChannels = 0
        var pointwise = false
        /// dW is summed transposed in the slice's workspace and added once per backward
        /// (`Conv2D.weightGradientTransposed` for one image's positions; never for a pointwise layer).
        var transposedWeightGradient = false
        /// `BLAS.hasSmallMatrixKernels` when the plan was made: the product blocks depend on it, so a
        /// core switched between passes makes a new plan.
        var smallMatrixKernels = true
        /// The row lowering (`Conv2D+RowLowering`; `Conv2D.lowersByRows`): its terms per product
        /// C·kw, the forward product's columns and terms per call, and the row columns' stride.
        var rows = false
        var rowTerms = 0, rowProductColumns = 0, rowForwardTerms = 0, rowStride = 0
        var rowGeometry = bp_conv_geometry()    // R as im2col of a 1 × kw kernel (`Conv2D.rowGeometry`)
        var imageSize = 0, outImageSize = 0     // C·H·W and out·P
        var geometry = bp_conv_geometry()       // the C kernels' description of one image
    }

    /// The plan of a pass on an input of `shape` (a shape error naming the layer if it does not fit).
    func plan(for shape: [Int]) throws -> Plan {
        let outShape = try outputShape(for: shape)
        var pl = Plan()
        pl.n = shape[0]; pl.h = shape[2]; pl.w = shape[3]
        pl.ho = outShape[2]; pl.wo = outShape[3]
        pl.k = inChannels * kernelSize.height * kernelSize.width; pl.p = pl.ho * pl.wo
        pl.outChannels = outChannels
        pl.imageSize = inChannels * pl.h * pl.w; pl.outImageSize = outChannels * pl.p
        pl.g = groupSize(n: pl.n)
        pl.smallMatrixKernels = BLAS.hasSmallMatrixKernels
        // A 1×1 convolution reads the image itself as its columns unless forward must pad them.
        pl.pointwise = isPointwise && pl.g == 1 && Conv2D.forwardColumns(outChannels, pl.k, pl.p, smallKernels: pl.smallMatrixKernels).stride == pl.p
        pl.transposedWeightGradient = !pl.pointwise && Conv2D.weightGradientTransposed(out: outChannels, k: pl.k, terms: pl.p)
        pl.geometry = bp_conv_geometry(channels: inChannels, height: pl.h, width: pl.w,
                                       kernel_h: kernelSize.height, kernel_w: kernelSize.width,
                                       stride_h: stride.height, stride_w: stride.width,
                                       pad_h: padding.height, pad_w: padding.width, out_h: pl.ho, out_w: pl.wo)
        if allowsRowLowering && !pl.pointwise
            && Conv2D.lowersByRows(channels: inChannels, kernel: kernelSize, stride: stride, imagesPerProduct: pl.g) {
            Conv2D.planRows(&pl, channels: inChannels, kernel: kernelSize)
        }
        return pl
    }

    public func beginForward(_ x: Tensor, slices count: Int) throws -> Tensor {
        // The last plan when the input shape is the same (plan(for:) builds shape arrays).
        let s = x.shape
        if !(s.count == 4 && plan.k > 0 && s[0] == plan.n && s[1] == inChannels && s[2] == plan.h && s[3] == plan.w
             && plan.g == groupSize(n: plan.n) && plan.smallMatrixKernels == BLAS.hasSmallMatrixKernels) {
            plan = try plan(for: s)
        }
        output.resize(plan.n, outChannels, plan.ho, plan.wo)
        if plan.rows { layRowWeightsIfChanged() }   // read by every slice's images
        input.save(x)
        parametersAtForward.save()
        savedOutput.save(output)
        prepareSlices(count, backward: false)
        return output
    }

    public func beginBackward(_ dy: Tensor, slices count: Int) throws -> Tensor {
        try requireSameShape(dy, try savedOutput.peek(summary), layer: summary)
        try parametersAtForward.check(summary)
        let x = try input.take(summary)
        if needsInputGradient { inputGradient.resize(to: x.shape) } else { inputGradient.resize(0) }
        prepareSlices(count, backward: true)
        for s in slices.prefix(count) { s.transposedBeta = 0 }
        sliceGradients.begin(slices: count)
        outputGradient = dy
        return inputGradient
    }

    /// `layRowWeights` of W into `rowWeights`, unless W is bit for bit the W it was laid out from
    /// (comparing 51 KB for LeNet's conv2 takes about a third of laying them out).
    func layRowWeightsIfChanged() {
        let w = weight.value
        if rowWeightsSource.count == w.count && rowWeights.count == plan.k * plan.outChannels
            && memcmp(rowWeightsSource.data, w.data, w.count * MemoryLayout<Float>.size) == 0 { return }
        Conv2D.layRowWeights(w, plan, into: rowWeights)
        rowWeightsSource.resize(w.count)
        rowWeightsSource.data.update(from: w.data, count: w.count)
    }

    public func endBackward(slices count: Int) {
        guard outputGradient != nil else { return }
        for (i, s) in slices.prefix(count).enumerated() where s.transposedBeta != 0 {
            Conv2D.finishWeightGradient(plan, workspace: s, into: sliceGradients.target(0, slice: i))
        }
        sliceGradients.finish()   // slices 1, 2, … add their dW and db, in order
        outputGradient = nil
    }
}
