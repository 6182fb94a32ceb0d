import Backprop
import BackpropKernels
import Foundation

/// Adam: PyTorch's `torch.optim.Adam` (same defaults, update and argument checks).
///
///     g ← ∇θ;  g ← g + λ·θ                  if weightDecay λ ≠ 0 (L2 penalty added to g)
///     t ← t + 1
///     m ← β₁·m + (1 − β₁)·g                 ("exp_avg")
///     v ← β₂·v + (1 − β₂)·g²                ("exp_avg_sq")
///     v_max ← max(v_max, v)                 if amsgrad ("max_exp_avg_sq"), then v ← v_max below
///     θ ← θ − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// The scalars (bias corrections, step size) are computed in Double as PyTorch does in Python.
/// State: `"<i>.exp_avg"`, `"<i>.exp_avg_sq"`, `"<i>.max_exp_avg_sq"` (amsgrad only), `"step"`.
public final class Adam: Optimizer {
    public var learningRate: Float
    public let parameters: [Parameter]
    public let betas: (Float, Float)
    public let eps: Float
    public let weightDecay: Float
    public let amsgrad: Bool
    /// Number of steps taken: t in the bias corrections.
    public var stepCount: Int { core.stepCount }

    private let core: AdamCore

    public init(parameters: [Parameter], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0, amsgrad: Bool = false) throws {
        core = try AdamCore(name: "Adam", parameters: parameters, lr: lr, betas: betas, eps: eps,
                            weightDecay: weightDecay, amsgrad: amsgrad)
        learningRate = lr
        self.parameters = parameters
        self.betas = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
    }

    public func step() throws { try core.step(lr: learningRate, decoupled: false) }
    public var state: [String: Tensor] { core.state }
    public func loadState(_ state: [String: Tensor]) throws { try core.loadState(state) }
}

/// AdamW: PyTorch's `torch.optim.AdamW`, Adam with decoupled weight decay (default λ = 0.01).
/// The decay shrinks θ BEFORE the Adam step and is not added to the gradient:
///
///     θ ← θ·(1 − γ·λ)
///     then Adam's update above with g = ∇θ (no λ·θ term)
///
/// State keys as Adam.
public final class AdamW: Optimizer {
    public var learningRate: Float
    public let parameters: [Parameter]
    public let betas: (Float, Float)
    public let eps: Float
    public let weightDecay: Float
    public let amsgrad: Bool
    /// Number of steps taken: t in the bias corrections.
    public var stepCount: Int { core.stepCount }

    private let core: AdamCore

    public init(parameters: [Parameter], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 1e-2, amsgrad: Bool = false) throws {
        core = try AdamCore(name: "AdamW", parameters: parameters, lr: lr, betas: betas, eps: eps,
                            weightDecay: weightDecay, amsgrad: amsgrad)
        learningRate = lr
        self.parameters = parameters
        self.betas = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
    }

    public func step() throws { try core.step(lr: learningRate, decoupled: true) }
    public var state: [String: Tensor] { core.state }
    public func loadState(_ state: [String: Tensor]) throws { try core.loadState(state) }
}

/// The buffers and the fused update shared by Adam and AdamW.
final class AdamCore {
    let name: String
    let parameters: [Parameter]
    let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    let amsgrad: Bool
    var stepCount = 0
    let expAvg: [Tensor], expAvgSq: [Tensor], maxExpAvgSq: [Tensor]
    let buffers: NamedBuffers
    private let job = AdamJob()

