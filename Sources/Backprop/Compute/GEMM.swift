import CBLAS

/// A row-major matrix inside some Float storage: `rows × columns` elements, row `i` starting
/// at `base + i * stride`. Layers use it to hand sub-blocks (one time step, one image) to `gemm`.
///
/// A matrix made from a tensor remembers the tensor's elements, and `gemm` checks that every
/// row it will touch lies inside them (a shape error naming the caller otherwise), so a wrong
/// offset, size or stride can never read or write past a tensor. A matrix made from a bare
/// pointer (`init(unsafeBase:…)`) can only be checked for consistent shapes.
public struct Matrix {
    public var base: UnsafeMutablePointer<Float>
    public var rows: Int
    public var columns: Int
    /// Distance between row starts, in elements (`>= columns`).
    public var stride: Int
    /// The elements of the tensor this matrix lies in (nil for a bare pointer).
    let bounds: (start: UnsafeMutablePointer<Float>, count: Int)?

    /// A matrix over memory the caller vouches for: `gemm` cannot check its extent.
    public init(unsafeBase base: UnsafeMutablePointer<Float>, rows: Int, columns: Int, stride: Int? = nil) {
        self.base = base
        self.rows = rows
        self.columns = columns
        self.stride = stride ?? columns
        self.bounds = nil
    }

    /// The tensor as a matrix: first dimension as rows, all others flattened into columns.
    public init(_ t: Tensor) {
        self.init(t, offset: 0, rows: t.rows, columns: t.columnsPerRow)
    }

    /// A `rows × columns` block of `t` whose first element is `t`'s element `offset` and whose rows
    /// start `stride` elements apart (default `columns`). `gemm` checks that it lies inside `t`.
    public init(_ t: Tensor, offset: Int = 0, rows: Int, columns: Int, stride: Int? = nil) {
        self.base = t.data + offset
        self.rows = rows
        self.columns = columns
        self.stride = stride ?? columns
        self.bounds = (t.data, t.count)
    }

    /// The same block `offset` elements further on (a column or row offset inside its tensor).
    public func advanced(by offset: Int, rows: Int? = nil, columns: Int? = nil) -> Matrix {
        var m = self
        m.base += offset
        m.rows = rows ?? self.rows
        m.columns = columns ?? self.columns
        return m
    }

    /// Whether every element the matrix covers lies inside its tensor (always true for a bare pointer).
    var liesInsideItsTensor: Bool {
        guard let (start, count) = bounds, rows > 0, columns > 0 else { return true }
        let first = base - start
        let last = first + (rows - 1) * stride + columns   // one past the last element touched
        return first >= 0 && last <= count
    }

    var extentDescription: String {
        guard let (start, count) = bounds else { return "[\(rows)×\(columns)]" }
        return "[\(rows)×\(columns)] (stride \(stride)) at element \(base - start) of a tensor of \(count)"
    }
}

/// C = alpha · op(A) · op(B) + beta · C, with op = transpose when the flag is set.
///
/// The one matrix product of the engine: every layer's forward and backward products go
/// through it, and it goes through OpenBLAS `cblas_sgemm`. Shapes are checked; a mismatch
/// throws and names `caller` and the three shapes.
public func gemm(_ a: Matrix, transposeA: Bool = false,
                 _ b: Matrix, transposeB: Bool = false,
                 into c: Matrix, alpha: Float = 1, beta: Float = 0,
                 caller: @autoclosure () -> String = "gemm") throws {
    let m = transposeA ? a.columns : a.rows
    let k = transposeA ? a.rows : a.columns
    let kb = transposeB ? b.columns : b.rows
    let n = transposeB ? b.rows : b.columns
    guard k == kb, c.rows == m, c.columns == n,
          a.stride >= max(1, a.columns), b.stride >= max(1, b.columns), c.stride >= max(1, c.columns) else {
        throw BackpropError.shapeMismatch(
            where: caller(),
            detail: "cannot multiply \(transposeA ? "[\(a.rows)×\(a.columns)]ᵀ" : "[\(a.rows)×\(a.columns)]")"
                + " · \(transposeB ? "[\(b.rows)×\(b.columns)]ᵀ" : "[\(b.rows)×\(b.columns)]") into [\(c.rows)×\(c.columns)]")
    }
    guard a.liesInsideItsTensor, b.liesInsideItsTensor, c.liesInsideItsTensor else {
        throw BackpropError.shapeMismatch(
            where: caller(),
            detail: "an operand lies outside its tensor: A \(a.extentDescription), B \(b.extentDescription), C \(c.extentDescription)")
    }
    if m == 0 || n == 0 { return }
    BLAS.ensureReady()
    if k == 0 {  // the product is empty: C = beta · C
        for i in 0..<m {
            let row = c.base + i * c.stride
            for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
        }
        return
    }
    if let recorder = gemmRecorder {
        recorder.record(ProductCall(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                                    lda: a.stride, ldb: b.stride, ldc: c.stride, beta: beta))
    }
    cblas_sgemm(CblasRowMajor,
                transposeA ? CblasTrans : CblasNoTrans,
                transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha,
                a.base, Int32(a.stride), b.base, Int32(b.stride),
                beta, c.base, Int32(c.stride))
}

/// Tensor form of `gemm`: each tensor is read as a matrix (first dimension rows, the rest
/// columns), so a `[N, 784]` batch and a `[256, 784]` weight multiply as expected.
public func gemm(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                 into c: Tensor, alpha: Float = 1, beta: Float = 0,
                 caller: @autoclosure () -> String = "gemm") throws {
    try gemm(Matrix(a), transposeA: transposeA, Matrix(b), transposeB: transposeB,
             into: Matrix(c), alpha: alpha, beta: beta, caller: caller())
}

/// B = Aᵀ (`b` is `a.columns × a.rows`), through OpenBLAS `cblas_somatcopy`. For layers that keep
/// a transposed copy of a weight because sgemm runs faster on that layout.
public func transpose(_ a: Matrix, into b: Matrix, caller: @autoclosure () -> String = "transpose") throws {
    guard b.rows == a.columns, b.columns == a.rows,
          a.stride >= max(1, a.columns), b.stride >= max(1, b.columns),
          a.liesInsideItsTensor, b.liesInsideItsTensor else {
        throw BackpropError.shapeMismatch(
            where: caller(), detail: "cannot transpose [\(a.rows)×\(a.columns)] into [\(b.rows)×\(b.columns)]")
    }
    if a.rows == 0 || a.columns == 0 { return }
    BLAS.ensureReady()
    cblas_somatcopy(CblasRowMajor, CblasTrans, Int32(a.rows), Int32(a.columns), 1,
                    a.base, Int32(a.stride), b.base, Int32(b.stride))
}
