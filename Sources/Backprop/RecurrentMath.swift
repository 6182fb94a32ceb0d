/// Vectorised sigmoid and tanh for the recurrent layers' fused gate loops.
///
/// Sixteen lanes at a time (`SIMD16<Float>`, one AVX-512 register, or four SSE registers on a
/// baseline build). `exp` is Cephes' `expf`: range reduction x = k·ln2 + r with ln2 split in two,
/// a degree-6 polynomial for e^r, and 2^k built from the exponent bits; relative error about
/// 2 ulp over the clamped range [−87, 88]. `tanh` is Cephes' `tanhf`: an odd polynomial for
/// |x| < 0.625 (so tanh(x) ≈ x keeps its relative accuracy near 0) and (1 − e^{−2|x|}) / (1 + e^{−2|x|})
/// beyond. `sigmoid(x) = 1 / (1 + e^{−x})`.
///
/// Rows whose length is not a multiple of 16 load their tail zero-padded (`load16`) and store
/// only the valid lanes (`store16`), so every element goes through the same arithmetic.
typealias Float16x = SIMD16<Float>

@inline(__always)
func vexp(_ x: Float16x) -> Float16x {
    var x = x.clamped(lowerBound: Float16x(repeating: -87), upperBound: Float16x(repeating: 88))
    let k = (x * 1.442_695_04 + 0.5).rounded(.down)
    x = x - k * 0.693_359_375
    x = x + k * 2.121_944_40e-4
    let z = x * x
    var y = Float16x(repeating: 1.987_569_150_0e-4)
    y = y * x + 1.398_199_950_7e-3
    y = y * x + 8.333_451_907_3e-3
    y = y * x + 4.166_579_589_4e-2
    y = y * x + 1.666_666_545_9e-1
    y = y * x + 5.000_000_120_1e-1
    y = y * z + x + 1
    let bits = (SIMD16<Int32>(k, rounding: .towardZero) &+ 127) &<< 23
    return y * unsafeBitCast(bits, to: Float16x.self)
}

@inline(__always)
func vsigmoid(_ x: Float16x) -> Float16x { 1 / (1 + vexp(-x)) }

@inline(__always)
func vtanh(_ x: Float16x) -> Float16x {
    let negative = x .< 0
    let ax = x.replacing(with: -x, where: negative)
    let e = vexp(-2 * ax)
    var large = (1 - e) / (1 + e)
    large.replace(with: -large, where: negative)
    let s = x * x
    var p = Float16x(repeating: -5.704_988_727_45e-3)
    p = p * s + 2.063_908_879_54e-2
    p = p * s - 5.373_971_555_31e-2
    p = p * s + 1.333_144_220_36e-1
    p = p * s - 3.333_328_194_22e-1
    let small = p * s * x + x
    return large.replacing(with: small, where: ax .< 0.625)
}

/// Loads `count` floats (all 16 when `count >= 16`), zero-filling the missing lanes.
@inline(__always)
func load16(_ p: UnsafePointer<Float>, _ count: Int) -> Float16x {
    if count >= 16 { return UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }
    var v = Float16x()
    for i in 0..<count { v[i] = p[i] }
    return v
}

@inline(__always)
func load16(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> Float16x { load16(UnsafePointer(p), count) }

/// Stores the first `count` lanes (all 16 when `count >= 16`).
@inline(__always)
func store16(_ v: Float16x, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    if count >= 16 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self); return }
    for i in 0..<count { p[i] = v[i] }
}

/// Scalar forms (same algorithm, lane 0), for tests and small callers.
func vectorSigmoid(_ x: Float) -> Float { vsigmoid(Float16x(repeating: x))[0] }
func vectorTanh(_ x: Float) -> Float { vtanh(Float16x(repeating: x))[0] }
