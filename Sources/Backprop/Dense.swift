/// Fully connected layer, PyTorch's `nn.Linear`: weight `[out, in]`, bias `[out]`.
///
///     forward   Y  = X·Wᵀ + b        [N, out] = [N, in]·[in, out]     sgemm NoTrans/Trans
///     backward  dX = dY·W            [N, in]  = [N, out]·[out, in]    sgemm NoTrans/NoTrans
///               dW += dYᵀ·X          [out, in] = [out, N]·[N, in]     sgemm Trans/NoTrans
///               db += Σ_rows dY
///
/// The bias is fused into the forward product: Y is pre-filled with b and sgemm runs with β = 1.
public final class Dense: BatchSliceable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    public var isTraining = true
    public var needsInputGradient = true

    private var input = ForwardRecord()             // X, for dW = dYᵀ·X
    private let output = Tensor(uncheckedShape: [0])
    private let inputGradient = Tensor(uncheckedShape: [0])

    // Batch slices (see BatchSliceable), used when a Sequential runs this layer inside a
    // stretch: slices 1, … keep their own dW and db, added to slice 0's in endBackward.
    private final class SliceGradients {
        let weight = Tensor(uncheckedShape: [0])
        let bias = Tensor(uncheckedShape: [0])
        var weightBeta: Float = 0
    }
    private var sliceGradients: [SliceGradients] = []
    private var outputGradient: Tensor?
    private var gradientTargets: (weight: Tensor, bias: Tensor?)?

    /// - Parameters: `initializer` fills the weight; the bias always gets PyTorch's default
    ///   U(−1/√in, 1/√in) (or zeros when `zeroBias`).
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true,
                initializer: Initializer = .pytorchDefault, zeroBias: Bool = false,
                rng: inout SeededGenerator) throws {
        guard inFeatures > 0, outFeatures > 0 else {
            throw BackpropError.invalidArgument("Dense(\(inFeatures) → \(outFeatures)): sizes must be positive")
        }
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = Parameter(try Tensor(zeros: [outFeatures, inFeatures]))
        try initializer.fill(weight.value, using: &rng)
        if bias {
            let b = Parameter(try Tensor(zeros: [outFeatures]))
            if !zeroBias {
                let bound = 1 / Float(inFeatures).squareRoot()
                b.value.fillUniform(-bound, bound, using: &rng)
            }
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    /// A layer with default (PyTorch) initialisation from a fixed seed.
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, seed: UInt64 = 0) throws {
        var rng = SeededGenerator(seed: seed)
        try self.init(inFeatures, outFeatures, bias: bias, rng: &rng)
    }

    public var summary: String { "Dense(\(inFeatures) → \(outFeatures)\(bias == nil ? ", no bias" : ""))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list = [(name: "weight", parameter: weight)]
        if let bias { list.append((name: "bias", parameter: bias)) }
        return list
    }

    // The whole batch is one slice: forward and backward are the sliced code below with a single
    // slice covering every row (one product each for Y, dW and dX, BLAS threads unchanged).

    public func forward(_ x: Tensor) throws -> Tensor {
        let y = try beginForward(x, slices: 1)
        try forward(images: 0..<x.rows, slice: 0)
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        let dx = try beginBackward(dy, slices: 1)
        try backward(images: 0..<dy.rows, slice: 0)
        endBackward(slices: 1)
        return dx
    }

    // MARK: - Batch slices: rows of the batch, each slice's rows in one product.

    public var preferredImagesPerCall: Int { Int.max }

    public func beginForward(_ x: Tensor, slices: Int) throws -> Tensor {
        try requireFeatures(x, inFeatures, layer: summary)
        output.resize(x.rows, outFeatures)
        input.save(x)
        return output
    }

    public func forward(images rows: Range<Int>, slice: Int) throws {
        guard let x = input.tensor else { throw BackpropError.invalidUse(where: summary, detail: "forward(images:) before beginForward") }
        let y = output.data + rows.lowerBound * outFeatures
        if let bias {
            let b = bias.value.data
            for i in 0..<rows.count { (y + i * outFeatures).update(from: b, count: outFeatures) }
        }
        try gemm(Matrix(x.data + rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures), Matrix(weight.value),
                 transposeB: true, into: Matrix(y, rows: rows.count, columns: outFeatures), beta: bias == nil ? 0 : 1,
                 caller: summary)
    }

    public func beginBackward(_ dy: Tensor, slices: Int) throws -> Tensor {
        let rows = try input.peek(summary).rows
        try requireMatrixShape(dy, rows: rows, columns: outFeatures, layer: summary)
        let x = try input.take(summary)
        if needsInputGradient { inputGradient.resize(to: x.shape) } else { inputGradient.resize(0) }
        let (dW, betaW) = weight.gradientForSlicedAccumulation()   // written: endBackward
        if dy.rows == 0 && betaW == 0 { dW.fill(0) }
        let dB = bias?.grad   // zeroed first if zeroGrad() marked it (its sums add into it)
        while sliceGradients.count < slices { sliceGradients.append(SliceGradients()) }
        for (index, s) in sliceGradients.prefix(slices).enumerated() {
            s.weightBeta = index == 0 ? betaW : 0
            if index > 0 {
                s.weight.resize(outFeatures, inFeatures)
                if bias != nil { s.bias.resize(outFeatures); s.bias.fill(0) }
            }
        }
        gradientTargets = (dW, dB)
        outputGradient = dy
        return inputGradient
    }

    public func backward(images rows: Range<Int>, slice: Int) throws {
        guard let x = input.tensor, let dy = outputGradient, let targets = gradientTargets else {
            throw BackpropError.invalidUse(where: summary, detail: "backward(images:) before beginBackward")
        }
        let s = sliceGradients[slice]
        let dyM = Matrix(dy.data + rows.lowerBound * outFeatures, rows: rows.count, columns: outFeatures)
        let xM = Matrix(x.data + rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures)
        // dW += dYᵀ·X over these rows
        let dW = slice == 0 ? targets.weight.data : s.weight.data
        try gemm(dyM, transposeA: true, xM, into: Matrix(dW, rows: outFeatures, columns: inFeatures), beta: s.weightBeta,
                 caller: summary)
        s.weightBeta = 1
        // db += Σ_rows dY
        if let dB = targets.bias {
            let db = slice == 0 ? dB.data : s.bias.data
            for i in rows {
                let row = dy.data + i * outFeatures
                for j in 0..<outFeatures { db[j] += row[j] }
            }
        }
        // dX = dY·W for these rows
        if needsInputGradient {
            try gemm(dyM, Matrix(weight.value),
                     into: Matrix(inputGradient.data + rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures),
                     caller: summary)
        }
    }

    public func endBackward(slices: Int) {
        guard let targets = gradientTargets else { return }
        for s in sliceGradients.prefix(slices).dropFirst() {
            VectorLoops.add(s.weight.data, into: targets.weight.data, count: targets.weight.count)
            if let dB = targets.bias { VectorLoops.add(s.bias.data, into: dB.data, count: dB.count) }
        }
        weight.gradientWritten()
        gradientTargets = nil
        outputGradient = nil
    }
}

/// PyTorch's name for `Dense`.
public typealias Linear = Dense
