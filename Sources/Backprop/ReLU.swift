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
        let src = x.data, dst = output.data, n = x.count
        // Explicit SIMD (VectorLoops): NaN stays NaN, as max(x, 0) and PyTorch do.
        let zero = SIMD8<Float>(repeating: 0)
        var i = 0
        while i &+ 8 <= n {
            let v = VectorLoops.load8(src, i)
            VectorLoops.store8(v.replacing(with: zero, where: v .< zero), dst, i)
            i &+= 8
        }
        while i < n { dst[i] = max(src[i], 0); i &+= 1 }
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        let y = output.data, g = dy.data, dx = inputGradient.data
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        let n = dy.count, zero = SIMD8<Float>(repeating: 0)
        var i = 0
        while i &+ 8 <= n {
            let mask = VectorLoops.load8(y, i) .> zero
            VectorLoops.store8(zero.replacing(with: VectorLoops.load8(g, i), where: mask), dx, i)
            i &+= 8
        }
        while i < n { dx[i] = y[i] > 0 ? g[i] : 0; i &+= 1 }
        return inputGradient
    }
}
