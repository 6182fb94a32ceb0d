import Foundation

/// Logistic sigmoid, PyTorch's `nn.Sigmoid`:
///
///     forward   y  = 1 / (1 + e^(−x))      (as e^x / (1 + e^x) for x < 0, so e^(−x) never overflows)
///     backward  dx = dy · y · (1 − y)      (from the cached output)
public final class Sigmoid: Layer {
    public var isTraining = true
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output, which backward reads

    public init() {}
    public var summary: String { "Sigmoid" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        let src = x.data, dst = output.data
        for i in 0..<x.count { dst[i] = stableSigmoid(src[i]) }
        saved.save(output)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let output = try saved.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        let y = output.data, g = dy.data, dx = inputGradient.data
        for i in 0..<dy.count { dx[i] = g[i] * y[i] * (1 - y[i]) }
        return inputGradient
    }
}

/// σ(x) without overflow for large |x|.
@inline(__always)
func stableSigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}
