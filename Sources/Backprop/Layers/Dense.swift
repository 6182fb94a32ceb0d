/// Fully connected layer, PyTorch's `nn.Linear`: weight `[out, in]`, bias `[out]`.
///
///     forward   Y  = X·Wᵀ + b        [N, out] = [N, in]·[in, out]     sgemm NoTrans/Trans
///     backward  dX = dY·W            [N, in]  = [N, out]·[out, in]    sgemm NoTrans/NoTrans
///               dW += dYᵀ·X          [out, in] = [out, N]·[N, in]     sgemm Trans/NoTrans
///               db += Σ_rows dY
///
/// The bias is fused into the forward product: Y is pre-filled with b and sgemm runs with β = 1.
///
/// The plain forward and backward below run the whole batch as one block of rows; a `Sequential`
/// running this layer inside a stretch of batch slices uses the same row-block math per slice
/// (`Dense+BatchSlices.swift`).
public final class Dense: Layer {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    public var isTraining = true
    public var needsInputGradient = true

    var input = ForwardRecord()                     // X, for dW = dYᵀ·X
    let output = Tensor(uncheckedShape: [0])
    let inputGradient = Tensor(uncheckedShape: [0])
    // Batch slices: δ of the output between beginBackward and endBackward, and the slices' dW, db.
    var outputGradient: Tensor?
    lazy var sliceGradients = SliceGradients(parameters)
    lazy var parametersAtForward = ParameterRecords(parameters)   // W is read again by backward (dX = dY·W)

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

    /// A layer with default (PyTorch) initialisation from `seed`, or from the next seed of the
    /// default generator when none is given (see `manualSeed(_:)`).
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, seed: UInt64? = nil) throws {
        var rng = SeededGenerator(seedOrDefault: seed)
        try self.init(inFeatures, outFeatures, bias: bias, rng: &rng)
    }

    public var summary: String { "Dense(\(inFeatures) → \(outFeatures)\(bias == nil ? ", no bias" : ""))" }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        var list = [(name: "weight", parameter: weight)]
        if let bias { list.append((name: "bias", parameter: bias)) }
        return list
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try prepareForward(x)
        try forwardRows(0..<x.rows, x)
        return output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        let x = try prepareBackward(dy)
        try backwardRows(0..<x.rows, x, dy, weightGradient: weight.gradientForAccumulation(), biasGradient: bias?.grad)
        return inputGradient
    }

    // MARK: - The math, on a block of rows (the whole batch, or one batch slice's rows)

    /// Y[rows] = X[rows]·Wᵀ + b     [R, out] = [R, in]·[in, out]     sgemm NoTrans/Trans
    /// (Y is pre-filled with b and the product adds onto it with β = 1.)
    func forwardRows(_ rows: Range<Int>, _ x: Tensor) throws {
        let y = Matrix(output, offset: rows.lowerBound * outFeatures, rows: rows.count, columns: outFeatures)
        if let bias {
            for i in 0..<rows.count { (y.base + i * outFeatures).update(from: bias.value.data, count: outFeatures) }
        }
        try gemm(Matrix(x, offset: rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures), Matrix(weight.value),
                 transposeB: true, into: y, beta: bias == nil ? 0 : 1, caller: summary)
    }

    /// dW = β·dW + dY[rows]ᵀ·X[rows]    [out, in] = [out, R]·[R, in]     sgemm Trans/NoTrans
    /// db += Σ_rows dY[rows]
    /// dX[rows] = dY[rows]·W            [R, in]  = [R, out]·[out, in]    sgemm NoTrans/NoTrans  (if needed)
    func backwardRows(_ rows: Range<Int>, _ x: Tensor, _ dy: Tensor,
                      weightGradient dW: (buffer: Tensor, beta: Float), biasGradient db: Tensor?) throws {
        let dyM = Matrix(dy, offset: rows.lowerBound * outFeatures, rows: rows.count, columns: outFeatures)
        let xM = Matrix(x, offset: rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures)
        try gemm(dyM, transposeA: true, xM, into: Matrix(dW.buffer, rows: outFeatures, columns: inFeatures), beta: dW.beta,
                 caller: summary)
        if let db {
            for i in 0..<rows.count {
                let row = dyM.base + i * outFeatures
                for j in 0..<outFeatures { db.data[j] += row[j] }
            }
        }
        if needsInputGradient {
            try gemm(dyM, Matrix(weight.value),
                     into: Matrix(inputGradient, offset: rows.lowerBound * inFeatures, rows: rows.count, columns: inFeatures),
                     caller: summary)
        }
    }

    // MARK: - Checks and buffers around the math

    /// Checks x, sizes Y for it and saves x for backward.
    func prepareForward(_ x: Tensor) throws {
        try requireFeatures(x, inFeatures, layer: summary)
        output.resize(x.rows, outFeatures)
        input.save(x)
        parametersAtForward.save()
    }

    /// Checks that δ fits the paired forward and that its input is intact, sizes δX, and returns X.
    func prepareBackward(_ dy: Tensor) throws -> Tensor {
        try requireMatrixShape(dy, rows: try input.peek(summary).rows, columns: outFeatures, layer: summary)
        try parametersAtForward.check(summary)
        let x = try input.take(summary)
        if needsInputGradient { inputGradient.resize(to: x.shape) } else { inputGradient.resize(0) }
        return x
    }
}

/// PyTorch's name for `Dense`.
public typealias Linear = Dense
