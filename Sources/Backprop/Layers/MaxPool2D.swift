import BackpropKernels

/// Max pooling, PyTorch's `nn.MaxPool2d` (padding counts as −∞, floor mode).
///
///     forward   y[n,c,oy,ox] = max over the window of x     (argmax position remembered)
///     backward  dx[n,c,argmax] += dy[n,c,oy,ox]             (overlapping windows add up)
///
/// Ties go to the first maximum in row-major order within the window, NaN wins, as in PyTorch.
public final class MaxPool2D: Layer {
    let geometry: PoolGeometry
    public var kernelSize: (height: Int, width: Int) { geometry.kernel }
    public var stride: (height: Int, width: Int) { geometry.stride }
    public var padding: (height: Int, width: Int) { geometry.padding }
    public var isTraining = true

    var inputShape: [Int]?
    let output = Tensor(uncheckedShape: [0])
    let inputGradient = Tensor(uncheckedShape: [0])
    // Per output element: the index inside its input plane of the maximum (raw storage: slices
    // write disjoint parts of it concurrently).
    var argmax = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
    var argmaxCapacity = 0
    var input: Tensor?                   // set by beginForward for forward(images:)
    var outputGradient: Tensor?          // set by beginBackward for backward(images:)
    var saved = ForwardRecord()          // the output, whose shape (and values, for a folded ReLU mask) backward reads
    let batchSlices = BatchSlices()
    var fusion = Fusion.none                     // set by StretchPlan (MaxPool2D+BatchSlices.swift)
    /// The fusion the last forward ran with, which its backward follows: `fusion` in a stretch's
    /// run (`beginForward`), none in a call of the layer's own (`forward(_:)`), which must pool its
    /// input as it is even after a model's stretch has fused a ReLU into this layer.
    var passFusion = Fusion.none

    deinit { argmax.deallocate() }

    /// Batch slices processed concurrently (default `Parallelism.defaultThreads`; set with `useThreads`), as in `Conv2D.threads`: each slice
    /// pools its own images, so results do not depend on the count.
    public internal(set) var threads = Parallelism.defaultThreads
    public func useThreads(_ count: Int) { threads = Swift.max(1, count) }

