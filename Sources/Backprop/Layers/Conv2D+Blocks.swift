/// Block sizes for Conv2D's products: where OpenBLAS's small-matrix kernels pay
/// (`SmallProducts`), a product is cut into blocks that fit them (the math is unchanged; only the
/// calls are smaller). The per-image products of LeNet's second convolution are a little larger
/// than `SmallProducts.limit`, so they are cut into blocks that fit: forward into 3 blocks of the
/// terms (`forwardColumns`), dcols into 3 column blocks of ≤ 66, and dW is computed transposed in
/// 3 row blocks (`weightGradientTransposed`). Measured on LeNet training: 7 % less CPU time for
/// the column blocks. Larger layers, which would need many thin blocks, keep one packed product
/// (`SmallProducts.maximumBlocks`). On OpenBLAS cores without the small kernels (`Haswell`,
/// `Zen`: `BLAS.hasSmallMatrixKernels` false) the forward, dcols and dWᵀ run as one product each,
/// which measured faster there (the caller passes its plan's `smallMatrixKernels`, so a pass never
/// mixes the two); dW stays transposed (under `Zen` one transposed product took
/// 84–104 µs, 3 row blocks 86–109 µs, the untransposed "NT" product 91–107 µs).
extension Conv2D {
    /// The forward product `Y = W·cols`, `[m, k]·[k, n]`: the row stride of the columns and of
    /// the product's output (`stride ≥ n`), and the terms (rows of cols, columns of W) per product.
    ///
    /// Within `SmallProducts.limit` one product of all `n` columns (`stride` n); when `n` would leave
    /// OpenBLAS's mallocing tail, the columns are padded to the next multiple of 16. Above the
    /// limit the columns are padded to a multiple of 16 (rows of a multiple of 16 floats also
    /// start on 64-byte boundaries) and the k terms are cut into equal blocks that fit the small
    /// kernels (`SmallProducts.blockWidth`), each product over all columns, β = 1 after the first
    /// (LeNet's conv2: 196 → 208 columns, terms 144, 144, 112: 39 µs per image stand-alone
    /// against 48.5 µs for the earlier 4 column blocks; the wider conv2, 64 × 800: 13 blocks of
    /// 64, 145 µs against 155 µs as one packed product). A product that cannot be cut that way
    /// stays one packed product of `n` columns. Padding columns are never written by im2col;
    /// their outputs are computed and discarded (each output column depends only on its own
    /// input column).
    static func forwardColumns(_ m: Int, _ k: Int, _ n: Int, smallKernels: Bool) -> (stride: Int, terms: Int) {
        let n = Swift.max(n, 1), k = Swift.max(k, 1), c = SmallProducts.kernelColumns
        // Without the small kernels (OpenBLAS `Haswell`, `Zen`) every product is packed: one product of the
        // unpadded columns (LeNet's conv2 under `Zen`, 1 thread: 78 µs against 82 µs in blocks of terms).
        guard smallKernels else { return (n, k) }
        let padded = (n + c - 1) / c * c
        if m * k * n <= SmallProducts.limit {
            return SmallProducts.productAllocates(m, k, n) ? (padded, k) : (n, k)
        }
        let terms = SmallProducts.blockWidth(total: k, perUnit: Swift.max(m, 1) * padded) {
            SmallProducts.productAllocates(m, $0, padded)
        }
        return terms < k ? (padded, terms) : (n, k)
    }

    /// The column-block width for the `[k, out]·[out, n]` product dcols = Wᵀ·dY: all `n` columns
    /// when the product is within `SmallProducts.limit` or would need more than 4 blocks. (Its "TN"
    /// row-major form runs OpenBLAS's "NT" small kernel, which does not malloc.)
    static func columnBlock(_ m: Int, _ k: Int, _ n: Int, smallKernels: Bool) -> Int {
        // Packed products only (no small kernels): one product (LeNet's conv2 under `Zen`: 81 µs against 86 µs).
        guard smallKernels else { return Swift.max(n, 1) }
        let mnk = m * k * n
        if mnk <= SmallProducts.limit { return Swift.max(n, 1) }
        let blocks = (mnk + SmallProducts.limit - 1) / SmallProducts.limit
        if blocks > 4 { return Swift.max(n, 1) }
        return Swift.max(1, (n + blocks - 1) / blocks)
    }

    /// Whether dW is computed transposed: dWᵀ `[k, out]` += cols·dYᵀ, `[k, terms]·[terms, out]`, in
    /// row blocks of `weightGradientRows` (each one product that fits OpenBLAS's small "NN" kernel),
    /// with dY transposed first and dWᵀ added into dW once per call — when the product
    /// `[out, terms]·[terms, k]` is above `SmallProducts.limit`. Then it ran as 11 row blocks of the
    /// small "TN" kernel (LeNet's conv2, 32 × 400 × 196 per image); the transposed form takes
    /// 30 µs against 54 µs stand-alone (1 thread, Xeon; 2.7 µs more for transposing dY), and the
    /// wider layer's (64 × 800 × 196) 121 µs against 170 µs. A product within the limit stays one
    /// "TN" product (LeNet's conv1: 5.4 µs, against 6.7 + 2.0 µs transposed).
    static func weightGradientTransposed(out: Int, k: Int, terms: Int) -> Bool {
        out * k * terms > SmallProducts.limit
    }

    /// The rows of dWᵀ per product of the transposed weight gradient (`weightGradientTransposed`):
    /// equal blocks that fit the small kernels (`SmallProducts.blockWidth`; LeNet's conv2: 144,
    /// 144, 112), or all `k` rows when they cannot or a block would make OpenBLAS malloc.
    static func weightGradientRows(out: Int, k: Int, terms: Int, smallKernels: Bool) -> Int {
        // Packed products only: all rows in one product (LeNet's conv2 under `Zen`: 84–104 µs against 86–109 µs in 3 blocks).
        guard smallKernels else { return Swift.max(k, 1) }
        return SmallProducts.blockWidth(total: k, perUnit: terms * out) { SmallProducts.productAllocates($0, terms, out) }
    }
}
