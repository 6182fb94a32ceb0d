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
        let src = x.data, dst = output.data
        for i in 0..<x.count { dst[i] = max(src[i], 0) }
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        let y = output.data, g = dy.data, dx = inputGradient.data
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        for i in 0..<dy.count { dx[i] = y[i] > 0 ? g[i] : 0 }
        return inputGradient
    }
}
