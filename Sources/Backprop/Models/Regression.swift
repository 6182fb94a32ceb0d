/// The seed example: learn y = 2x + 3 with Linear(1,2) → ReLU → Linear(2,1), MSE and SGD.
/// It lives in the library so the runnable example (`swift run regression-example`) and the
/// test run the very same code.
public enum RegressionExample {
    /// Data y = 2x + 3 + noise, x uniform in [−1, 1].
    public static func data(count: Int, noise: Float = 0.05, seed: UInt64 = 42) throws -> (x: Tensor, y: Tensor) {
        var rng = SeededGenerator(seed: seed)
        let x = try Tensor(zeros: [count, 1]), y = try Tensor(zeros: [count, 1])
        for i in 0..<count {
            let xi = rng.nextUnit() * 2 - 1
            x.data[i] = xi
            y.data[i] = 2 * xi + 3 + noise * rng.nextNormal()
        }
        return (x, y)
    }

    /// The model, with weights drawn from `seed`. The hidden biases start positive so that
    /// both ReLU units are alive for x in [−1, 1] whatever the draw.
    public static func model(seed: UInt64 = 0) throws -> Sequential {
        var rng = SeededGenerator(seed: seed)
        let first = try Dense(1, 2, rng: &rng)
        first.bias?.value.fill(1)
        return Sequential(first, ReLU(), try Dense(2, 1, rng: &rng))
    }
}
