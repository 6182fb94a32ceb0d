import Foundation

/// Hyperbolic tangent, PyTorch's `nn.Tanh`:
///
///     forward   y  = tanh(x)
///     backward  dx = dy · (1 − y²)         (from the cached output)
public final class Tanh: Layer {
    public var isTraining = true
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output, which backward reads

    public init() {}
    public var summary: String { "Tanh" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        let src = x.data, dst = output.data
        for i in 0..<x.count { dst[i] = tanhf(src[i]) }
        saved.save(output)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let output = try saved.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        let y = output.data, g = dy.data, dx = inputGradient.data
        for i in 0..<dy.count { dx[i] = g[i] * (1 - y[i] * y[i]) }
        return inputGradient
    }
}
