// A layer of your own: y = x·s + b per feature (a learned scale and shift), with its backward
// written by hand and checked against finite differences, then used inside a Sequential.
import Backprop
import Foundation

final class ScaleShift: Layer {
    let scale: Parameter, shift: Parameter
    var isTraining = true
    private var input: Tensor?

    init(features: Int) throws {
        scale = Parameter(try Tensor([Float](repeating: 1, count: features), shape: [features]))
        shift = Parameter(try Tensor(zeros: [features]))
    }
    var summary: String { "ScaleShift(\(scale.shape[0]))" }
    var namedParameters: [(name: String, parameter: Parameter)] { [("scale", scale), ("shift", shift)] }

    func forward(_ x: Tensor) throws -> Tensor {
        let f = scale.shape[0]
        guard x.rank == 2, x.shape[1] == f else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected [N, \(f)], got \(x.shape)")
        }
        input = x.copy()
        let y = try Tensor(zeros: x.shape)
        for i in 0..<x.count { y.data[i] = x.data[i] * scale.value.data[i % f] + shift.value.data[i % f] }
        return y
    }

    @discardableResult
    func backward(_ dy: Tensor) throws -> Tensor {
        guard let x = input, dy.shape == x.shape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward needs the δ of the last forward")
        }
        let f = scale.shape[0], ds = scale.grad, db = shift.grad   // accumulate, as PyTorch does
        let dx = try Tensor(zeros: x.shape)
        for i in 0..<x.count {
            ds.data[i % f] += dy.data[i] * x.data[i]
            db.data[i % f] += dy.data[i]
            dx.data[i] = dy.data[i] * scale.value.data[i % f]
        }
        return dx
    }
}

manualSeed(3)
let layer = try ScaleShift(features: 3)
try layer.scale.value.assign([0.5, -2, 1.5])
let x = try Tensor((0..<12).map { Float($0) / 6 - 1 }, shape: [4, 3])
let report = try GradientCheck.check(layer, input: x)
print("ScaleShift gradient check: \(report)")
let model = Sequential(try Dense(3, 3), layer, ReLU())
print(try GradientCheck.check(model, input: x))
print(model.stateDict.map(\.name))   // 0.weight, 0.bias, 1.scale, 1.shift
if report.maxError > 1e-2 { exit(1) }
