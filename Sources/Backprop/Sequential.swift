/// Layers applied in order, PyTorch's `nn.Sequential`. Parameters are named
/// `"<index>.<name>"` (`0.weight`, `0.bias`, `2.weight`, …), exactly as `state_dict` names them.
public final class Sequential: Layer {
    public private(set) var layers: [Layer]

    public init(_ layers: [Layer]) { self.layers = layers }
    public convenience init(_ layers: Layer...) { self.init(layers) }

    public func append(_ layer: Layer) { layers.append(layer) }

    public var summary: String { "Sequential(\(layers.map(\.summary).joined(separator: ", ")))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list: [(name: String, parameter: Parameter)] = []
        for (i, layer) in layers.enumerated() {
            for (name, p) in layer.namedParameters { list.append((name: "\(i).\(name)", parameter: p)) }
        }
        return list
    }

    public var namedBuffers: [(name: String, tensor: Tensor)] {
        var list: [(name: String, tensor: Tensor)] = []
        for (i, layer) in layers.enumerated() {
            for (name, t) in layer.namedBuffers { list.append((name: "\(i).\(name)", tensor: t)) }
        }
        return list
    }

    public var isTraining: Bool {
        get { layers.first?.isTraining ?? true }
        set { for layer in layers { layer.isTraining = newValue } }
    }

    /// Set on the first layer: the layers after it always need δ of their input.
    public var needsInputGradient: Bool {
        get { layers.first?.needsInputGradient ?? true }
        set { layers.first?.needsInputGradient = newValue }
    }

    /// Batch slices for stretches of `BatchSliceable` layers (set by `useThreads`).
    public private(set) var threads = 1
    private let batchSlices = BatchSlices()

    public func useThreads(_ count: Int) {
        threads = Swift.max(1, count)
        for layer in layers { layer.useThreads(count) }
    }

    /// The stretch of consecutive `BatchSliceable` layers starting at `start` (in order).
    private func slicedStretch(from start: Int) -> [BatchSliceable] {
        var stretch: [BatchSliceable] = []
        for layer in layers[start...] {
            guard let s = layer as? BatchSliceable else { break }
            stretch.append(s)
        }
        return stretch
    }

    /// With more than one thread, each stretch of two or more `BatchSliceable` layers (a
    /// convolution, its ReLU and its pooling, flatten, dense layers, …) runs as one set of
    /// concurrent batch slices: a slice takes `preferredImagesPerCall` images at a time through
    /// consecutive layers (one image through convolution, ReLU and pooling while it is in its
    /// core's cache; all of its images through a dense layer), so the cores meet once per
    /// stretch and direction, and every product runs single-threaded inside a slice (OpenBLAS's
    /// own threads stay idle). Per-image values equal the layers' own sliced runs; parameter
    /// gradients are summed over slices in slice order, so they differ from one slice only by
    /// rounding and repeat exactly for a given thread count.
    public func forward(_ input: Tensor) throws -> Tensor {
        var x = input, i = 0
        while i < layers.count {
            let stretch = threads > 1 ? slicedStretch(from: i) : []
            if stretch.count >= 2 {
                x = try forward(stretch, x)
                i += stretch.count
            } else {
                x = try layers[i].forward(x)
                i += 1
            }
        }
        return x
    }

    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        // The same stretches as forward: found from the front, run from the back.
        var stretches: [(start: Int, layers: [BatchSliceable])] = []
        var i = 0
        while i < layers.count {
            let stretch = threads > 1 ? slicedStretch(from: i) : []
            if stretch.count >= 2 { stretches.append((i, stretch)); i += stretch.count } else { i += 1 }
        }
        var g = outputGradient, end = layers.count
        for (start, stretch) in stretches.reversed() + [(0, [])] {
            for layer in layers[(start + stretch.count)..<end].reversed() { g = try layer.backward(g) }
            if !stretch.isEmpty { g = try backward(stretch, g) }
            end = start
        }
        return g
    }

    /// Consecutive layers of a stretch that take the same number of images per call (1 for a
    /// convolution and its ReLU and pooling, all of a slice for a dense layer), with that number.
    private static func segments(_ stretch: [BatchSliceable]) -> [(layers: Range<Int>, step: Int)] {
        var list: [(layers: Range<Int>, step: Int)] = []
        for (i, layer) in stretch.enumerated() {
            let step = Swift.max(1, layer.preferredImagesPerCall)
            if let last = list.last, last.step == step {
                list[list.count - 1].layers = last.layers.lowerBound..<(i + 1)
            } else {
                list.append((i..<(i + 1), step))
            }
        }
        return list
    }

    /// Calls `body` on consecutive parts of `images` of at most `step` images each.
    @inline(__always)
    private static func inParts(_ images: Range<Int>, _ step: Int, _ body: (Range<Int>) throws -> Void) rethrows {
        var first = images.lowerBound
        while first < images.upperBound {
            let last = step >= images.upperBound - first ? images.upperBound : first + step
            try body(first..<last)
            first = last
        }
    }

    private func forward(_ stretch: [BatchSliceable], _ input: Tensor) throws -> Tensor {
        let n = input.rank == 0 ? 0 : input.shape[0]
        let count = BatchSlices.count(threads: threads, items: n)
        // ReLUs right after a layer that does not read its output again work in place.
        for (i, layer) in stretch.enumerated() {
            guard let relu = layer as? ReLU else { continue }
            let afterProduct = i > 0 && (stretch[i - 1] is Conv2D || stretch[i - 1] is Dense)
            relu.slicesInPlace = (afterProduct, afterProduct && i + 1 < stretch.count)
        }
        var x = input
        for layer in stretch { x = try layer.beginForward(x, slices: count) }
        let segments = Sequential.segments(stretch)
        try batchSlices.run(count: count, items: n) { slice, images in
            for segment in segments {
                try Sequential.inParts(images, segment.step) { part in
                    for layer in stretch[segment.layers] { try layer.forward(images: part, slice: slice) }
                }
            }
        }
        return x
    }

    private func backward(_ stretch: [BatchSliceable], _ outputGradient: Tensor) throws -> Tensor {
        let n = outputGradient.rank == 0 ? 0 : outputGradient.shape[0]
        let count = BatchSlices.count(threads: threads, items: n)
        var g = outputGradient
        for layer in stretch.reversed() { g = try layer.beginBackward(g, slices: count) }
        let segments = Sequential.segments(stretch)
        try batchSlices.run(count: count, items: n) { slice, images in
            for segment in segments.reversed() {
                try Sequential.inParts(images, segment.step) { part in
                    for layer in stretch[segment.layers].reversed() { try layer.backward(images: part, slice: slice) }
                }
            }
        }
        for layer in stretch { layer.endBackward(slices: count) }
        return g
    }

    /// Runs forward and returns a copy of every layer's output, in order, each labelled
    /// `"<index>: <summary>"` (`"0: Dense(4 → 3)"`) — the activations a learner wants to look at.
    /// Copies, because each layer overwrites its output buffer on the next call.
    public func trace(_ input: Tensor) throws -> [(layer: String, output: Tensor)] {
        var x = input
        var outputs: [(layer: String, output: Tensor)] = []
        outputs.reserveCapacity(layers.count)
        for (i, layer) in layers.enumerated() {
            x = try layer.forward(x)
            outputs.append((layer: "\(i): \(layer.summary)", output: x.copy()))
        }
        return outputs
    }
}
