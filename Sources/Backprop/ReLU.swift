import BackpropKernels

/// Rectified linear unit: y = max(x, 0);  dx = dy · [x > 0].
public final class ReLU: Layer {
    public var isTraining = true
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])

    public init() {}
    public var summary: String { "ReLU" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        // C kernel (AVX-512 where present); NaN stays NaN. Large tensors (a convolution's
        // output) are split across cores.
        let src = x.data, dst = output.data
        ParallelChunks.run(elements: x.count) { r in bp_relu(src + r.lowerBound, dst + r.lowerBound, r.count) }
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        let y = output.data, g = dy.data, dx = inputGradient.data
        ParallelChunks.run(elements: dy.count) { r in
            bp_relu_backward(y + r.lowerBound, g + r.lowerBound, dx + r.lowerBound, r.count)
        }
        return inputGradient
    }
}
