import Foundation
import XCTest
import Backprop
import BackpropOptim

// Every optimizer is checked against an independent Double implementation of PyTorch's
// documented algorithm, written out below per element, for 3 steps with given gradients.
// Tolerance: 1e-6 relative on every parameter value and every exported state buffer.

// MARK: - Test data

/// Two parameters (shapes [2, 3] and [2]) so state keys "0.*" and "1.*" both occur.
private let theta0: [[Float]] = [[0.5, -1.2, 2.0, 1.5, -0.8, 3.0], [0.7, -2.5]]
/// Gradients for steps 1, 2, 3, per parameter. Element 0 of parameter 0 has a large first
/// gradient then small ones, so AMSGrad's running maximum matters.
private let gradients: [[[Float]]] = [
    [[2.0, 0.3, -0.7, 1.1, -0.25, 0.05], [0.4, -1.5]],
    [[0.1, -0.4, -0.6, 0.9, 0.5, -0.02], [-0.3, -1.1]],
    [[-0.05, 0.2, -0.9, 1.3, 0.35, 0.08], [0.25, 0.6]],
]
private let shapes = [[2, 3], [2]]

private func makeParameters() throws -> [Parameter] {
    try zip(theta0, shapes).map { Parameter(try Tensor($0, shape: $1)) }
}

/// Runs `steps` steps with the fixed gradients.
private func runSteps(_ optimizer: any Optimizer, steps: Int = 3) throws {
    for s in 0..<steps {
        for (p, g) in zip(optimizer.parameters, gradients[s]) { try p.grad.assign(g) }
        try optimizer.step()
    }
}

/// Per-element reference: given θ₀ and the gradient sequence of one element, returns θ after the
/// steps and the element's state buffers under PyTorch's names.
private typealias Reference = (_ theta: Double, _ grads: [Double]) -> (theta: Double, state: [String: Double])

private func assertClose(_ actual: Float, _ expected: Double, _ what: @autoclosure () -> String,
                         rel: Double = 1e-6, file: StaticString = #filePath, line: UInt = #line) {
    let err = abs(Double(actual) - expected)
    XCTAssertLessThanOrEqual(err, rel * abs(expected) + 1e-12,
                             "\(what()): got \(actual), expected \(expected) (rel error \(err / Swift.max(abs(expected), 1e-30)))",
                             file: file, line: line)
}

/// Runs the optimizer 3 steps and compares every parameter element and state element with `ref`.
private func check(_ optimizer: any Optimizer, _ ref: Reference, _ label: String,
                   file: StaticString = #filePath, line: UInt = #line) throws {
    try runSteps(optimizer)
    let state = optimizer.state
    XCTAssertEqual(state["step"]?.scalars, [3], "\(label): step", file: file, line: line)
    for (i, p) in optimizer.parameters.enumerated() {
        for j in 0..<p.value.count {
            let r = ref(Double(theta0[i][j]), (0..<3).map { Double(gradients[$0][i][j]) })
            assertClose(p.value[flat: j], r.theta, "\(label): θ[\(i)][\(j)]", file: file, line: line)
            for (name, value) in r.state {
                guard let t = state["\(i).\(name)"] else {
                    XCTFail("\(label): missing state \(i).\(name) in \(state.keys.sorted())", file: file, line: line); continue
                }
                assertClose(t[flat: j], value, "\(label): \(i).\(name)[\(j)]", file: file, line: line)
            }
        }
        let expectedKeys = Set(ref(0, [0, 0, 0]).state.keys.map { "\(i).\($0)" })
        let actualKeys = Set(state.keys.filter { $0.hasPrefix("\(i).") })
        XCTAssertEqual(actualKeys, expectedKeys, "\(label): state keys", file: file, line: line)
    }
}

// MARK: - Independent references (PyTorch's documented algorithms, in Double)

private func d(_ x: Float) -> Double { Double(x) }

