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

    @discardableResult

    public func backward(_ dy: Tensor) throws -> Tensor {
        let x = try prepareBackward(dy)
        try backwardRows(0..<x.rows, x, dy, weightGradient: weight.gradientForAccumulation(), biasGradient: bias?.grad)
        return inputGradient
    }

    // MARK: - The math, on a block of rows (the whole batch, one batch slice's rows, or a graph call)

    /// Y[rows] = X[rows]·Wᵀ + b     [R, out] = [R, in]·[in, out]     sgemm NoTrans/Trans
    /// (Y is pre-filled with b and the product adds onto it with β = 1.)
    static func forward(rows: Range<Int>, x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor,
                        caller: @autoclosure () -> String) throws {
        let out = weight.shape[0], inF = weight.shape[1]
        let y = Matrix(output, offset: rows.lowerBound * out, rows: rows.count, columns: out)
        if let bias {
            for i in 0..<rows.count { (y.base + i * out).update(from: bias.data, count: out) }
        }
        try gemm(Matrix(x, offset: rows.lowerBound * inF, rows: rows.count, columns: inF), Matrix(weight, rows: out, columns: inF),
                 transposeB: true, into: y, beta: bias == nil ? 0 : 1, caller: caller())
    }

    /// dW = β·dW + dY[rows]ᵀ·X[rows]    [out, in] = [out, R]·[R, in]     sgemm Trans/NoTrans
    /// db += Σ_rows dY[rows]
    /// dX[rows] = dY[rows]·W            [R, in]  = [R, out]·[out, in]    sgemm NoTrans/NoTrans  (if dX is given)
    static func backward(rows: Range<Int>, x: Tensor, dy: Tensor, weight: Tensor,
                         weightGradient dW: (buffer: Tensor, beta: Float), biasGradient db: Tensor?,
                         inputGradient dx: Tensor?, caller: @autoclosure () -> String) throws {
        let out = weight.shape[0], inF = weight.shape[1]
        let dyM = Matrix(dy, offset: rows.lowerBound * out, rows: rows.count, columns: out)
        let xM = Matrix(x, offset: rows.lowerBound * inF, rows: rows.count, columns: inF)
        try gemm(dyM, transposeA: true, xM, into: Matrix(dW.buffer, rows: out, columns: inF), beta: dW.beta, caller: caller())
        if let db {
            for i in 0..<rows.count {
                let row = dyM.base + i * out
                for j in 0..<out { db.data[j] += row[j] }
            }
        }
        if let dx {
            try gemm(dyM, Matrix(weight, rows: out, columns: inF),
                     into: Matrix(dx, offset: rows.lowerBound * inF, rows: rows.count, columns: inF), caller: caller())
        }
    }

    /// The layer's own pass over `rows`, into its buffers.
    func forwardRows(_ rows: Range<Int>, _ x: Tensor) throws {
        try Dense.forward(rows: rows, x: x, weight: weight.value, bias: bias?.value, into: output, caller: summary)
    }

    func backwardRows(_ rows: Range<Int>, _ x: Tensor, _ dy: Tensor,
                      weightGradient dW: (buffer: Tensor, beta: Float), biasGradient db: Tensor?) throws {
        try Dense.backward(rows: rows, x: x, dy: dy, weight: weight.value, weightGradient: dW, biasGradient: db,
                           inputGradient: needsInputGradient ? inputGradient : nil, caller: summary)
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
