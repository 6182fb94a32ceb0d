import Backprop
import Foundation

/// Rescales the gradients of `parameters` so that their total norm is at most `maxNorm`:
/// PyTorch's `torch.nn.utils.clip_grad_norm_`.
///
///     total = ‖(‖g₁‖ₚ, ‖g₂‖ₚ, …)‖ₚ          (the p-norm of all gradients as one vector;
///                                          p = .infinity gives max |gᵢ|)
///     c = maxNorm / (total + 1e-6);  if c < 1, every g ← c·g
///
/// Returns the total norm BEFORE clipping. Sums are accumulated in Double.
/// - Throws: `invalidArgument` for `maxNorm` < 0 or not finite, or `normType` ≤ 0 or NaN;
///   `nonFinite` when the total norm is NaN or infinite and `errorIfNonfinite` is set
///   (otherwise, as in PyTorch, the gradients are scaled by the resulting NaN/0 factor).
@discardableResult
public func clipGradNorm(_ parameters: [Parameter], maxNorm: Float, normType: Float = 2,
                         errorIfNonfinite: Bool = false) throws -> Float {
    guard maxNorm >= 0, maxNorm.isFinite else {
        throw BackpropError.invalidArgument("clipGradNorm: maxNorm must be finite and >= 0, got \(maxNorm)")
    }
    guard normType > 0 else {
        throw BackpropError.invalidArgument("clipGradNorm: normType must be > 0 (or .infinity), got \(normType)")
    }
    let total: Double
    if normType == .infinity {
        var m: Float = 0
        for p in parameters {
            let g = p.grad.data
            for j in 0..<p.grad.count {
                let a = abs(g[j])
                if !(a <= m) { m = a }          // NaN propagates, as in PyTorch
            }
        }
        total = Double(m)
    } else if normType == 2 {
        // Per-tensor sums of squares (vectorised), combined in Double — as PyTorch combines
        // per-tensor norms.
        var s: Double = 0
        for p in parameters { s += Double(p.grad.sumOfSquares()) }
        total = s.squareRoot()
    } else if normType == 1 {
        var s: Double = 0
        for p in parameters {
            let g = p.grad.data
            for j in 0..<p.grad.count { s += Double(abs(g[j])) }
        }
        total = s
    } else {
        let q = Double(normType)
        var s: Double = 0
        for p in parameters {
            let g = p.grad.data
            for j in 0..<p.grad.count { s += pow(Double(abs(g[j])), q) }
        }
        total = pow(s, 1 / q)
    }
    let totalNorm = Float(total)
    if errorIfNonfinite && !totalNorm.isFinite {
        throw BackpropError.nonFinite("clipGradNorm: the total norm of order \(normType) of the gradients is \(totalNorm)")
    }
    let coefficient = maxNorm / (totalNorm + 1e-6)
    // PyTorch multiplies by clamp(c, max: 1); skipping the multiplication by 1 changes nothing.
    if !(coefficient >= 1) {
        for p in parameters {
            let g = p.grad.data
            for j in 0..<p.grad.count { g[j] *= coefficient }
        }
    }
    return totalNorm
}

/// Clamps every gradient element into [−clipValue, clipValue]: PyTorch's
/// `torch.nn.utils.clip_grad_value_`. NaN gradients stay NaN. A negative `clipValue` is used
/// by its magnitude (PyTorch would set every element to it; that is never what was meant).
public func clipGradValue(_ parameters: [Parameter], _ clipValue: Float) {
    let c = abs(clipValue)
    for p in parameters {
        let g = p.grad.data
        for j in 0..<p.grad.count {
            let x = g[j]
            g[j] = x > c ? c : (x < -c ? -c : x)
        }
    }
}