private func sgdRef(lr: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0,
                    nesterov: Bool = false) -> Reference {
    { theta, grads in
        var th = theta, b = 0.0
        for (t, g0) in grads.enumerated() {
            var g = g0
            if weightDecay != 0 { g += d(weightDecay) * th }
            if momentum != 0 {
                b = t == 0 ? g : d(momentum) * b + (1 - d(dampening)) * g
                g = nesterov ? g + d(momentum) * b : b
            }
            th -= d(lr) * g
        }
        return (th, momentum != 0 ? ["momentum_buffer": b] : [:])
    }
}

private func adamRef(lr: Float, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0,
                     amsgrad: Bool = false, decoupled: Bool) -> Reference {
    { theta, grads in
        let b1 = d(betas.0), b2 = d(betas.1)
        var th = theta, m = 0.0, v = 0.0, vmax = 0.0
        for (i, g0) in grads.enumerated() {
            let t = Double(i + 1)
            var g = g0
            if decoupled { th *= 1 - d(lr) * d(weightDecay) } else if weightDecay != 0 { g += d(weightDecay) * th }
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            let mHat = m / (1 - pow(b1, t))
            var vHat = v / (1 - pow(b2, t))
            if amsgrad { vmax = Swift.max(vmax, v); vHat = vmax / (1 - pow(b2, t)) }
            th -= d(lr) * mHat / (vHat.squareRoot() + d(eps))
        }
        var state = ["exp_avg": m, "exp_avg_sq": v]
        if amsgrad { state["max_exp_avg_sq"] = vmax }
        return (th, state)
    }
}

private func rmspropRef(lr: Float = 1e-2, alpha: Float = 0.99, eps: Float = 1e-8, weightDecay: Float = 0,
                        momentum: Float = 0, centered: Bool = false) -> Reference {
    { theta, grads in
        let a = d(alpha)
        var th = theta, v = 0.0, gAvg = 0.0, b = 0.0
        for g0 in grads {
            var g = g0
            if weightDecay != 0 { g += d(weightDecay) * th }
            v = a * v + (1 - a) * g * g
            var vTilde = v
            if centered { gAvg = a * gAvg + (1 - a) * g; vTilde -= gAvg * gAvg }
            let denom = vTilde.squareRoot() + d(eps)
            if momentum > 0 { b = d(momentum) * b + g / denom; th -= d(lr) * b } else { th -= d(lr) * g / denom }
        }
        var state = ["square_avg": v]
        if momentum > 0 { state["momentum_buffer"] = b }
        if centered { state["grad_avg"] = gAvg }
        return (th, state)
    }
}

final class OptimizerTests: XCTestCase {

    // MARK: Update rules against the references

    func testSGDUpdates() throws {
        try check(SGD(parameters: makeParameters(), lr: 0.1), sgdRef(lr: 0.1), "SGD")
        try check(SGD(parameters: makeParameters(), lr: 0.1, weightDecay: 0.05),
                  sgdRef(lr: 0.1, weightDecay: 0.05), "SGD wd")
        try check(SGD(parameters: makeParameters(), lr: 0.1, momentum: 0.9),
                  sgdRef(lr: 0.1, momentum: 0.9), "SGD momentum")
        try check(SGD(parameters: makeParameters(), lr: 0.1, momentum: 0.9, dampening: 0.5),
                  sgdRef(lr: 0.1, momentum: 0.9, dampening: 0.5), "SGD momentum dampening")
        try check(SGD(parameters: makeParameters(), lr: 0.1, momentum: 0.9, nesterov: true),
                  sgdRef(lr: 0.1, momentum: 0.9, nesterov: true), "SGD nesterov")
        try check(SGD(parameters: makeParameters(), lr: 0.05, momentum: 0.8, weightDecay: 0.1, nesterov: true),
                  sgdRef(lr: 0.05, momentum: 0.8, weightDecay: 0.1, nesterov: true), "SGD nesterov wd")
    }

