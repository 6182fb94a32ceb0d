/// Sums and means, of all elements or along one axis (sums accumulate in Double, like
/// `Tensor.sum`). An axis may be negative (−1 is the last), as in PyTorch; with `keepDim` the
/// reduced axis stays as a 1.

/// A shape seen around one axis: `outer × size × inner`, element (o, k, i) at (o·size + k)·inner + i.
struct AxisLayout {
    let axis: Int
    let outer: Int
    let size: Int
    let inner: Int

    init(_ op: String, _ shape: [Int], axis: Int) throws {
        let a = axis < 0 ? axis + shape.count : axis
        guard a >= 0, a < shape.count else {
            throw BackpropError.shapeMismatch(where: op, detail: "axis \(axis) is outside a value of shape \(shape)")
        }
        self.axis = a
        outer = shape[..<a].reduce(1, *)
        size = shape[a]
        inner = shape[(a + 1)...].reduce(1, *)
    }

    /// `shape` without the axis, or with it as 1 when `keepDim`.
    func reduced(_ shape: [Int], keepDim: Bool) -> [Int] {
        var s = shape
        if keepDim { s[axis] = 1 } else { s.remove(at: axis) }
        return s
    }
}

// y = Σ_all x          []        dx = dy (every element)
/// Σ of every element, a one-element value of shape [] (PyTorch's `torch.sum(x)`).
public func sum(_ x: Variable) -> Variable { reduceAll("sum", x, scale: 1) }

// y = (1/n) Σ_all x    []        dx = dy / n
/// Mean of every element, shape [] (NaN for an empty value, as PyTorch).
public func mean(_ x: Variable) -> Variable { reduceAll("mean", x, scale: 1 / Double(x.value.count)) }

/// Σ along `axis` (PyTorch's `torch.sum(x, dim, keepdim)`); `.shapeMismatch` for an axis outside the shape.
public func sum(_ x: Variable, axis: Int, keepDim: Bool = false) throws -> Variable {
    try reduceAxis("sum", x, axis: axis, keepDim: keepDim, mean: false)
}

/// Mean along `axis`; `.shapeMismatch` for an axis outside the shape.
public func mean(_ x: Variable, axis: Int, keepDim: Bool = false) throws -> Variable {
    try reduceAxis("mean", x, axis: axis, keepDim: keepDim, mean: true)
}

private func reduceAll(_ op: String, _ x: Variable, scale: Double) -> Variable {
    let v = x.value
    let y = Tensor(uncheckedShape: [])
    let forward = {
        let p = v.data
        var s: Double = 0
        for k in 0..<v.count { s += Double(p[k]) }
        y.data[0] = Float(s * scale)
    }
    forward()
    let shape = v.shape
    return Variable.result(op, [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(shape)
        dx.data.update(repeating: Float(Double(dy.data[0]) * scale), count: dx.count)
        return InputGradients(dx)
    }
}

// y[o, i] = s · Σ_k x[o, k, i]      [outer, inner]       dx[o, k, i] = s · dy[o, i]     (s = 1 or 1/size)
private func reduceAxis(_ op: String, _ x: Variable, axis: Int, keepDim: Bool, mean: Bool) throws -> Variable {
    let v = x.value
    let l = try AxisLayout(op, v.shape, axis: axis)
    let scale = mean ? 1 / Double(l.size) : 1
    let y = Tensor(uncheckedShape: l.reduced(v.shape, keepDim: keepDim))
    let forward = {
        let src = v.data, dst = y.data
        for o in 0..<l.outer {
            for i in 0..<l.inner {
                var s: Double = 0
                for k in 0..<l.size { s += Double(src[(o * l.size + k) * l.inner + i]) }
                dst[o * l.inner + i] = Float(s * scale)
            }
        }
    }
    forward()
    let shape = v.shape
    return Variable.result(op, [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(shape)
        let g = dy.data, d = dx.data, s = Float(scale)
        for o in 0..<l.outer {
            for k in 0..<l.size {
                for i in 0..<l.inner { d[(o * l.size + k) * l.inner + i] = g[o * l.inner + i] * s }
            }
        }
        return InputGradients(dx)
    }
}

/// The index of the largest element along the last axis, for every position of the others
/// (PyTorch's `x.argmax(-1)`, flattened): a `[N, C]` value of logits gives N predicted classes.
/// The first index wins a tie; NaN counts as the largest. Not differentiable (nothing recorded).
/// `.shapeMismatch` for a value of rank 0 or with an empty last axis.
public func argmax(_ x: Variable) throws -> [Int] {
    let v = x.value
    guard let n = v.shape.last, n > 0 else {
        throw BackpropError.shapeMismatch(where: "argmax", detail: "needs a non-empty last axis, got shape \(v.shape)")
    }
    let p = v.data
    return (0..<(v.count / n)).map { r in
        var best = 0
        for j in 1..<n where p[r * n + j] > p[r * n + best] || (p[r * n + j].isNaN && !p[r * n + best].isNaN) { best = j }
        return best
    }
}
