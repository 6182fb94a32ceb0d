/// Mean squared error, PyTorch's `nn.MSELoss`: L = (1/M) Σ (y − t)² over all M elements
/// (or the sum with `.sum`);  δ = 2 (y − t) / M.
///
/// Returns the loss and δ (a buffer owned by the loss, overwritten by the next call).
public final class MeanSquaredError: Loss {
    public let reduction: Reduction
    private let gradient = Tensor(uncheckedShape: [0])

    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    public func callAsFunction(_ output: Tensor, target: Tensor) throws -> (loss: Float, gradient: Tensor) {
        try elementwiseLoss("MeanSquaredError", output, target, outputName: "output",
                            gradient: gradient, reduction: reduction) { y, t in
            let d = y - t
            return (d * d, 2 * d)
        }
    }
}
