/// Matrix products without BLAS, kept only to measure what BLAS buys (`backprop bench`,
/// `Benchmarks/`). No layer uses them: every product of the engine goes through `gemm`.
///
/// Both compute C = op(A)·op(B) for row-major matrices, with the same transpose flags as `gemm`.
public enum NaiveGEMM {
    /// The textbook triple loop: c[i][j] = Σ_p a[i][p]·b[p][j].
    public static func tripleLoop(_ a: Matrix, transposeA: Bool = false, _ b: Matrix, transposeB: Bool = false,
                                  into c: Matrix) {
        let m = c.rows, n = c.columns, k = transposeA ? a.rows : a.columns
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k {
                    let av = transposeA ? a.base[p * a.stride + i] : a.base[i * a.stride + p]
                    let bv = transposeB ? b.base[j * b.stride + p] : b.base[p * b.stride + j]
                    s += av * bv
                }
                c.base[i * c.stride + j] = s
            }
        }
    }

    /// A cache-blocked loop (64×64×64 tiles, i-p-j order so the innermost loop streams rows and
    /// vectorises). Operands that arrive transposed are first copied into row-major order.
    public static func blocked(_ a: Matrix, transposeA: Bool = false, _ b: Matrix, transposeB: Bool = false,
                               into c: Matrix, tile: Int = 64) {
        let m = c.rows, n = c.columns, k = transposeA ? a.rows : a.columns
        let aRow = UnsafeMutablePointer<Float>.allocate(capacity: max(1, m * k))
        let bRow = UnsafeMutablePointer<Float>.allocate(capacity: max(1, k * n))
        defer { aRow.deallocate(); bRow.deallocate() }
        for i in 0..<m { for p in 0..<k { aRow[i * k + p] = transposeA ? a.base[p * a.stride + i] : a.base[i * a.stride + p] } }
        for p in 0..<k { for j in 0..<n { bRow[p * n + j] = transposeB ? b.base[j * b.stride + p] : b.base[p * b.stride + j] } }
        for i in 0..<m { (c.base + i * c.stride).update(repeating: 0, count: n) }
        var i0 = 0
        while i0 < m {
            let i1 = min(i0 + tile, m)
            var p0 = 0
            while p0 < k {
                let p1 = min(p0 + tile, k)
                var j0 = 0
                while j0 < n {
                    let j1 = min(j0 + tile, n)
                    for i in i0..<i1 {
                        let crow = c.base + i * c.stride
                        for p in p0..<p1 {
                            let av = aRow[i * k + p]
                            let brow = bRow + p * n
                            for j in j0..<j1 { crow[j] += av * brow[j] }
                        }
                    }
                    j0 = j1
                }
                p0 = p1
            }
            i0 = i1
        }
    }
}
