import Foundation
import XCTest
@testable import Backprop
import BackpropOptim

/// SGD, Adam, AdamW and RMSprop update through C kernels (BackpropKernels/optimizers.inc) compiled
/// for AVX-512, AVX2 and baseline x86-64. Under every version this CPU has, on a small parameter
/// (37 elements: every vector width's tail) and one large enough to be split across threads
/// (70,001), three steps of every option set give exactly — bit for bit — what the formulas give
/// evaluated one element at a time in Swift, in PyTorch's order without fused multiply-adds.
final class OptimizerKernelTests: XCTestCase {
    override func tearDown() { Kernels.limitInstructionSet(to: 4) }

    struct Setup {
        var parameters: [Parameter]
        var reference: [[Float]]   // θ per parameter, updated by the scalar formulas
        var state: [[[Float]]]     // per parameter: the optimizer's buffers, scalar copy
    }

    func makeSetup(seed: UInt64, buffers: Int) throws -> Setup {
        var rng = SeededGenerator(seed: seed)
        var parameters: [Parameter] = []
        for n in [37, 70_001] {
            let p = Parameter(try Tensor(zeros: [n]))
            p.value.fillUniform(-1, 1, using: &rng)
            parameters.append(p)
        }
        return Setup(parameters: parameters, reference: parameters.map(\.value.scalars),
                     state: parameters.map { [[Float]](repeating: [Float](repeating: 0, count: $0.value.count), count: buffers) })
    }

    func setGradients(_ s: Setup, step: Int) {
        var rng = SeededGenerator(seed: UInt64(100 + step))
        for p in s.parameters { p.grad.fillUniform(-2, 2, using: &rng) }
    }

    func assertSame(_ s: Setup, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        for (p, r) in zip(s.parameters, s.reference) {
            let got = p.value.scalars
            let bad = got.indices.first { got[$0].bitPattern != r[$0].bitPattern }
            XCTAssertNil(bad, "\(what): element \(bad ?? -1) of \(got.count): \(bad.map { got[$0] } ?? 0) vs \(bad.map { r[$0] } ?? 0)",
                         file: file, line: line)
        }
    }

    func testSGDKernelMatchesTheFormulaUnderEveryVersion() throws {
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for (wd, mu, damp, nesterov) in [(Float(0), Float(0), Float(0), false), (0.01, 0, 0, false), (0, 0.9, 0, false),
                                             (0.01, 0.9, 0.1, false), (0.01, 0.9, 0, true)] {
                var s = try makeSetup(seed: 1, buffers: 1)
                let lr: Float = 0.05
                let opt = try SGD(parameters: s.parameters, lr: lr, momentum: mu, dampening: damp, weightDecay: wd, nesterov: nesterov)
                for step in 0..<3 {
                    setGradients(s, step: step)
                    for (k, p) in s.parameters.enumerated() {
                        let g0 = p.grad.scalars
                        for i in g0.indices {
                            var g = g0[i]
                            if wd != 0 { g = g + wd * s.reference[k][i] }
                            if mu != 0 {
                                let b = step == 0 ? g : mu * s.state[k][0][i] + (1 - damp) * g
                                s.state[k][0][i] = b
                                g = nesterov ? g + mu * b : b
                            }
                            s.reference[k][i] = s.reference[k][i] - lr * g
                        }
                    }
                    try opt.step()
                }
                assertSame(s, "SGD level \(level) wd \(wd) momentum \(mu) dampening \(damp) nesterov \(nesterov)")
            }
        }
    }

    func testAdamKernelMatchesTheFormulaUnderEveryVersion() throws {
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for (decoupled, wd, ams) in [(false, Float(0), false), (false, 0.01, false), (false, 0.01, true),
                                         (true, 0.01, false), (true, 0.01, true)] {
                var s = try makeSetup(seed: 2, buffers: 3)
                let lr: Float = 1e-3, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
                let opt: any Optimizer = decoupled
                    ? try AdamW(parameters: s.parameters, lr: lr, betas: (b1, b2), eps: eps, weightDecay: wd, amsgrad: ams)
                    : try Adam(parameters: s.parameters, lr: lr, betas: (b1, b2), eps: eps, weightDecay: wd, amsgrad: ams)
                for step in 0..<3 {
                    setGradients(s, step: step)
                    let t = Double(step + 1)
                    let stepSize = Float(Double(lr) / (1 - pow(Double(b1), t)))
                    let bc2 = Float((1 - pow(Double(b2), t)).squareRoot())
                    let omb1 = Float(1 - Double(b1)), omb2 = Float(1 - Double(b2))
                    let decay = Float(1 - Double(lr) * Double(wd))
                    for (k, p) in s.parameters.enumerated() {
                        let g0 = p.grad.scalars
                        for i in g0.indices {
                            var g = g0[i], th = s.reference[k][i]
                            if decoupled && wd != 0 { th = th * decay }
                            if !decoupled && wd != 0 { g = g + wd * th }
                            let m = s.state[k][0][i] + omb1 * (g - s.state[k][0][i])
                            var v = b2 * s.state[k][1][i] + omb2 * g * g
                            s.state[k][0][i] = m
                            s.state[k][1][i] = v
                            if ams {
                                v = s.state[k][2][i] > v ? s.state[k][2][i] : v
                                s.state[k][2][i] = v
                            }
                            let denom = v.squareRoot() / bc2 + eps
                            s.reference[k][i] = th - stepSize * m / denom
                        }
                    }
                    try opt.step()
                }
                assertSame(s, "\(decoupled ? "AdamW" : "Adam") level \(level) wd \(wd) amsgrad \(ams)")
            }
        }
    }

    func testRMSPropKernelMatchesTheFormulaUnderEveryVersion() throws {
        for level in KernelVersionTests.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for (wd, centered, mu) in [(Float(0), false, Float(0)), (0.01, false, 0), (0, true, 0), (0, false, 0.9),
                                       (0.01, true, 0.9)] {
                var s = try makeSetup(seed: 3, buffers: 3)
                let lr: Float = 1e-2, alpha: Float = 0.99, eps: Float = 1e-8
                let opt = try RMSProp(parameters: s.parameters, lr: lr, alpha: alpha, eps: eps, weightDecay: wd,
                                      momentum: mu, centered: centered)
                let oma = Float(1 - Double(alpha))
                for step in 0..<3 {
                    setGradients(s, step: step)
                    for (k, p) in s.parameters.enumerated() {
                        let g0 = p.grad.scalars
                        for i in g0.indices {
                            var g = g0[i], th = s.reference[k][i]
                            if wd != 0 { g = g + wd * th }
                            let v = alpha * s.state[k][0][i] + oma * g * g
                            s.state[k][0][i] = v
                            var avg: Float
                            if centered {
                                let ga = s.state[k][2][i] + oma * (g - s.state[k][2][i])
                                s.state[k][2][i] = ga
                                avg = (v - ga * ga).squareRoot()
                            } else {
                                avg = v.squareRoot()
                            }
                            avg = avg + eps
                            if mu != 0 {
                                let b = mu * s.state[k][1][i] + g / avg
                                s.state[k][1][i] = b
                                th = th - lr * b
                            } else {
                                th = th - lr * g / avg
                            }
                            s.reference[k][i] = th
                        }
                    }
                    try opt.step()
                }
                assertSame(s, "RMSProp level \(level) wd \(wd) centered \(centered) momentum \(mu)")
            }
        }
    }
}
