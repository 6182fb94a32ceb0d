import Backprop
import Foundation

/// A learning-rate schedule driving an optimizer: PyTorch's `torch.optim.lr_scheduler`.
///
/// Like PyTorch, creating a scheduler records the optimizer's learning rate as the base rate
/// γ₀ and immediately sets the rate for step 0; each `step()` then advances `currentStep`
/// (PyTorch's `last_epoch`) by one and sets `optimizer.learningRate` to
/// `learningRate(atStep: currentStep)`. Call it once per optimizer step (or per epoch).
///
/// `learningRate(atStep:)` is a pure closed form (PyTorch's `_get_closed_form_lr`): use it to
/// plot a schedule or to test it without touching the optimizer.
///
///     let warmup = try LinearWarmup(opt, warmupSteps: 100, startFactor: 0.01)
///     let cosine = try CosineAnnealingLR(opt, tMax: 900)
///     let schedule = try SequentialLR(opt, schedulers: [warmup, cosine], milestones: [100])
///     for batch in … { …; try opt.step(); schedule.step() }
public protocol LRScheduler: AnyObject {
    /// The optimizer whose `learningRate` this scheduler sets.
    var optimizer: any Optimizer { get }
    /// γ₀, the optimizer's learning rate when the scheduler was made (PyTorch's `initial_lr`).
    var baseLearningRate: Float { get set }
    /// Number of `step()` calls so far (PyTorch's `last_epoch`). Setting it does not touch the
    /// optimizer; use `resume(atStep:)` to restore a checkpoint.
    var currentStep: Int { get set }
    /// The learning rate after `step` calls of `step()`. Pure: changes nothing.
    func learningRate(atStep step: Int) -> Float
    /// Advances one step and sets the optimizer's learning rate.
    func step()
}

extension LRScheduler {
    public func step() {
        currentStep += 1
        optimizer.learningRate = learningRate(atStep: currentStep)
    }

    /// Continues a schedule from a checkpoint: `currentStep = step` and the optimizer's rate set
    /// to match.
    public func resume(atStep step: Int) {
        currentStep = step
        optimizer.learningRate = learningRate(atStep: step)
    }

    /// The rate the schedule set last (PyTorch's `get_last_lr()`).
    public var lastLearningRate: Float { learningRate(atStep: currentStep) }
}

@inline(__always)
private func requireFiniteRate(_ lr: Float, _ name: String) throws {
    guard lr.isFinite, lr >= 0 else {
        throw BackpropError.invalidArgument("\(name): the optimizer's learning rate \(lr) must be finite and >= 0")
    }
}

/// γ = γ₀ · gamma^⌊t / stepSize⌋: PyTorch's `StepLR`.
public final class StepLR: LRScheduler {
    public let optimizer: any Optimizer
    public var baseLearningRate: Float
    public var currentStep = 0
    public let stepSize: Int
    public let gamma: Float

    public init(_ optimizer: any Optimizer, stepSize: Int, gamma: Float = 0.1) throws {
        try require(stepSize > 0, "StepLR: stepSize must be > 0, got \(stepSize)")
        try require(gamma.isFinite && gamma >= 0, "StepLR: gamma must be finite and >= 0, got \(gamma)")
        try requireFiniteRate(optimizer.learningRate, "StepLR")
        self.optimizer = optimizer
        self.stepSize = stepSize
        self.gamma = gamma
        baseLearningRate = optimizer.learningRate
        optimizer.learningRate = learningRate(atStep: 0)
    }

    public func learningRate(atStep step: Int) -> Float {
        Float(Double(baseLearningRate) * pow(Double(gamma), Double(Swift.max(step, 0) / stepSize)))
    }
}

/// γ = γ₀ · gammaᵗ: PyTorch's `ExponentialLR`.
public final class ExponentialLR: LRScheduler {
    public let optimizer: any Optimizer
    public var baseLearningRate: Float
    public var currentStep = 0
    public let gamma: Float

    public init(_ optimizer: any Optimizer, gamma: Float) throws {
        try require(gamma.isFinite && gamma >= 0, "ExponentialLR: gamma must be finite and >= 0, got \(gamma)")
        try requireFiniteRate(optimizer.learningRate, "ExponentialLR")
        self.optimizer = optimizer
        self.gamma = gamma
        baseLearningRate = optimizer.learningRate
        optimizer.learningRate = learningRate(atStep: 0)
    }

    public func learningRate(atStep step: Int) -> Float {
        Float(Double(baseLearningRate) * pow(Double(gamma), Double(Swift.max(step, 0))))
    }
}

/// γ = η_min + (γ₀ − η_min)·(1 + cos(π·t / tMax)) / 2: PyTorch's `CosineAnnealingLR` in its
/// closed form (after tMax the cosine continues, rising again, as PyTorch's does).
public final class CosineAnnealingLR: LRScheduler {
    public let optimizer: any Optimizer
    public var baseLearningRate: Float
    public var currentStep = 0
    public let tMax: Int
    public let etaMin: Float

