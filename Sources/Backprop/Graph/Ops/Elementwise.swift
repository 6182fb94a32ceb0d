import Foundation
import BackpropKernels

/// Element-wise functions of one value: exp, log, tanh, sigmoid, relu, gelu. None can fail (the
/// result has the input's shape). Each computes what the matching layer computes: ReLU with the
/// layer's C kernels (`bp_relu`, `bp_relu_backward`), tanh and sigmoid with the layers' per-element
/// functions, GELU with the layer's own math (`GELU.forward`/`backward`).

/// y[i] = f(x[i]) into `y` (x's shape).
@inline(__always)
private func map(_ x: Tensor, into y: Tensor, _ f: (Float) -> Float) {
    let s = x.data, d = y.data
    for i in 0..<x.count { d[i] = f(s[i]) }
}

/// A tensor with dx[i] = dy[i] · f'(i), f' read from a saved tensor `t`.
@inline(__always)
private func chain(_ dy: Tensor, _ t: Tensor, _ derivative: (Float) -> Float) -> Tensor {
    let dx = graphTensor(dy.shape)
    let g = dy.data, s = t.data, d = dx.data
    for i in 0..<dy.count { d[i] = g[i] * derivative(s[i]) }
    return dx
}

/// A one-input element-wise op: y = f(x) computed now and on every replay; its backward reads
/// the saved output y (`savesInput`: the input x) through `derivative`.
@inline(__always)
private func elementwise(_ op: String, _ x: Variable, savesInput: Bool = false, _ f: @escaping (Float) -> Float,
                         derivative: @escaping (Float) -> Float) -> Variable {
    let v = x.value
    let y = Tensor(uninitializedShape: v.shape)
    let forward = { map(v, into: y, f) }
    forward()
    let saved = savesInput ? v : y
    return Variable.result(op, [x], y, saving: [saved], forward: forward) { dy, _ in
        InputGradients(chain(dy, saved, derivative))
    }
}

// y = eˣ                    dx = dy · y
/// eˣ element-wise.
public func exp(_ x: Variable) -> Variable {
    elementwise("exp", x, { expf($0) }, derivative: { $0 })
}

// y = ln x                  dx = dy / x
/// Natural logarithm element-wise (−∞ at 0 and NaN below, as PyTorch).
public func log(_ x: Variable) -> Variable {
    elementwise("log", x, savesInput: true, { logf($0) }, derivative: { 1 / $0 })
}

// y = tanh x                dx = dy · (1 − y²)
/// Hyperbolic tangent element-wise (libm's `tanhf`, as the `Tanh` layer: the same values).
public func tanh(_ x: Variable) -> Variable {
    elementwise("tanh", x, { tanhf($0) }, derivative: { 1 - $0 * $0 })
}

// y = 1 / (1 + e⁻ˣ)         dx = dy · y · (1 − y)
/// Logistic sigmoid element-wise (`stableSigmoid`, as the `Sigmoid` layer: the same values).
public func sigmoid(_ x: Variable) -> Variable {
    elementwise("sigmoid", x, { stableSigmoid($0) }, derivative: { $0 * (1 - $0) })
}

// y = max(x, 0)             dx = dy · [y > 0]
/// Rectified linear unit element-wise (the C kernels; NaN stays NaN).
public func relu(_ x: Variable) -> Variable {
    let v = x.value
    let y = Tensor(uninitializedShape: v.shape)
    let forward = { bp_relu(v.data, y.data, v.count) }
    forward()
    return Variable.result("relu", [x], y, saving: [y], forward: forward) { dy, _ in
        let dx = graphTensor(dy.shape)
        bp_relu_backward(y.data, dy.data, dx.data, dy.count)
        return InputGradients(dx)
    }
}

// exact:  y = x · Φ(x)                  dx = dy · (Φ(x) + x · φ(x))
// tanh:   y = ½ x (1 + t), t = tanh(u), u = √(2/π)(x + 0.044715 x³)
/// GELU element-wise, exact (erf) or with PyTorch's tanh approximation: the `GELU` layer's math.
public func gelu(_ x: Variable, approximate: GELU.Approximation = .none) -> Variable {
    let v = x.value
    let y = Tensor(uninitializedShape: v.shape)
    let forward = { GELU.forward(v, approximate, into: y) }
    forward()
    return Variable.result("gelu", [x], y, saving: [v], forward: forward) { dy, _ in
        let dx = graphTensor(dy.shape)
        GELU.backward(v, dy, approximate, into: dx)
        return InputGradients(dx)
    }
}
