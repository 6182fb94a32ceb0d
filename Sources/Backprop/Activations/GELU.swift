import Foundation

/// Gaussian error linear unit, PyTorch's `nn.GELU`.
///
/// Exact form (PyTorch's default, `approximate='none'`), with Φ the standard normal CDF and
/// φ its density:
///
///     forward   y  = x · Φ(x),            Φ(x) = ½ (1 + erf(x / √2))
///     backward  dx = dy · (Φ(x) + x · φ(x)),   φ(x) = e^(−x²/2) / √(2π)
///
/// Tanh form (`approximate='tanh'`), with u = √(2/π) (x + 0.044715 x³) and t = tanh(u):
///
///     forward   y  = ½ x (1 + t)
///     backward  dx = dy · (½ (1 + t) + ½ x (1 − t²) √(2/π) (1 + 3·0.044715 x²))
///
/// The input is cached by reference (as Dense does); backward recomputes Φ and φ from it.
public final class GELU: Layer {
    public enum Approximation: Sendable, Equatable {
        case none
        case tanh
    }

    public let approximate: Approximation
    public var isTraining = true

    private var input = ForwardRecord()          // x, which backward reads
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])

    private static let invSqrt2: Float = 0.70710678118654752
    private static let invSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536
    private static let cubic: Float = 0.044715

    public init(approximate: Approximation = .none) { self.approximate = approximate }

    public var summary: String { approximate == .none ? "GELU" : "GELU(approximate: tanh)" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        GELU.forward(x, approximate, into: output)
        input.save(x)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let x = try input.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        GELU.backward(x, dy, approximate, into: inputGradient)
        return inputGradient
    }

    // MARK: - The math (the layer and the graph's `gelu` share it); y, dx have x's element count

    /// y = gelu(x) element-wise.
    static func forward(_ x: Tensor, _ approximate: Approximation, into y: Tensor) {
        let src = x.data, dst = y.data, n = x.count
        switch approximate {
        case .none:
            for i in 0..<n {
                let v = src[i]
                dst[i] = 0.5 * v * (1 + erff(v * GELU.invSqrt2))
            }
        case .tanh:
            for i in 0..<n {
                let v = src[i]
                let t = tanhf(GELU.sqrt2OverPi * (v + GELU.cubic * v * v * v))
                dst[i] = 0.5 * v * (1 + t)
            }
        }
    }

    /// dx = dy · gelu′(x) element-wise.
    static func backward(_ x: Tensor, _ dy: Tensor, _ approximate: Approximation, into inputGradient: Tensor) {
        let xs = x.data, g = dy.data, dx = inputGradient.data, n = dy.count
        switch approximate {
        case .none:
            for i in 0..<n {
                let v = xs[i]
                let cdf = 0.5 * (1 + erff(v * GELU.invSqrt2))
                let pdf = GELU.invSqrt2Pi * expf(-0.5 * v * v)
                dx[i] = g[i] * (cdf + v * pdf)
            }
        case .tanh:
            for i in 0..<n {
                let v = xs[i], v2 = v * v
                let t = tanhf(GELU.sqrt2OverPi * (v + GELU.cubic * v2 * v))
                let du = GELU.sqrt2OverPi * (1 + 3 * GELU.cubic * v2)
                dx[i] = g[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du)
            }
        }
    }
}