    /// `stride` defaults to the kernel size, as in PyTorch.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) throws {
        geometry = try PoolGeometry(name: "MaxPool2D", kernel: kernelSize, stride: stride, padding: padding)
    }

    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) throws {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding))
    }

    public var summary: String { geometry.describe("MaxPool2D") }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func forward(_ x: Tensor) throws -> Tensor {
        let images = x.shape.first ?? 0, count = BatchSlices.count(threads: threads, items: images)
        let y = try beginForward(x, slices: count)
        passFusion = .none   // a call of its own: no ReLU of a stretch folded in
        // Images are split into slices run concurrently (`threads`); planes are independent.
        try batchSlices.run(count: count, items: images) { slice, range in try self.forward(images: range, slice: slice) }
        return y
    }


    public func forward(images range: Range<Int>, slice: Int) throws {
        guard let x = input else { throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward") }
        MaxPool2D.forward(images: range, x: x, geometry: geometry, into: output, argmax: argmax,
                          relu: passFusion.appliesPrecedingReLUMask)
    }

    // MARK: - The math, on a range of images (the layer's slices and the graph's calls share it)

    /// y = the maximum of each window and argmax = its index inside its input plane, for the
    /// planes of `images`; `output` is shaped `[N, C, Ho, Wo]` for x and `geometry`, and `argmax`
    /// holds at least `output.count` entries. With `relu`, y is then max(y, 0) (NaN stays): the
    /// forward of a ReLU right before the pooling, folded in (max and ReLU commute; the argmax of
    /// a window whose maximum is not positive may then differ, but the folded mask drops its δ).
    static func forward(images range: Range<Int>, x: Tensor, geometry: PoolGeometry, into output: Tensor,
                        argmax am: UnsafeMutablePointer<Int32>, relu: Bool = false) {
        let h = x.shape[2], w = x.shape[3], ho = output.shape[2], wo = output.shape[3]
        let (kh, kw) = geometry.kernel, (sh, sw) = geometry.stride, (ph, pw) = geometry.padding
        let twoByTwo = geometry.kernel == (2, 2) && geometry.stride == (2, 2) && geometry.padding == (0, 0)
        let src = x.data, dst = output.data, perImage = x.shape[1]
        let first = range.lowerBound * perImage, count = range.count * perImage
        let planeIn = h * w, planeOut = ho * wo
        if twoByTwo {
            // C kernel (compare-and-select on 8 or 4 windows at a time, the widest instruction set the CPU has)
            bp_maxpool2x2_forward(src + first * planeIn, dst + first * planeOut, am + first * planeOut,
                                  count, h, w, ho, wo, relu ? 1 : 0)
            return
        }
        for plane in first..<(first + count) {
            let xp = src + plane * planeIn, yp = dst + plane * planeOut, ap = am + plane * planeOut
            for oy in 0..<ho {
                let y0 = Swift.max(oy * sh - ph, 0), y1 = Swift.min(oy * sh - ph + kh, h)
                for ox in 0..<wo {
                    let x0 = Swift.max(ox * sw - pw, 0), x1 = Swift.min(ox * sw - pw + kw, w)
                    var best = -Float.infinity, at = y0 * w + x0
                    for iy in y0..<y1 {
                        for ix in x0..<x1 {
                            let v = xp[iy * w + ix]
                            if v > best || v.isNaN { best = v; at = iy * w + ix; if v.isNaN { break } }
                        }
                        if best.isNaN { break }
                    }
                    yp[oy * wo + ox] = relu && best <= 0 ? 0 : best
                    ap[oy * wo + ox] = Int32(at)
                }
            }
        }
    }

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let images = inputShape?.first ?? 0, count = BatchSlices.count(threads: threads, items: images)
        let dx = try beginBackward(dy, slices: count)
        try batchSlices.run(count: count, items: images) { slice, range in try self.backward(images: range, slice: slice) }
        endBackward(slices: count)
        return dx
    }


    public func backward(images range: Range<Int>, slice: Int) throws {
        guard inputShape != nil, let dy = outputGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        MaxPool2D.backward(images: range, dy: dy, argmax: argmax, geometry: geometry,
                           reluMask: passFusion.appliesPrecedingReLUMask ? output : nil, into: inputGradient)
    }

    /// dx[argmax] += dy for the planes of `images` (every other position of their planes 0);
    /// `dx` is shaped as the input, `dy` as the output. With `reluMask` (the pooled output) δ is
    /// kept only where it is > 0: the backward of a ReLU right before the pooling, folded in.
    static func backward(images range: Range<Int>, dy: Tensor, argmax am: UnsafeMutablePointer<Int32>, geometry: PoolGeometry,
                         reluMask: Tensor?, into inputGradient: Tensor) {
        let shape = inputGradient.shape
        let perImage = shape[1], planeSize = shape[2] * shape[3], outPlane = dy.shape[2] * dy.shape[3]
        let g = dy.data, dx = inputGradient.data
        let first = range.lowerBound * perImage, last = range.upperBound * perImage
        if geometry.kernel == (2, 2) && geometry.stride == (2, 2) && geometry.padding == (0, 0) {
            // C kernel: writes every position once (δ at the maximum, 0 elsewhere), no zeroing pass
            bp_maxpool2x2_backward(g + first * outPlane, am + first * outPlane,
                                   reluMask.map { $0.data + first * outPlane }, dx + first * planeSize,
                                   last - first, shape[2], shape[3], dy.shape[2], dy.shape[3])
            return
        }
        (dx + first * planeSize).update(repeating: 0, count: (last - first) * planeSize)
        for plane in first..<last {
            let gp = g + plane * outPlane, ap = am + plane * outPlane, dp = dx + plane * planeSize
            if let reluMask {
                let yp = reluMask.data + plane * outPlane
                for j in 0..<outPlane where yp[j] > 0 { dp[Int(ap[j])] += gp[j] }
            } else {
                for j in 0..<outPlane { dp[Int(ap[j])] += gp[j] }
            }
        }
    }
}

/// PyTorch's name.
public typealias MaxPool2d = MaxPool2D
