import BackpropKernels

/// Window geometry shared by the 2-d pooling layers (PyTorch's floor mode, `ceil_mode=False`):
/// input `[N, C, H, W]`, output `[N, C, Ho, Wo]`, `Ho = (H + 2·ph − kh) / sh + 1`.
struct PoolGeometry {
    let kernel: (height: Int, width: Int)
    let stride: (height: Int, width: Int)
    let padding: (height: Int, width: Int)

    init(name: String, kernel: (Int, Int), stride: (Int, Int)?, padding: (Int, Int)) throws {
        guard kernel.0 > 0, kernel.1 > 0 else {
            throw BackpropError.invalidArgument("\(name): kernel size \(kernel) must be positive")
        }
        let s = stride ?? kernel
        guard s.0 > 0, s.1 > 0 else {
            throw BackpropError.invalidArgument("\(name): stride \(s) must be positive")
        }
        // PyTorch: "pad should be at most half of effective kernel size".
        guard padding.0 >= 0, padding.1 >= 0, padding.0 <= kernel.0 / 2, padding.1 <= kernel.1 / 2 else {
            throw BackpropError.invalidArgument("\(name): padding \(padding) must be between 0 and half the kernel \(kernel)")
        }
        self.kernel = (kernel.0, kernel.1)
        self.stride = (s.0, s.1)
        self.padding = (padding.0, padding.1)
    }

    func describe(_ name: String) -> String {
        var s = "\(name)(\(kernel.height)×\(kernel.width)"
        if stride != kernel { s += stride.height == stride.width ? ", stride \(stride.height)" : ", stride \(stride.height)×\(stride.width)" }
        if padding != (0, 0) { s += padding.height == padding.width ? ", padding \(padding.height)" : ", padding \(padding.height)×\(padding.width)" }
        return s + ")"
    }

    func outputShape(for shape: [Int], layer: String) throws -> [Int] {
        guard shape.count == 4 else {
            throw BackpropError.shapeMismatch(where: layer, detail: "expected input [N, C, H, W], got \(shape)")
        }
        let h = shape[2] + 2 * padding.height, w = shape[3] + 2 * padding.width
        guard shape[2] > 0, shape[3] > 0, h >= kernel.height, w >= kernel.width else {
            throw BackpropError.shapeMismatch(
                where: layer,
                detail: "input \(shape) padded to \(h)×\(w) is smaller than the \(kernel.height)×\(kernel.width) window")
        }
        return [shape[0], shape[1], (h - kernel.height) / stride.height + 1, (w - kernel.width) / stride.width + 1]
    }
}

/// Max pooling, PyTorch's `nn.MaxPool2d` (padding counts as −∞, floor mode).
///
///     forward   y[n,c,oy,ox] = max over the window of x     (argmax position remembered)
///     backward  dx[n,c,argmax] += dy[n,c,oy,ox]             (overlapping windows add up)
///
/// Ties go to the first maximum in row-major order within the window, NaN wins, as in PyTorch.
public final class MaxPool2D: BatchSliceable {
    let geometry: PoolGeometry
    public var kernelSize: (height: Int, width: Int) { geometry.kernel }
    public var stride: (height: Int, width: Int) { geometry.stride }
    public var padding: (height: Int, width: Int) { geometry.padding }
    public var isTraining = true

    private var inputShape: [Int]?
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    // Per output element: the index inside its input plane of the maximum (raw storage: slices
    // write disjoint parts of it concurrently).
    private var argmax = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
    private var argmaxCapacity = 0
    private var input: Tensor?                   // set by beginForward for forward(images:)
    private var outputGradient: Tensor?          // set by beginBackward for backward(images:)
    private var saved = ForwardRecord()          // the output, whose shape (and values, for a folded ReLU mask) backward reads
    private let batchSlices = BatchSlices()

    deinit { argmax.deallocate() }

