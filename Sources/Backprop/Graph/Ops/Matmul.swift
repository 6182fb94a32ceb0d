/// Matrix product of two 2-d values, through `gemm` (OpenBLAS sgemm):
///
///     forward   C  = A·B        [M, N] = [M, K]·[K, N]     sgemm NoTrans/NoTrans
///     backward  dA = dC·Bᵀ      [M, K] = [M, N]·[N, K]     sgemm NoTrans/Trans
///               dB = Aᵀ·dC      [K, N] = [K, M]·[M, N]     sgemm Trans/NoTrans
///
/// Throws `.shapeMismatch` naming `matmul` and both shapes unless A is [M, K] and B is [K, N].
public func matmul(_ a: Variable, _ b: Variable) throws -> Variable {
    let (va, vb) = (a.value, b.value)
    guard va.rank == 2, vb.rank == 2, va.shape[1] == vb.shape[0] else {
        throw BackpropError.shapeMismatch(where: "matmul", detail: "cannot multiply \(va.shape) by \(vb.shape) (needs [M, K]·[K, N])")
    }
    let m = va.shape[0], k = va.shape[1], n = vb.shape[1]
    // Explicit sizes: `Matrix(t)` reads a [0, K] tensor as 0×0.
    func matrix(_ t: Tensor, _ r: Int, _ c: Int) -> Matrix { Matrix(t, rows: r, columns: c) }
    let c = Tensor(uncheckedShape: [m, n])
    try gemm(matrix(va, m, k), matrix(vb, k, n), into: matrix(c, m, n), caller: "matmul")
    return Variable.result("matmul", [a, b], c, saving: [va, vb]) { dc, needs in
        var da: Tensor?, db: Tensor?
        if needs[0] {
            let g = Tensor(uncheckedShape: [m, k])
            try gemm(matrix(dc, m, n), matrix(vb, k, n), transposeB: true, into: matrix(g, m, k), caller: "matmul backward")
            da = g
        }
        if needs[1] {
            let g = Tensor(uncheckedShape: [k, n])
            try gemm(matrix(va, m, k), transposeA: true, matrix(dc, m, n), into: matrix(g, k, n), caller: "matmul backward")
            db = g
        }
        return [da, db]
    }
}
