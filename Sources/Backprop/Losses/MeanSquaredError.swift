/// Mean squared error, PyTorch's `nn.MSELoss`: L = (1/M) Σ (y − t)² over all M elements
/// (or the sum with `.sum`);  δ = 2 (y − t) / M.
public final class MeanSquaredError {
    public let reduction: Reduction
    private let gradient = Tensor(uncheckedShape: [0])

    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    public func callAsFunction(_ output: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor) {
        guard output.shape == target.shape else {
            throw BackpropError.shapeMismatch(where: "MeanSquaredError",
                                              detail: "output \(output.shape) and target \(target.shape) differ")
        }
        gradient.resize(to: output.shape)
        let y = output.data, t = target.data, g = gradient.data
        let m = output.count
        let scale: Float = reduction == .mean ? 1 / Float(max(m, 1)) : 1
        var total: Double = 0
        for i in 0..<m {
            let d = y[i] - t[i]
            total += Double(d * d)
            g[i] = 2 * d * scale
        }
        return (Float(total) * scale, gradient)
    }
}
