/// `+ − × ÷` between Variables, and with a Float on either side, with row and column
/// broadcasting. Between two Variables each operator throws `BackpropError.shapeMismatch` (naming
/// it and both shapes) for shapes that do not broadcast, so an expression takes one `try`:
/// `try (a + b) * c`. With a Float (`x * 2`, `1 - x`) and for `-x` nothing can fail: no `throws`.
///
/// Shapes that combine (the result has the larger):
///
///     same shape           A[s]    ∘ B[s]      → [s]      element by element
///     row broadcast        A[N, F] ∘ B[F]      → [N, F]   (or B[1, F]; either side)
///     column broadcast     A[N, F] ∘ B[N, 1]   → [N, F]   (either side)
///     scalar               A[s]    ∘ B[] or [1] (any one-element shape of rank ≤ A's) → [s]
///
/// Row and column broadcasting extend to any rank as in PyTorch: B may be a trailing part of A's
/// shape (A[B, T, D] ∘ B[T, D] or B[D], leading 1s allowed: B[1, T, D]), read as one row repeated
/// over A's leading dimensions; or A's shape with the last dimension 1 (A[B, T, D] ∘ B[B, T, 1]),
/// read as one column repeated along it.
///
/// Backward forms each input's gradient on the result's grid, then sums it over the broadcast
/// rows, columns or elements back to the input's shape.

/// How one operand of a binary op is read on the result's `rows × columns` grid.
enum BroadcastRole: Equatable {
    case full       // element (i, j)
    case row        // element j: one row repeated down the grid
    case column     // element i: one column repeated across
    case scalar     // element 0
}

/// The result shape of a binary op and how each operand maps onto it.
struct Broadcast {
    let shape: [Int]
    let rows: Int
    let columns: Int
    let a: BroadcastRole
    let b: BroadcastRole

    init(_ op: String, _ sa: [Int], _ sb: [Int]) throws {
        var roles: (BroadcastRole, BroadcastRole)
        var grid: (rows: Int, columns: Int) = (1, sa.reduce(1, *))
        if sa == sb {
            shape = sa; roles = (.full, .full)
        } else if let r = Broadcast.role(of: sb, against: sa) {
            shape = sa; roles = (.full, r.role); grid = (r.rows, r.columns)
        } else if let r = Broadcast.role(of: sa, against: sb) {
            shape = sb; roles = (r.role, .full); grid = (r.rows, r.columns)
        } else {
            throw BackpropError.shapeMismatch(
                where: op,
                detail: "cannot broadcast \(sa) with \(sb) (same shape, [N, F] with [F], [1, F] or [N, 1], "
                    + "[…, T, D] with [T, D] or […, 1], or a one-element value)")
        }
        a = roles.0
        b = roles.1
        rows = grid.rows
        columns = grid.columns
    }

    /// A value of `shape` with a one-element constant on the left or right: always fits.
    init(shape: [Int], constantOnLeft: Bool) {
        self.shape = shape
        rows = 1
        columns = shape.reduce(1, *)
        a = constantOnLeft ? .scalar : .full
        b = constantOnLeft ? .full : .scalar
    }

    /// How `small` is read against `big` (≠ small), with the `rows × columns` grid `big` is seen
    /// as, or nil when it does not broadcast.
    private static func role(of small: [Int], against big: [Int]) -> (role: BroadcastRole, rows: Int, columns: Int)? {
        let total = big.reduce(1, *)
        if small.reduce(1, *) == 1 && small.count <= big.count { return (.scalar, 1, total) }
        guard big.count >= 2, small.count <= big.count else { return nil }
        // Row: the trailing dimensions of `big` (leading 1s of `small` dropped), repeated over the others.
        let trailing = Array(small.drop(while: { $0 == 1 }))
        if !trailing.isEmpty, trailing.count < big.count, Array(big.suffix(trailing.count)) == trailing {
            return (.row, big.dropLast(trailing.count).reduce(1, *), trailing.reduce(1, *))
        }
        // Column: `big` with its last dimension 1, repeated along it.
        if small == Array(big.dropLast()) + [1] { return (.column, big.dropLast().reduce(1, *), big[big.count - 1]) }
        return nil
    }

    @inline(__always) func index(_ role: BroadcastRole, _ i: Int, _ j: Int) -> Int {
        switch role {
        case .full: return i * columns + j
        case .row: return j
        case .column: return i
        case .scalar: return 0
        }
    }

