/// A layer whose forward and backward split into independent ranges of images: everything it
/// computes for image i reads only image i of its input (or of δ of its output), apart from
/// parameter gradients, which it sums over slices itself. `Dense`, `Conv2D`, `ReLU`, `MaxPool2D`
/// and `Flatten` are.
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
/// depend on how a slice's range was cut into calls). Each layer's file holds its plain
/// `forward(_:)` / `backward(_:)` and the math both paths share; its conformance sits beside it
/// (`Dense+BatchSlices.swift`, …).
///
/// Inside a stretch, neighbouring layers may fuse (`StretchPlan` decides, from the properties
/// below): an element-wise layer that can work in place overwrites the output of a layer that
/// does not read it again, and a pooling that can apply a ReLU's mask does so in its own backward.
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

    // Fusion inside a stretch (planned by `StretchPlan`, which calls `setFusion` on every layer).
    /// Whether backward reads this layer's own output (false for `Dense` and `Conv2D`: an
    /// element-wise layer after it may then overwrite that output in place).
    var backwardReadsOutput: Bool { get }
    /// Whether this is an element-wise layer that can write its output over its input and δ of
    /// its input over δ of its output (`ReLU`).
    var canRunInPlace: Bool { get }
    /// Whether backward is "δ where the output is > 0" (`ReLU`): a next layer that can apply that
    /// mask itself (`canApplyPrecedingReLUMask`) may take it over.
    var backwardIsPositiveOutputMask: Bool { get }
    /// Whether this layer's backward can keep δ only where its own output is > 0, which is the
    /// mask of a ReLU right before it (`MaxPool2D`: the pooled value is that ReLU's output at the
    /// window's maximum).
    var canApplyPrecedingReLUMask: Bool { get }
    /// What this layer does differently inside its stretch (`.none` outside stretches).
    func setFusion(_ fusion: Fusion)
}

/// What `StretchPlan` asks of one layer of a stretch.
public struct Fusion: Equatable, Sendable {
    /// Forward writes over the input (an element-wise layer after one that does not read its output).
    public var inPlaceForward = false
    /// Backward writes δ of the input over δ of the output (not for the stretch's last layer, whose
    /// δ of the output belongs to the caller).
    public var inPlaceBackward = false
    /// The next layer applies this layer's mask: backward passes δ through untouched (and, with
    /// `inPlaceForward`, forward does nothing: the next layer applies the ReLU to its own output).
    public var maskAppliedByNext = false
    /// Backward applies the preceding ReLU's mask (keeps δ where the output is > 0), and forward
    /// applies that ReLU to its output (max pooling: max and ReLU commute).
    public var appliesPrecedingReLUMask = false

    public static let none = Fusion()
}

extension BatchSliceable {
    public func endBackward(slices: Int) {}
    public var preferredImagesPerCall: Int { 1 }
    public var prefersBatchSlices: Bool { false }
    public var backwardReadsOutput: Bool { true }
    public var canRunInPlace: Bool { false }
    public var backwardIsPositiveOutputMask: Bool { false }
    public var canApplyPrecedingReLUMask: Bool { false }
    public func setFusion(_ fusion: Fusion) {}
}
