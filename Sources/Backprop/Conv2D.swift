/// 2-d convolution, PyTorch's `nn.Conv2d`: input `[N, C, H, W]` (NCHW), weight
/// `[out, C, kh, kw]`, bias `[out]`, output `[N, out, Ho, Wo]` with
/// `Ho = (H + 2·ph − kh) / sh + 1` and `Wo = (W + 2·pw − kw) / sw + 1` (floor).
///
/// Every product is one `gemm` on im2col columns. For a group of G images (`imagesPerGemm`),
/// `cols` is `[C·kh·kw, G·Ho·Wo]`: row (c, i, j), column (g, oy, ox) holds
/// `x[g, c, oy·sh − ph + i, ox·sw − pw + j]` (zero in the padding).
///
///     forward   Y   = W·cols + b      [out, G·P] = [out, K]·[K, G·P]     sgemm NoTrans/NoTrans
///     backward  dW += dY·colsᵀ        [out, K]   = [out, G·P]·[G·P, K]   sgemm NoTrans/Trans
///               db += Σ dY over N, Ho, Wo
///               dcols = Wᵀ·dY         [K, G·P]   = [K, out]·[out, G·P]   sgemm Trans/NoTrans
///               dX  = col2im(dcols)   (accumulating: overlapping windows add up)
///
/// with K = C·kh·kw and P = Ho·Wo. With G = 1 (the default, fastest measured on MNIST shapes)
/// the product writes straight into the image's slice of Y, which is already `[out, P]`, and
/// the bias is fused by pre-filling Y and running sgemm with β = 1. With G > 1 the product goes
/// into a scratch `[out, G·P]` that is then scattered into NCHW. The columns are recomputed in
/// backward (cheaper than keeping `[K, N·P]` for the whole batch). A 1×1 kernel with stride 1
/// and no padding skips im2col: the image itself is the `[C, H·W]` column matrix.
public final class Conv2D: Layer {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: (height: Int, width: Int)
    public let stride: (height: Int, width: Int)
    public let padding: (height: Int, width: Int)
    public let weight: Parameter
    public let bias: Parameter?
    public var isTraining = true
    /// Images whose columns go through one gemm (G above). 1 writes Y in place and keeps the
    /// columns of one image in cache; larger groups make fewer, larger products.
    public var imagesPerGemm = 1

