import Foundation

/// Element-wise arithmetic and whole-tensor reductions on `Tensor` (`add`, `scale`, `sum`, `mean`,
/// `standardDeviation`, `sumOfSquares`, `l2Norm`, `minimum`, `maximum`, `allFinite`); below them,
/// the pointer loops that layers, losses, the parameter table and learners share.
///
/// Plain loops over raw pointers: no bounds checks, no allocation. The Swift targets build for
/// baseline x86-64, so the optimiser vectorises the element-wise loops with SSE (4 floats); the
/// AVX-512 and AVX2 code of the engine is OpenBLAS's and the C kernels' (BackpropKernels). It does
/// not vectorise a serial float sum (it may not reorder the additions): `sumOfSquares` and
/// `allFinite` therefore run explicit 8-wide accumulators.
///
/// `sum`, `mean` and `standardDeviation` accumulate in Double, so the statistics of a large tensor
/// do not drift. `sumOfSquares` (and `l2Norm`, gradient clipping, the gradient norms `train`
/// logs) accumulates in Float, in 32 interleaved partial sums: see there.
///
/// Names avoid `min`/`max`: a member called `max()` on Tensor would shadow `Swift.max(_:_:)` in
/// every Tensor extension of the module.
extension Tensor {
    /// self += other (element counts must match).
    public func add(_ other: Tensor) throws {
        try requireCount(other, "Tensor.add")
        elementwiseAdd(data, other.data, into: data, count: count)
    }

    /// self += alpha · other (BLAS's axpy; element counts must match).
    public func add(_ other: Tensor, scaledBy alpha: Float) throws {
        try requireCount(other, "Tensor.add(_:scaledBy:)")
        axpy(alpha, other.data, data, count: count)
    }

    /// self *= factor.
    public func scale(by factor: Float) {
        let p = data
        for i in 0..<count { p[i] *= factor }
    }

    /// Σ of all elements (accumulated in Double).
    public func sum() -> Float {
        let p = data
        var s: Double = 0
        for i in 0..<count { s += Double(p[i]) }
        return Float(s)
    }

    /// Mean of all elements; 0 for an empty tensor.
    public func mean() -> Float {
        count == 0 ? 0 : Float(Double(sum()) / Double(count))
    }

    /// Population standard deviation (divides by the count, like `torch.std(unbiased=False)`);
    /// 0 for an empty tensor.
    public func standardDeviation() -> Float {
        guard count > 0 else { return 0 }
        let p = data
        var s: Double = 0, s2: Double = 0
        for i in 0..<count { let v = Double(p[i]); s += v; s2 += v * v }
        let m = s / Double(count)
        return Float(Swift.max(s2 / Double(count) - m * m, 0).squareRoot())
    }

    /// √(Σ x²), the Euclidean (Frobenius) norm. NaN or ∞ when an element is.
    public func l2Norm() -> Float { sumOfSquares().squareRoot() }

    /// Σ x², with four independent 8-wide accumulators: a serial sum cannot be vectorised (the
    /// compiler may not reorder float additions) and costs ~4 cycles per element; this runs at
    /// memory speed, which matters because training checks every gradient after every batch.
    /// The accumulators are Float, not Double (unlike `sum`): converting every element would
    /// double the work of that per-batch check; 32 partial sums of non-negative terms bound the
    /// relative error by about (n/32)·2⁻²⁴; and `clipGradNorm` scales gradients by the result,
    /// so other bits would change every clipped run (recurrent training clips by default).
    /// NaN or ∞ when an element is (or the sum overflows).
    public func sumOfSquares() -> Float {
        let p = UnsafeRawPointer(data)
        let n = count, stride = MemoryLayout<Float>.stride
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var i = 0
        while i + 32 <= n {
            let v0 = p.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            let v1 = p.loadUnaligned(fromByteOffset: (i + 8) * stride, as: SIMD8<Float>.self)
            let v2 = p.loadUnaligned(fromByteOffset: (i + 16) * stride, as: SIMD8<Float>.self)
            let v3 = p.loadUnaligned(fromByteOffset: (i + 24) * stride, as: SIMD8<Float>.self)
            a0 += v0 * v0; a1 += v1 * v1; a2 += v2 * v2; a3 += v3 * v3
            i += 32
        }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while i < n { let v = data[i]; s += v * v; i += 1 }
        return s
    }

    /// Smallest element; `nil` for an empty tensor. NaNs are ignored unless every element is NaN.
    public func minimum() -> Float? {
        guard count > 0 else { return nil }
        let p = data
        var m = p[0]
        for i in 1..<count where p[i] < m || m.isNaN { m = p[i] }
        return m
    }

    /// Largest element; `nil` for an empty tensor. NaNs are ignored unless every element is NaN.
    public func maximum() -> Float? {
        guard count > 0 else { return nil }
        let p = data
        var m = p[0]
        for i in 1..<count where p[i] > m || m.isNaN { m = p[i] }
        return m
    }

    /// True when no element is NaN or ±∞.
    public var allFinite: Bool {
        // x − x is 0 for finite x and NaN for NaN and ±∞; the sum is NaN if any term is.
        let p = UnsafeRawPointer(data)
        let n = count, stride = MemoryLayout<Float>.stride
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n {
            let v0 = p.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            let v1 = p.loadUnaligned(fromByteOffset: (i + 8) * stride, as: SIMD8<Float>.self)
            a0 += v0 - v0; a1 += v1 - v1
            i += 16
        }
        var acc = (a0 + a1).sum()
        while i < n { acc += data[i] - data[i]; i += 1 }
        return acc == 0
    }

    private func requireCount(_ other: Tensor, _ location: String) throws {
        guard other.count == count else {
            throw BackpropError.shapeMismatch(where: location,
                                              detail: "shapes \(shape) and \(other.shape) hold different element counts")
        }
    }
}

// MARK: - Pointer kernels (internal: layers call these on their cached buffers)

/// out[i] = a[i] + b[i]  (`out` may alias `a` or `b`).
@inline(__always)
func elementwiseAdd(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                    into out: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = a[i] + b[i] }
}

/// out[i] = a[i] · b[i]  (`out` may alias `a` or `b`).
@inline(__always)
func elementwiseMultiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                         into out: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = a[i] * b[i] }
}

/// y[i] += alpha · x[i]  (BLAS's axpy, written as a loop: it is memory-bound either way).
@inline(__always)
func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += alpha * x[i] }
}