    /// Batch slices processed concurrently (default 1), as in `Conv2D.threads`: each slice
    /// pools its own images, so results do not depend on the count.
    public var threads = 1
    public func useThreads(_ count: Int) { threads = Swift.max(1, count) }
    public var prefersBatchSlices: Bool { true }
    /// Set by `StretchPlan` when a ReLU comes right before this layer in a sliced stretch: the
    /// sliced backward keeps δ only where the pooled output is > 0, which is that ReLU's backward
    /// (its output at each window's maximum is the pooled value; elsewhere δ is 0 anyway), and
    /// the ReLU skips its own pass.
    var fusion = Fusion.none
    public var canApplyPrecedingReLUMask: Bool { true }
    public func setFusion(_ fusion: Fusion) { self.fusion = fusion }

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
        // Images are split into slices run concurrently (`threads`); planes are independent.
        try batchSlices.run(count: count, items: images) { slice, range in try self.forward(images: range, slice: slice) }
        return y
    }

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        output.resize(to: outShape)
        if argmaxCapacity < output.count {
            argmax.deallocate()
            argmax = .allocate(capacity: output.count)
            argmaxCapacity = output.count
        }
        inputShape = x.shape
        input = x
        saved.save(output)
        return output
    }

    public func forward(images range: Range<Int>, slice: Int) throws {
        guard let x = input else { throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward") }
        let h = x.shape[2], w = x.shape[3], ho = output.shape[2], wo = output.shape[3]
        let (kh, kw) = geometry.kernel, (sh, sw) = geometry.stride, (ph, pw) = geometry.padding
        let twoByTwo = geometry.kernel == (2, 2) && geometry.stride == (2, 2) && geometry.padding == (0, 0)
        let src = x.data, dst = output.data, am = argmax, perImage = x.shape[1]
        let first = range.lowerBound * perImage, count = range.count * perImage
        let planeIn = h * w, planeOut = ho * wo
        if twoByTwo {
            MaxPool2D.forward2x2(src + first * planeIn, planes: count, height: h, width: w, outHeight: ho, outWidth: wo,
                                 into: dst + first * planeOut, argmax: am + first * planeOut)
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
                    yp[oy * wo + ox] = best
                    ap[oy * wo + ox] = Int32(at)
                }
            }
        }
    }

    /// The common 2×2, stride 2 case with compare-and-select on 8 (or 4) outputs at a time
    /// (explicit SIMD, no branches): the first maximum in row-major window order wins, and the
    /// first NaN. A row's last chunk overlaps the previous one when the width is not a multiple
    /// of the lanes (it rewrites the same values); rows narrower than 4 outputs go one by one.
    private static func forward2x2(_ src: UnsafeMutablePointer<Float>, planes: Int, height h: Int, width w: Int,
                                   outHeight ho: Int, outWidth wo: Int,
                                   into dst: UnsafeMutablePointer<Float>, argmax am: UnsafeMutablePointer<Int32>) {
        let lanes8 = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14), lanes4 = SIMD4<Int32>(0, 2, 4, 6)
        for plane in 0..<planes {
            let xp = src + plane * h * w, yp = dst + plane * ho * wo, ap = am + plane * ho * wo
            for oy in 0..<ho {
                let r0 = xp + 2 * oy * w, r1 = r0 + w, y = yp + oy * wo, a = ap + oy * wo
                let top = Int32(2 * oy * w), bottom = top + Int32(w)
                if wo >= 8 {
                    var ox = 0
                    while true {
                        let u = UnsafeRawPointer(r0 + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
                        let l = UnsafeRawPointer(r1 + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
                        let c = lanes8 &+ Int32(2 * ox)
                        var best = u.evenHalf, at = c &+ top
                        var v = u.oddHalf, m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ (top + 1), where: m)
                        v = l.evenHalf; m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ bottom, where: m)
                        v = l.oddHalf; m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ (bottom + 1), where: m)
                        VectorLoops.store8(best, y, ox)
                        UnsafeMutableRawPointer(a + ox).storeBytes(of: at, as: SIMD8<Int32>.self)
                        if ox + 8 == wo { break }
                        ox = Swift.min(ox + 8, wo - 8)
                    }
                } else if wo >= 4 {
                    var ox = 0
                    while true {
                        let u = UnsafeRawPointer(r0 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self)
                        let l = UnsafeRawPointer(r1 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self)
                        let c = lanes4 &+ Int32(2 * ox)
                        var best = u.evenHalf, at = c &+ top
                        var v = u.oddHalf, m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ (top + 1), where: m)
                        v = l.evenHalf; m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ bottom, where: m)
                        v = l.oddHalf; m = (v .> best) .| ((v .!= v) .& (best .== best))
                        best.replace(with: v, where: m); at.replace(with: c &+ (bottom + 1), where: m)
                        VectorLoops.store4(best, y, ox)
                        UnsafeMutableRawPointer(a + ox).storeBytes(of: at, as: SIMD4<Int32>.self)
                        if ox + 4 == wo { break }
                        ox = Swift.min(ox + 4, wo - 4)
                    }
                } else {
                    for ox in 0..<wo {
                        let c = 2 * ox
                        var best = r0[c], at = top + Int32(c)
                        var v = r0[c + 1]
                        if v > best || (v.isNaN && !best.isNaN) { best = v; at = top + Int32(c + 1) }
                        v = r1[c]
                        if v > best || (v.isNaN && !best.isNaN) { best = v; at = bottom + Int32(c) }
                        v = r1[c + 1]
                        if v > best || (v.isNaN && !best.isNaN) { best = v; at = bottom + Int32(c + 1) }
                        y[ox] = best
                        a[ox] = at
                    }
                }
            }
        }
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        let images = inputShape?.first ?? 0, count = BatchSlices.count(threads: threads, items: images)
        let dx = try beginBackward(dy, slices: count)
        try batchSlices.run(count: count, items: images) { slice, range in try self.backward(images: range, slice: slice) }
        endBackward(slices: count)
        return dx
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        _ = try saved.take(matching: dy, summary)
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        inputGradient.resize(to: shape)
        outputGradient = dy
        return inputGradient
    }

    public func backward(images range: Range<Int>, slice: Int) throws {
        guard let shape = inputShape, let dy = outputGradient else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        let perImage = shape[1], planeSize = shape[2] * shape[3], outPlane = output.shape[2] * output.shape[3]
        let g = dy.data, dx = inputGradient.data, am = argmax
        let first = range.lowerBound * perImage, last = range.upperBound * perImage
        if geometry.kernel == (2, 2) && geometry.stride == (2, 2) && geometry.padding == (0, 0) {
            // C kernel: writes every position once (δ at the maximum, 0 elsewhere), no zeroing pass
            bp_maxpool2x2_backward(g + first * outPlane, am + first * outPlane,
                                   fusion.appliesPrecedingReLUMask ? output.data + first * outPlane : nil, dx + first * planeSize,
                                   last - first, shape[2], shape[3], output.shape[2], output.shape[3])
            return
        }
        (dx + first * planeSize).update(repeating: 0, count: (last - first) * planeSize)
        for plane in first..<last {
            let gp = g + plane * outPlane, ap = am + plane * outPlane, dp = dx + plane * planeSize
            if fusion.appliesPrecedingReLUMask {
                let yp = output.data + plane * outPlane
                for j in 0..<outPlane where yp[j] > 0 { dp[Int(ap[j])] += gp[j] }
            } else {
                for j in 0..<outPlane { dp[Int(ap[j])] += gp[j] }
            }
        }
    }

    public func endBackward(slices: Int) { outputGradient = nil; input = nil }
}

