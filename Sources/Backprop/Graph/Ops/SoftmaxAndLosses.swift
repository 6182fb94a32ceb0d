import Foundation

/// Softmax and log-softmax along an axis, cross-entropy from class labels, and mean squared error.
/// Softmax runs as e^(x − max) per slice, so large logits do not overflow.

/// Calls `body(base)` for the first element of every slice along the layout's axis; the slice's
/// k-th element is at base + k·inner.
@inline(__always)
private func forEachSlice(_ l: AxisLayout, _ body: (Int) -> Void) {
    for o in 0..<l.outer { for i in 0..<l.inner { body(o * l.size * l.inner + i) } }
}

// y = e^(x − max) / Σ e^(x − max)    (per slice along axis)
// dx = y ⊙ (dy − Σ_slice dy ⊙ y)
/// Softmax along `axis` (default the last, −1), PyTorch's `torch.softmax(x, dim)`;
/// `.shapeMismatch` for an axis outside the shape.
public func softmax(_ x: Variable, axis: Int = -1) throws -> Variable {
    let l = try AxisLayout("softmax", x.shape, axis: axis)
    let v = x.value
    let y = Tensor(uninitializedShape: x.shape)
    let step = l.inner, n = l.size
    let forward = {
        let src = v.data, dst = y.data
        forEachSlice(l) { b in softmaxSlice(src + b, into: dst + b, count: n, step: step) }
    }
    forward()
    return Variable.result("softmax", [x], y, saving: [y], forward: forward) { dy, _ in
        let dx = graphTensor(dy.shape)
        let g = dy.data, p = y.data, d = dx.data
        forEachSlice(l) { b in softmaxBackwardSlice(p + b, g + b, into: d + b, count: n, step: step) }
        return InputGradients(dx)
    }
}

// y = x − max − ln Σ e^(x − max)     (per slice along axis)
// dx = dy − softmax(x) ⊙ Σ_slice dy   (softmax = eʸ)
/// Log-softmax along `axis` (default −1), PyTorch's `torch.log_softmax(x, dim)`.
public func logSoftmax(_ x: Variable, axis: Int = -1) throws -> Variable {
    let l = try AxisLayout("logSoftmax", x.shape, axis: axis)
    let v = x.value
    let y = Tensor(uninitializedShape: x.shape)
    let step = l.inner, n = l.size
    let forward = {
        let src = v.data, dst = y.data
        forEachSlice(l) { b in
            let (m, s) = exponentiateShifted(src + b, into: dst + b, count: n, step: step)   // dst as scratch
            let shift = m + logf(s)
            for k in 0..<n { dst[b + k * step] = src[b + k * step] - shift }
        }
    }
    forward()
    return Variable.result("logSoftmax", [x], y, saving: [y], forward: forward) { dy, _ in
        let dx = graphTensor(dy.shape)
        let g = dy.data, ly = y.data, d = dx.data
        forEachSlice(l) { b in
            var total: Float = 0
            for k in 0..<n { total += g[b + k * step] }
            for k in 0..<n { d[b + k * step] = g[b + k * step] - expf(ly[b + k * step]) * total }
        }
        return InputGradients(dx)
    }
}

// L = −s Σ_n ln softmax(z_n)[label_n]      []      (s = 1/N for .mean, 1 for .sum)
// dz = dL · s · (softmax(z) − onehot(labels))     [N, C]
/// Cross-entropy of logits `[N, C]` against one class label per row, PyTorch's
/// `F.cross_entropy(logits, labels)`: the same math as the `SoftmaxCrossEntropy` loss (without
/// label smoothing). `.shapeMismatch` unless logits are [N, C] (C > 0) with N labels;
/// `.invalidArgument` for a label outside 0..<C.
public func crossEntropy(_ logits: Variable, labels: [Int], reduction: Reduction = .mean) throws -> Variable {
    let target = Tensor(uninitializedShape: [labels.count])
    for (i, label) in labels.enumerated() { target.data[i] = Float(label) }
    guard logits.value.rank == 2, logits.shape[0] == labels.count else {
        throw BackpropError.shapeMismatch(where: "crossEntropy",
                                          detail: "logits \(logits.shape) need [N, C] with C > 0 and N = \(labels.count) labels")
    }
    if let c = logits.shape.last, let i = labels.firstIndex(where: { $0 < 0 || $0 >= c }) {   // exact, before Float
        throw BackpropError.invalidArgument("crossEntropy: label \(labels[i]) at row \(i) is outside 0..<\(c)")
    }
    // No replay: the labels are a Swift array of this call; a `CapturedGraph` takes them as a
    // target input (`crossEntropy(_:target:)`).
    return try crossEntropy(logits, target: Variable(target), reduction: reduction, replayable: false)
}

