/// Ops that move values without arithmetic: reshape, transpose, row slices, concatenation.
/// Each result is a fresh tensor (no view shares its input's storage).

// y = x viewed as `shape`     dx = dy viewed as x's shape
/// The values of `x` in a new shape of the same element count; one dimension may be −1 (inferred),
/// as in PyTorch. `.shapeMismatch` when the counts differ.
public func reshape(_ x: Variable, _ shape: [Int]) throws -> Variable {
    let v = x.value
    var target = shape
    let inferred = shape.indices.filter { shape[$0] == -1 }
    let known = shape.filter { $0 != -1 }.reduce(1, *)
    func mismatch() -> BackpropError {
        .shapeMismatch(where: "reshape", detail: "cannot reshape \(v.shape) (\(v.count) elements) to \(shape)")
    }
    guard inferred.count <= 1, shape.allSatisfy({ $0 >= -1 }) else { throw mismatch() }
    if let i = inferred.first {
        guard known > 0, v.count % known == 0 else { throw mismatch() }
        target[i] = v.count / known
    }
    let y: Tensor
    do { y = try Tensor(zeros: target) } catch { throw mismatch() }
    guard y.count == v.count else { throw mismatch() }
    let forward = { y.data.update(from: v.data, count: v.count) }
    forward()
    let original = v.shape
    return Variable.result("reshape", [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(original)
        dx.data.update(from: dy.data, count: dy.count)
        return InputGradients(dx)
    }
}

// y = xᵀ      [C, R] from [R, C]       dx = dyᵀ
/// Transpose of a 2-d value (PyTorch's `x.t()`), through OpenBLAS `somatcopy`. `.shapeMismatch` for another rank.
public func transpose(_ x: Variable) throws -> Variable {
    let v = x.value
    guard v.rank == 2 else {
        throw BackpropError.shapeMismatch(where: "transpose", detail: "needs a 2-d value, got \(v.shape)")
    }
    let r = v.shape[0], c = v.shape[1]
    let y = Tensor(uninitializedShape: [c, r])
    let forward = { try transpose(Matrix(v, rows: r, columns: c), into: Matrix(y, rows: c, columns: r), caller: "transpose") }
    try forward()
    let original = v.shape
    return Variable.result("transpose", [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(original)
        try transpose(Matrix(dy, rows: c, columns: r), into: Matrix(dx, rows: r, columns: c), caller: "transpose backward")
        return InputGradients(dx)
    }
}

// y = x with dimensions dim0 and dim1 swapped      dx = dy with them swapped back
/// `x` with two dimensions swapped, PyTorch's `x.transpose(dim0, dim1)` (negative dimensions count
/// from the end): `transpose(k, 1, 2)` turns `[B, T, D]` into `[B, D, T]`. Swapping the last two
/// dimensions runs OpenBLAS `somatcopy` per matrix; the same dimension twice gives a copy.
/// `.shapeMismatch` for a dimension outside the shape.
public func transpose(_ x: Variable, _ dim0: Int, _ dim1: Int) throws -> Variable {
    let shape = x.shape
    let r = shape.count
    let d0 = dim0 < 0 ? dim0 + r : dim0, d1 = dim1 < 0 ? dim1 + r : dim1
    guard d0 >= 0, d0 < r, d1 >= 0, d1 < r else {
        throw BackpropError.shapeMismatch(where: "transpose", detail: "dimensions \(dim0), \(dim1) of a value of shape \(shape)")
    }
    let swap = SwappedAxes(shape, min(d0, d1), max(d0, d1))
    let v = x.value, back = swap.inverse
    let y = Tensor(uninitializedShape: swap.result)
    let forward = { try swap.apply(v, into: y) }
    try forward()
    return Variable.result("transpose", [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(shape)
        try back.apply(dy, into: dx)
        return InputGradients(dx)
    }
}

/// A shape seen around two axes p < q: `outer × n_p × middle × n_q × inner`, and the same shape
/// with the two swapped. Element (o, i, m, j, e) of the input goes to (o, j, m, i, e).
struct SwappedAxes {
    let source: [Int]
    let result: [Int]
    let outer: Int, np: Int, middle: Int, nq: Int, inner: Int

    init(_ shape: [Int], _ p: Int, _ q: Int) {
        source = shape
        var swapped = shape
        swapped.swapAt(p, q)
        result = swapped
        outer = shape[..<p].reduce(1, *)
        np = shape[p]
        middle = p == q ? 1 : shape[(p + 1)..<q].reduce(1, *)
        nq = p == q ? 1 : shape[q]
        inner = shape[(q + 1)...].reduce(1, *)
    }

    private init(source: [Int], result: [Int], outer: Int, np: Int, middle: Int, nq: Int, inner: Int) {
        self.source = source; self.result = result
        self.outer = outer; self.np = np; self.middle = middle; self.nq = nq; self.inner = inner
    }

    /// The swap back (from `result` to `source`).
    var inverse: SwappedAxes {
        SwappedAxes(source: result, result: source, outer: outer, np: nq, middle: middle, nq: np, inner: inner)
    }

    func apply(_ x: Tensor, into y: Tensor) throws {
        let count = source.reduce(1, *)
        if np == 1 || nq == 1 || count == 0 {   // the same axis twice, or a size-1 axis: the order stays
            y.data.update(from: x.data, count: count)
        } else if middle == 1 && inner == 1 {   // the last two axes (of a batch of matrices): somatcopy
            for o in 0..<outer {
                try transpose(Matrix(x, offset: o * np * nq, rows: np, columns: nq),
                              into: Matrix(y, offset: o * np * nq, rows: nq, columns: np), caller: "transpose")
            }
        } else {
            let src = x.data, dst = y.data
            for o in 0..<outer {
                for i in 0..<np {
                    for m in 0..<middle {
                        for j in 0..<nq {
                            let from = (((o * np + i) * middle + m) * nq + j) * inner
                            let to = (((o * nq + j) * middle + m) * np + i) * inner
                            (dst + to).update(from: src + from, count: inner)
                        }
                    }
                }
            }
        }
    }
}

// y = x[range]      [range.count, …]       dx[range] = dy, 0 elsewhere
/// Rows `range` of `x` (its first dimension), PyTorch's `x[a:b]`. `.shapeMismatch` when the
/// range lies outside the rows or `x` has rank 0.
public func rows(_ x: Variable, _ range: Range<Int>) throws -> Variable {
    let v = x.value
    guard v.rank >= 1, range.lowerBound >= 0, range.upperBound <= v.shape[0] else {
        throw BackpropError.shapeMismatch(where: "rows", detail: "rows \(range) of a value of shape \(v.shape)")
    }
    let width = v.shape.dropFirst().reduce(1, *)
    var shape = v.shape
    shape[0] = range.count
    let y = Tensor(uninitializedShape: shape)
    let forward = { y.data.update(from: v.data + range.lowerBound * width, count: range.count * width) }
    forward()
    let original = v.shape
    return Variable.result("rows", [x], y, forward: forward) { dy, _ in
        let dx = graphTensor(original, zeroed: true)
        (dx.data + range.lowerBound * width).update(from: dy.data, count: dy.count)
        return InputGradients(dx)
    }
}

// y = [x₀ x₁ …] along axis       dxᵢ = the slice of dy that xᵢ filled
/// Concatenation along `axis` (PyTorch's `torch.cat(xs, dim)`; negative axes count from the end).
/// Every value must have the same rank and the same sizes off the axis (`.shapeMismatch` naming
/// the shapes otherwise); an empty list is `.invalidArgument`.
public func concat(_ xs: [Variable], axis: Int = 0) throws -> Variable {
    guard let first = xs.first else { throw BackpropError.invalidArgument("concat: no values to concatenate") }
    let shapes = xs.map(\.shape)
    let l0 = try AxisLayout("concat", first.shape, axis: axis)
    for s in shapes {
        var a = s, b = first.shape
        guard a.count == b.count else {
            throw BackpropError.shapeMismatch(where: "concat", detail: "shapes \(shapes) differ in rank")
        }
        a[l0.axis] = 0; b[l0.axis] = 0
        guard a == b else {
            throw BackpropError.shapeMismatch(where: "concat", detail: "shapes \(shapes) differ off axis \(l0.axis)")
        }
    }
    let sizes = shapes.map { $0[l0.axis] }
    let total = sizes.reduce(0, +)
    var shape = first.shape
    shape[l0.axis] = total
    let y = try Tensor(zeros: shape)
    let outer = l0.outer, inner = l0.inner
    // Block (o, input j) of `sizes[j]·inner` elements sits at o·total·inner + offset_j·inner.
    var offsets: [Int] = []
    var offset = 0
    for s in sizes { offsets.append(offset); offset += s }
    let values = xs.map(\.value)   // the closures keep no reference to the inputs themselves
    let forward = {
        for (j, v) in values.enumerated() {
            let block = sizes[j] * inner
            for o in 0..<outer {
                (y.data + o * total * inner + offsets[j] * inner).update(from: v.data + o * block, count: block)
            }
        }
    }
    forward()
    let inputCount = xs.count
    return Variable.result("concat", xs, y, forward: forward) { dy, needs in
        InputGradients((0..<inputCount).map { j -> Tensor? in
            guard needs[j] else { return nil }
            let dx = graphTensor(shapes[j])
            let block = sizes[j] * inner
            for o in 0..<outer {
                (dx.data + o * block).update(from: dy.data + o * total * inner + offsets[j] * inner, count: block)
            }
            return dx
        })
    }
}