/// Average pooling, PyTorch's `nn.AvgPool2d` (floor mode). With `countIncludePad` (PyTorch's
/// default) every window is divided by kh·kw, padding counted as zeros; otherwise by the number
/// of real input positions it covers.
///
///     forward   y[n,c,oy,ox] = Σ_window x / d
///     backward  dx[window]  += dy[n,c,oy,ox] / d
public final class AvgPool2D: Layer {
    let geometry: PoolGeometry
    public let countIncludePad: Bool
    public var kernelSize: (height: Int, width: Int) { geometry.kernel }
    public var stride: (height: Int, width: Int) { geometry.stride }
    public var padding: (height: Int, width: Int) { geometry.padding }
    public var isTraining = true

    private var inputShape: [Int]?
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private var saved = ForwardRecord()          // the output, whose shape backward reads

    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                countIncludePad: Bool = true) throws {
        geometry = try PoolGeometry(name: "AvgPool2D", kernel: kernelSize, stride: stride, padding: padding)
        self.countIncludePad = countIncludePad
    }

    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) throws {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                      countIncludePad: countIncludePad)
    }

    public var summary: String { geometry.describe("AvgPool2D") }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    /// Visits each output position with its clipped window and divisor.
    @inline(__always)
    private func forEachWindow(h: Int, w: Int, ho: Int, wo: Int,
                               _ body: (_ out: Int, _ y0: Int, _ y1: Int, _ x0: Int, _ x1: Int, _ scale: Float) -> Void) {
        let (kh, kw) = geometry.kernel, (sh, sw) = geometry.stride, (ph, pw) = geometry.padding
        let full = 1 / Float(kh * kw)
        for oy in 0..<ho {
            let y0 = Swift.max(oy * sh - ph, 0), y1 = Swift.min(oy * sh - ph + kh, h)
            for ox in 0..<wo {
                let x0 = Swift.max(ox * sw - pw, 0), x1 = Swift.min(ox * sw - pw + kw, w)
                // A window always holds at least one real position (padding ≤ kernel / 2).
                let scale = countIncludePad ? full : 1 / Float(Swift.max((y1 - y0) * (x1 - x0), 1))
                body(oy * wo + ox, y0, y1, x0, x1, scale)
            }
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let outShape = try geometry.outputShape(for: x.shape, layer: summary)
        let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
        let ho = outShape[2], wo = outShape[3]
        output.resize(to: outShape)
        inputShape = x.shape
        for plane in 0..<planes {
            let xp = x.data + plane * h * w, yp = output.data + plane * ho * wo
            forEachWindow(h: h, w: w, ho: ho, wo: wo) { o, y0, y1, x0, x1, scale in
                var s: Float = 0
                for iy in y0..<y1 { for ix in x0..<x1 { s += xp[iy * w + ix] } }
                yp[o] = s * scale
            }
        }
        saved.save(output)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        _ = try saved.take(matching: dy, summary)
        guard let shape = inputShape else {
            throw BackpropError.invalidUse(where: summary, detail: "backward called before forward")
        }
        inputGradient.resize(to: shape)
        inputGradient.fill(0)
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        let ho = output.shape[2], wo = output.shape[3]
        for plane in 0..<planes {
            let gp = dy.data + plane * ho * wo, dp = inputGradient.data + plane * h * w
            forEachWindow(h: h, w: w, ho: ho, wo: wo) { o, y0, y1, x0, x1, scale in
                let d = gp[o] * scale
                for iy in y0..<y1 { for ix in x0..<x1 { dp[iy * w + ix] += d } }
            }
        }
        return inputGradient
    }
}

/// PyTorch's names.
public typealias MaxPool2d = MaxPool2D
public typealias AvgPool2d = AvgPool2D
