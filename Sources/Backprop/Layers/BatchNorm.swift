import Foundation

/// Batch normalisation, PyTorch's `nn.BatchNorm1d` (input `[N, C]` or `[N, C, L]`) and
/// `nn.BatchNorm2d` (input `[N, C, H, W]`). Statistics are per channel c over the M = N·S values
/// of that channel (S = L or H·W, 1 for `[N, C]`).
///
///     training   μ = mean x,  σ² = mean (x − μ)²  (biased),  x̂ = (x − μ) / √(σ² + ε)
///                y = γ·x̂ + β
///                running_mean ← (1 − m)·running_mean + m·μ
///                running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)   (unbiased, as PyTorch)
///                num_batches_tracked += 1
///     eval       x̂ = (x − running_mean) / √(running_var + ε)
///
///     backward (training, through the batch statistics)
///                dβ += Σ dy,  dγ += Σ dy·x̂
///                dx = γ/√(σ² + ε) · (dy − Σdy/M − x̂·Σ(dy·x̂)/M)
///     backward (eval)  dx = γ/√(running_var + ε) · dy
///
/// Parameters `weight` (γ, ones) and `bias` (β, zeros) when `affine`; buffers `running_mean`
/// (zeros), `running_var` (ones) and `num_batches_tracked` (a one-element Float tensor; PyTorch
/// stores it as int64) in `namedBuffers`. `momentum: nil` gives PyTorch's cumulative average
/// (m = 1 / num_batches_tracked). Backward uses the mode of the last forward.
public final class BatchNorm: Layer {
    public enum Kind: Sendable, Equatable {
        /// `BatchNorm1d`: input `[N, C]` or `[N, C, L]`.
        case d1
        /// `BatchNorm2d`: input `[N, C, H, W]`.
        case d2
    }

    public let features: Int
    public let kind: Kind
    public let eps: Float
    public let momentum: Float?
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Tensor
    public let runningVar: Tensor
    /// Number of training batches seen (shape `[]`, one Float element).
    public let numBatchesTracked: Tensor
    public var isTraining = true

    private var lastForwardTrained = true
    private var inputShape: [Int]?
    private var saved = ForwardRecord()          // the output: this pass's shape and use
    private lazy var parametersAtForward = ParameterRecords(parameters)   // γ is read again by backward
    private let output = Tensor(uncheckedShape: [0])
    private let normalized = Tensor(uncheckedShape: [0])      // x̂, cached for backward
    private let inputGradient = Tensor(uncheckedShape: [0])
    private let invStd: Tensor                                 // 1/√(σ² + ε) of the last forward, per channel

    public init(features: Int, kind: Kind, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true) throws {
        let name = kind == .d1 ? "BatchNorm1d" : "BatchNorm2d"
        guard features > 0 else { throw BackpropError.invalidArgument("\(name)(\(features)): features must be positive") }
        guard eps > 0, eps.isFinite else { throw BackpropError.invalidArgument("\(name)(\(features)): eps \(eps) must be positive") }
        if let momentum, !(momentum >= 0 && momentum <= 1) {
            throw BackpropError.invalidArgument("\(name)(\(features)): momentum \(momentum) must be in [0, 1]")
        }
        self.features = features
        self.kind = kind
        self.eps = eps
        self.momentum = momentum
        if affine {
            let w = Parameter(try Tensor(zeros: [features])); w.value.fill(1)
            weight = w
            bias = Parameter(try Tensor(zeros: [features]))
        } else {
            weight = nil
            bias = nil
        }
        runningMean = try Tensor(zeros: [features])
        runningVar = try Tensor(zeros: [features]); runningVar.fill(1)
        numBatchesTracked = Tensor(uncheckedShape: [])
        invStd = try Tensor(zeros: [features])
    }

    /// PyTorch's `BatchNorm1d(features)`.
    public static func d1(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true) throws -> BatchNorm {
        try BatchNorm(features: features, kind: .d1, eps: eps, momentum: momentum, affine: affine)
    }

    /// PyTorch's `BatchNorm2d(features)`.
    public static func d2(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true) throws -> BatchNorm {
        try BatchNorm(features: features, kind: .d2, eps: eps, momentum: momentum, affine: affine)
    }

