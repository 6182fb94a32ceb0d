/// Matrix products through `gemm` (OpenBLAS sgemm), as `torch.matmul` for the ranks below.
///
/// Two 2-d values:
///
///     forward   C  = A·B        [M, N] = [M, K]·[K, N]     sgemm NoTrans/NoTrans
///     backward  dA = dC·Bᵀ      [M, K] = [M, N]·[N, K]     sgemm NoTrans/Trans
///               dB = Aᵀ·dC      [K, N] = [K, M]·[M, N]     sgemm Trans/NoTrans
///
/// A batch of matrices times one matrix, `[B, T, K]·[K, N] → [B, T, N]`: the same three products
/// with A read as one `[B·T, K]` matrix (dB sums over the batch inside its one sgemm).
///
/// A batch times a batch, `[B, T, K]·[B, K, N] → [B, T, N]`: the three products per batch element
/// b, on the sub-matrices A_b, B_b, C_b (one sgemm each).
///
/// Throws `.shapeMismatch` naming `matmul` and both shapes for any other pair of shapes.
public func matmul(_ a: Variable, _ b: Variable) throws -> Variable {
    let (va, vb) = (a.value, b.value)
    switch (va.rank, vb.rank) {
    case (2, 2) where va.shape[1] == vb.shape[0]:
        return try matmulShared(a, b, rows: va.shape[0], shape: [va.shape[0], vb.shape[1]])
    case (3, 2) where va.shape[2] == vb.shape[0]:
        return try matmulShared(a, b, rows: va.shape[0] * va.shape[1], shape: [va.shape[0], va.shape[1], vb.shape[1]])
    case (3, 3) where va.shape[0] == vb.shape[0] && va.shape[2] == vb.shape[1]:
        return try matmulBatched(a, b)
    default:
        throw BackpropError.shapeMismatch(
            where: "matmul",
            detail: "cannot multiply \(va.shape) by \(vb.shape) (needs [M, K]·[K, N], [B, T, K]·[K, N] or [B, T, K]·[B, K, N])")
    }
}

/// Explicit sizes: `Matrix(t)` reads a [0, K] tensor as 0×0.
@inline(__always)
private func matrix(_ t: Tensor, _ r: Int, _ c: Int, offset: Int = 0) -> Matrix {
    Matrix(t, offset: offset, rows: r, columns: c)
}

// C = A·B   with A [m, k] (a 2-d value, or [B, T, k] read as m = B·T rows) and B [k, n]
// dA = dC·Bᵀ      dB = Aᵀ·dC
private func matmulShared(_ a: Variable, _ b: Variable, rows m: Int, shape: [Int]) throws -> Variable {
    let (va, vb) = (a.value, b.value)
    let k = vb.shape[0], n = vb.shape[1]
    let c = Tensor(uninitializedShape: shape)
    let forward = { try gemm(matrix(va, m, k), matrix(vb, k, n), into: matrix(c, m, n), caller: "matmul") }
    try forward()
    let shapeA = va.shape, shapeB = vb.shape
    return Variable.result("matmul", [a, b], c, saving: [va, vb], forward: forward) { dc, needs in
        var da: Tensor?, db: Tensor?
        if needs[0] {
            let g = graphTensor(shapeA)
            try gemm(matrix(dc, m, n), matrix(vb, k, n), transposeB: true, into: matrix(g, m, k), caller: "matmul backward")
            da = g
        }
        if needs[1] {
            let g = graphTensor(shapeB)
            try gemm(matrix(va, m, k), transposeA: true, matrix(dc, m, n), into: matrix(g, k, n), caller: "matmul backward")
            db = g
        }
        return InputGradients(da, db)
    }
}

// C_b = A_b·B_b                 [T, N] = [T, K]·[K, N]      for each b of the batch
// dA_b = dC_b·B_bᵀ              dB_b = A_bᵀ·dC_b
private func matmulBatched(_ a: Variable, _ b: Variable) throws -> Variable {
    let (va, vb) = (a.value, b.value)
    let batch = va.shape[0], t = va.shape[1], k = va.shape[2], n = vb.shape[2]
    let c = Tensor(uninitializedShape: [batch, t, n])
    let forward = {
        for i in 0..<batch {
            try gemm(matrix(va, t, k, offset: i * t * k), matrix(vb, k, n, offset: i * k * n),
                     into: matrix(c, t, n, offset: i * t * n), caller: "matmul")
        }
    }
    try forward()
    let shapeA = va.shape, shapeB = vb.shape
    return Variable.result("matmul", [a, b], c, saving: [va, vb], forward: forward) { dc, needs in
        var da: Tensor?, db: Tensor?
        if needs[0] {
            let g = graphTensor(shapeA)
            for i in 0..<batch {
                try gemm(matrix(dc, t, n, offset: i * t * n), matrix(vb, k, n, offset: i * k * n), transposeB: true,
                         into: matrix(g, t, k, offset: i * t * k), caller: "matmul backward")
            }
            da = g
        }
        if needs[1] {
            let g = graphTensor(shapeB)
            for i in 0..<batch {
                try gemm(matrix(va, t, k, offset: i * t * k), transposeA: true, matrix(dc, t, n, offset: i * t * n),
                         into: matrix(g, k, n, offset: i * k * n), caller: "matmul backward")
            }
            db = g
        }
        return InputGradients(da, db)
    }
}
