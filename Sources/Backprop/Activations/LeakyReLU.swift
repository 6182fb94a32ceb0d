/// Leaky rectified linear unit, PyTorch's `nn.LeakyReLU`:
///
///     forward   y  = x            if x > 0,   a·x otherwise     (a: negative slope)
///     backward  dx = dy           if x > 0,   a·dy otherwise
///
/// The input is cached by reference (as Dense does): it stays untouched until backward.
public final class LeakyReLU: Layer {
    public let negativeSlope: Float
    public var isTraining = true

    private var input = ForwardRecord()          // x, which backward reads
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])

    public init(negativeSlope: Float = 0.01) { self.negativeSlope = negativeSlope }

    public var summary: String { "LeakyReLU(\(negativeSlope))" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        LeakyReLU.forward(x, negativeSlope, into: output)
        input.save(x)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        let x = try input.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        LeakyReLU.backward(x, dy, negativeSlope, into: inputGradient)
        return inputGradient
    }

    // MARK: - The math (the layer and the graph share it); y, dx have x's element count

    /// y = x where x > 0, a·x elsewhere.
    static func forward(_ x: Tensor, _ a: Float, into y: Tensor) {
        let src = x.data, dst = y.data
        for i in 0..<x.count { let v = src[i]; dst[i] = v > 0 ? v : a * v }
    }

    /// dx = dy where x > 0, a·dy elsewhere.
    static func backward(_ x: Tensor, _ dy: Tensor, _ a: Float, into inputGradient: Tensor) {
        let xs = x.data, g = dy.data, dx = inputGradient.data
        for i in 0..<dy.count { dx[i] = xs[i] > 0 ? g[i] : a * g[i] }
    }
}
