import Foundation

/// Softmax over the last dimension, PyTorch's `nn.Softmax(dim=-1)`, as a standalone layer.
/// (For classification prefer `SoftmaxCrossEntropy` on logits: fused, stabler and cheaper.)
///
/// Each row r (of C = last-dimension entries) is handled on its own:
///
///     forward   y_j  = e^(x_j − m) / Σ_k e^(x_k − m),   m = max_k x_k
///     backward  dx_j = y_j · (dy_j − Σ_k dy_k y_k)     (the Jacobian diag(y) − y yᵀ times dy)
public final class Softmax: Layer {
    public var isTraining = true
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output, which backward reads

    public init() {}
    public var summary: String { "Softmax" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        guard let c = x.shape.last, c > 0 else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "needs a non-empty last dimension, got input \(x.shape)")
        }
        output.resize(to: x.shape)
        let rows = x.count / c
        for r in 0..<rows {
            let xi = x.data + r * c, yi = output.data + r * c
            var m = -Float.infinity
            for j in 0..<c { m = max(m, xi[j]) }
            var s: Float = 0
            for j in 0..<c { let e = expf(xi[j] - m); yi[j] = e; s += e }
            let inv = 1 / s
            for j in 0..<c { yi[j] *= inv }
        }
        saved.save(output)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        let output = try saved.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        guard let c = dy.shape.last, c > 0 else { return inputGradient }
        let rows = dy.count / c
        for r in 0..<rows {
            let yi = output.data + r * c, gi = dy.data + r * c, dxi = inputGradient.data + r * c
            var dot: Float = 0
            for j in 0..<c { dot += gi[j] * yi[j] }
            for j in 0..<c { dxi[j] = yi[j] * (gi[j] - dot) }
        }
        return inputGradient
    }
}
