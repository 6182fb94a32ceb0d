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
        for r in 0..<rows { softmaxSlice(x.data + r * c, into: output.data + r * c, count: c) }
        saved.save(output)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let output = try saved.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        guard let c = dy.shape.last, c > 0 else { return inputGradient }
        let rows = dy.count / c
        for r in 0..<rows {
            softmaxBackwardSlice(output.data + r * c, dy.data + r * c, into: inputGradient.data + r * c, count: c)
        }
        return inputGradient
    }
}

// The softmax math, shared by this layer, `SoftmaxCrossEntropy` and the graph's `softmax`,
// `logSoftmax` and `crossEntropy`: one slice of `n` values `step` apart (a row: step 1).

/// Writes e^(x_k − m) into `e` (m = max_k x_k, so nothing overflows) and returns m and Σ_k e^(x_k − m):
/// softmax is e / Σ, and log Σ_k e^(x_k) = m + log Σ.
@inline(__always)
func exponentiateShifted(_ x: UnsafePointer<Float>, into e: UnsafeMutablePointer<Float>, count n: Int,
                         step: Int = 1) -> (max: Float, sum: Float) {
    var m = -Float.infinity
    for k in 0..<n { m = max(m, x[k * step]) }
    var s: Float = 0
    for k in 0..<n { let v = expf(x[k * step] - m); e[k * step] = v; s += v }
    return (m, s)
}

/// y = softmax(x) over one slice.
@inline(__always)
func softmaxSlice(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int, step: Int = 1) {
    let inv = 1 / exponentiateShifted(x, into: y, count: n, step: step).sum
    for k in 0..<n { y[k * step] *= inv }
}

/// dx = y ⊙ (dy − Σ_k dy_k y_k) over one slice (the softmax Jacobian diag(y) − y yᵀ times dy).
@inline(__always)
func softmaxBackwardSlice(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
                          count n: Int, step: Int = 1) {
    var dot: Float = 0
    for k in 0..<n { dot += dy[k * step] * y[k * step] }
    for k in 0..<n { dx[k * step] = y[k * step] * (dy[k * step] - dot) }
}
