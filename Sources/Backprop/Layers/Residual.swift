/// A skip connection around a block: y = x + block(x).
///
///     forward   y  = x + f(x)                      (f's output must have x's shape)
///     backward  dx = dy + f.backward(dy)           (the identity path passes δ straight through)
///
/// Parameters are the block's, prefixed `block.` (`block.0.weight`, …), as a PyTorch module
///
///     class Residual(nn.Module):
///         def __init__(self, block): super().__init__(); self.block = block
///         def forward(self, x): return x + self.block(x)
///
/// names them in its `state_dict`. `isTraining` is the block's.
public final class Residual: LayerContainer {
    public let block: Layer
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output: this pass's shape and use
    private var blockOutput = ForwardRecord()    // f(x): the block ran no other forward since

    public init(_ block: Layer) { self.block = block }
    public var sublayers: [Layer] { [block] }

    public var summary: String { "Residual(\(block.summary))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        block.namedParameters.map { (name: "block.\($0.name)", parameter: $0.parameter) }
    }

    public var namedBuffers: [(name: String, tensor: Tensor)] {
        block.namedBuffers.map { (name: "block.\($0.name)", tensor: $0.tensor) }
    }

    public func useThreads(_ count: Int) { block.useThreads(count) }

    public var isTraining: Bool {
        get { block.isTraining }
        set { block.isTraining = newValue }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let fx = try block.forward(x)
        guard fx.shape == x.shape else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "the block maps input \(x.shape) to \(fx.shape); a residual needs equal shapes")
        }
        output.resize(to: x.shape)
        // Element-wise, so it stays right even if the block's output aliases x (a view).
        elementwiseAdd(x.data, fx.data, into: output.data, count: x.count)
        blockOutput.save(fx)
        saved.save(output)
        return output
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        _ = try saved.peek(summary)
        _ = try blockOutput.peek(summary)
        _ = try saved.take(matching: dy, summary)
        let blockGradient = try block.backward(dy)
        guard blockGradient.shape == dy.shape else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "the block's backward returned δ \(blockGradient.shape) for output δ \(dy.shape)")
        }
        inputGradient.resize(to: dy.shape)
        elementwiseAdd(dy.data, blockGradient.data, into: inputGradient.data, count: dy.count)
        return inputGradient
    }
}
