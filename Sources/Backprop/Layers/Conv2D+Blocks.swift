/// Block sizes for Conv2D's products: where OpenBLAS's small-matrix kernels pay, a product is cut
/// into blocks that fit them (the math is unchanged; only the calls are smaller).
extension Conv2D {
    /// Products within OpenBLAS's small-matrix limits run its unpacked small-matrix kernels on
    /// AVX-512 cores (`sgemm_small_kernel_*`: at most 10⁶ multiply-adds, and for dW, whose
    /// column-major form is "TN", at most 1200 outputs and 32 or more terms per output). The
    /// per-image products of LeNet's second convolution are a little larger, so they are cut into
    /// blocks that fit: forward and dcols into 3 column blocks of ≤ 66 positions, dW into 11 row
    /// blocks of ≤ 37 rows. Measured on LeNet training: 7 % less CPU time for the column blocks,
    /// about 4 % less wall time for the dW blocks. Larger layers, which would need many thin
    /// blocks, keep one packed product (`maximumBlocks`).
    static let productLimit = 1_000_000
    static let smallTNOutputs = 1200
    static let maximumBlocks = 16

    /// The column-block width for an `[m, k]·[k, n]` product (forward, dcols): all `n` columns
    /// when the product is within `productLimit` or would need more than 4 blocks.
    static func columnBlock(_ m: Int, _ k: Int, _ n: Int) -> Int {
        let mnk = m * k * n
        if mnk <= productLimit { return Swift.max(n, 1) }
        let blocks = (mnk + productLimit - 1) / productLimit
        if blocks > 4 { return Swift.max(n, 1) }
        return Swift.max(1, (n + blocks - 1) / blocks)
    }

    /// The row-block height for dW `[out, k] += dY·colsᵀ` with `terms` columns summed: rows of
    /// dW per product so that each fits OpenBLAS's small "TN" kernel, or all `k` rows.
    static func weightGradientBlock(out: Int, k: Int, terms: Int) -> Int {
        let rows = smallTNOutputs / Swift.max(out, 1)
        guard rows >= 1, rows < k, terms >= 32, rows * out * terms <= productLimit,
              (k + rows - 1) / rows <= maximumBlocks else { return Swift.max(k, 1) }
        return rows
    }
}
