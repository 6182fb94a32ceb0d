import BackpropKernels

/// ReLU as a `BatchSliceable` layer: images are rows of the first dimension. Inside a stretch it
/// can run in place after a layer that does not read its own output (`Conv2D`, `Dense`): forward
/// overwrites that output with max(x, 0) and backward overwrites δ of its output with δ of its
/// input, saving a cold batch-sized write each way; and before a max pooling it leaves its mask to
/// the pooling and passes δ through (when it also runs in place, the pooling applies it in forward
/// too, and this layer's forward does nothing).
extension ReLU: BatchSliceable {
    public var canRunInPlace: Bool { true }
    public var backwardIsPositiveOutputMask: Bool { true }
    public func setFusion(_ fusion: Fusion) { self.fusion = fusion }

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        input = x
        perImage = x.rank == 0 || x.shape[0] == 0 ? x.count : x.count / x.shape[0]
        if fusion.inPlaceForward {
            result.save(x)
            return x
        }
        output.resize(to: x.shape)
        result.save(output)
        return output
    }

    public func forward(images: Range<Int>, slice: Int) throws {
        guard let x = input, let y = result.tensor else {
            throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward")
        }
        // In place before a max pooling that applies the mask: the pooling's forward applies the
        // ReLU to its maxima (max and ReLU commute), and nothing else reads this output.
        if fusion.inPlaceForward && fusion.maskAppliedByNext { return }
        let first = images.lowerBound * perImage
        bp_relu(x.data + first, y.data + first, images.count * perImage)   // in place when x === y
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        _ = try result.take(matching: dy, summary)
        outputGradient = dy
        perImage = dy.rank == 0 || dy.shape[0] == 0 ? dy.count : dy.count / dy.shape[0]
        if fusion.inPlaceBackward || fusion.maskAppliedByNext {
            resultGradient = dy
            return dy
        }
        inputGradient.resize(to: dy.shape)
        resultGradient = inputGradient
        return inputGradient
    }

    public func backward(images: Range<Int>, slice: Int) throws {
        guard let dy = outputGradient, let y = result.tensor, let dx = resultGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        if fusion.maskAppliedByNext { return }   // the pooling after this layer applied the mask
        let first = images.lowerBound * perImage
        // y > 0 exactly where x > 0 (also when y overwrote x), so the result serves as the mask.
        bp_relu_backward(y.data + first, dy.data + first, dx.data + first, images.count * perImage)   // in place when dx === dy
    }

    public func endBackward(slices: Int) { outputGradient = nil; input = nil; resultGradient = nil }
}