    private var input: Tensor?                          // cached: backward rebuilds its columns
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])
    private let columns = Tensor(uncheckedShape: [0])
    private let columnGradient = Tensor(uncheckedShape: [0])
    private let scratch = Tensor(uncheckedShape: [0])   // [out, G·P] when G > 1

    /// The designated initialiser: kernel, stride and padding as (height, width).
    /// Weight and bias get PyTorch's default, kaiming_uniform(a = √5) = U(−1/√fan_in, 1/√fan_in)
    /// with fan_in = C·kh·kw, and the same bound for the bias.
    public init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int),
                padding: (Int, Int) = (0, 0), bias: Bool = true,
                initializer: Initializer = .pytorchDefault, rng: inout SeededGenerator) throws {
        let description = "Conv2D(\(inChannels) → \(outChannels), \(kernelSize.0)×\(kernelSize.1))"
        guard inChannels > 0, outChannels > 0 else {
            throw BackpropError.invalidArgument("\(description): channel counts must be positive")
        }
        guard kernelSize.0 > 0, kernelSize.1 > 0 else {
            throw BackpropError.invalidArgument("\(description): kernel size must be positive")
        }
        guard stride.0 > 0, stride.1 > 0 else {
            throw BackpropError.invalidArgument("\(description): stride \(stride) must be positive")
        }
        guard padding.0 >= 0, padding.1 >= 0 else {
            throw BackpropError.invalidArgument("\(description): padding \(padding) must not be negative")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = (kernelSize.0, kernelSize.1)
        self.stride = (stride.0, stride.1)
        self.padding = (padding.0, padding.1)
        weight = Parameter(try Tensor(zeros: [outChannels, inChannels, kernelSize.0, kernelSize.1]))
        try initializer.fill(weight.value, using: &rng)
        if bias {
            let b = Parameter(try Tensor(zeros: [outChannels]))
            let bound = 1 / Float(inChannels * kernelSize.0 * kernelSize.1).squareRoot()
            b.value.fillUniform(-bound, bound, using: &rng)
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    /// Square kernel, equal stride and padding in both directions (`Conv2d(1, 6, 5)`).
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, rng: inout SeededGenerator) throws {
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: (kernelSize, kernelSize),
                      stride: (stride, stride), padding: (padding, padding), bias: bias, rng: &rng)
    }

    /// Rectangular kernel, equal stride and padding in both directions.
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, rng: inout SeededGenerator) throws {
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: (stride, stride), padding: (padding, padding), bias: bias, rng: &rng)
    }

    /// Square kernel, default initialisation from a fixed seed.
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: stride, padding: padding, bias: bias, rng: &rng)
    }

    /// Rectangular kernel, default initialisation from a fixed seed.
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: Int = 1,
                            padding: Int = 0, bias: Bool = true, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: stride, padding: padding, bias: bias, rng: &rng)
    }

    public var summary: String {
        var s = "Conv2D(\(inChannels) → \(outChannels), \(kernelSize.height)×\(kernelSize.width)"
        if stride != (1, 1) {
            s += stride.height == stride.width ? ", stride \(stride.height)" : ", stride \(stride.height)×\(stride.width)"
        }
        if padding != (0, 0) {
            s += padding.height == padding.width ? ", padding \(padding.height)" : ", padding \(padding.height)×\(padding.width)"
        }
        return s + (bias == nil ? ", no bias)" : ")")
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list = [(name: "weight", parameter: weight)]
        if let bias { list.append((name: "bias", parameter: bias)) }
        return list
    }

    /// Output shape for an input shape; throws a shape error naming the layer if it does not fit.
    public func outputShape(for shape: [Int]) throws -> [Int] {
        guard shape.count == 4 else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input [N, \(inChannels), H, W], got \(shape)")
        }
        guard shape[1] == inChannels else {
            throw BackpropError.shapeMismatch(where: summary,
                                              detail: "expected \(inChannels) input channels, got input \(shape)")
        }
        let h = shape[2] + 2 * padding.height, w = shape[3] + 2 * padding.width
        guard shape[2] > 0, shape[3] > 0, h >= kernelSize.height, w >= kernelSize.width else {
            throw BackpropError.shapeMismatch(
                where: summary,
                detail: "input \(shape) padded to \(h)×\(w) is smaller than the \(kernelSize.height)×\(kernelSize.width) kernel")
        }
        return [shape[0], outChannels, (h - kernelSize.height) / stride.height + 1, (w - kernelSize.width) / stride.width + 1]
    }

    private var isPointwise: Bool {
        kernelSize == (1, 1) && stride == (1, 1) && padding == (0, 0)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let outShape = try outputShape(for: x.shape)
        let n = x.shape[0], h = x.shape[2], w = x.shape[3]
        let ho = outShape[2], wo = outShape[3]
        let k = inChannels * kernelSize.height * kernelSize.width, p = ho * wo
        let imageSize = inChannels * h * w, outImageSize = outChannels * p
        output.resize(to: outShape)
        input = x
        let g = max(1, min(imagesPerGemm, n))
        let pointwise = isPointwise && g == 1
        if !pointwise { columns.resize(to: [k, g * p]) }
        if g > 1 { scratch.resize(to: [outChannels, g * p]) }
        let wM = Matrix(weight.value.data, rows: outChannels, columns: k)
        var n0 = 0
        while n0 < n {
            let gs = min(g, n - n0), ld = gs * p
            let cols: UnsafeMutablePointer<Float>
            if pointwise {
                cols = x.data + n0 * imageSize
            } else {
                cols = columns.data
                for i in 0..<gs {
                    im2col(x.data + (n0 + i) * imageSize, height: h, width: w, outHeight: ho, outWidth: wo,
                           into: cols + i * p, rowStride: ld)
                }
            }
            let target = gs == 1 ? output.data + n0 * outImageSize : scratch.data
            if let bias {
                let b = bias.value.data
                for o in 0..<outChannels { (target + o * ld).update(repeating: b[o], count: ld) }
            }
            try gemm(wM, Matrix(cols, rows: k, columns: ld), into: Matrix(target, rows: outChannels, columns: ld),
                     beta: bias == nil ? 0 : 1, caller: summary)
            if gs > 1 {
                for i in 0..<gs {
                    let image = output.data + (n0 + i) * outImageSize
                    for o in 0..<outChannels { (image + o * p).update(from: target + o * ld + i * p, count: p) }
                }
            }
            n0 += gs
        }
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let x = input else {
            throw BackpropError.invalidArgument("\(summary): backward called before forward")
        }
        try requireSameShape(dy, output, layer: summary)
        let n = x.shape[0], h = x.shape[2], w = x.shape[3]
        let ho = output.shape[2], wo = output.shape[3]
        let k = inChannels * kernelSize.height * kernelSize.width, p = ho * wo
        let imageSize = inChannels * h * w, outImageSize = outChannels * p
        inputGradient.resize(to: x.shape)
        let g = max(1, min(imagesPerGemm, n))
        let pointwise = isPointwise && g == 1
        if !pointwise {
            columns.resize(to: [k, g * p])
            columnGradient.resize(to: [k, g * p])
        }
        if g > 1 { scratch.resize(to: [outChannels, g * p]) }
        let wM = Matrix(weight.value.data, rows: outChannels, columns: k)
        let dwM = Matrix(weight.grad.data, rows: outChannels, columns: k)
        // db += Σ dY over the batch and every output position
        if let bias {
            let db = bias.grad.data
            for i in 0..<n {
                let image = dy.data + i * outImageSize
                for o in 0..<outChannels {
                    let row = image + o * p
                    var s: Float = 0
                    for j in 0..<p { s += row[j] }
                    db[o] += s
                }
            }
        }
        var n0 = 0
        while n0 < n {
            let gs = min(g, n - n0), ld = gs * p
            // dY of the group as [out, gs·P]
            let dyG: UnsafeMutablePointer<Float>
            if gs == 1 {
                dyG = dy.data + n0 * outImageSize
            } else {
                dyG = scratch.data
                for i in 0..<gs {
                    let image = dy.data + (n0 + i) * outImageSize
                    for o in 0..<outChannels { (dyG + o * ld + i * p).update(from: image + o * p, count: p) }
                }
            }
            let dyM = Matrix(dyG, rows: outChannels, columns: ld)
            if pointwise {
                let xM = Matrix(x.data + n0 * imageSize, rows: k, columns: p)
                // dW += dY·Xᵀ ; dX = Wᵀ·dY
                try gemm(dyM, xM, transposeB: true, into: dwM, beta: 1, caller: summary)
                try gemm(wM, transposeA: true, dyM, into: Matrix(inputGradient.data + n0 * imageSize, rows: k, columns: p),
                         caller: summary)
            } else {
                let cols = columns.data, dcols = columnGradient.data
                for i in 0..<gs {
                    im2col(x.data + (n0 + i) * imageSize, height: h, width: w, outHeight: ho, outWidth: wo,
                           into: cols + i * p, rowStride: ld)
                }
                // dW += dY·colsᵀ
                try gemm(dyM, Matrix(cols, rows: k, columns: ld), transposeB: true, into: dwM, beta: 1, caller: summary)
                // dcols = Wᵀ·dY
                try gemm(wM, transposeA: true, dyM, into: Matrix(dcols, rows: k, columns: ld), caller: summary)
                for i in 0..<gs {
                    let dx = inputGradient.data + (n0 + i) * imageSize
                    dx.update(repeating: 0, count: imageSize)
                    col2im(dcols + i * p, rowStride: ld, height: h, width: w, outHeight: ho, outWidth: wo, into: dx)
                }
            }
            n0 += gs
        }
        return inputGradient
    }

    // MARK: - im2col / col2im

    /// The range of output columns `ox` whose input column `ox·s − pad + j` lies in `0..<w`.
    @inline(__always)
    private static func validRange(offset j: Int, stride s: Int, pad: Int, size w: Int, outSize wo: Int) -> Range<Int> {
        // ox·s ≥ pad − j   and   ox·s ≤ w − 1 + pad − j
        let a = pad - j, b = w - 1 + pad - j
        let lo = a <= 0 ? 0 : (a + s - 1) / s
        let hi = b < 0 ? 0 : Swift.min(wo, b / s + 1)
        return lo < hi ? lo..<hi : lo..<lo
    }

    /// Writes one image's `[K, Ho·Wo]` columns; row r starts at `cols + r·rowStride`.
    private func im2col(_ x: UnsafeMutablePointer<Float>, height h: Int, width w: Int, outHeight ho: Int, outWidth wo: Int,
                        into cols: UnsafeMutablePointer<Float>, rowStride ld: Int) {
        let (kh, kw) = kernelSize, (sh, sw) = stride, (ph, pw) = padding
        var r = 0
        for c in 0..<inChannels {
            let plane = x + c * h * w
            for i in 0..<kh {
                for j in 0..<kw {
                    let row = cols + r * ld
                    r += 1
                    let xs = Conv2D.validRange(offset: j, stride: sw, pad: pw, size: w, outSize: wo)
                    for oy in 0..<ho {
                        let dst = row + oy * wo
                        let iy = oy * sh - ph + i
                        guard iy >= 0, iy < h, !xs.isEmpty else {
                            dst.update(repeating: 0, count: wo)
                            continue
                        }
                        if xs.lowerBound > 0 { dst.update(repeating: 0, count: xs.lowerBound) }
                        let base = iy * w - pw + j      // input column of ox = 0 (may lie in the padding)
                        if sw == 1 {
                            (dst + xs.lowerBound).update(from: plane + (base + xs.lowerBound), count: xs.count)
                        } else {
                            for ox in xs { dst[ox] = plane[base + ox * sw] }
                        }
                        if xs.upperBound < wo { (dst + xs.upperBound).update(repeating: 0, count: wo - xs.upperBound) }
                    }
                }
            }
        }
    }

    /// Adds one image's column gradients back onto its input positions (dx must be zeroed first).
    private func col2im(_ cols: UnsafeMutablePointer<Float>, rowStride ld: Int, height h: Int, width w: Int,
                        outHeight ho: Int, outWidth wo: Int, into dx: UnsafeMutablePointer<Float>) {
        let (kh, kw) = kernelSize, (sh, sw) = stride, (ph, pw) = padding
        var r = 0
        for c in 0..<inChannels {
            let plane = dx + c * h * w
            for i in 0..<kh {
                for j in 0..<kw {
                    let row = cols + r * ld
                    r += 1
                    let xs = Conv2D.validRange(offset: j, stride: sw, pad: pw, size: w, outSize: wo)
                    if xs.isEmpty { continue }
                    for oy in 0..<ho {
                        let iy = oy * sh - ph + i
                        if iy < 0 || iy >= h { continue }
                        let src = row + oy * wo
                        let base = iy * w - pw + j
                        if sw == 1 {
                            let dst = plane + (base + xs.lowerBound), s = src + xs.lowerBound
                            for t in 0..<xs.count { dst[t] += s[t] }
                        } else {
                            for ox in xs { plane[base + ox * sw] += src[ox] }
                        }
                    }
                }
            }
        }
    }
}

/// PyTorch's name for `Conv2D`.
public typealias Conv2d = Conv2D
