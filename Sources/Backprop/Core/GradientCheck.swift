/// Finite-difference gradient checking: the proof that a backward pass is right.
///
/// For a scalar function L(θ), the central difference (L(θ + h) − L(θ − h)) / 2h approximates
/// ∂L/∂θ with error O(h²). `GradientCheck` perturbs every input element and every parameter
/// element of a layer, evaluates the loss L = Σ (y ⊙ w) for a fixed random weighting w (so every
/// output contributes with a distinct weight), and compares with what `backward` produced.
///
/// Float32 arithmetic limits agreement: with h = 1e-2 in Float and a loss computed in Double,
/// errors are typically below 1e-3 relative; the tests use the stated tolerances.
public enum GradientCheck {
    public struct Mismatch: CustomStringConvertible, Sendable {
        public let name: String       // "input" or a parameter name
        public let index: Int         // flat index
        public let analytic: Float
        public let numeric: Float
        public var description: String { "\(name)[\(index)]: backward \(analytic), finite difference \(numeric)" }
    }

    public struct Report: CustomStringConvertible, Sendable {
        /// Largest |analytic − numeric| / max(1, |analytic|, |numeric|) over all checked elements.
        public let maxError: Float
        public let checked: Int
        public let worst: Mismatch?
        public var description: String {
            "checked \(checked) elements, max error \(maxError)" + (worst.map { " at \($0)" } ?? "")
        }
    }

    /// Checks `layer`'s input gradient and every parameter gradient at `input`.
    /// `maxElements` caps how many elements per tensor are perturbed (chosen evenly).
    public static func check(_ layer: Layer, input: Tensor, step: Float = 1e-2, seed: UInt64 = 7,
                             maxElements: Int = 200) throws -> Report {
        let x = input.copy()
        var y = try layer.forward(x)
        var rng = SeededGenerator(seed: seed)
        let w = Tensor(uncheckedShape: y.shape)
        w.fillUniform(-1, 1, using: &rng)
        func loss() throws -> Double {
            let out = try layer.forward(x)
            var s: Double = 0
            for i in 0..<out.count { s += Double(out.data[i]) * Double(w.data[i]) }
            return s
        }
        layer.zeroGrad()
        y = try layer.forward(x)
        let dx = try layer.backward(w).copy()
        let paramGrads = layer.namedParameters.map { ($0.name, $0.parameter, $0.parameter.grad.copy()) }

        var maxError: Float = 0, checked = 0
        var worst: Mismatch?
        func compare(_ name: String, _ values: Tensor, _ analytic: Tensor) throws {
            let n = values.count
            let stride = max(1, n / maxElements)
            var i = 0
            while i < n {
                let saved = values.data[i]
                values.data[i] = saved + step
                let plus = try loss()
                values.data[i] = saved - step
                let minus = try loss()
                values.data[i] = saved
                let numeric = Float((plus - minus) / (2 * Double(step)))
                let a = analytic.data[i]
                let err = abs(a - numeric) / max(1, abs(a), abs(numeric))
                checked += 1
                if err > maxError {
                    maxError = err
                    worst = Mismatch(name: name, index: i, analytic: a, numeric: numeric)
                }
                i += stride
            }
        }
        try compare("input", x, dx)
        for (name, p, g) in paramGrads { try compare(name, p.value, g) }
        return Report(maxError: maxError, checked: checked, worst: worst)
    }

    /// Checks a loss's δ against finite differences of its value with respect to the output.
    public static func checkLoss(output: Tensor, step: Float = 1e-2,
                                 _ loss: (Tensor) throws -> (loss: Float, gradient: Tensor)) throws -> Report {
        let y = output.copy()
        let analytic = try loss(y).gradient.copy()
        var maxError: Float = 0
        var worst: Mismatch?
        for i in 0..<y.count {
            let saved = y.data[i]
            y.data[i] = saved + step
            let plus = try loss(y).loss
            y.data[i] = saved - step
            let minus = try loss(y).loss
            y.data[i] = saved
            let numeric = (plus - minus) / (2 * step)
            let a = analytic.data[i]
            let err = abs(a - numeric) / max(1, abs(a), abs(numeric))
            if err > maxError { maxError = err; worst = Mismatch(name: "output", index: i, analytic: a, numeric: numeric) }
        }
        return Report(maxError: maxError, checked: y.count, worst: worst)
    }

    /// `checkLoss` of a `Loss` against a fixed `target`.
    public static func checkLoss(_ loss: some Loss, output: Tensor, target: Tensor,
                                 step: Float = 1e-2) throws -> Report {
        try checkLoss(output: output, step: step) { try loss($0, target: target) }
    }

    /// `checkLoss` of a `ClassLabelLoss` against fixed class labels.
    public static func checkLoss(_ loss: some ClassLabelLoss, output: Tensor, labels: [Int32],
                                 step: Float = 1e-2) throws -> Report {
        try checkLoss(output: output, step: step) { try loss($0, labels: labels) }
    }
}
