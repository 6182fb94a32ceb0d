import Backprop
import BackpropKernels

/// RMSprop: PyTorch's `torch.optim.RMSprop` (same defaults, update and argument checks).
///
///     g ← ∇θ;  g ← g + λ·θ                    if weightDecay λ ≠ 0
///     v ← α·v + (1 − α)·g²                    ("square_avg")
///     if centered:  ḡ ← α·ḡ + (1 − α)·g       ("grad_avg")
///                   d ← √(v − ḡ²) + ε
///     else          d ← √v + ε                 (ε outside the square root)
///     if momentum μ > 0:  b ← μ·b + g/d;  θ ← θ − γ·b     ("momentum_buffer")
///     else                θ ← θ − γ·g/d
///
/// State: `"<i>.square_avg"`, `"<i>.momentum_buffer"` (μ > 0), `"<i>.grad_avg"` (centered),
/// `"step"`.
public final class RMSProp: Optimizer {
    public var learningRate: Float
    public let parameters: [Parameter]
    public let alpha: Float
    public let eps: Float
    public let weightDecay: Float
    public let momentum: Float
    public let centered: Bool
    /// Number of steps taken.
    public private(set) var stepCount = 0

    private let squareAvg: [Tensor], momentumBuffers: [Tensor], gradAvg: [Tensor]
    private let buffers: NamedBuffers
    private let job = RMSPropJob()

    public init(parameters: [Parameter], lr: Float = 1e-2, alpha: Float = 0.99, eps: Float = 1e-8,
                weightDecay: Float = 0, momentum: Float = 0, centered: Bool = false) throws {
        try require(lr >= 0, "RMSProp: invalid learning rate: \(lr)")
        try require(eps >= 0, "RMSProp: invalid epsilon value: \(eps)")
        try require(momentum >= 0, "RMSProp: invalid momentum value: \(momentum)")
        try require(weightDecay >= 0, "RMSProp: invalid weight_decay value: \(weightDecay)")
        try require(alpha >= 0, "RMSProp: invalid alpha value: \(alpha)")
        try validateParameters(parameters, optimizer: "RMSProp")
        learningRate = lr
        self.parameters = parameters
        self.alpha = alpha
        self.eps = eps
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.centered = centered
        squareAvg = try zeroBuffers(like: parameters)
        momentumBuffers = momentum > 0 ? try zeroBuffers(like: parameters) : []
        gradAvg = centered ? try zeroBuffers(like: parameters) : []
        var named: NamedBuffers = [("square_avg", squareAvg)]
        if momentum > 0 { named.append(("momentum_buffer", momentumBuffers)) }
        if centered { named.append(("grad_avg", gradAvg)) }
        buffers = named
    }

    public func step() throws {
        try checkSizes(parameters, buffers, optimizer: "RMSProp")
        stepCount += 1
        let lr = learningRate, wd = weightDecay, a = alpha, eps = eps, mu = momentum
        let oneMinusAlpha = Float(1 - Double(alpha))
        let useMomentum = mu > 0, isCentered = centered
        for (i, p) in parameters.enumerated() {
            let v = squareAvg[i].data
            // Unused buffers alias `v` and are never touched when their option is off.
            job.kernel = RMSPropKernel(n: p.value.count, theta: p.value.data, grad: p.grad.data, v: v,
                                       b: useMomentum ? momentumBuffers[i].data : v,
                                       gAvg: isCentered ? gradAvg[i].data : v,
                                       lr: lr, wd: wd, alpha: a, oneMinusAlpha: oneMinusAlpha, eps: eps, mu: mu)
            job.centered = isCentered
            job.momentum = useMomentum
            ParallelChunks.run(elements: p.value.count, job)   // large parameters: split across cores
            p.value.markChanged()   // a forward that saw the old value cannot pair with a backward now
        }
    }

    public var state: [String: Tensor] { exportState(step: stepCount, buffers: buffers) }

    public func loadState(_ state: [String: Tensor]) throws {
        stepCount = try importState(state, buffers: buffers, optimizer: "RMSProp")
    }
}

/// One parameter's update, split into parts by `ParallelChunks` (an object: see `WorkerPool`).
private final class RMSPropJob: ParallelJob {
    var kernel: RMSPropKernel?
    var centered = false, momentum = false

    func runPart(_ part: Int, of parts: Int) {
        guard let k = kernel else { return }
        let r = ParallelChunks.range(part: part, of: parts, elements: k.n), o = r.lowerBound
        // The C kernel (BackpropKernels/optimizers.inc): one vectorised loop per flag set.
        var flags: Int32 = 0
        if k.wd != 0 { flags |= Int32(BP_RMSPROP_DECAY) }
        if centered { flags |= Int32(BP_RMSPROP_CENTERED) }
        if momentum { flags |= Int32(BP_RMSPROP_MOMENTUM) }
        bp_rmsprop_update(r.count, k.theta + o, k.grad + o, k.v + o, momentum ? k.b + o : nil,
                          centered ? k.gAvg + o : nil, k.lr, k.wd, k.alpha, k.oneMinusAlpha, k.eps, k.mu, flags)
    }
}

/// One parameter's RMSprop update: its buffers and the step's constants.
private struct RMSPropKernel {
    let n: Int
    let theta: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, gAvg: UnsafeMutablePointer<Float>
    let lr: Float, wd: Float, alpha: Float, oneMinusAlpha: Float, eps: Float, mu: Float
}
