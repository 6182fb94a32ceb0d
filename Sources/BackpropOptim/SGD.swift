import Backprop
import BackpropKernels

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay:
/// PyTorch's `torch.optim.SGD` (same defaults, same update, same argument checks).
///
///     g ← ∇θ                                  (the parameter's grad)
///     g ← g + λ·θ                             if weightDecay λ ≠ 0
///     if momentum μ ≠ 0:
///         b ← g                               on the first step
///         b ← μ·b + (1 − τ)·g                 afterwards (τ = dampening)
///         g ← g + μ·b  if nesterov,  else g ← b
///     θ ← θ − γ·g
///
/// State: `"<i>.momentum_buffer"` (only when μ ≠ 0) and `"step"`.
public final class SGD: Optimizer {
    public var learningRate: Float
    public let parameters: [Parameter]
    public let momentum: Float
    public let dampening: Float
    public let weightDecay: Float
    public let nesterov: Bool
    /// Number of steps taken (PyTorch keeps no step count for SGD; it decides "first step"
    /// by the momentum buffer not existing yet).
    public private(set) var stepCount = 0

    private let momentumBuffers: [Tensor]
    private let buffers: NamedBuffers
    private let job = SGDJob()

    public init(parameters: [Parameter], lr: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) throws {
        try require(lr >= 0, "SGD: invalid learning rate: \(lr)")
        try require(momentum >= 0, "SGD: invalid momentum value: \(momentum)")
        try require(weightDecay >= 0, "SGD: invalid weight_decay value: \(weightDecay)")
        try require(dampening.isFinite, "SGD: invalid dampening value: \(dampening)")
        try require(!nesterov || (momentum > 0 && dampening == 0),
                    "SGD: Nesterov momentum requires a momentum and zero dampening")
        try validateParameters(parameters, optimizer: "SGD")
        self.learningRate = lr
        self.parameters = parameters
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        momentumBuffers = momentum != 0 ? try zeroBuffers(like: parameters) : []
        buffers = momentum != 0 ? [("momentum_buffer", momentumBuffers)] : []
    }

    public func step() throws {
        try checkSizes(parameters, buffers, optimizer: "SGD")
        let lr = learningRate, wd = weightDecay, mu = momentum
        let oneMinusDampening = 1 - dampening
        let first = stepCount == 0
        for (i, p) in parameters.enumerated() {
            job.kernel = SGDKernel(n: p.value.count, theta: p.value.data, grad: p.grad.data,
                                   b: mu != 0 ? momentumBuffers[i].data : p.grad.data,
                                   lr: lr, wd: wd, mu: mu, oneMinusDampening: oneMinusDampening)
            job.first = first
            job.nesterov = nesterov
            ParallelChunks.run(elements: p.value.count, job)   // large parameters: split across cores
            p.value.markChanged()   // a forward that saw the old value cannot pair with a backward now
        }
        stepCount += 1
    }

    public var state: [String: Tensor] {
        exportState(step: stepCount, buffers: buffers)
    }

    public func loadState(_ state: [String: Tensor]) throws {
        stepCount = try importState(state, buffers: buffers, optimizer: "SGD")
    }
}

/// One parameter's update, split into parts by `ParallelChunks` (an object: see `WorkerPool`).
private final class SGDJob: ParallelJob {
    var kernel: SGDKernel?
    var first = false, nesterov = false

    func runPart(_ part: Int, of parts: Int) {
        guard let k = kernel else { return }
        let r = ParallelChunks.range(part: part, of: parts, elements: k.n), o = r.lowerBound
        // The C kernel (BackpropKernels/optimizers.inc) runs one loop per flag set, vectorised
        // with the widest instruction set the CPU has; the arithmetic is the formula above.
        var flags: Int32 = 0
        if k.wd != 0 { flags |= Int32(BP_SGD_DECAY) }
        if k.mu != 0 {
            flags |= Int32(BP_SGD_MOMENTUM)
            if first { flags |= Int32(BP_SGD_FIRST) }
            if nesterov { flags |= Int32(BP_SGD_NESTEROV) }
        }
        bp_sgd_update(r.count, k.theta + o, k.grad + o, k.mu != 0 ? k.b + o : nil, k.lr, k.wd, k.mu,
                      k.oneMinusDampening, flags)
    }
}

/// One parameter's SGD update: its buffers and the step's constants.
private struct SGDKernel {
    let n: Int
    let theta: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>
    let lr: Float, wd: Float, mu: Float, oneMinusDampening: Float
}
