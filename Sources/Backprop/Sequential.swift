/// Layers applied in order, PyTorch's `nn.Sequential`. Parameters are named
/// `"<index>.<name>"` (`0.weight`, `0.bias`, `2.weight`, …), exactly as `state_dict` names them.
///
/// A layer instance sits at one place: the same instance twice (directly or inside a nested
/// container) makes `forward` throw `BackpropError.invalidUse` naming both positions, since each
/// layer keeps one forward pass's values for its backward (build one instance per place). An
/// instance shared with another model is refused by `backward` when that model ran it in between.
public final class Sequential: LayerContainer {
    public private(set) var layers: [Layer]
    /// An instance found at two places when the list was built or appended to: `forward` refuses.
    private var repeated: (layer: Layer, first: String, second: String)?

    public init(_ layers: [Layer]) {
        self.layers = layers
        repeated = firstRepeatedInstance(in: layers)
    }
    public convenience init(_ layers: Layer...) { self.init(layers) }

    public func append(_ layer: Layer) {
        layers.append(layer)
        stretches = nil
        forwardPlan = nil   // the new layer had no part in the last forward: backward needs a new one
        repeated = firstRepeatedInstance(in: layers)
    }

    public var sublayers: [Layer] { layers }

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

    public func useThreads(_ count: Int) {
        threads = Swift.max(1, count)
        stretches = nil
        for layer in layers { layer.useThreads(count) }
    }

    /// A run of consecutive `BatchSliceable` layers that goes through batch slices together.
    private final class Stretch {
        let start: Int                          // index of its first layer in `layers`
        let layers: [BatchSliceable]
        /// Consecutive layers taking the same number of images per call (1 for a convolution
        /// and its ReLU and pooling, all of a slice for a dense layer), with that number.
        let segments: [(layers: Range<Int>, step: Int)]

        init(start: Int, layers: [BatchSliceable]) {
            self.start = start
            self.layers = layers
            var list: [(layers: Range<Int>, step: Int)] = []
            for (i, layer) in layers.enumerated() {
                let step = Swift.max(1, layer.preferredImagesPerCall)
                if let last = list.last, last.step == step {
                    list[list.count - 1].layers = last.layers.lowerBound..<(i + 1)
                } else {
                    list.append((i..<(i + 1), step))
                }
            }
            segments = list
            // ReLUs right after a layer that does not read its output again work in place; a
            // max-pooling right after a ReLU applies the ReLU's mask in its own backward.
            for (i, layer) in layers.enumerated() {
                guard let relu = layer as? ReLU else { continue }
                let afterProduct = i > 0 && (layers[i - 1] is Conv2D || layers[i - 1] is Dense)
                relu.slicesInPlace = (afterProduct, afterProduct && i + 1 < layers.count)
                if i + 1 < layers.count, let pool = layers[i + 1] as? MaxPool2D {
                    pool.slicesApplyReLUMask = true
                    relu.slicesMaskedByNext = true
                }
            }
        }
    }

    /// The stretches of two or more layers, one of which prefers batch slices (none with one
    /// thread); found once per layer list and thread count, so a step allocates nothing for them.
    private var stretches: [Stretch]?

    /// The stretches as (first layer index, layer count), for tests.
    var slicedStretches: [(start: Int, count: Int)] { currentStretches().map { ($0.start, $0.layers.count) } }

    private func currentStretches() -> [Stretch] {
        if let stretches { return stretches }
        // Layers outside stretches run on their own: no in-place ReLU, no folded mask
        // (Stretch.init sets those inside).
        for layer in layers {
            if let relu = layer as? ReLU { relu.slicesInPlace = (false, false); relu.slicesMaskedByNext = false }
            (layer as? MaxPool2D)?.slicesApplyReLUMask = false
        }
        var list: [Stretch] = []
        var i = 0
        while threads > 1 && i < layers.count {
            var run: [BatchSliceable] = []
            for layer in layers[i...] {
                guard let s = layer as? BatchSliceable else { break }
                run.append(s)
            }
            if run.count >= 2 && run.contains(where: \.prefersBatchSlices) {
                list.append(Stretch(start: i, layers: run))
                i += run.count
            } else {
                i += Swift.max(1, run.count)
            }
        }
        stretches = list
        return list
    }