    func testAdamUpdates() throws {
        try check(Adam(parameters: makeParameters()), adamRef(lr: 1e-3, decoupled: false), "Adam defaults")
        try check(Adam(parameters: makeParameters(), lr: 0.05, weightDecay: 0.1),
                  adamRef(lr: 0.05, weightDecay: 0.1, decoupled: false), "Adam wd")
        try check(Adam(parameters: makeParameters(), lr: 0.05, betas: (0.8, 0.5), amsgrad: true),
                  adamRef(lr: 0.05, betas: (0.8, 0.5), amsgrad: true, decoupled: false), "Adam amsgrad")
        // A large ε makes "ε outside the square root, after bias correction" observable.
        try check(Adam(parameters: makeParameters(), lr: 0.05, betas: (0.8, 0.9), eps: 0.1, weightDecay: 0.02),
                  adamRef(lr: 0.05, betas: (0.8, 0.9), eps: 0.1, weightDecay: 0.02, decoupled: false), "Adam eps wd")
    }

    func testAdamWUpdates() throws {
        try check(AdamW(parameters: makeParameters()), adamRef(lr: 1e-3, weightDecay: 1e-2, decoupled: true),
                  "AdamW defaults")
        try check(AdamW(parameters: makeParameters(), lr: 0.05, weightDecay: 0.5),
                  adamRef(lr: 0.05, weightDecay: 0.5, decoupled: true), "AdamW wd 0.5")
        try check(AdamW(parameters: makeParameters(), lr: 0.05, betas: (0.8, 0.5), eps: 0.1, weightDecay: 0.2, amsgrad: true),
                  adamRef(lr: 0.05, betas: (0.8, 0.5), eps: 0.1, weightDecay: 0.2, amsgrad: true, decoupled: true),
                  "AdamW amsgrad eps")
        // Decoupled decay differs from Adam's L2 penalty: same arguments, different result.
        let a = try makeParameters(), b = try makeParameters()
        try runSteps(Adam(parameters: a, lr: 0.05, weightDecay: 0.5))
        try runSteps(AdamW(parameters: b, lr: 0.05, weightDecay: 0.5))
        XCTAssertGreaterThan(abs(a[0].value[flat: 2] - b[0].value[flat: 2]), 1e-3)
    }

    func testRMSPropUpdates() throws {
        try check(RMSProp(parameters: makeParameters()), rmspropRef(), "RMSProp defaults")
        try check(RMSProp(parameters: makeParameters(), lr: 0.01, alpha: 0.9, eps: 0.1),
                  rmspropRef(lr: 0.01, alpha: 0.9, eps: 0.1), "RMSProp eps")
        try check(RMSProp(parameters: makeParameters(), weightDecay: 0.1), rmspropRef(weightDecay: 0.1), "RMSProp wd")
        try check(RMSProp(parameters: makeParameters(), alpha: 0.9, centered: true),
                  rmspropRef(alpha: 0.9, centered: true), "RMSProp centered")
        try check(RMSProp(parameters: makeParameters(), momentum: 0.9), rmspropRef(momentum: 0.9), "RMSProp momentum")
        try check(RMSProp(parameters: makeParameters(), lr: 0.005, alpha: 0.8, eps: 1e-3, weightDecay: 0.05,
                          momentum: 0.5, centered: true),
                  rmspropRef(lr: 0.005, alpha: 0.8, eps: 1e-3, weightDecay: 0.05, momentum: 0.5, centered: true),
                  "RMSProp all options")
    }

    func testDefaultsMatchPyTorch() throws {
        let adam = try Adam(parameters: makeParameters())
        XCTAssertEqual(adam.learningRate, 1e-3); XCTAssertEqual(adam.betas.0, 0.9); XCTAssertEqual(adam.betas.1, 0.999)
        XCTAssertEqual(adam.eps, 1e-8); XCTAssertEqual(adam.weightDecay, 0); XCTAssertFalse(adam.amsgrad)
        let adamw = try AdamW(parameters: makeParameters())
        XCTAssertEqual(adamw.learningRate, 1e-3); XCTAssertEqual(adamw.weightDecay, 1e-2)
        let rms = try RMSProp(parameters: makeParameters())
        XCTAssertEqual(rms.learningRate, 1e-2); XCTAssertEqual(rms.alpha, 0.99); XCTAssertEqual(rms.eps, 1e-8)
        XCTAssertEqual(rms.momentum, 0); XCTAssertFalse(rms.centered)
        let sgd = try SGD(parameters: makeParameters(), lr: 0.1)
        XCTAssertEqual(sgd.momentum, 0); XCTAssertEqual(sgd.dampening, 0); XCTAssertFalse(sgd.nesterov)
    }

