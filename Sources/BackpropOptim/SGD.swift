import Backprop

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
        guard let kernel else { return }
        let k = kernel.part(ParallelChunks.range(part: part, of: parts, elements: kernel.n))
        let wd = k.wd, mu = k.mu, first = first, nesterov = nesterov
        // One specialised loop per option set (constant flags: no branches, vectorisable).
        switch (wd != 0, mu != 0, first, nesterov) {
        case (false, false, _, _): k.run(decay: false, momentum: false, first: false, nesterov: false)
        case (true, false, _, _): k.run(decay: true, momentum: false, first: false, nesterov: false)
        case (false, true, false, false): k.run(decay: false, momentum: true, first: false, nesterov: false)
        case (false, true, false, true): k.run(decay: false, momentum: true, first: false, nesterov: true)
        case (false, true, true, false): k.run(decay: false, momentum: true, first: true, nesterov: false)
        case (false, true, true, true): k.run(decay: false, momentum: true, first: true, nesterov: true)
        case (true, true, false, false): k.run(decay: true, momentum: true, first: false, nesterov: false)
        case (true, true, false, true): k.run(decay: true, momentum: true, first: false, nesterov: true)
        case (true, true, true, false): k.run(decay: true, momentum: true, first: true, nesterov: false)
        case (true, true, true, true): k.run(decay: true, momentum: true, first: true, nesterov: true)
        }
    }
}

/// The fused per-element SGD update over one parameter.
private struct SGDKernel {
    let n: Int
    let theta: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>
    let lr: Float, wd: Float, mu: Float, oneMinusDampening: Float

    /// The same update over elements `r` only.
    func part(_ r: Range<Int>) -> SGDKernel {
        let o = r.lowerBound
        return SGDKernel(n: r.count, theta: theta + o, grad: grad + o, b: b + o,
                         lr: lr, wd: wd, mu: mu, oneMinusDampening: oneMinusDampening)
    }

    @inline(__always)
    func run(decay: Bool, momentum: Bool, first: Bool, nesterov: Bool) {
        for j in 0..<n {
            var g = grad[j]
            if decay { g += wd * theta[j] }
            if momentum {
                let bj = first ? g : mu * b[j] + oneMinusDampening * g   // b ← g on the first step
                b[j] = bj
                g = nesterov ? g + mu * bj : bj
            }
            theta[j] -= lr * g
        }
    }
}