    /// out[i, j] = f(A at (i, j), B at (i, j)), into `out` of `shape`.
    @inline(__always)
    func apply(_ x: Tensor, _ y: Tensor, into out: Tensor, _ f: (Float, Float) -> Float) {
        let pa = x.data, pb = y.data, po = out.data
        if a == .full && b == .full {
            for k in 0..<out.count { po[k] = f(pa[k], pb[k]) }
        } else {
            for i in 0..<rows {
                for j in 0..<columns { po[i * columns + j] = f(pa[index(a, i, j)], pb[index(b, i, j)]) }
            }
        }
    }

    /// The gradient of an operand read with `role`, of shape `inputShape`, from `grid` (∂L/∂ each
    /// grid element's use of it): the grid summed over the broadcast direction. A full operand's
    /// gradient is `grid` itself.
    func reduce(_ grid: Tensor, to role: BroadcastRole, shape inputShape: [Int]) -> Tensor {
        if role == .full { return grid }
        let out = graphTensor(inputShape, zeroed: true)
        let g = grid.data, o = out.data
        switch role {
        case .full: break
        case .row:      // o[j] = Σ_i g[i, j]
            for i in 0..<rows { for j in 0..<columns { o[j] += g[i * columns + j] } }
        case .column:   // o[i] = Σ_j g[i, j]
            for i in 0..<rows {
                var s: Float = 0
                for j in 0..<columns { s += g[i * columns + j] }
                o[i] = s
            }
        case .scalar:   // o[0] = Σ g (in Double, like Tensor.sum)
            var s: Double = 0
            for k in 0..<grid.count { s += Double(g[k]) }
            o[0] = Float(s)
        }
        return out
    }

    /// A grid tensor with element (i, j) = f(dC[i, j], A at (i, j), B at (i, j)).
    @inline(__always)
    func grid(_ dc: Tensor, _ x: Tensor, _ y: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        let out = graphTensor(shape)
        let pg = dc.data, pa = x.data, pb = y.data, po = out.data
        for i in 0..<rows {
            for j in 0..<columns {
                let k = i * columns + j
                po[k] = f(pg[k], pa[index(a, i, j)], pb[index(b, i, j)])
            }
        }
        return out
    }
}

/// The four ops, one function each: forward and backward side by side.
enum Arithmetic {
    // C = A + B            dA = Σ_broadcast dC        dB = Σ_broadcast dC
    static func add(_ x: Variable, _ y: Variable) throws -> Variable {
        add(x, y, try Broadcast("+", x.shape, y.shape))
    }

    static func add(_ x: Variable, _ y: Variable, _ p: Broadcast) -> Variable {
        let (va, vb) = (x.value, y.value)
        let c = Tensor(uninitializedShape: p.shape)
        let forward = { p.apply(va, vb, into: c, +) }
        forward()
        let (sa, sb) = (x.shape, y.shape)
        return Variable.result("add", [x, y], c, forward: forward) { dc, needs in
            InputGradients(needs[0] ? p.reduce(dc, to: p.a, shape: sa) : nil,
                           needs[1] ? p.reduce(dc, to: p.b, shape: sb) : nil)
        }
    }

    // C = A − B            dA = Σ_broadcast dC        dB = −Σ_broadcast dC
    static func subtract(_ x: Variable, _ y: Variable) throws -> Variable {
        subtract(x, y, try Broadcast("-", x.shape, y.shape))
    }

    static func subtract(_ x: Variable, _ y: Variable, _ p: Broadcast) -> Variable {
        let (va, vb) = (x.value, y.value)
        let c = Tensor(uninitializedShape: p.shape)
        let forward = { p.apply(va, vb, into: c, -) }
        forward()
        let (sa, sb) = (x.shape, y.shape)
        return Variable.result("sub", [x, y], c, forward: forward) { dc, needs in
            InputGradients(needs[0] ? p.reduce(dc, to: p.a, shape: sa) : nil,
                           needs[1] ? p.reduce(p.grid(dc, va, vb) { g, _, _ in -g }, to: p.b, shape: sb) : nil)
        }
    }

    // C = A ⊙ B            dA = Σ_broadcast dC ⊙ B    dB = Σ_broadcast dC ⊙ A
    static func multiply(_ x: Variable, _ y: Variable) throws -> Variable {
        multiply(x, y, try Broadcast("*", x.shape, y.shape))
    }

