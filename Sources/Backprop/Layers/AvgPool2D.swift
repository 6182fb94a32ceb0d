/// Average pooling, PyTorch's `nn.AvgPool2d` (floor mode). With `countIncludePad` (PyTorch's
/// default) every window is divided by kh·kw, padding counted as zeros; otherwise by the number
/// of real input positions it covers.
///
///     forward   y[n,c,oy,ox] = Σ_window x / d
///     backward  dx[window]  += dy[n,c,oy,ox] / d
public final class AvgPool2D: Layer {
    let geometry: PoolGeometry
    public let countIncludePad: Bool
    public var kernelSize: (height: Int, width: Int) { geometry.kernel }
    public var stride: (height: Int, width: Int) { geometry.stride }
    public var padding: (height: Int, width: Int) { geometry.padding }
    public var isTraining = true

    private var inputShape: [Int]?
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output, whose shape backward reads

    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                countIncludePad: Bool = true) throws {
        geometry = try PoolGeometry(name: "AvgPool2D", kernel: kernelSize, stride: stride, padding: padding)
        self.countIncludePad = countIncludePad
    }

    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) throws {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                      countIncludePad: countIncludePad)
    }

    public var summary: String { geometry.describe("AvgPool2D") }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        output.resize(to: outShape)
        inputShape = x.shape
        AvgPool2D.forward(x, geometry: geometry, countIncludePad: countIncludePad, into: output)
        saved.save(output)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        _ = try saved.take(matching: dy, summary)
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        inputGradient.resize(to: shape)
        AvgPool2D.backward(dy, geometry: geometry, countIncludePad: countIncludePad, into: inputGradient)
        return inputGradient
    }

    // MARK: - The math (the layer and the graph share it)

    /// Visits each output position with its clipped window and divisor.
    @inline(__always)
    private static func forEachWindow(_ geometry: PoolGeometry, countIncludePad: Bool, h: Int, w: Int, ho: Int, wo: Int,
                                      _ body: (_ out: Int, _ y0: Int, _ y1: Int, _ x0: Int, _ x1: Int, _ scale: Float) -> Void) {
        let (kh, kw) = geometry.kernel, (sh, sw) = geometry.stride, (ph, pw) = geometry.padding
        let full = 1 / Float(kh * kw)
        for oy in 0..<ho {
            let y0 = Swift.max(oy * sh - ph, 0), y1 = Swift.min(oy * sh - ph + kh, h)
            for ox in 0..<wo {
                let x0 = Swift.max(ox * sw - pw, 0), x1 = Swift.min(ox * sw - pw + kw, w)
                // A window always holds at least one real position (padding ≤ kernel / 2).
                let scale = countIncludePad ? full : 1 / Float(Swift.max((y1 - y0) * (x1 - x0), 1))
                body(oy * wo + ox, y0, y1, x0, x1, scale)
            }
        }
    }

    /// y = Σ_window x / d for x `[N, C, H, W]` into `output`, shaped `[N, C, Ho, Wo]` for `geometry`.
    static func forward(_ x: Tensor, geometry: PoolGeometry, countIncludePad: Bool, into output: Tensor) {
        let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
        let ho = output.shape[2], wo = output.shape[3]
        for plane in 0..<planes {
            let xp = x.data + plane * h * w, yp = output.data + plane * ho * wo
            forEachWindow(geometry, countIncludePad: countIncludePad, h: h, w: w, ho: ho, wo: wo) { o, y0, y1, x0, x1, scale in
                var s: Float = 0
                for iy in y0..<y1 { for ix in x0..<x1 { s += xp[iy * w + ix] } }
                yp[o] = s * scale
            }
        }
    }

    /// dx = Σ over the windows holding each position of dy / d (overwrites `inputGradient`, shaped
    /// as the input; `dy` is shaped as the output).
    static func backward(_ dy: Tensor, geometry: PoolGeometry, countIncludePad: Bool, into inputGradient: Tensor) {
        inputGradient.fill(0)
        let shape = inputGradient.shape
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        let ho = dy.shape[2], wo = dy.shape[3]
        for plane in 0..<planes {
            let gp = dy.data + plane * ho * wo, dp = inputGradient.data + plane * h * w
            forEachWindow(geometry, countIncludePad: countIncludePad, h: h, w: w, ho: ho, wo: wo) { o, y0, y1, x0, x1, scale in
                let d = gp[o] * scale
                for iy in y0..<y1 { for ix in x0..<x1 { dp[iy * w + ix] += d } }
            }
        }
    }
}

/// PyTorch's name.
public typealias AvgPool2d = AvgPool2D
