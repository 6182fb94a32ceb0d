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
        bp_relu(x.data, output.data, x.count)   // C kernel (AVX-512 where present); NaN stays NaN
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        bp_relu_backward(output.data, dy.data, inputGradient.data, dy.count)
        return inputGradient
    }
}
