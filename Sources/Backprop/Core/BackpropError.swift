/// Every error the engine throws for something a caller or a file got wrong.
/// Each case says what was wrong and where: the layer, the shapes, the file and byte offset.
///
/// Which initialisers throw: exactly those taking an argument that can be invalid (a size, a
/// probability, a label smoothing). Where only some arguments can be, the form without them does
/// not throw: `Dropout()` and `SoftmaxCrossEntropy()` need no `try`, `Dropout(p:)` and
/// `SoftmaxCrossEntropy(labelSmoothing:)` do, as do `Dense`, `Conv2D` and `Tensor(zeros:)`.
public enum BackpropError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Shapes that do not fit: `where` names the layer or function, `detail` the shapes.
    case shapeMismatch(where: String, detail: String)
    /// An argument outside its domain (a negative size, a probability above 1, …).
    case invalidArgument(String)
    /// A file that cannot be read or parsed: path, byte offset (when known) and what was wrong.
    case badFile(path: String, offset: Int?, reason: String)
    /// An I/O failure (cannot open, write or rename).
    case io(path: String, reason: String)
    /// A NaN or infinity where a finite number was required.
    case nonFinite(String)
    /// Calls in an order that cannot give the right answer: `where` names the layer or container,
    /// `detail` what happened (backward before forward or twice for one forward, a tensor saved by
    /// forward changed before backward, one layer instance at two places of a model).
    case invalidUse(where: String, detail: String)
    /// A state dict that does not fit a model (`Layer.loadStateDict`, `ModelFile.load(into:from:)`):
    /// `source` names the tensors' origin (a file path), `model` the model's summary, and the
    /// mismatch lists every missing, unexpected and mis-shaped name.
    case stateDictMismatch(source: String, model: String, StateDictMismatch)

    public var description: String {
        switch self {
        case let .shapeMismatch(location, detail): return "shape mismatch in \(location): \(detail)"
        case let .invalidArgument(message): return "invalid argument: \(message)"
        case let .badFile(path, offset, reason):
            if let offset { return "\(path): at byte \(offset): \(reason)" }
            return "\(path): \(reason)"
        case let .io(path, reason): return "\(path): \(reason)"
        case let .nonFinite(message): return "non-finite value: \(message)"
        case let .invalidUse(location, detail): return "invalid use of \(location): \(detail)"
        case let .stateDictMismatch(source, model, mismatch):
            return "\(source) does not fit \(model): \(mismatch)"
        }
    }
}
