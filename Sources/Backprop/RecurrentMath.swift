/// Sigmoid and tanh for the recurrent layers' fused gate loops, written so the loops vectorise.
///
/// Each function is straight-line arithmetic (no libm call, no branch, no trapping conversion), so
/// a pointer loop `for j in 0..<h { a[j] = fastSigmoid(a[j]) }` is turned into SIMD code by
/// LLVM's loop vectoriser in release builds, and stays cheap in debug builds (where Swift's SIMD
/// types cost about a microsecond per operation).
///
/// `fastExp` is Cephes' `expf`: x = k·ln2 + r with ln2 split in two, a degree-6 polynomial for
/// e^r, and 2^k assembled in the exponent bits. k = round(x·log2 e) comes from the 1.5·2²³
/// trick: adding 12582912 rounds to an integer that sits in the low mantissa bits.
/// Relative error ≈ 2 ulp on the clamped range [−87, 88].
/// `fastTanh` is Cephes' `tanhf`: an odd polynomial for |x| < 0.625 (relative accuracy near 0)
/// and (1 − e^{−2|x|}) / (1 + e^{−2|x|}) beyond. `fastSigmoid(x) = 1 / (1 + e^{−x})`.
@inline(__always)
func fastExp(_ x: Float) -> Float {
    let clamped = x < -87 ? -87 : (x > 88 ? 88 : x)
    let shifted = clamped * 1.442_695_04 + 12_582_912     // 1.5·2²³ + round(x·log2 e)
    let k = shifted - 12_582_912
    var r = clamped - k * 0.693_359_375
    r = r + k * 2.121_944_40e-4
    let z = r * r
    var y: Float = 1.987_569_150_0e-4
    y = y * r + 1.398_199_950_7e-3
    y = y * r + 8.333_451_907_3e-3
    y = y * r + 4.166_579_589_4e-2
    y = y * r + 1.666_666_545_9e-1
    y = y * r + 5.000_000_120_1e-1
    y = y * z + r + 1
    // 2^k: exponent field k + 127, with k read from the mantissa bits of `shifted`.
    let bits = (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23
    return y * Float(bitPattern: bits)
}

@inline(__always)
func fastSigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

@inline(__always)
func fastTanh(_ x: Float) -> Float {
    let ax = x.magnitude
    let e = fastExp(-2 * ax)
    let large = Float(signOf: x, magnitudeOf: (1 - e) / (1 + e))
    let s = x * x
    var p: Float = -5.704_988_727_45e-3
    p = p * s + 2.063_908_879_54e-2
    p = p * s - 5.373_971_555_31e-2
    p = p * s + 1.333_144_220_36e-1
    p = p * s - 3.333_328_194_22e-1
    let small = p * s * x + x
    return ax < 0.625 ? small : large
}

// MARK: - Eight lanes at a time

/// The gate kernels' vector type. The package is compiled for baseline x86-64 (SSE2), so LLVM
/// lowers each `SIMD8<Float>` operation to two 4-lane instructions: explicit vectors are what
/// make the kernels vectorise, since loops calling the scalar functions above stayed scalar.
typealias FloatVector = SIMD8<Float>
typealias FloatVectorBits = SIMD8<UInt32>

extension UnsafeMutablePointer where Pointee == Float {
    /// Eight floats starting at `self + offset` (no alignment needed).
    @inline(__always)
    func vector(at offset: Int) -> FloatVector {
        UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
    }

    /// Stores eight floats at `self + offset`.
    @inline(__always)
    func store(_ v: FloatVector, at offset: Int) {
        UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: FloatVector.self)
    }
}

extension UnsafePointer where Pointee == Float {
    @inline(__always)
    func vector(at offset: Int) -> FloatVector {
        UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
    }
}

/// `fastExp` on eight lanes: the same Cephes polynomial and exponent trick, the same results.
/// Clamping uses compare-and-replace (`pointwiseMin`/`Max` are not inlined). NaN stays NaN.
@inline(__always)
func fastExp(_ x: FloatVector) -> FloatVector {
    var clamped = x.replacing(with: -87, where: x .< -87)
    clamped.replace(with: 88, where: clamped .> 88)
    let shifted = clamped * 1.442_695_04 + 12_582_912
    let k = shifted - 12_582_912
    var r = clamped - k * 0.693_359_375
    r = r + k * 2.121_944_40e-4
    let z = r * r
    var y = FloatVector(repeating: 1.987_569_150_0e-4)
    y = y * r + 1.398_199_950_7e-3
    y = y * r + 8.333_451_907_3e-3
    y = y * r + 4.166_579_589_4e-2
    y = y * r + 1.666_666_545_9e-1
    y = y * r + 5.000_000_120_1e-1
    y = y * z + r + 1
    let bits = (unsafeBitCast(shifted, to: FloatVectorBits.self) &- 0x4B40_0000 &+ 127) &<< 23
    return y * unsafeBitCast(bits, to: FloatVector.self)
}

@inline(__always)
func fastSigmoid(_ x: FloatVector) -> FloatVector { 1 / (1 + fastExp(-x)) }

/// `fastTanh` on eight lanes (same formulas; the sign is copied with bit operations).
/// `@_transparent`: with `@inline(__always)` alone the optimizer kept it out of line (a call per
/// vector in the LSTM kernel), which stops the two tanh chains from interleaving.
@_transparent
func fastTanh(_ x: FloatVector) -> FloatVector {
    let xBits = unsafeBitCast(x, to: FloatVectorBits.self)
    let sign = xBits & 0x8000_0000
    let ax = unsafeBitCast(xBits & 0x7FFF_FFFF, to: FloatVector.self)
    let e = fastExp(-2 * ax)
    let magnitude = (1 - e) / (1 + e)
    let large = unsafeBitCast(unsafeBitCast(magnitude, to: FloatVectorBits.self) | sign, to: FloatVector.self)
    let s = x * x
    var p = FloatVector(repeating: -5.704_988_727_45e-3)
    p = p * s + 2.063_908_879_54e-2
    p = p * s - 5.373_971_555_31e-2
    p = p * s + 1.333_144_220_36e-1
    p = p * s - 3.333_328_194_22e-1
    let small = p * s * x + x
    return large.replacing(with: small, where: ax .< 0.625)
}
