/// Flattens every dimension after the first, PyTorch's `nn.Flatten()` (start_dim = 1):
///
///     forward   [N, d1, d2, …] → [N, d1·d2·…]      a view sharing the input's storage
///     backward  δ [N, d1·d2·…] → [N, d1, d2, …]    a view sharing δ's storage
///
/// Both views are tensors kept by the layer and re-pointed on each call, so nothing is copied
/// or allocated. Like any view, the output reads the input's memory: it changes if the input does.
public final class Flatten: BatchSliceable {
    public var isTraining = true
    private var inputShape: [Int]?
    private var backwardDone = false             // a backward used this forward's shapes
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])

    public init() {}
    public var summary: String { "Flatten" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.rank >= 2 else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, …] with at least 2 dimensions, got \(x.shape)")
        }
        let n = x.shape[0]
        let m = n == 0 ? x.shape.dropFirst().reduce(1, *) : x.count / n
        // The output's own shape array when it already is [n, m]: no array built per call.
        let same = output.rank == 2 && output.shape[0] == n && output.shape[1] == m
        output.becomeView(of: x, shape: same ? output.shape : [n, m])
        inputShape = x.shape
        backwardDone = false
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        guard !backwardDone else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called twice for one forward pass; run forward again first")
        }
        try requireSameShape(dy, output, layer: summary)
        backwardDone = true
        inputGradient.becomeView(of: dy, shape: shape)
        return inputGradient
    }

    // Batch slices: the views are set up in begin*, nothing is left to do per image.
    public var preferredImagesPerCall: Int { Int.max }
    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor { try forward(x) }
    public func forward(images: Range<Int>, slice: Int) throws {}
    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor { try backward(dy) }
    public func backward(images: Range<Int>, slice: Int) throws {}
}