    static func multiply(_ x: Variable, _ y: Variable, _ p: Broadcast) -> Variable {
        let (va, vb) = (x.value, y.value)
        let c = Tensor(uninitializedShape: p.shape)
        let forward = { p.apply(va, vb, into: c, *) }
        forward()
        return Variable.result("mul", [x, y], c, saving: [va, vb], forward: forward) { dc, needs in
            InputGradients(needs[0] ? p.reduce(p.grid(dc, va, vb) { g, _, b in g * b }, to: p.a, shape: va.shape) : nil,
                           needs[1] ? p.reduce(p.grid(dc, va, vb) { g, a, _ in g * a }, to: p.b, shape: vb.shape) : nil)
        }
    }

    // C = A ⊘ B            dA = Σ_broadcast dC ⊘ B    dB = −Σ_broadcast dC ⊙ A ⊘ B²
    static func divide(_ x: Variable, _ y: Variable) throws -> Variable {
        divide(x, y, try Broadcast("/", x.shape, y.shape))
    }

    static func divide(_ x: Variable, _ y: Variable, _ p: Broadcast) -> Variable {
        let (va, vb) = (x.value, y.value)
        let c = Tensor(uninitializedShape: p.shape)
        let forward = { p.apply(va, vb, into: c, /) }
        forward()
        return Variable.result("div", [x, y], c, saving: [va, vb], forward: forward) { dc, needs in
            InputGradients(needs[0] ? p.reduce(p.grid(dc, va, vb) { g, _, b in g / b }, to: p.a, shape: va.shape) : nil,
                           needs[1] ? p.reduce(p.grid(dc, va, vb) { g, a, b in -g * a / (b * b) }, to: p.b, shape: vb.shape) : nil)
        }
    }
}

extension Variable {
    /// Sum with broadcasting (see `Arithmetic.swift`); `.shapeMismatch` for shapes that do not fit.
    public static func + (lhs: Variable, rhs: Variable) throws -> Variable { try Arithmetic.add(lhs, rhs) }
    /// Difference with broadcasting.
    public static func - (lhs: Variable, rhs: Variable) throws -> Variable { try Arithmetic.subtract(lhs, rhs) }
    /// Element-wise product with broadcasting.
    public static func * (lhs: Variable, rhs: Variable) throws -> Variable { try Arithmetic.multiply(lhs, rhs) }
    /// Element-wise quotient with broadcasting.
    public static func / (lhs: Variable, rhs: Variable) throws -> Variable { try Arithmetic.divide(lhs, rhs) }

    // A Float on either side is a one-element constant: it broadcasts against any shape, so
    // these cannot fail and do not throw.
    public static func + (lhs: Variable, rhs: Float) -> Variable { Arithmetic.add(lhs, .constant(rhs), .init(shape: lhs.shape, constantOnLeft: false)) }
    public static func + (lhs: Float, rhs: Variable) -> Variable { Arithmetic.add(.constant(lhs), rhs, .init(shape: rhs.shape, constantOnLeft: true)) }
    public static func - (lhs: Variable, rhs: Float) -> Variable { Arithmetic.subtract(lhs, .constant(rhs), .init(shape: lhs.shape, constantOnLeft: false)) }
    public static func - (lhs: Float, rhs: Variable) -> Variable { Arithmetic.subtract(.constant(lhs), rhs, .init(shape: rhs.shape, constantOnLeft: true)) }
    public static func * (lhs: Variable, rhs: Float) -> Variable { Arithmetic.multiply(lhs, .constant(rhs), .init(shape: lhs.shape, constantOnLeft: false)) }
    public static func * (lhs: Float, rhs: Variable) -> Variable { Arithmetic.multiply(.constant(lhs), rhs, .init(shape: rhs.shape, constantOnLeft: true)) }
    public static func / (lhs: Variable, rhs: Float) -> Variable { Arithmetic.divide(lhs, .constant(rhs), .init(shape: lhs.shape, constantOnLeft: false)) }
    public static func / (lhs: Float, rhs: Variable) -> Variable { Arithmetic.divide(.constant(lhs), rhs, .init(shape: rhs.shape, constantOnLeft: true)) }

    // −A                   dA = −dC
    /// Negation (cannot fail).
    public static prefix func - (operand: Variable) -> Variable {
        let v = operand.value
        let out = Tensor(uninitializedShape: v.shape)
        let forward = {
            let src = v.data, dst = out.data
            for k in 0..<out.count { dst[k] = -src[k] }
        }
        forward()
        return Variable.result("neg", [operand], out, forward: forward) { dc, _ in
            let dx = graphTensor(dc.shape)
            for k in 0..<dc.count { dx.data[k] = -dc.data[k] }
            return InputGradients(dx)
        }
    }
}
