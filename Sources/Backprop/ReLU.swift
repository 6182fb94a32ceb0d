import BackpropKernels

/// Rectified linear unit: y = max(x, 0);  dx = dy · [x > 0].
public final class ReLU: BatchSliceable {
    public var isTraining = true
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var input: Tensor?                   // set by beginForward for forward(images:)
    private var outputGradient: Tensor?          // set by beginBackward for backward(images:)
    private var perImage = 0                     // elements per first-dimension row

    public init() {}
    public var summary: String { "ReLU" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        output.resize(to: x.shape)
        // C kernel (AVX-512 where present); NaN stays NaN. Large tensors (a convolution's
        // output) are split across cores.
        let src = x.data, dst = output.data
        ParallelChunks.run(elements: x.count) { r in bp_relu(src + r.lowerBound, dst + r.lowerBound, r.count) }
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        let y = output.data, g = dy.data, dx = inputGradient.data
        ParallelChunks.run(elements: dy.count) { r in
            bp_relu_backward(y + r.lowerBound, g + r.lowerBound, dx + r.lowerBound, r.count)
        }
        return inputGradient
    }

    // MARK: - Batch slices (see BatchSliceable): images are rows of the first dimension.

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        output.resize(to: x.shape)
        input = x
        perImage = x.rank == 0 || x.shape[0] == 0 ? x.count : x.count / x.shape[0]
        return output
    }

    public func forward(images: Range<Int>, slice: Int) throws {
        guard let x = input else { throw BackpropError.invalidArgument("\(summary): forward(images:) before beginForward") }
        let first = images.lowerBound * perImage
        bp_relu(x.data + first, output.data + first, images.count * perImage)
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        try requireSameShape(dy, output, layer: summary)
        inputGradient.resize(to: dy.shape)
        outputGradient = dy
        perImage = dy.rank == 0 || dy.shape[0] == 0 ? dy.count : dy.count / dy.shape[0]
        return inputGradient
    }

    public func backward(images: Range<Int>, slice: Int) throws {
        guard let dy = outputGradient else { throw BackpropError.invalidArgument("\(summary): backward(images:) before beginBackward") }
        let first = images.lowerBound * perImage
        bp_relu_backward(output.data + first, dy.data + first, inputGradient.data + first, images.count * perImage)
    }

    public func endBackward(slices: Int) { outputGradient = nil; input = nil }
}