    public init(_ optimizer: any Optimizer, tMax: Int, etaMin: Float = 0) throws {
        try require(tMax > 0, "CosineAnnealingLR: tMax must be > 0, got \(tMax)")
        try require(etaMin.isFinite && etaMin >= 0, "CosineAnnealingLR: etaMin must be finite and >= 0, got \(etaMin)")
        try requireFiniteRate(optimizer.learningRate, "CosineAnnealingLR")
        self.optimizer = optimizer
        self.tMax = tMax
        self.etaMin = etaMin
        baseLearningRate = optimizer.learningRate
        optimizer.learningRate = learningRate(atStep: 0)
    }

    public func learningRate(atStep step: Int) -> Float {
        let eta = Double(etaMin), base = Double(baseLearningRate)
        return Float(eta + (base - eta) * (1 + cos(Double.pi * Double(Swift.max(step, 0)) / Double(tMax))) / 2)
    }
}

/// Linear warm-up, PyTorch's `LinearLR`: the factor goes linearly from `startFactor` to
/// `endFactor` over `warmupSteps` steps, then stays at `endFactor`:
///
///     γ = γ₀ · (s + (e − s) · min(t, warmupSteps) / warmupSteps)
///
/// PyTorch's defaults: startFactor 1/3, endFactor 1.
public final class LinearWarmup: LRScheduler {
    public let optimizer: any Optimizer
    public var baseLearningRate: Float
    public var currentStep = 0
    public let warmupSteps: Int
    public let startFactor: Float
    public let endFactor: Float

    public init(_ optimizer: any Optimizer, warmupSteps: Int, startFactor: Float = 1.0 / 3,
                endFactor: Float = 1) throws {
        try require(warmupSteps > 0, "LinearWarmup: warmupSteps must be > 0, got \(warmupSteps)")
        try require(startFactor > 0 && startFactor <= 1,
                    "LinearWarmup: starting multiplicative factor expected to be greater than 0 and less or equal to 1, got \(startFactor)")
        try require(endFactor >= 0 && endFactor <= 1,
                    "LinearWarmup: ending multiplicative factor expected to be between 0 and 1, got \(endFactor)")
        try requireFiniteRate(optimizer.learningRate, "LinearWarmup")
        self.optimizer = optimizer
        self.warmupSteps = warmupSteps
        self.startFactor = startFactor
        self.endFactor = endFactor
        baseLearningRate = optimizer.learningRate
        optimizer.learningRate = learningRate(atStep: 0)
    }

    public func learningRate(atStep step: Int) -> Float {
        let s = Double(startFactor), e = Double(endFactor)
        let t = Double(Swift.min(Swift.max(step, 0), warmupSteps))
        return Float(Double(baseLearningRate) * (s + (e - s) * t / Double(warmupSteps)))
    }
}

/// PyTorch's name for `LinearWarmup`.
public typealias LinearLR = LinearWarmup

/// Runs schedulers one after another: PyTorch's `SequentialLR`. Scheduler k runs from global
/// step `milestones[k-1]` (restarting at its own step 0) until `milestones[k]`:
///
///     γ(t) = schedulers[k].learningRate(atStep: t − milestones[k−1]),  k = #{m ∈ milestones : m ≤ t}
///
/// As in PyTorch, all schedulers share the first one's base rate (PyTorch's `initial_lr`) and the
/// optimizer's rate is reset to schedule step 0 on creation; the children's own `step()` must
/// not be called.
public final class SequentialLR: LRScheduler {
    public let optimizer: any Optimizer
    public var currentStep = 0
    public let schedulers: [any LRScheduler]
    public let milestones: [Int]

    public var baseLearningRate: Float {
        get { schedulers[0].baseLearningRate }
        set { for s in schedulers { s.baseLearningRate = newValue } }
    }

    public init(_ optimizer: any Optimizer, schedulers: [any LRScheduler], milestones: [Int]) throws {
        try require(!schedulers.isEmpty, "SequentialLR: expects at least one scheduler")
        try require(milestones.count == schedulers.count - 1,
                    "SequentialLR: expects \(schedulers.count - 1) milestones for \(schedulers.count) schedulers, got \(milestones.count)")
        for (k, s) in schedulers.enumerated() {
            try require(s.optimizer === optimizer,
                        "SequentialLR: scheduler \(k) drives a different optimizer than the one given")
        }
        for (k, m) in milestones.enumerated() {
            try require(m > 0 && (k == 0 || m > milestones[k - 1]),
                        "SequentialLR: milestones must be positive and strictly increasing, got \(milestones)")
        }
        self.optimizer = optimizer
        self.schedulers = schedulers
        self.milestones = milestones
        let base = schedulers[0].baseLearningRate
        for s in schedulers { s.baseLearningRate = base }
        optimizer.learningRate = learningRate(atStep: 0)
    }

    public func learningRate(atStep step: Int) -> Float {
        var k = 0
        while k < milestones.count && milestones[k] <= step { k += 1 }
        return schedulers[k].learningRate(atStep: step - (k == 0 ? 0 : milestones[k - 1]))
    }
}
