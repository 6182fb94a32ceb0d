import Foundation

/// One `cblas_sgemm` call as `gemm` issues it (row-major): the transposes, the sizes m×n×k, the
/// leading dimensions and β.
public struct ProductCall: Hashable, Sendable, CustomStringConvertible {
    public var transposeA: Bool, transposeB: Bool
    public var m: Int, n: Int, k: Int
    public var lda: Int, ldb: Int, ldc: Int
    public var beta: Float

    public init(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int, beta: Float) {
        self.transposeA = transposeA; self.transposeB = transposeB
        self.m = m; self.n = n; self.k = k
        self.lda = lda; self.ldb = ldb; self.ldc = ldc
        self.beta = beta
    }

    public var description: String {
        "\(transposeA ? "T" : "N")\(transposeB ? "T" : "N") \(m)×\(n)×\(k) ld \(lda),\(ldb),\(ldc) β \(beta)"
    }

    /// Multiply-adds of the product.
    public var multiplyAdds: Int { m * n * k }

    /// Elements of A, B and C the call touches (from its first element to one past its last).
    var extents: (a: Int, b: Int, c: Int) {
        let aRows = transposeA ? k : m, aColumns = transposeA ? m : k
        let bRows = transposeB ? n : k, bColumns = transposeB ? k : n
        return ((aRows - 1) * lda + aColumns, (bRows - 1) * ldb + bColumns, (m - 1) * ldc + n)
    }
}

/// Records every `gemm` call while set (tests compare a training step's calls with a floor's list).
/// Calls come from the batch slices' threads: an `NSLock` (a pthread mutex, which ThreadSanitizer
/// sees; it reported the `Mutex` of the Synchronization module as a race).
final class GEMMRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [ProductCall] = []
    func record(_ call: ProductCall) { lock.lock(); list.append(call); lock.unlock() }
    /// The calls recorded so far.
    var calls: [ProductCall] { lock.lock(); defer { lock.unlock() }; return list }
}

/// The recorder `gemm` reports to (nil: nothing recorded, one load per call).
nonisolated(unsafe) var gemmRecorder: GEMMRecorder?

/// The matrix products of one training step of a `Sequential` of convolutions, dense layers and
/// product-free layers (activations, pooling, flattening), alone: the same sgemm calls (sizes,
/// transposes, leading dimensions, β, blocks, images per call) the layers issue on a batch of
/// `inputShape`, in the same batch slices run concurrently when the model's `threads` puts layers
/// in a sliced stretch (single-threaded BLAS inside each slice, as there), on preallocated buffers,
/// with nothing else (no im2col, col2im, bias, activation, pooling, loss or optimizer). It is the
/// floor a step's time is compared with (`backprop bench --lenet`). The list is worked out from
/// the layers' own plans (`Conv2D.plan(for:)`, its product blocks); a test compares it with the
/// calls a real step makes.
public final class ProductsFloor {
    /// A part of the step: its slices' calls, in order (one slice: the whole batch, BLAS's own threads).
    public struct Phase {
        public var slices: [[ProductCall]]
        /// Index into the floor's buffers per slice.
        var buffers: [[Int]]
    }

    public private(set) var phases: [Phase] = []
    private var storage: [UnsafeMutablePointer<Float>] = []
    private var sizes: [Int] = []
    private let batchSlices = BatchSlices()

    /// Every call of the step, in phase and slice order.
    public var calls: [ProductCall] { phases.flatMap { $0.slices.flatMap { $0 } } }