    // MARK: Convergence

    /// Minimises f(θ) = ½ Σ aᵢ (θᵢ − cᵢ)² (an ill-conditioned quadratic) from θ = 0.
    private func minimise(_ make: ([Parameter]) throws -> any Optimizer, steps: Int) throws -> Float {
        let a: [Float] = [1, 4, 0.5, 2], c: [Float] = [1, -2, 0.5, 3]
        let p = Parameter(try Tensor(zeros: [4]))
        let opt = try make([p])
        for _ in 0..<steps {
            opt.zeroGrad()
            for i in 0..<4 { p.grad[flat: i] += a[i] * (p.value[flat: i] - c[i]) }
            try opt.step()
        }
        return (0..<4).map { abs(p.value[flat: $0] - c[$0]) }.max() ?? .infinity
    }

    func testConvergenceOnQuadratic() throws {
        let cases: [(String, ([Parameter]) throws -> any Optimizer)] = [
            ("SGD", { try SGD(parameters: $0, lr: 0.2) }),
            ("SGD momentum", { try SGD(parameters: $0, lr: 0.05, momentum: 0.9) }),
            ("SGD nesterov", { try SGD(parameters: $0, lr: 0.05, momentum: 0.9, nesterov: true) }),
            ("Adam", { try Adam(parameters: $0, lr: 0.05) }),
            ("Adam amsgrad", { try Adam(parameters: $0, lr: 0.05, amsgrad: true) }),
            ("AdamW wd 0", { try AdamW(parameters: $0, lr: 0.05, weightDecay: 0) }),
            ("RMSProp", { try RMSProp(parameters: $0, lr: 0.01) }),
            ("RMSProp centered momentum", { try RMSProp(parameters: $0, lr: 0.01, momentum: 0.5, centered: true) }),
        ]
        for (name, make) in cases {
            let error = try minimise(make, steps: 1000)
            XCTAssertLessThan(error, 2e-2, "\(name) did not converge: max |θ − θ*| = \(error)")
        }
    }

    // MARK: State export / import

    func testStateRoundTripContinuesIdentically() throws {
        let makers: [(String, ([Parameter]) throws -> any Optimizer)] = [
            ("SGD", { try SGD(parameters: $0, lr: 0.1, momentum: 0.9, nesterov: true) }),
            ("Adam", { try Adam(parameters: $0, lr: 0.05, amsgrad: true) }),
            ("AdamW", { try AdamW(parameters: $0, lr: 0.05) }),
            ("RMSProp", { try RMSProp(parameters: $0, momentum: 0.9, centered: true) }),
        ]
        for (name, make) in makers {
            // A: 3 steps straight. B: 2 steps, then a checkpoint; a fresh optimizer resumes it.
            let a = try make(try makeParameters())
            try runSteps(a)
            let bParams = try makeParameters()
            let b = try make(bParams)
            try runSteps(b, steps: 2)
            let checkpoint = b.state
            XCTAssertEqual(checkpoint["step"]?.scalars, [2], name)
            let snapshot = checkpoint.mapValues(\.scalars)
            let after2 = bParams.map { $0.value.copy() }
            let resumedParams = after2.map { Parameter($0.copy()) }
            try b.step()   // stepping b must not change the exported copies
            XCTAssertEqual(checkpoint.mapValues(\.scalars), snapshot, "\(name): state is not a copy")
            let resumed = try make(resumedParams)
            try resumed.loadState(checkpoint)
            for (p, g) in zip(resumed.parameters, gradients[2]) { try p.grad.assign(g) }
            try resumed.step()
            for (pa, pr) in zip(a.parameters, resumed.parameters) {
                XCTAssertEqual(pa.value.scalars, pr.value.scalars, "\(name): resumed run differs")
            }
            XCTAssertEqual(resumed.state.mapValues(\.scalars), a.state.mapValues(\.scalars), "\(name): resumed state")
            // Without the checkpoint the third step differs (momentum/moment buffers matter).
            let cold = try make(after2.map { Parameter($0.copy()) })
            for (p, g) in zip(cold.parameters, gradients[2]) { try p.grad.assign(g) }
            try cold.step()
            XCTAssertNotEqual(cold.parameters[0].value.scalars, a.parameters[0].value.scalars, name)
        }
    }

