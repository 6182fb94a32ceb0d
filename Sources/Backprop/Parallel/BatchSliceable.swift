/// A layer whose forward and backward split into independent ranges of images: everything it
/// computes for image i reads only image i of its input (or of δ of its output), apart from
/// parameter gradients, which it sums over slices itself. `Conv2D`, `ReLU` and `MaxPool2D` are.
///
/// `Sequential` uses it to run a stretch of such layers as ONE set of concurrent batch slices
/// (see `BatchSlices`) instead of one per layer: each slice takes a few images through every
/// layer of the stretch while they are still in its core's cache, and the cores meet once per
/// stretch and direction instead of once per layer.
///
/// A pass is `beginForward` (checks the shape, sizes buffers for `slices` slices, returns the
/// output buffer, not yet filled), then `forward(images:slice:)` on disjoint ranges covering the
/// batch, each slice's ranges in increasing order on one thread; backward likewise, followed by
/// `endBackward`, which adds the slices' parameter gradients in slice order (results do not
/// depend on how a slice's range was cut into calls). The plain `forward(_:)` and `backward(_:)`
/// of these layers are exactly these calls over the layer's own slices.
public protocol BatchSliceable: Layer {
    func beginForward(_ input: Tensor, slices: Int) throws -> Tensor
    func forward(images: Range<Int>, slice: Int) throws
    func beginBackward(_ outputGradient: Tensor, slices: Int) throws -> Tensor
    func backward(images: Range<Int>, slice: Int) throws
    func endBackward(slices: Int)
    /// Images a slice should hand to this layer per call (a convolution's images per gemm).
    var preferredImagesPerCall: Int { get }
    /// Whether this layer's work is per image and too small for BLAS's own threads (a
    /// convolution's per-image products, pooling): `Sequential` slices a stretch only if one of
    /// its layers says so. Dense layers alone (an MLP) keep OpenBLAS's threads on whole-batch
    /// products, which measured faster for them.
    var prefersBatchSlices: Bool { get }
}

extension BatchSliceable {
    public func endBackward(slices: Int) {}
    public var preferredImagesPerCall: Int { 1 }
    public var prefersBatchSlices: Bool { false }
}
