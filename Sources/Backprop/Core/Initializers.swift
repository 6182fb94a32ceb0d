import CBLAS
import Foundation

/// Weight initialisers, named and defined as in `torch.nn.init`.
///
/// Fan-in and fan-out follow PyTorch: for a weight of shape `[out, in, k…]`,
/// fan_in = in · Πk and fan_out = out · Πk.
public enum Initializer: Sendable, Equatable {
    /// `nn.Linear`'s / `nn.Conv2d`'s default: kaiming_uniform(a = √5), i.e. U(−1/√fan_in, 1/√fan_in).
    case pytorchDefault
    /// Glorot: U(−g·√(6/(fan_in+fan_out)), +…).
    case xavierUniform(gain: Float = 1)
    /// Glorot: N(0, g²·2/(fan_in+fan_out)).
    case xavierNormal(gain: Float = 1)
    /// He: U(−b, b), b = gain·√(3/fan_in), gain = √2 for ReLU.
    case kaimingUniform(gain: Float = 1.4142135)
    /// He: N(0, gain²/fan_in).
    case kaimingNormal(gain: Float = 1.4142135)
    /// A (semi-)orthogonal matrix from the QR decomposition of a Gaussian matrix, times `gain`
    /// (computed with LAPACKE `sgeqrf` / `sorgqr`).
    case orthogonal(gain: Float = 1)
    case zeros
    case constant(Float)

    /// PyTorch's fan-in and fan-out of a weight shape.
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        guard shape.count >= 2 else { return (shape.first ?? 1, shape.first ?? 1) }
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// Fills `tensor` (a weight of PyTorch layout) in place.
    public func fill(_ tensor: Tensor, using rng: inout SeededGenerator) throws {
        let (fanIn, fanOut) = Initializer.fans(tensor.shape)
        func positive(_ n: Int, _ what: String) throws -> Float {
            guard n > 0 else {
                throw BackpropError.invalidArgument("\(self) needs a non-zero \(what) but the weight has shape \(tensor.shape)")
            }
            return Float(n)
        }
        switch self {
        case .pytorchDefault:
            let fan = try positive(fanIn, "fan-in")
            let bound = 1 / fan.squareRoot()
            tensor.fillUniform(-bound, bound, using: &rng)
        case let .xavierUniform(gain):
            let fan = try positive(fanIn + fanOut, "fan")
            let bound = gain * (6 / fan).squareRoot()
            tensor.fillUniform(-bound, bound, using: &rng)
        case let .xavierNormal(gain):
            let fan = try positive(fanIn + fanOut, "fan")
            tensor.fillNormal(std: gain * (2 / fan).squareRoot(), using: &rng)
        case let .kaimingUniform(gain):
            let fan = try positive(fanIn, "fan-in")
            let bound = gain * (3 / fan).squareRoot()
            tensor.fillUniform(-bound, bound, using: &rng)
        case let .kaimingNormal(gain):
            let fan = try positive(fanIn, "fan-in")
            tensor.fillNormal(std: gain / fan.squareRoot(), using: &rng)
        case let .orthogonal(gain):
            try fillOrthogonal(tensor, gain: gain, using: &rng)
        case .zeros:
            tensor.fill(0)
        case let .constant(v):
            tensor.fill(v)
        }
    }

    private func fillOrthogonal(_ tensor: Tensor, gain: Float, using rng: inout SeededGenerator) throws {
        guard tensor.rank >= 2 else {
            throw BackpropError.invalidArgument("orthogonal initialisation needs at least 2 dimensions, got \(tensor.shape)")
        }
        let rows = tensor.shape[0], cols = tensor.count / max(rows, 1)
        if rows == 0 || cols == 0 { return }
        // QR of a tall M×N Gaussian matrix (M ≥ N); Q's columns are orthonormal.
        let m = max(rows, cols), n = min(rows, cols)
        var a = [Float](repeating: 0, count: m * n)
        for i in a.indices { a[i] = rng.nextNormal() }
        var tau = [Float](repeating: 0, count: n)
        BLAS.ensureReady()
        var info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, Int32(m), Int32(n), &a, Int32(n), &tau)
        guard info == 0 else { throw BackpropError.invalidArgument("LAPACKE_sgeqrf failed (info \(info)) for shape \(tensor.shape)") }
        // Signs of R's diagonal make the result uniformly distributed (as torch.nn.init.orthogonal_).
        let signs = (0..<n).map { a[$0 * n + $0] < 0 ? Float(-1) : Float(1) }
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, Int32(m), Int32(n), Int32(n), &a, Int32(n), &tau)
        guard info == 0 else { throw BackpropError.invalidArgument("LAPACKE_sorgqr failed (info \(info)) for shape \(tensor.shape)") }
        let out = tensor.data
        for i in 0..<m {
            for j in 0..<n {
                let q = a[i * n + j] * signs[j] * gain
                if rows >= cols { out[i * cols + j] = q } else { out[j * cols + i] = q }
            }
        }
    }
}