/// Cross-entropy of logits `[N, C]` against `target` `[N]` holding one class index per row (as
/// Floats: 0, 1, …), PyTorch's `F.cross_entropy(logits, target)` with a class-index target. The
/// form a `CapturedGraph` takes its labels in, as an input. `.shapeMismatch` unless logits are
/// [N, C] (C > 0) and target [N]; `.invalidArgument` for an index that is not a whole number in
/// 0..<C (checked again on every replay). No gradient flows to `target`.
public func crossEntropy(_ logits: Variable, target: Variable, reduction: Reduction = .mean) throws -> Variable {
    try crossEntropy(logits, target: target, reduction: reduction, replayable: true)
}

private func crossEntropy(_ logits: Variable, target: Variable, reduction: Reduction, replayable: Bool) throws -> Variable {
    let z = logits.value, t = target.value
    guard z.rank == 2, t.rank == 1, z.shape[0] == t.shape[0], z.shape[1] > 0 else {
        throw BackpropError.shapeMismatch(where: "crossEntropy",
                                          detail: "logits \(z.shape) need [N, C] with C > 0 and a target [N] of class indices, got \(t.shape)")
    }
    let n = z.shape[0], c = z.shape[1]
    let scale = reduction.scale(count: n)
    let probabilities = Tensor(uninitializedShape: z.shape)
    let loss = Tensor(uncheckedShape: [])
    let forward = {
        let zs = z.data, p = probabilities.data, labels = t.data
        for i in 0..<n where !(labels[i] >= 0 && labels[i] < Float(c) && labels[i].rounded(.towardZero) == labels[i]) {
            throw BackpropError.invalidArgument("crossEntropy: label \(labels[i]) at row \(i) is outside 0..<\(c) or not a class index")
        }
        var total: Double = 0
        for i in 0..<n {
            let zi = zs + i * c, pi = p + i * c
            let (m, s) = exponentiateShifted(zi, into: pi, count: c)
            let inv = 1 / s
            for j in 0..<c { pi[j] *= inv }
            total -= Double(zi[Int(labels[i])] - m - logf(s))
        }
        loss.data[0] = Float(total) * scale
    }
    try forward()
    let shape = z.shape
    // A target made by ops is an input (a captured graph recomputes it first); a leaf target is
    // only read, as the labels of the [Int] form (no gradient flows to either).
    let inputs = target.node == nil ? [logits] : [logits, target]
    return Variable.result("crossEntropy", inputs, loss, saving: [t], forward: replayable ? forward : nil) { dl, _ in
        let dz = graphTensor(shape)
        let g = dl.data[0] * scale, d = dz.data, p = probabilities.data, labels = t.data   // tensors captured, not pointers
        for k in 0..<(n * c) { d[k] = p[k] * g }
        for i in 0..<n { d[i * c + Int(labels[i])] -= g }
        return InputGradients(dz, nil)
    }
}

// L = s Σ (p − t)²      []      (s = 1/count for .mean, 1 for .sum)
// dp = dL · 2s (p − t)     dt = −dp
/// Mean squared error of `prediction` against `target` of the same shape, PyTorch's
/// `F.mse_loss`; gradients flow to both when they require them. `.shapeMismatch` for shapes that differ.
public func mse(_ prediction: Variable, _ target: Variable, reduction: Reduction = .mean) throws -> Variable {
    let vp = prediction.value, vt = target.value
    guard vp.shape == vt.shape else {
        throw BackpropError.shapeMismatch(where: "mse", detail: "prediction \(vp.shape) and target \(vt.shape) differ")
    }
    let diff = Tensor(uninitializedShape: vp.shape)
    let scale = reduction.scale(count: vp.count)
    let loss = Tensor(uncheckedShape: [])
    let forward = {
        var total: Double = 0
        for k in 0..<vp.count {
            let e = vp.data[k] - vt.data[k]
            diff.data[k] = e
            total += Double(e) * Double(e)
        }
        loss.data[0] = Float(total) * scale
    }
    forward()
    return Variable.result("mse", [prediction, target], loss, saving: [vp, vt], forward: forward) { dl, needs in
        let dp = graphTensor(diff.shape)
        let f = 2 * scale * dl.data[0]
        for k in 0..<diff.count { dp.data[k] = f * diff.data[k] }
        var dt: Tensor?
        if needs[1] {
            let t = graphTensor(diff.shape)
            for k in 0..<diff.count { t.data[k] = -dp.data[k] }
            dt = t
        }
        return InputGradients(needs[0] ? dp : nil, dt)
    }
}
