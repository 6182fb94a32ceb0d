import BackpropKernels

/// Rectified linear unit, PyTorch's `nn.ReLU`:
///
///     forward   y  = max(x, 0)
///     backward  dx = dy · [x > 0]        (y > 0 exactly where x > 0: the output serves as the mask)
///
/// Both are C kernels (AVX-512 where present); NaN stays NaN. Inside a `Sequential` stretch of
/// batch slices it may work in place or leave its mask to a max pooling after it
/// (`ReLU+BatchSlices.swift`).
public final class ReLU: Layer {
    public var isTraining = true
    let output = Tensor(uncheckedShape: [0])
    let inputGradient = Tensor(uncheckedShape: [0])
    /// What the last forward wrote: `output`, or the input itself when it ran in place.
    var result = ForwardRecord()

    public init() {}
    public var summary: String { "ReLU" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        bp_relu(x.data, output.data, x.count)
        result.save(output)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let y = try result.take(matching: dy, summary)   // the last forward's result, also after a sliced one
        inputGradient.resize(to: dy.shape)
        bp_relu_backward(y.data, dy.data, inputGradient.data, dy.count)
        return inputGradient
    }

    // Batch slices (ReLU+BatchSlices.swift).
    var fusion = Fusion.none
    var input: Tensor?                   // set by beginForward for forward(images:)
    var outputGradient: Tensor?          // set by beginBackward for backward(images:)
    var resultGradient: Tensor?          // what the sliced backward writes: δ of the input, or δ of the output in place
    var perImage = 0                     // elements per first-dimension row
}