    init(name: String, parameters: [Parameter], lr: Float, betas: (Float, Float), eps: Float,
         weightDecay: Float, amsgrad: Bool) throws {
        try require(lr >= 0, "\(name): invalid learning rate: \(lr)")
        try require(eps >= 0, "\(name): invalid epsilon value: \(eps)")
        try require(betas.0 >= 0 && betas.0 < 1, "\(name): invalid beta parameter at index 0: \(betas.0)")
        try require(betas.1 >= 0 && betas.1 < 1, "\(name): invalid beta parameter at index 1: \(betas.1)")
        try require(weightDecay >= 0, "\(name): invalid weight_decay value: \(weightDecay)")
        try validateParameters(parameters, optimizer: name)
        self.name = name
        self.parameters = parameters
        beta1 = betas.0; beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
        expAvg = try zeroBuffers(like: parameters)
        expAvgSq = try zeroBuffers(like: parameters)
        maxExpAvgSq = amsgrad ? try zeroBuffers(like: parameters) : []
        var named: NamedBuffers = [("exp_avg", expAvg), ("exp_avg_sq", expAvgSq)]
        if amsgrad { named.append(("max_exp_avg_sq", maxExpAvgSq)) }
        buffers = named
    }

    func step(lr: Float, decoupled: Bool) throws {
        try checkSizes(parameters, buffers, optimizer: name)
        stepCount += 1
        let t = Double(stepCount)
        let biasCorrection1 = 1 - pow(Double(beta1), t)
        let biasCorrection2 = 1 - pow(Double(beta2), t)
        let stepSize = Float(Double(lr) / biasCorrection1)
        let bc2Sqrt = Float(biasCorrection2.squareRoot())
        let oneMinusBeta1 = Float(1 - Double(beta1)), oneMinusBeta2 = Float(1 - Double(beta2))
        let b2 = beta2, eps = eps
        // AdamW: θ ← θ·(1 − γλ) first; Adam: g ← g + λθ.
        let decay = Float(1 - Double(lr) * Double(weightDecay))
        let l2: Float = decoupled ? 0 : weightDecay
        let shrink = decoupled && weightDecay != 0
        let ams = amsgrad
        for (i, p) in parameters.enumerated() {
            job.kernel = AdamKernel(n: p.value.count, theta: p.value.data, grad: p.grad.data,
                                    m: expAvg[i].data, v: expAvgSq[i].data,
                                    vMax: ams ? maxExpAvgSq[i].data : expAvgSq[i].data,
                                    oneMinusBeta1: oneMinusBeta1, beta2: b2, oneMinusBeta2: oneMinusBeta2,
                                    stepSize: stepSize, bc2Sqrt: bc2Sqrt, eps: eps, decay: decay, l2: l2)
            job.shrink = shrink
            job.ams = ams
            ParallelChunks.run(elements: p.value.count, job)   // large parameters: split across cores
            p.value.markChanged()   // a forward that saw the old value cannot pair with a backward now
        }
    }

    var state: [String: Tensor] { exportState(step: stepCount, buffers: buffers) }

    func loadState(_ state: [String: Tensor]) throws {
        stepCount = try importState(state, buffers: buffers, optimizer: name)
    }
}

/// One parameter's update, split into parts by `ParallelChunks` (an object: see `WorkerPool`).
private final class AdamJob: ParallelJob {
    var kernel: AdamKernel?
    var shrink = false, ams = false

    func runPart(_ part: Int, of parts: Int) {
        guard let k = kernel else { return }
        let r = ParallelChunks.range(part: part, of: parts, elements: k.n), o = r.lowerBound
        // The C kernel (BackpropKernels/optimizers.inc): one vectorised loop per flag set, the
        // arithmetic in the order above (m by torch.lerp, ε outside the root).
        var flags: Int32 = 0
        if shrink { flags |= Int32(BP_ADAM_SHRINK) } else if k.l2 != 0 { flags |= Int32(BP_ADAM_L2) }
        if ams { flags |= Int32(BP_ADAM_AMSGRAD) }
        bp_adam_update(r.count, k.theta + o, k.grad + o, k.m + o, k.v + o, ams ? k.vMax + o : nil,
                       k.oneMinusBeta1, k.beta2, k.oneMinusBeta2, k.stepSize, k.bc2Sqrt, k.eps, k.decay, k.l2, flags)
    }
}

/// One parameter's Adam/AdamW update: its buffers and the step's constants.
private struct AdamKernel {
    let n: Int
    let theta: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, vMax: UnsafeMutablePointer<Float>
    let oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float
    let stepSize: Float, bc2Sqrt: Float, eps: Float, decay: Float, l2: Float
}