    public var summary: String {
        "\(kind == .d1 ? "BatchNorm1d" : "BatchNorm2d")(\(features)\(weight == nil ? ", affine: false" : ""))"
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        guard let weight, let bias else { return [] }
        return [(name: "weight", parameter: weight), (name: "bias", parameter: bias)]
    }

    /// Non-trainable state in PyTorch's `state_dict` names and order.
    public var namedBuffers: [(name: String, tensor: Tensor)] {
        [(name: "running_mean", tensor: runningMean), (name: "running_var", tensor: runningVar),
         (name: "num_batches_tracked", tensor: numBatchesTracked)]
    }

    /// Channels-per-sample layout (N, C, S) of an input, or a shape error.
    func layout(_ shape: [Int]) throws -> (n: Int, s: Int) {
        let ok: Bool
        switch kind {
        case .d1: ok = (shape.count == 2 || shape.count == 3) && shape[1] == features
        case .d2: ok = shape.count == 4 && shape[1] == features
        }
        guard ok else {
            let expected = kind == .d1 ? "[N, \(features)] or [N, \(features), L]" : "[N, \(features), H, W]"
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input \(expected), got \(shape)")
        }
        return (shape[0], shape.dropFirst(2).reduce(1, *))
    }

    /// For a training pass on `shape` (M = N·S values per channel, which must be more than 1):
    /// counts the batch in `num_batches_tracked` and returns the running statistics' update factor
    /// (`momentum`, or 1 / num_batches_tracked for the cumulative average).
    func beginTrainingPass(_ shape: [Int], n: Int, s: Int) throws -> Float {
        guard n * s > 1 else {
            throw BackpropError.invalidArgument("\(summary): expected more than 1 value per channel when training, got input \(shape)")
        }
        numBatchesTracked.data[0] += 1
        return momentum ?? 1 / numBatchesTracked.data[0]
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let (n, s) = try layout(x.shape)
        let update = isTraining ? try beginTrainingPass(x.shape, n: n, s: s) : nil
        output.resize(to: x.shape)
        normalized.resize(to: x.shape)
        inputShape = x.shape
        lastForwardTrained = isTraining
        BatchNorm.forward(x, n: n, s: s, gamma: weight?.value, beta: bias?.value, eps: eps,
                          runningMean: runningMean, runningVar: runningVar, update: update,
                          into: output, normalized: normalized, invStd: invStd)
        saved.save(output)
        parametersAtForward.save()
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        _ = try saved.peek(summary)
        try parametersAtForward.check(summary)
        _ = try saved.take(matching: dy, summary)
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        let (n, s) = try layout(shape)
        inputGradient.resize(to: shape)
        var gammaGradient: Tensor?, betaGradient: Tensor?
        if let weight, let bias { gammaGradient = weight.grad; betaGradient = bias.grad }
        BatchNorm.backward(dy, n: n, s: s, normalized: normalized, invStd: invStd, gamma: weight?.value,
                           trainingStatistics: lastForwardTrained,
                           gammaGradient: gammaGradient, betaGradient: betaGradient, into: inputGradient)
        return inputGradient
    }

    // MARK: - The math (the layer and the graph share it); x is [N, C, S] with C = gamma's count

