/// How a loss reduces over the batch, as PyTorch's `reduction=` argument.
public enum Reduction: Sendable {
    case mean
    case sum
}
