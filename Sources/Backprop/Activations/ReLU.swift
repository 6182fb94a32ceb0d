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
        bp_relu(x.data, output.data, x.count)   // C kernel (AVX-512 where present); NaN stays NaN
        result.save(output)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        // The last forward's result: `output`, or the input it overwrote inside a sliced stretch.
        let y = try result.take(matching: dy, summary)
        inputGradient.resize(to: dy.shape)
        // y > 0 exactly where x > 0, so the cached output serves as the mask.
        bp_relu_backward(y.data, dy.data, inputGradient.data, dy.count)
        return inputGradient
    }

    // MARK: - Batch slices (see BatchSliceable): images are rows of the first dimension.

    /// Set by `Sequential` for a ReLU inside a sliced stretch right after a layer that never
    /// reads its own output again (`Conv2D`, `Dense`): the sliced forward then overwrites that
    /// output with max(x, 0) instead of writing a second batch-sized buffer, and — when the ReLU
    /// is not the stretch's last layer — the sliced backward overwrites δ of its output (the next
    /// layer's δ-of-input buffer) with δ of its input. Saves a cold batch-sized write each way.
    var slicesInPlace = (forward: false, backward: false)
    /// Set by `Sequential` when a MaxPool2D right after this ReLU applies its mask (see
    /// `MaxPool2D.slicesApplyReLUMask`): the sliced backward then passes δ through untouched.
    var slicesMaskedByNext = false
    private var result = ForwardRecord()         // what the last forward wrote: output, or the input itself in place
    private var resultGradient: Tensor?          // what the sliced backward writes

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        input = x
        perImage = x.rank == 0 || x.shape[0] == 0 ? x.count : x.count / x.shape[0]
        if slicesInPlace.forward {
            result.save(x)
            return x
        }
        output.resize(to: x.shape)
        result.save(output)
        return output
    }

    public func forward(images: Range<Int>, slice: Int) throws {
        guard let x = input, let y = result.tensor else {
            throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward")
        }
        let first = images.lowerBound * perImage
        bp_relu(x.data + first, y.data + first, images.count * perImage)   // in place when x === y
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        _ = try result.take(matching: dy, summary)
        outputGradient = dy
        perImage = dy.rank == 0 || dy.shape[0] == 0 ? dy.count : dy.count / dy.shape[0]
        if slicesInPlace.backward || slicesMaskedByNext {
            resultGradient = dy
            return dy
        }
        inputGradient.resize(to: dy.shape)
        resultGradient = inputGradient
        return inputGradient
    }

    public func backward(images: Range<Int>, slice: Int) throws {
        guard let dy = outputGradient, let y = result.tensor, let dx = resultGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        if slicesMaskedByNext { return }   // the pooling after this layer applied the mask
        let first = images.lowerBound * perImage
        // y > 0 exactly where x > 0 (also when y overwrote x), so the result serves as the mask.
        bp_relu_backward(y.data + first, dy.data + first, dx.data + first, images.count * perImage)   // in place when dx === dy
    }

    public func endBackward(slices: Int) { outputGradient = nil; input = nil; resultGradient = nil }
}