    /// y = γ·x̂ + β with x̂ = (x − μ)/√(σ² + ε), writing x̂ into `normalized` and 1/√(σ² + ε) per
    /// channel into `invStd` (`output` and `normalized` have x's shape, `invStd` is `[C]`).
    /// With `update` (training): μ, σ² are the batch's (biased) statistics, and the running
    /// statistics move towards μ and the unbiased σ² by the factor `update`. Without (eval): the
    /// running statistics are μ and σ².
    static func forward(_ x: Tensor, n: Int, s: Int, gamma: Tensor?, beta: Tensor?, eps: Float,
                        runningMean: Tensor, runningVar: Tensor, update factor: Float?,
                        into output: Tensor, normalized: Tensor, invStd: Tensor) {
        let c = invStd.count, m = n * s
        let src = x.data, y = output.data, xh = normalized.data, inv = invStd.data
        let rm = runningMean.data, rv = runningVar.data
        if let factor {
            for ch in 0..<c {
                // Two passes (mean, then squared deviations) in Double across planes.
                var sum: Double = 0
                for i in 0..<n {
                    let p = src + (i * c + ch) * s
                    var t: Float = 0
                    for j in 0..<s { t += p[j] }
                    sum += Double(t)
                }
                let mean = Float(sum / Double(m))
                var sq: Double = 0
                for i in 0..<n {
                    let p = src + (i * c + ch) * s
                    var t: Float = 0
                    for j in 0..<s { let d = p[j] - mean; t += d * d }
                    sq += Double(t)
                }
                let variance = Float(sq / Double(m))
                inv[ch] = 1 / (variance + eps).squareRoot()
                rm[ch] = (1 - factor) * rm[ch] + factor * mean
                rv[ch] = (1 - factor) * rv[ch] + factor * Float(sq / Double(Swift.max(m - 1, 1)))
                normalize(src, ch, c: c, n: n, s: s, mean: mean, invStd: inv[ch], gamma: gamma, beta: beta, into: y, xh)
            }
        } else {
            for ch in 0..<c {
                inv[ch] = 1 / (rv[ch] + eps).squareRoot()
                normalize(src, ch, c: c, n: n, s: s, mean: rm[ch], invStd: inv[ch], gamma: gamma, beta: beta, into: y, xh)
            }
        }
    }

    /// x̂ = (x − mean)·invStd and y = γ·x̂ + β for one channel.
    @inline(__always)
    private static func normalize(_ src: UnsafeMutablePointer<Float>, _ ch: Int, c: Int, n: Int, s: Int, mean: Float, invStd k: Float,
                                  gamma: Tensor?, beta: Tensor?, into y: UnsafeMutablePointer<Float>, _ xh: UnsafeMutablePointer<Float>) {
        let g = gamma?.data[ch] ?? 1, b = beta?.data[ch] ?? 0
        for i in 0..<n {
            let o = (i * c + ch) * s
            let p = src + o, yp = y + o, hp = xh + o
            for j in 0..<s {
                let v = (p[j] - mean) * k
                hp[j] = v
                yp[j] = g * v + b
            }
        }
    }

    /// dγ += Σ dy·x̂ and dβ += Σ dy (when given), and dx (overwritten, dy's shape): through the
    /// batch statistics when `trainingStatistics`, else through fixed (running) statistics.
    static func backward(_ dy: Tensor, n: Int, s: Int, normalized: Tensor, invStd: Tensor, gamma: Tensor?,
                         trainingStatistics: Bool, gammaGradient: Tensor?, betaGradient: Tensor?, into inputGradient: Tensor) {
        let c = invStd.count, m = n * s
        let g = dy.data, xh = normalized.data, dx = inputGradient.data, inv = invStd.data
        for ch in 0..<c {
            var sumDy: Double = 0, sumDyXh: Double = 0
            for i in 0..<n {
                let o = (i * c + ch) * s
                var a: Float = 0, b: Float = 0
                for j in 0..<s { a += g[o + j]; b += g[o + j] * xh[o + j] }
                sumDy += Double(a); sumDyXh += Double(b)
            }
            if let gammaGradient { gammaGradient.data[ch] += Float(sumDyXh) }
            if let betaGradient { betaGradient.data[ch] += Float(sumDy) }
            let k = (gamma?.data[ch] ?? 1) * inv[ch]
            if trainingStatistics {
                let meanDy = Float(sumDy / Double(m)), meanDyXh = Float(sumDyXh / Double(m))
                for i in 0..<n {
                    let o = (i * c + ch) * s
                    for j in 0..<s { dx[o + j] = k * (g[o + j] - meanDy - xh[o + j] * meanDyXh) }
                }
            } else {
                for i in 0..<n {
                    let o = (i * c + ch) * s
                    for j in 0..<s { dx[o + j] = k * g[o + j] }
                }
            }
        }
    }
}

/// PyTorch's `nn.BatchNorm1d(features)`.
public func BatchNorm1d(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true) throws -> BatchNorm {
    try BatchNorm(features: features, kind: .d1, eps: eps, momentum: momentum, affine: affine)
}

/// PyTorch's `nn.BatchNorm2d(features)`.
public func BatchNorm2d(_ features: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true) throws -> BatchNorm {
    try BatchNorm(features: features, kind: .d2, eps: eps, momentum: momentum, affine: affine)
}
