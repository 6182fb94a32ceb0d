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
    /// convolution, its ReLU and its pooling, …) runs as one set of concurrent batch slices:
    /// a slice takes `preferredImagesPerCall` images at a time through the whole stretch while
    /// they are in its core's cache. Results are those of the layers run one by one.
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

    private func forward(_ stretch: [BatchSliceable], _ input: Tensor) throws -> Tensor {
        let n = input.rank == 0 ? 0 : input.shape[0]
        let count = BatchSlices.count(threads: threads, items: n)
        let step = stretch.map(\.preferredImagesPerCall).max() ?? 1
        var x = input
        for layer in stretch { x = try layer.beginForward(x, slices: count) }
        try batchSlices.run(count: count, items: n) { slice, images in
            var first = images.lowerBound
            while first < images.upperBound {
                let part = first..<Swift.min(first + step, images.upperBound)
                for layer in stretch { try layer.forward(images: part, slice: slice) }
                first = part.upperBound
            }
        }
        return x
    }

    private func backward(_ stretch: [BatchSliceable], _ outputGradient: Tensor) throws -> Tensor {
        let n = outputGradient.rank == 0 ? 0 : outputGradient.shape[0]
        let count = BatchSlices.count(threads: threads, items: n)
        let step = stretch.map(\.preferredImagesPerCall).max() ?? 1
        var g = outputGradient
        for layer in stretch.reversed() { g = try layer.beginBackward(g, slices: count) }
        try batchSlices.run(count: count, items: n) { slice, images in
            var first = images.lowerBound
            while first < images.upperBound {
                let part = first..<Swift.min(first + step, images.upperBound)
                for layer in stretch.reversed() { try layer.backward(images: part, slice: slice) }
                first = part.upperBound
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
