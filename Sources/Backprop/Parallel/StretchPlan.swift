/// How a `Sequential`'s layers run on more than one thread: which runs of consecutive
/// `BatchSliceable` layers go through batch slices together ("stretches"), and what the layers
/// of a stretch fuse.
///
/// A stretch is two or more consecutive `BatchSliceable` layers, one of which prefers batch slices
/// (a convolution or pooling: see `prefersBatchSlices`); with one thread there are none, and an MLP
/// (dense layers alone) keeps OpenBLAS's own threads on whole-batch products. A stretch runs as ONE
/// set of concurrent batch slices on `WorkerPool.shared`: a slice takes `preferredImagesPerCall`
/// images at a time through consecutive layers (one image through convolution, ReLU and pooling
/// while it is in its core's cache; all of its images through a dense layer), so the cores meet
/// once per stretch and direction, and every product runs single-threaded inside a slice (OpenBLAS
/// is set to one thread meanwhile). Per-image values equal the layers' own runs; parameter
/// gradients are summed over slices in slice order, so they differ from one slice only by rounding
/// and repeat exactly for a given thread count.
///
/// Fusion inside a stretch, from the layers' own declarations (`BatchSliceable`):
/// - an element-wise layer that `canRunInPlace` right after one whose backward does not read its
///   output works in place (forward over that output; backward over δ unless it is the stretch's
///   last layer);
/// - a layer whose backward `backwardIsPositiveOutputMask` (ReLU) right before one that
///   `canApplyPrecedingReLUMask` (max pooling) leaves its mask to it, and, when it also works in
///   place, its forward (the pooling applies the ReLU to its maxima).
/// Layers outside stretches are set to `Fusion.none`. Nothing is allocated per call once sized.
final class StretchPlan {
    /// A run of layers going through batch slices together.
    final class Stretch {
        let start: Int                          // index of its first layer in the layer list
        let layers: [BatchSliceable]
        /// Consecutive layers taking the same number of images per call, with that number.
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
        }

        /// What each layer of the stretch fuses with its neighbours.
        var fusions: [Fusion] {
            var list = [Fusion](repeating: .none, count: layers.count)
            for (i, layer) in layers.enumerated() {
                if layer.canRunInPlace, i > 0, !layers[i - 1].backwardReadsOutput {
                    list[i].inPlaceForward = true
                    list[i].inPlaceBackward = i + 1 < layers.count
                }
                if layer.backwardIsPositiveOutputMask, i + 1 < layers.count, layers[i + 1].canApplyPrecedingReLUMask {
                    list[i].maskAppliedByNext = true
                    list[i + 1].appliesPrecedingReLUMask = true
                }
            }
            return list
        }
    }

    let threads: Int
    let stretches: [Stretch]
    /// Every layer's output in the last forward. Backward first checks that none changed since: a
    /// layer whose forward ran again (an instance shared with another model) would otherwise pair
    /// its backward with that other pass.
    private var outputs: [ForwardRecord] = []
    private let job = StretchJob()
    private let slices = BatchSlices()

    /// Finds the stretches of `layers` for `threads` and sets every layer's fusion.
    init(layers: [Layer], threads: Int) {
        self.threads = threads
        for layer in layers { (layer as? BatchSliceable)?.setFusion(.none) }
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
        for stretch in stretches {
            for (layer, fusion) in zip(stretch.layers, stretch.fusions) { layer.setFusion(fusion) }
        }
    }

    /// Runs `layers` forward: each stretch as one sliced run, every other layer plainly.
    func forward(_ layers: [Layer], _ input: Tensor) throws -> Tensor {
        outputs.removeAll(keepingCapacity: true)
        var x = input, i = 0, next = 0
        while i < layers.count {
            if next < stretches.count && stretches[next].start == i {
                x = try run(stretches[next], forward: true, x)
                i += stretches[next].layers.count
                next += 1
            } else {
                x = try layers[i].forward(x)
                noteOutput(x)
                i += 1
            }
        }
        return x
    }

    /// Runs `layers` backward, in reverse, with the same stretches, after checking that no layer ran
    /// another forward since this plan's (`container` names the model in the error).
    /// `finished(i)` follows each step: layers i… have run their backward.
    func backward(_ layers: [Layer], _ outputGradient: Tensor, container: @autoclosure () -> String,
                  finished: (Int) throws -> Void = { _ in }) throws -> Tensor {
        for output in outputs { _ = try output.peek(container()) }
        var g = outputGradient, i = layers.count, next = stretches.count - 1
        while i > 0 {
            if next >= 0 && stretches[next].start + stretches[next].layers.count == i {
                g = try run(stretches[next], forward: false, g)
                i = stretches[next].start
                next -= 1
            } else {
                i -= 1
                g = try layers[i].backward(g)
            }
            try finished(i)
        }
        return g
    }

    /// Runs one stretch forward (input → output) or backward (δ of its output → δ of its input).
    private func run(_ stretch: Stretch, forward: Bool, _ tensor: Tensor) throws -> Tensor {
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

    private func noteOutput(_ t: Tensor) {
        var record = ForwardRecord()
        record.save(t)
        outputs.append(record)
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
}