    /// With more than one thread, each stretch of two or more `BatchSliceable` layers holding a
    /// convolution or pooling (a convolution, its ReLU and its pooling, flatten, the dense
    /// layers after them, …; see `prefersBatchSlices`) runs as one set of
    /// concurrent batch slices on `WorkerPool.shared`: a slice takes `preferredImagesPerCall`
    /// images at a time through consecutive layers (one image through convolution, ReLU and
    /// pooling while it is in its core's cache; all of its images through a dense layer), so the
    /// cores meet once per stretch and direction, and every product runs single-threaded inside a
    /// slice (OpenBLAS is set to one thread meanwhile, and its own threads stay idle). Per-image
    /// values equal the layers' own sliced runs; parameter gradients are summed over slices in
    /// slice order, so they differ from one slice only by rounding and repeat exactly for a given
    /// thread count. Nothing is allocated per call once sized.
    public func forward(_ input: Tensor) throws -> Tensor {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        let stretches = currentStretches()
        forwardPlan = nil
        layerOutputs.removeAll(keepingCapacity: true)
        var x = input, i = 0, next = 0
        while i < layers.count {
            if next < stretches.count && stretches[next].start == i {
                x = try run(stretches[next], forward: true, x, threads: threads)
                i += stretches[next].layers.count
                next += 1
            } else {
                x = try layers[i].forward(x)
                noteOutput(x)
                i += 1
            }
        }
        forwardPlan = (stretches, threads)
        return x
    }

    /// Every layer's output in the last forward. Backward first checks that none changed since: a
    /// layer whose forward ran again (an instance shared with another model) would otherwise pair
    /// its backward with that other pass.
    private var layerOutputs: [ForwardRecord] = []

    private func noteOutput(_ t: Tensor) {
        var record = ForwardRecord()
        record.save(t)
        layerOutputs.append(record)
    }

    /// The stretches and thread count the last forward ran with: backward runs the same ones,
    /// even if `useThreads` changed in between (the layers' buffers are laid out for them).
    private var forwardPlan: (stretches: [Stretch], threads: Int)?

    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        if let repeated { throw repeatedInstanceError(summary, repeated) }   // appended since the forward
        guard let (stretches, threads) = forwardPlan else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before a forward that completed")
        }
        for output in layerOutputs { _ = try output.peek(summary) }
        var g = outputGradient, i = layers.count, next = stretches.count - 1
        while i > 0 {
            if next >= 0 && stretches[next].start + stretches[next].layers.count == i {
                g = try run(stretches[next], forward: false, g, threads: threads)
                i = stretches[next].start
                next -= 1
            } else {
                i -= 1
                g = try layers[i].backward(g)
            }
        }
        return g
    }

    private let job = StretchJob()
    private let slices = BatchSlices()

    /// Runs one stretch forward (input → output) or backward (δ of its output → δ of its input).
    private func run(_ stretch: Stretch, forward: Bool, _ tensor: Tensor, threads: Int) throws -> Tensor {
        let n = tensor.rank == 0 ? 0 : tensor.shape[0]
        let count = BatchSlices.count(threads: threads, items: n)
        var t = tensor
        if forward {
            for layer in stretch.layers {
                t = try layer.beginForward(t, slices: count)
                noteOutput(t)
            }
        } else {
            for layer in stretch.layers.reversed() { t = try layer.beginBackward(t, slices: count) }
        }
        job.stretch = stretch
        job.forward = forward
        defer { job.stretch = nil }
        try slices.run(count: count, items: n, job)
        if !forward { for layer in stretch.layers { layer.endBackward(slices: count) } }
        return t
    }

    /// One stretch's slices as `BatchSlices` work (an object: nothing to box per call).
    private final class StretchJob: SlicedWork {
        var stretch: Stretch?
        var forward = true

        func runSlice(_ part: Int, items images: Range<Int>) throws {
            guard let stretch else { return }
            if forward {
                for segment in stretch.segments {
                    try StretchJob.inParts(images, segment.step) { range in
                        for layer in stretch.layers[segment.layers] { try layer.forward(images: range, slice: part) }
                    }
                }
            } else {
                for segment in stretch.segments.reversed() {
                    try StretchJob.inParts(images, segment.step) { range in
                        for layer in stretch.layers[segment.layers].reversed() {
                            try layer.backward(images: range, slice: part)
                        }
                    }
                }
            }
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
    }

    /// Runs forward and returns a copy of every layer's output, in order, each labelled
    /// `"<index>: <summary>"` (`"0: Dense(4 → 3)"`) — the activations a learner wants to look at.
    /// Copies, because each layer overwrites its output buffer on the next call.
    public func trace(_ input: Tensor) throws -> [(layer: String, output: Tensor)] {
        if let repeated { throw repeatedInstanceError(summary, repeated) }
        forwardPlan = nil   // the layers' caches are now the trace's (plain, unsliced) pass
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