    func testLoadStateValidates() throws {
        let opt = try Adam(parameters: makeParameters())
        let good = opt.state
        XCTAssertEqual(Set(good.keys), ["step", "0.exp_avg", "0.exp_avg_sq", "1.exp_avg", "1.exp_avg_sq"])
        var missing = good; missing["1.exp_avg_sq"] = nil
        XCTAssertThrowsError(try opt.loadState(missing)) { XCTAssertEqual(($0 as? BackpropError).map { "\($0)" }?.contains("1.exp_avg_sq"), true) }
        var noStep = good; noStep["step"] = nil
        XCTAssertThrowsError(try opt.loadState(noStep))
        var wrongShape = good; wrongShape["0.exp_avg"] = try Tensor(zeros: [3, 2])
        XCTAssertThrowsError(try opt.loadState(wrongShape)) {
            guard case .shapeMismatch = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
        var unknown = good; unknown["0.momentum_buffer"] = try Tensor(zeros: [2, 3])
        XCTAssertThrowsError(try opt.loadState(unknown))
        var badStep = good; badStep["step"] = Tensor([1.5])
        XCTAssertThrowsError(try opt.loadState(badStep))
        badStep["step"] = Tensor([1, 2])
        XCTAssertThrowsError(try opt.loadState(badStep))
        // A failed load changes nothing; a good one restores buffers and step.
        var trained = try Adam(parameters: makeParameters())
        try runSteps(trained, steps: 2)
        let saved = trained.state
        var corrupt = saved; corrupt["1.exp_avg"] = try Tensor(zeros: [5])
        let before = try Adam(parameters: makeParameters())
        XCTAssertThrowsError(try before.loadState(corrupt))
        XCTAssertEqual(before.state["0.exp_avg"]?.scalars, [Float](repeating: 0, count: 6))
        XCTAssertEqual(before.stepCount, 0)
        try before.loadState(saved)
        XCTAssertEqual(before.stepCount, 2)
        XCTAssertEqual(before.state["0.exp_avg"]?.scalars, saved["0.exp_avg"]?.scalars)
        trained = try Adam(parameters: makeParameters())
        XCTAssertThrowsError(try SGD(parameters: makeParameters(), lr: 0.1).loadState(saved))
    }

    func testStepRejectsResizedParameter() throws {
        let params = try makeParameters()
        let opt = try SGD(parameters: params, lr: 0.1, momentum: 0.9)
        params[1].value.resize(to: [3])
        XCTAssertThrowsError(try opt.step()) {
            guard case .shapeMismatch = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
    }

    // MARK: Invalid arguments

    func testInvalidArgumentsThrow() throws {
        func expectInvalid(_ label: String, _ body: () throws -> Any) {
            XCTAssertThrowsError(try body(), label) {
                guard case .invalidArgument = $0 as? BackpropError else { return XCTFail("\(label): \($0)") }
            }
        }
        let ps = try makeParameters()
        expectInvalid("SGD lr < 0") { try SGD(parameters: ps, lr: -0.1) }
        expectInvalid("SGD momentum < 0") { try SGD(parameters: ps, lr: 0.1, momentum: -0.5) }
        expectInvalid("SGD wd < 0") { try SGD(parameters: ps, lr: 0.1, weightDecay: -1) }
        expectInvalid("SGD nesterov without momentum") { try SGD(parameters: ps, lr: 0.1, nesterov: true) }
        expectInvalid("SGD nesterov with dampening") { try SGD(parameters: ps, lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true) }
        expectInvalid("SGD empty") { try SGD(parameters: [], lr: 0.1) }
        expectInvalid("SGD duplicate") { try SGD(parameters: [ps[0], ps[1], ps[0]], lr: 0.1) }
        expectInvalid("SGD lr NaN") { try SGD(parameters: ps, lr: .nan) }
        expectInvalid("Adam lr < 0") { try Adam(parameters: ps, lr: -1) }
        expectInvalid("Adam beta1 = 1") { try Adam(parameters: ps, betas: (1, 0.999)) }
        expectInvalid("Adam beta2 < 0") { try Adam(parameters: ps, betas: (0.9, -0.1)) }
        expectInvalid("Adam eps < 0") { try Adam(parameters: ps, eps: -1e-8) }
        expectInvalid("Adam wd < 0") { try Adam(parameters: ps, weightDecay: -0.1) }
        expectInvalid("AdamW beta1 > 1") { try AdamW(parameters: ps, betas: (1.5, 0.999)) }
        expectInvalid("AdamW wd < 0") { try AdamW(parameters: ps, weightDecay: -0.1) }
        expectInvalid("RMSProp alpha < 0") { try RMSProp(parameters: ps, alpha: -0.1) }
        expectInvalid("RMSProp momentum < 0") { try RMSProp(parameters: ps, momentum: -0.1) }
        expectInvalid("RMSProp eps < 0") { try RMSProp(parameters: ps, eps: -1) }
        expectInvalid("RMSProp lr < 0") { try RMSProp(parameters: ps, lr: -1) }
        let sgd = try SGD(parameters: ps, lr: 0.1)
        expectInvalid("StepLR stepSize 0") { try StepLR(sgd, stepSize: 0) }
        expectInvalid("ExponentialLR gamma < 0") { try ExponentialLR(sgd, gamma: -0.5) }
        expectInvalid("Cosine tMax 0") { try CosineAnnealingLR(sgd, tMax: 0) }
        expectInvalid("Warmup steps 0") { try LinearWarmup(sgd, warmupSteps: 0, startFactor: 0.1) }
        expectInvalid("Warmup start 0") { try LinearWarmup(sgd, warmupSteps: 5, startFactor: 0) }
        expectInvalid("Warmup start > 1") { try LinearWarmup(sgd, warmupSteps: 5, startFactor: 1.5) }
        let s1 = try StepLR(sgd, stepSize: 2), s2 = try ExponentialLR(sgd, gamma: 0.9)
        expectInvalid("SequentialLR milestone count") { try SequentialLR(sgd, schedulers: [s1, s2], milestones: []) }
        expectInvalid("SequentialLR milestone 0") { try SequentialLR(sgd, schedulers: [s1, s2], milestones: [0]) }
        let other = try SGD(parameters: makeParameters(), lr: 0.1)
        expectInvalid("SequentialLR other optimizer") { try SequentialLR(other, schedulers: [s1, s2], milestones: [3]) }
        expectInvalid("clip normType 0") { try clipGradNorm(ps, maxNorm: 1, normType: 0) }
        expectInvalid("clip maxNorm < 0") { try clipGradNorm(ps, maxNorm: -1) }
    }

    // MARK: Gradient clipping

    private func setGradients(_ ps: [Parameter]) throws {
        for (p, g) in zip(ps, gradients[0]) { try p.grad.assign(g) }
    }

    private func allGradients(_ ps: [Parameter]) -> [Double] { ps.flatMap { $0.grad.scalars.map(Double.init) } }

    func testClipGradNorm() throws {
        let ps = try makeParameters()
        try setGradients(ps)
        let g = allGradients(ps)
        let l2 = g.map { $0 * $0 }.reduce(0, +).squareRoot()          // ≈ 3.02
        let total = try clipGradNorm(ps, maxNorm: 1)
        assertClose(total, l2, "returned 2-norm")
        let after = allGradients(ps)
        let expectedNorm = 1 * l2 / (l2 + 1e-6)
        assertClose(Float(after.map { $0 * $0 }.reduce(0, +).squareRoot()), expectedNorm, "post-clip 2-norm")
        for (x, y) in zip(after, g) { assertClose(Float(x), y / (l2 + 1e-6), "clipped element") }

        // Below the threshold: returned norm, gradients untouched.
        try setGradients(ps)
        XCTAssertEqual(try clipGradNorm(ps, maxNorm: 10), Float(l2), accuracy: 1e-6)
        XCTAssertEqual(allGradients(ps), g)

        // ∞-norm, 1-norm and 3-norm.
        for (p, expected) in [(Float.infinity, g.map(abs).max()!), (1, g.map(abs).reduce(0, +)),
                              (3, pow(g.map { pow(abs($0), 3) }.reduce(0, +), 1.0 / 3))] {
            try setGradients(ps)
            let n = try clipGradNorm(ps, maxNorm: 0.5, normType: p)
            assertClose(n, expected, "returned \(p)-norm")
            let a = allGradients(ps)
            let post: Double = p == .infinity ? a.map(abs).max()!
                : pow(a.map { pow(abs($0), Double(p)) }.reduce(0, +), 1 / Double(p))
            assertClose(Float(post), 0.5 * expected / (expected + 1e-6), "post-clip \(p)-norm", rel: 2e-6)
        }

        // Non-finite gradients: error only when asked.
        try setGradients(ps)
        ps[1].grad[flat: 0] = .nan
        XCTAssertThrowsError(try clipGradNorm(ps, maxNorm: 1, errorIfNonfinite: true)) {
            guard case .nonFinite = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
        XCTAssertTrue(try clipGradNorm(ps, maxNorm: 1).isNaN)
    }

    func testClipGradValue() throws {
        let ps = try makeParameters()
        try setGradients(ps)
        let g = allGradients(ps)
        clipGradValue(ps, 0.5)
        XCTAssertEqual(allGradients(ps), g.map { Swift.min(Swift.max($0, -0.5), 0.5) })
        XCTAssertEqual(ps[0].grad.scalars, [0.5, 0.3, -0.5, 0.5, -0.25, 0.05])
    }

    func testZeroGrad() throws {
        let ps = try makeParameters()
        try setGradients(ps)
        let opt = try Adam(parameters: ps)
        opt.zeroGrad()
        XCTAssertEqual(allGradients(ps), [Double](repeating: 0, count: 8))
    }

    /// `optimizer.zeroGrad()` is PyTorch's `zero_grad(set_to_none=False)`, done lazily (as
    /// documented on `Parameter`): the next backward overwrites the gradients instead of adding
    /// to them, they read as zeros, and a step with no backward in between uses the zero
    /// gradient — momentum still moves the parameters, where `set_to_none=True` would leave
    /// `.grad` None and the step would skip them.
    func testZeroGradIsLazyZeroNotNone() throws {
        var rng = SeededGenerator(seed: 11)
        let layer = try Dense(3, 2, rng: &rng)
        let x = try Tensor(zeros: [4, 3]); x.fillUniform(-1, 1, using: &rng)
        let dy = try Tensor(zeros: [4, 2]); dy.fillUniform(-1, 1, using: &rng)
        let opt = try SGD(parameters: layer.parameters, lr: 0.1, momentum: 0.9)
        _ = try layer.forward(x); _ = try layer.backward(dy)
        let once = layer.parameters.map { $0.grad.scalars }
        _ = try layer.forward(x); _ = try layer.backward(dy)   // accumulated: twice `once`
        opt.zeroGrad()
        _ = try layer.forward(x); _ = try layer.backward(dy)
        XCTAssertEqual(layer.parameters.map { $0.grad.scalars }, once, "backward after zeroGrad overwrites")
        try opt.step()   // b = g, θ ← θ − 0.1·g
        let before = layer.parameters.map { $0.value.scalars }
        opt.zeroGrad()
        XCTAssertTrue(layer.parameters.allSatisfy { $0.grad.scalars.allSatisfy { $0 == 0 } }, "grad reads zeros")
        try opt.step()   // g = 0: b ← 0.9·b, θ ← θ − 0.1·0.9·g_once
        for ((p, b), g) in zip(zip(layer.parameters, before), once) {
            for ((v, v0), gi) in zip(zip(p.value.scalars, b), g) {
                XCTAssertEqual(v, v0 - 0.09 * gi, accuracy: 1e-6, "a step after zeroGrad uses a zero gradient")
            }
        }
    }

    // MARK: Learning-rate schedules

    private func sgd(lr: Float = 0.1) throws -> SGD { try SGD(parameters: makeParameters(), lr: lr) }

    /// Steps `scheduler` `n` times, checking before each step and after the last that the optimizer's
    /// rate equals both `closedForm(t)` and `learningRate(atStep: t)`.
    private func checkSchedule(_ scheduler: any LRScheduler, steps n: Int, _ label: String,
                               _ closedForm: (Int) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        for t in 0...n {
            if t > 0 { scheduler.step() }
            XCTAssertEqual(scheduler.currentStep, t, file: file, line: line)
            assertClose(scheduler.optimizer.learningRate, closedForm(t), "\(label) optimizer lr at step \(t)", file: file, line: line)
            assertClose(scheduler.learningRate(atStep: t), closedForm(t), "\(label) learningRate(atStep: \(t))", file: file, line: line)
        }
    }

    func testStepLR() throws {
        let s = try StepLR(sgd(), stepSize: 3, gamma: 0.5)
        checkSchedule(s, steps: 10, "StepLR") { 0.1 * pow(0.5, Double($0 / 3)) }
        XCTAssertEqual(s.learningRate(atStep: 7), 0.025, accuracy: 1e-9)
        let byDefault = try StepLR(sgd(), stepSize: 2)       // PyTorch default gamma 0.1
        XCTAssertEqual(byDefault.learningRate(atStep: 4), 0.001, accuracy: 1e-9)
    }

    func testExponentialLR() throws {
        checkSchedule(try ExponentialLR(sgd(), gamma: 0.9), steps: 10, "ExponentialLR") { 0.1 * pow(0.9, Double($0)) }
    }

    func testCosineAnnealingLR() throws {
        let s = try CosineAnnealingLR(sgd(), tMax: 8, etaMin: 0.01)
        checkSchedule(s, steps: 16, "Cosine") { 0.01 + (0.1 - 0.01) * (1 + cos(Double.pi * Double($0) / 8)) / 2 }
        XCTAssertEqual(s.learningRate(atStep: 4), 0.055, accuracy: 1e-8)   // half-way: the mean
        XCTAssertEqual(s.learningRate(atStep: 8), 0.01, accuracy: 1e-8)    // end: etaMin
    }

    func testLinearWarmup() throws {
        let opt = try sgd()
        let s = try LinearWarmup(opt, warmupSteps: 4, startFactor: 0.25)
        XCTAssertEqual(opt.learningRate, 0.025, accuracy: 1e-9)             // set on creation, like PyTorch
        checkSchedule(s, steps: 8, "LinearWarmup") { 0.1 * (0.25 + 0.75 * Double(Swift.min($0, 4)) / 4) }
        let byDefault = try LinearLR(sgd(), warmupSteps: 5)                        // PyTorch defaults 1/3 → 1
        XCTAssertEqual(byDefault.learningRate(atStep: 0), 0.1 / 3, accuracy: 1e-8)
        XCTAssertEqual(byDefault.learningRate(atStep: 5), 0.1, accuracy: 1e-8)
    }

    func testSequentialWarmupThenCosine() throws {
        let opt = try sgd()
        let warmup = try LinearWarmup(opt, warmupSteps: 5, startFactor: 0.1)
        let cosine = try CosineAnnealingLR(opt, tMax: 10, etaMin: 0.001)
        let s = try SequentialLR(opt, schedulers: [warmup, cosine], milestones: [5])
        XCTAssertEqual(cosine.baseLearningRate, 0.1)                        // shared initial rate
        checkSchedule(s, steps: 15, "Warmup+cosine") { t in
            t < 5 ? 0.1 * (0.1 + 0.9 * Double(t) / 5)
                  : 0.001 + (0.1 - 0.001) * (1 + cos(Double.pi * Double(t - 5) / 10)) / 2
        }
        // Resuming from a checkpoint sets the matching rate.
        let opt2 = try sgd()
        let r = try SequentialLR(opt2, schedulers: [try LinearWarmup(opt2, warmupSteps: 5, startFactor: 0.1),
                                                    try CosineAnnealingLR(opt2, tMax: 10, etaMin: 0.001)],
                                 milestones: [5])
        r.resume(atStep: 12)
        XCTAssertEqual(opt2.learningRate, s.learningRate(atStep: 12))
        r.step()
        XCTAssertEqual(opt2.learningRate, s.learningRate(atStep: 13))
    }
}
