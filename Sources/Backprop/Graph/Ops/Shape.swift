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
    y.data.update(from: v.data, count: v.count)
    let original = v.shape
    return Variable.result("reshape", [x], y) { dy, _ in
        let dx = Tensor(uncheckedShape: original)
        dx.data.update(from: dy.data, count: dy.count)
        return [dx]
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
    let y = Tensor(uncheckedShape: [c, r])
    try transpose(Matrix(v, rows: r, columns: c), into: Matrix(y, rows: c, columns: r), caller: "transpose")
    return Variable.result("transpose", [x], y) { dy, _ in
        let dx = Tensor(uncheckedShape: [r, c])
        try transpose(Matrix(dy, rows: c, columns: r), into: Matrix(dx, rows: r, columns: c), caller: "transpose backward")
        return [dx]
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
    let y = Tensor(uncheckedShape: shape)
    y.data.update(from: v.data + range.lowerBound * width, count: range.count * width)
    let original = v.shape
    return Variable.result("rows", [x], y) { dy, _ in
        let dx = Tensor(uncheckedShape: original)   // zero-filled
        (dx.data + range.lowerBound * width).update(from: dy.data, count: dy.count)
        return [dx]
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
    for (j, x) in xs.enumerated() {
        let block = sizes[j] * inner
        for o in 0..<outer {
            (y.data + o * total * inner + offsets[j] * inner).update(from: x.value.data + o * block, count: block)
        }
    }
    let inputCount = xs.count   // the closure keeps no reference to the inputs themselves
    return Variable.result("concat", xs, y) { dy, needs in
        (0..<inputCount).map { j -> Tensor? in
            guard needs[j] else { return nil }
            let dx = Tensor(uncheckedShape: shapes[j])
            let block = sizes[j] * inner
            for o in 0..<outer {
                (dx.data + o * block).update(from: dy.data + o * total * inner + offsets[j] * inner, count: block)
            }
            return dx
        }
    }
}
