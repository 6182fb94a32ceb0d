/// OpenBLAS's small-matrix limits: what decides whether one `cblas_sgemm` call runs its unpacked
/// small-matrix kernels or its packed path. On AVX-512 cores (`SkylakeX` and the cores that share
/// its kernels) OpenBLAS 0.3.21 runs a product without packing either operand when it has at most
/// `limit` multiply-adds (and, for the column-major "TN" form, at most 1200 outputs with
/// 32 or more terms each). Per-image convolution products and per-step recurrent products are a
/// little larger than that, so the layers cut them into blocks that fit (`blockWidth`): the math
/// is unchanged, only the calls are smaller. On cores without those kernels
/// (`BLAS.hasSmallMatrixKernels` false: `Haswell`, `Zen`) `Conv2D` issues one product instead,
/// which measured faster there; the recurrent blocks cost nothing measurable there (LSTM
/// backward, OpenBLAS `Zen` kernels on the Xeon: 0.98× of one product) and are kept.
public enum SmallProducts {
    /// The most multiply-adds a product may have to take the small-matrix kernels.
    public static let limit = 1_000_000
    /// Column multiple of OpenBLAS's small "NN" kernel on AVX-512 (`sgemm_small_kernel_nn`,
    /// OpenBLAS 0.3.21): a row-major `[m, k]·[k, n]` product without transposes takes the
    /// output's columns in runs of 64, 32 and 16, then a masked run of 9–15; a last run of 1–8
    /// columns with `k ≥ 32` goes through a dot-product tail that mallocs (and frees) a copy of
    /// those columns on every call (`productAllocates`).
    public static let kernelColumns = 16
    /// A product that would need more blocks than this stays one packed product.
    public static let maximumBlocks = 16

    /// Whether an untransposed `[m, k]·[k, n]` product makes OpenBLAS malloc on every call: within
    /// `limit`, `k ≥ 32` and `n mod 16` in 1…8. Measured over 281 600 calls (`m`, `k`, `n` up to
    /// 400, 784, 320, both β); products with a transposed operand or above the limit never did.
    public static func productAllocates(_ m: Int, _ k: Int, _ n: Int) -> Bool {
        let tail = n % kernelColumns
        return m * k * n <= limit && k >= 32 && tail >= 1 && tail <= 8
    }

    /// The width of the equal blocks (the last one narrower) that one dimension of `total` is cut
    /// into so that each block's product, `perUnit` multiply-adds per unit of that dimension, fits
    /// `limit`: a multiple of `kernelColumns`, or `total` itself when the whole product fits, when
    /// even `kernelColumns` units do not, when it would take more than `maximumBlocks` blocks, or
    /// when a block of that width would make OpenBLAS malloc (`allocates(width)`, for the caller
    /// to ask `productAllocates` with its own operands).
    ///
    /// An LSTM's δh_{t−1} = δG_t·W_hh on batch slices of 64 (`[64, 512]·[512, 128]`, 4.2 M
    /// multiply-adds) becomes 5 products over 112, 112, 112, 112 and 64 of the 512 gate columns.
    public static func blockWidth(total: Int, perUnit: Int, unless allocates: (Int) -> Bool = { _ in false }) -> Int {
        let total = Swift.max(total, 1)
        let fit = limit / Swift.max(perUnit, 1) / kernelColumns * kernelColumns
        guard fit >= kernelColumns, fit < total else { return total }
        let blocks = (total + fit - 1) / fit
        guard blocks <= maximumBlocks else { return total }
        let even = ((total + blocks - 1) / blocks + kernelColumns - 1) / kernelColumns * kernelColumns
        let width = Swift.min(even, fit)
        return allocates(width) ? total : width
    }
}
