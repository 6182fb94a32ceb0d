/// Conv2D as a `BatchSliceable` layer: how a pass is planned and its buffers sized for S slices
/// (the same calls serve the plain `forward`/`backward`, which run the layer's own `threads` slices).
extension Conv2D: BatchSliceable {
    public var preferredImagesPerCall: Int { Swift.max(1, imagesPerGemm) }
    public var prefersBatchSlices: Bool { true }

    /// One slice's working buffers.
    final class SliceBuffers {
        let columns = Tensor(uncheckedShape: [0])         // [K, G·P]
        let columnGradient = Tensor(uncheckedShape: [0])  // [K, G·P]
        let scratch = Tensor(uncheckedShape: [0])         // [out, G·P] when G > 1
        let padded = Tensor(uncheckedShape: [0])          // [C, H+2ph, W+2pw]: one zero-bordered image
        let planeGradient = Tensor(uncheckedShape: [0])   // [H+2ph, W+2pw]: col2im's accumulator
    }

    /// The group size G (images per product) in a batch of `n`: `imagesPerGemm`, at most `n`.
    func groupSize(n: Int) -> Int {
        Swift.max(1, Swift.min(imagesPerGemm, n))
    }

    /// The slice count S for a batch of `n` images.
    func sliceCount(_ n: Int) -> Int { BatchSlices.count(threads: threads, items: n) }

    /// Sizes S slices' buffers (columns `[K, G·P]`, padded plane, scratch; in backward also the
    /// column gradient). Storage is reused: nothing is allocated once the shapes have been seen.
    func prepareSlices(_ count: Int, k: Int, groupColumns gp: Int, height h: Int, width w: Int,
                       grouped: Bool, pointwise: Bool, backward: Bool) {
        while slices.count < count { slices.append(SliceBuffers()) }
        for s in slices.prefix(count) {
            if !pointwise {
                s.columns.resize(k, gp)
                let hp = h + 2 * padding.height, wp = w + 2 * padding.width
                if backward && needsInputGradient { s.columnGradient.resize(k, gp); s.planeGradient.resize(hp, wp) }
                if s.padded.rank != 3 || s.padded.shape[0] != inChannels || s.padded.shape[1] != hp || s.padded.shape[2] != wp {
                    s.padded.resize(inChannels, hp, wp)
                    s.padded.fill(0)
                }
            }
            if grouped { s.scratch.resize(outChannels, gp) }
        }
    }

    /// The sizes of the batch being processed, worked out by `beginForward`.
    struct Plan {
        var n = 0, h = 0, w = 0, ho = 0, wo = 0
        var k = 0, p = 0, g = 1                 // K = C·kh·kw, P = Ho·Wo, G images per gemm
        var pointwise = false
        var imageSize = 0, outImageSize = 0     // C·H·W and out·P
    }

    public func beginForward(_ x: Tensor, slices count: Int) throws -> Tensor {
        let outShape = try outputShape(for: x.shape)
        var pl = Plan()
        pl.n = x.shape[0]; pl.h = x.shape[2]; pl.w = x.shape[3]
        pl.ho = outShape[2]; pl.wo = outShape[3]
        pl.k = inChannels * kernelSize.height * kernelSize.width; pl.p = pl.ho * pl.wo
        pl.imageSize = inChannels * pl.h * pl.w; pl.outImageSize = outChannels * pl.p
        pl.g = groupSize(n: pl.n)
        pl.pointwise = isPointwise && pl.g == 1
        plan = pl
        output.resize(to: outShape)
        input.save(x)
        parametersAtForward.save()
        savedOutput.save(output)
        prepareSlices(count, k: pl.k, groupColumns: pl.g * pl.p, height: pl.h, width: pl.w, grouped: pl.g > 1,
                      pointwise: pl.pointwise, backward: false)
        return output
    }

    public func beginBackward(_ dy: Tensor, slices count: Int) throws -> Tensor {
        try requireSameShape(dy, try savedOutput.peek(summary), layer: summary)
        try parametersAtForward.check(summary)
        let x = try input.take(summary)
        let pl = plan
        if needsInputGradient { inputGradient.resize(to: x.shape) } else { inputGradient.resize(0) }
        prepareSlices(count, k: pl.k, groupColumns: pl.g * pl.p, height: pl.h, width: pl.w, grouped: pl.g > 1,
                      pointwise: pl.pointwise, backward: true)
        sliceGradients.begin(slices: count)
        outputGradient = dy
        return inputGradient
    }

    public func endBackward(slices count: Int) {
        guard outputGradient != nil else { return }
        sliceGradients.finish()   // slices 1, 2, … add their dW and db, in order
        outputGradient = nil
    }
}
