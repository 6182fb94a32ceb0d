/// MaxPool2D as a `BatchSliceable` layer: each slice pools its own images. Inside a stretch it
/// can take over the mask of a ReLU right before it.
extension MaxPool2D: BatchSliceable {
    public var prefersBatchSlices: Bool { true }
    /// Set by `StretchPlan` when a ReLU comes right before this layer in a sliced stretch: the
    /// sliced backward keeps δ only where the pooled output is > 0, which is that ReLU's backward
    /// (its output at each window's maximum is the pooled value; elsewhere δ is 0 anyway), and
    /// the ReLU skips its own pass. The sliced forward also sets the pooled output to max(y, 0),
    /// which is the ReLU's forward (max and ReLU commute), so a ReLU working in place skips its
    /// forward too (one that does not still fills its own output, which the pooling reads; the
    /// second ReLU changes nothing).
    public var canApplyPrecedingReLUMask: Bool { true }
    public func setFusion(_ fusion: Fusion) { self.fusion = fusion }

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        if let previous = inputShape, previous == x.shape, output.rank == 4, output.shape[0] == x.shape[0], output.shape[1] == x.shape[1] {
            output.markChanged()   // same input shape: the output is sized (no shape array built per call)
        } else {
            output.resize(to: try geometry.outputShape(for: x.shape, layer: summary))
        }
        if argmaxCapacity < output.count {
            argmax.deallocate()
            argmax = .allocate(capacity: output.count)
            argmaxCapacity = output.count
        }
        inputShape = x.shape
        input = x
        passFusion = fusion
        saved.save(output)
        return output
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        _ = try saved.take(matching: dy, summary)
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        inputGradient.resize(to: shape)
        outputGradient = dy
        return inputGradient
    }

    public func endBackward(slices: Int) { outputGradient = nil; input = nil }
}
