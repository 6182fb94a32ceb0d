/// Small explicit-SIMD loops for the data movement around the products: Conv2D's δ copies and
/// bias-gradient sums, the adding-up of per-slice parameter gradients in Conv2D and Dense, and
/// MaxPool2D's 2×2 output stores. (im2col, col2im, and Conv2D's bias fills and bias-adding copies
/// are C kernels: `bp_im2col`, `bp_col2im`, `bp_fill_rows`, `bp_copy_rows_adding` in
/// Sources/BackpropKernels, compiled for AVX-512, AVX2 and baseline x86-64: with 16-byte SSE
/// stores the fill of LeNet's first convolution was 1.7 % of the training step's samples.)
///
/// Why not plain `for` loops: the package builds for baseline x86-64, and LLVM turns a short
/// copy loop into a `memmove` call (a call per 14-float image row costs more than the copy) and
/// does not vectorise float sums (it may not reorder the additions) or loads under a condition.
/// Loads and stores here are unaligned-safe; counts need not be multiples of the vector width.
enum VectorLoops {
    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, toByteOffset: i &* 4, as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func load4(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(fromByteOffset: i &* 4, as: SIMD4<Float>.self)
    }

    @inline(__always)
    static func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, toByteOffset: i &* 4, as: SIMD4<Float>.self)
    }

    /// dst[0..<n] = src[0..<n] (no overlap).
    @inline(__always)
    static func copy(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count n: Int) {
        var t = 0
        while t &+ 8 <= n { store8(load8(src, t), dst, t); t &+= 8 }
        if t &+ 4 <= n { store4(load4(src, t), dst, t); t &+= 4 }
        if t &+ 2 <= n { dst[t] = src[t]; dst[t &+ 1] = src[t &+ 1]; t &+= 2 }
        if t < n { dst[t] = src[t] }
    }

    /// dst[0..<n] += src[0..<n] (no overlap).
    @inline(__always)
    static func add(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        var t = 0
        while t &+ 8 <= n { store8(load8(dst, t) + load8(src, t), dst, t); t &+= 8 }
        if t &+ 4 <= n { store4(load4(dst, t) + load4(src, t), dst, t); t &+= 4 }
        while t < n { dst[t] += src[t]; t &+= 1 }
    }

    /// Σ src[0..<n], in eight interleaved partial sums (not left-to-right order).
    @inline(__always)
    static func sum(_ src: UnsafePointer<Float>, count n: Int) -> Float {
        var a = SIMD8<Float>(repeating: 0), b = SIMD8<Float>(repeating: 0)
        var t = 0
        while t &+ 16 <= n { a += load8(src, t); b += load8(src, t &+ 8); t &+= 16 }
        if t &+ 8 <= n { a += load8(src, t); t &+= 8 }
        var s = (a + b).sum()
        while t < n { s += src[t]; t &+= 1 }
        return s
    }
}