    /// The floor of a training step of `model` (its current `threads` and first layer's
    /// `needsInputGradient`) on inputs of `inputShape`. Throws for a layer whose products it
    /// does not know (anything but Conv2D, Dense and product-free layers).
    public init(trainingStepOf model: Sequential, inputShape: [Int]) throws {
        let where_ = "ProductsFloor(\(model.summary))"
        guard let n = inputShape.first, n > 0 else {
            throw BackpropError.invalidArgument("\(where_): input shape \(inputShape) needs a positive batch size")
        }
        // The input shape of every layer.
        var shapes: [[Int]] = [inputShape]
        for layer in model.layers {
            let s = shapes[shapes.count - 1]
            switch layer {
            case let conv as Conv2D: shapes.append(try conv.outputShape(for: s))
            case let dense as Dense:
                guard s.count >= 2, s.dropFirst().reduce(1, *) == dense.inFeatures else {
                    throw BackpropError.shapeMismatch(where: where_, detail: "\(dense.summary) cannot take input \(s)")
                }
                shapes.append([s[0], dense.outFeatures])
            case is Flatten: shapes.append([s[0], s.dropFirst().reduce(1, *)])
            case let pool as MaxPool2D: shapes.append(try pool.geometry.outputShape(for: s, layer: pool.summary))
            case is ReLU, is Tanh, is Sigmoid, is LeakyReLU, is GELU, is Dropout: shapes.append(s)
            default:
                throw BackpropError.invalidArgument("\(where_): the products of \(layer.summary) are not modelled")
            }
        }
        let stretches = model.threads > 1 ? model.slicedStretches : []
        // Groups of layers: a stretch (sliced) or a single plain layer.
        var groups: [(layers: Range<Int>, sliced: Bool)] = []
        var i = 0
        while i < model.layers.count {
            if let s = stretches.first(where: { $0.start == i }) {
                groups.append((i..<(i + s.count), true)); i += s.count
            } else {
                groups.append((i..<(i + 1), false)); i += 1
            }
        }
        let bufferIndex = 0
        func phase(_ g: (layers: Range<Int>, sliced: Bool), forward: Bool) {
            let count = g.sliced ? BatchSlices.count(threads: model.threads, items: n) : 1
            var slices: [[ProductCall]] = [], buffers: [[Int]] = []
            for slice in 0..<count {
                let images = g.sliced ? BatchSlices.range(slice, of: count, items: n) : 0..<n
                var list: [ProductCall] = [], owners: [Int] = []
                var betaUsed = Set<Int>()   // layers whose weight gradient this slice has written
                func run(_ layerIndex: Int, _ part: Range<Int>) {
                    let layer = model.layers[layerIndex], x = shapes[layerIndex]
                    let first = layerIndex == 0
                    let made: [ProductCall]
                    if let conv = layer as? Conv2D {
                        let needsDX = !first || conv.needsInputGradient
                        made = forward ? Self.convForward(conv, x, part.count)
                                       : Self.convBackward(conv, x, part.count, firstBeta: betaUsed.contains(layerIndex) ? 1 : 0,
                                                           inputGradient: needsDX)
                    } else if let dense = layer as? Dense {
                        let needsDX = !first || dense.needsInputGradient
                        made = forward ? Self.denseForward(dense, part.count)
                                       : Self.denseBackward(dense, part.count, beta: betaUsed.contains(layerIndex) ? 1 : 0,
                                                            inputGradient: needsDX)
                    } else {
                        made = []
                    }
                    if !forward && !made.isEmpty { betaUsed.insert(layerIndex) }
                    list += made
                    owners += Array(repeating: bufferIndex + (slice * model.layers.count + layerIndex), count: made.count)
                }
                if g.sliced {
                    // As StretchPlan: segments of layers taking the same images per call.
                    var segments: [(layers: Range<Int>, step: Int)] = []
                    for li in g.layers {
                        let step = Swift.max(1, (model.layers[li] as? BatchSliceable)?.preferredImagesPerCall ?? Int.max)
                        if let last = segments.last, last.step == step { segments[segments.count - 1].layers = last.layers.lowerBound..<(li + 1) }
                        else { segments.append((li..<(li + 1), step)) }
                    }
                    for segment in forward ? segments : segments.reversed() {
                        var f = images.lowerBound
                        while f < images.upperBound {
                            let l = segment.step >= images.upperBound - f ? images.upperBound : f + segment.step
                            for li in forward ? Array(segment.layers) : segment.layers.reversed() { run(li, f..<l) }
                            f = l
                        }
                    }
                } else {
                    run(g.layers.lowerBound, images)
                }
                slices.append(list); buffers.append(owners)
            }
            if slices.contains(where: { !$0.isEmpty }) { phases.append(Phase(slices: slices, buffers: buffers)) }
        }
        for g in groups { phase(g, forward: true) }
        for g in groups.reversed() { phase(g, forward: false) }
        // Buffers: per (slice, layer) owner, three operands sized for its largest call.
        var need: [Int: (a: Int, b: Int, c: Int)] = [:]
        for p in phases {
            for (calls, owners) in zip(p.slices, p.buffers) {
                for (call, owner) in zip(calls, owners) {
                    let e = call.extents, old = need[owner] ?? (0, 0, 0)
                    need[owner] = (Swift.max(old.a, e.a), Swift.max(old.b, e.b), Swift.max(old.c, e.c))
                }
            }
        }
        var rng = SeededGenerator(seed: 3)
        var slot: [Int: Int] = [:]
        for owner in need.keys.sorted() {
            slot[owner] = storage.count
            let e = need[owner] ?? (0, 0, 0)
            for count in [e.a, e.b, e.c] {
                let p = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, count))
                for j in 0..<Swift.max(1, count) { p[j] = Float.random(in: -0.01...0.01, using: &rng) }
                storage.append(p); sizes.append(count)
            }
        }
        for pi in phases.indices {
            phases[pi].buffers = phases[pi].buffers.map { $0.map { slot[$0] ?? 0 } }
        }
    }

    deinit { for p in storage { p.deallocate() } }

    /// Runs every call of the step once (the slices of a sliced phase concurrently).
    public func run() throws {
        for p in phases {
            if p.slices.count == 1 {
                try issue(p.slices[0], p.buffers[0])
            } else {
                try batchSlices.run(count: p.slices.count, items: p.slices.count) { slice, _ in
                    try self.issue(p.slices[slice], p.buffers[slice])
                }
            }
        }
    }

    private func issue(_ calls: [ProductCall], _ owners: [Int]) throws {
        for (c, o) in zip(calls, owners) {
            let a = storage[o], b = storage[o + 1], out = storage[o + 2]
            try gemm(Matrix(unsafeBase: a, rows: c.transposeA ? c.k : c.m, columns: c.transposeA ? c.m : c.k, stride: c.lda),
                     transposeA: c.transposeA,
                     Matrix(unsafeBase: b, rows: c.transposeB ? c.n : c.k, columns: c.transposeB ? c.k : c.n, stride: c.ldb),
                     transposeB: c.transposeB,
                     into: Matrix(unsafeBase: out, rows: c.m, columns: c.n, stride: c.ldc), beta: c.beta, caller: "ProductsFloor")
        }
    }

    // MARK: - The layers' calls (mirroring Conv2D.forward/backward and Dense.forward/backward)

    static func convForward(_ conv: Conv2D, _ shape: [Int], _ images: Int) -> [ProductCall] {
        guard let pl = try? conv.plan(for: [images] + shape.dropFirst()) else { return [] }
        let out = pl.outChannels, k = pl.k, p = pl.p, beta: Float = conv.bias == nil ? 0 : 1
        var list: [ProductCall] = []
        if pl.rows {   // Conv2D.forwardRows: per image kh products (in blocks of terms) into Y or the scratch
            let ck = pl.rowTerms, n = pl.rowProductColumns, terms = pl.rowForwardTerms
            for _ in 0..<images {
                var b: Float = n == p ? beta : 0
                for _ in 0..<pl.geometry.kernel_h {
                    for t0 in Swift.stride(from: 0, to: ck, by: terms) {
                        list.append(ProductCall(transposeA: false, transposeB: false, m: out, n: n, k: Swift.min(terms, ck - t0),
                                                lda: ck, ldb: pl.rowStride, ldc: n, beta: b))
                        b = 1
                    }
                }
            }
            return list
        }
        var done = 0
        while done < images {
            let gs = Swift.min(pl.g, images - done)
            let (ld, terms) = Conv2D.forwardColumns(out, k, gs * p, smallKernels: pl.smallMatrixKernels)
            let inPlace = gs == 1 && ld == p
            for t0 in Swift.stride(from: 0, to: k, by: terms) {
                let tb = Swift.min(terms, k - t0)
                list.append(ProductCall(transposeA: false, transposeB: false, m: out, n: ld, k: tb, lda: k, ldb: ld, ldc: ld,
                                        beta: t0 > 0 ? 1 : inPlace ? beta : 0))
            }
            done += gs
        }
        return list
    }

    static func convBackward(_ conv: Conv2D, _ shape: [Int], _ images: Int, firstBeta: Float, inputGradient: Bool) -> [ProductCall] {
        guard let pl = try? conv.plan(for: [images] + shape.dropFirst()) else { return [] }
        let out = pl.outChannels, k = pl.k, p = pl.p
        var list: [ProductCall] = []
        var beta = firstBeta, done = 0
        if pl.rows {   // Conv2D.backwardRows: per image kh dWᵀ products (row blocks), then kh dR products (column blocks)
            let ck = pl.rowTerms, kh = pl.geometry.kernel_h
            let rb = Conv2D.weightGradientRows(out: out, k: ck, terms: p, smallKernels: pl.smallMatrixKernels)
            let block = Conv2D.columnBlock(ck, out, p, smallKernels: pl.smallMatrixKernels)
            for _ in 0..<images {
                for _ in 0..<kh {
                    for r0 in Swift.stride(from: 0, to: ck, by: rb) {
                        list.append(ProductCall(transposeA: false, transposeB: false, m: Swift.min(rb, ck - r0), n: out, k: p,
                                                lda: pl.rowStride, ldb: out, ldc: out, beta: beta))
                    }
                }
                beta = 1
                guard inputGradient else { continue }
                for _ in 0..<kh {
                    for c0 in Swift.stride(from: 0, to: p, by: block) {
                        list.append(ProductCall(transposeA: true, transposeB: false, m: ck, n: Swift.min(block, p - c0), k: out,
                                                lda: ck, ldb: p, ldc: pl.rowStride, beta: 1))
                    }
                }
            }
            return list
        }
        while done < images {
            let gs = Swift.min(pl.g, images - done), ld = gs * p
            if pl.pointwise {
                list.append(ProductCall(transposeA: false, transposeB: true, m: out, n: k, k: p, lda: ld, ldb: p, ldc: k, beta: beta))
                beta = 1
                if inputGradient {
                    list.append(ProductCall(transposeA: true, transposeB: false, m: k, n: p, k: out, lda: k, ldb: ld, ldc: p, beta: 0))
                }
            } else {
                if pl.transposedWeightGradient {   // dWᵀ blocks; β across the slice's calls, as dW's
                    let rb = Conv2D.weightGradientRows(out: out, k: k, terms: ld, smallKernels: pl.smallMatrixKernels)
                    for r0 in Swift.stride(from: 0, to: k, by: rb) {
                        let rc = Swift.min(rb, k - r0)
                        list.append(ProductCall(transposeA: false, transposeB: false, m: rc, n: out, k: ld, lda: ld, ldb: out, ldc: out,
                                                beta: beta))
                    }
                    beta = 1
                } else {
                    list.append(ProductCall(transposeA: false, transposeB: true, m: out, n: k, k: ld, lda: ld, ldb: ld, ldc: k, beta: beta))
                    beta = 1
                }
                if inputGradient {   // dcols: β = 1 into a kept-zero buffer without the small kernels
                    let block = Conv2D.columnBlock(k, out, ld, smallKernels: pl.smallMatrixKernels)
                    for c0 in Swift.stride(from: 0, to: ld, by: block) {
                        let cb = Swift.min(block, ld - c0)
                        list.append(ProductCall(transposeA: true, transposeB: false, m: k, n: cb, k: out, lda: k, ldb: ld, ldc: ld,
                                                beta: pl.smallMatrixKernels ? 0 : 1))
                    }
                }
            }
            done += gs
        }
        return list
    }

    static func denseForward(_ dense: Dense, _ rows: Int) -> [ProductCall] {
        let out = dense.outFeatures, inF = dense.inFeatures
        return [ProductCall(transposeA: false, transposeB: true, m: rows, n: out, k: inF, lda: inF, ldb: inF, ldc: out,
                            beta: dense.bias == nil ? 0 : 1)]
    }

    static func denseBackward(_ dense: Dense, _ rows: Int, beta: Float, inputGradient: Bool) -> [ProductCall] {
        let out = dense.outFeatures, inF = dense.inFeatures
        var list = [ProductCall(transposeA: true, transposeB: false, m: out, n: inF, k: rows, lda: out, ldb: inF, ldc: inF, beta: beta)]
        if inputGradient {
            list.append(ProductCall(transposeA: false, transposeB: false, m: rows, n: inF, k: out, lda: out, ldb: inF, ldc: inF, beta: 0))
        }
        return list
    }
}
