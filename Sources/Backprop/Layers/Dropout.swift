/// Inverted dropout, PyTorch's `nn.Dropout(p)`.
///
///     training  m_i = 1/(1 − p) with probability 1 − p, else 0      (a fresh mask each forward)
///               y   = x ⊙ m,          dx = dy ⊙ m                   (the mask is kept for backward)
///     eval      y   = x,              dx = dy                       (identity)
///
/// Scaling by 1/(1 − p) in training keeps E[y] = x, so evaluation needs no rescaling.
/// Masks come from a `SeededGenerator` seeded at construction (from `seed`, or from the default
/// generator's next seed, so two unseeded dropouts draw different masks), so runs repeat exactly.
///
/// `freezeMask`: when true, forward reuses the last mask if it has the input's shape (drawing
/// one only when there is none), so repeated forwards of the same input give the same output —
/// what a finite-difference gradient check needs.
public final class Dropout: Layer {
    public let p: Float
    public var isTraining = true
    public var freezeMask = false

    var rng: SeededGenerator
    /// Per-element factor of the last training forward: 0 or 1/(1 − p).
    public let mask = Tensor(uncheckedShape: [0])
    private var hasMask = false
    private var lastWasTraining = false
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output: this forward's shape and use
    private var savedMask = ForwardRecord()      // the mask a training forward applied

    /// p = 0.5, PyTorch's default: no argument can be invalid, so it does not throw.
    public init(seed: UInt64? = nil) {
        self.p = 0.5
        self.rng = SeededGenerator(seedOrDefault: seed)
    }

    /// Drops with probability `p`, which must lie in [0, 1) (else `BackpropError.invalidArgument`).
    public init(p: Float, seed: UInt64? = nil) throws {
        guard p >= 0, p < 1 else {
            throw BackpropError.invalidArgument("Dropout: probability p must be in [0, 1), got \(p)")
        }
        self.p = p
        self.rng = SeededGenerator(seedOrDefault: seed)
    }

    public var summary: String { "Dropout(p: \(p))" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        lastWasTraining = isTraining && p > 0
        guard lastWasTraining else {
            output.data.update(from: x.data, count: x.count)
            saved.save(output)
            return output
        }
        _ = frozenOrFreshMask(for: x.shape)
        elementwiseMultiply(x.data, mask.data, into: output.data, count: x.count)
        savedMask.save(mask)
        saved.save(output)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        if lastWasTraining { _ = try savedMask.peek(summary) }   // the mask still has this pass's size
        _ = try saved.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        if lastWasTraining {
            elementwiseMultiply(dy.data, mask.data, into: inputGradient.data, count: dy.count)
        } else {
            inputGradient.data.update(from: dy.data, count: dy.count)
        }
        return inputGradient
    }

    /// The mask of a training pass on `shape`, in `mask`: with `freezeMask` the last one when it
    /// fits, else a fresh draw from the layer's generator.
    func frozenOrFreshMask(for shape: [Int]) -> Tensor {
        if !(freezeMask && hasMask && mask.shape == shape) {
            mask.resize(to: shape)
            Dropout.drawMask(into: mask, p: p, using: &rng)
            hasMask = true
        }
        return mask
    }

    // MARK: - The math (the layer and the graph share it): y = x ⊙ m, dx = dy ⊙ m

    /// m_i = 1/(1 − p) with probability 1 − p, else 0, one uniform draw per element in order.
    static func drawMask(into mask: Tensor, p: Float, using rng: inout SeededGenerator) {
        let m = mask.data, keep = 1 - p, scale = 1 / (1 - p)
        for i in 0..<mask.count { m[i] = rng.nextUnit() < keep ? scale : 0 }
    }
}
