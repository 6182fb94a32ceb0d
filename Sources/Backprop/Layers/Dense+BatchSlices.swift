/// Dense as a `BatchSliceable` layer, for a `Sequential` stretch of batch slices: each slice runs
/// the plain row-block math (`forwardRows`, `backwardRows`) on its own rows, all of them in one
/// product (`preferredImagesPerCall` is unlimited); its dW and db go to the slice's own buffers
/// (`SliceGradients`), added in slice order by `endBackward`.
extension Dense: BatchSliceable {
    public var preferredImagesPerCall: Int { Int.max }
    /// Backward reads x, δ of the output and W, never the output: a ReLU after it in a stretch
    /// runs in place over it.
    public var backwardReadsOutput: Bool { false }

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        try prepareForward(x)
        return output
    }

    public func forward(images rows: Range<Int>, slice: Int) throws {
        guard let x = input.tensor else { throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward") }
        try forwardRows(rows, x)
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        _ = try prepareBackward(dy)
        sliceGradients.begin(slices: slices)
        outputGradient = dy
        return inputGradient
    }

    public func backward(images rows: Range<Int>, slice: Int) throws {
        guard let x = input.tensor, let dy = outputGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        try backwardRows(rows, x, dy, weightGradient: sliceGradients.target(0, slice: slice),
                         biasGradient: bias == nil ? nil : sliceGradients.zeroedTarget(1, slice: slice))
    }

    public func endBackward(slices: Int) {
        guard outputGradient != nil else { return }
        sliceGradients.finish()
        outputGradient = nil
    }
}
