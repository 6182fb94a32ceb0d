/// A lookup table, PyTorch's `nn.Embedding(count, dimension)`: row i of `weight` `[count, dimension]`
/// for each index i. Weights start N(0, 1), as PyTorch's. On the graph only (its input is indices,
/// not a tensor of values):
///
///     forward   y[k] = W[index[k]]             [K, D]  (or `shape` + [D])
///     backward  dW[index[k]] += dy[k]          (an index used twice gets both rows' δ)
public final class Embedding {
    public let count: Int
    public let dimension: Int
    public let weight: Parameter

    public init(_ count: Int, _ dimension: Int, seed: UInt64? = nil) throws {
        guard count > 0, dimension > 0 else {
            throw BackpropError.invalidArgument("Embedding(\(count), \(dimension)): sizes must be positive")
        }
        self.count = count
        self.dimension = dimension
        weight = Parameter(try Tensor(zeros: [count, dimension]))
        var rng = SeededGenerator(seedOrDefault: seed)
        weight.value.fillNormal(using: &rng)
    }

    public var summary: String { "Embedding(\(count), \(dimension))" }
    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }

    /// The rows for `indices`, shaped `shape + [dimension]` (default `[indices.count, dimension]`).
    /// An index outside 0..<count, or a shape that does not hold the indices, is a typed error.
    public func callAsFunction(_ indices: [Int], shape: [Int]? = nil) throws -> Variable {
        let shape = shape ?? [indices.count]
        guard try Tensor.elementCount(shape) == indices.count else {
            throw BackpropError.shapeMismatch(where: summary, detail: "shape \(shape) does not hold \(indices.count) indices")
        }
        if let bad = indices.firstIndex(where: { $0 < 0 || $0 >= count }) {
            throw BackpropError.invalidArgument("\(summary): index \(indices[bad]) at position \(bad) is outside 0..<\(count)")
        }
        let d = dimension, n = count, w = weight.value
        let y = Tensor(uninitializedShape: shape + [d])
        for (k, i) in indices.enumerated() { (y.data + k * d).update(from: w.data + i * d, count: d) }
        let wShape = [n, d]
        // No replay (`forward: nil`): the indices are a Swift array of this call, not an input a
        // `CapturedGraph` could refresh, so a captured graph with an embedding runs afresh each step.
        return Variable.result(summary, [weight.variable], y, saving: [w], forward: nil) { dy, _ in
            let dW = graphTensor(wShape, zeroed: true)
            for (k, i) in indices.enumerated() {
                let src = dy.data + k * d, dst = dW.data + i * d
                for j in 0..<d { dst[j] += src[j] }
            }
            return InputGradients(dW)
        }
    }
}

extension Dense {
    /// PyTorch's `nn.Linear` on inputs with leading dimensions: `[…, in] → […, out]` (the last
    /// dimension is the features; the others are rows).
    public func applyingToLastDimension(_ x: Variable) throws -> Variable {
        guard x.value.rank >= 2, x.shape.last == inFeatures else {
            throw BackpropError.shapeMismatch(where: summary, detail: "expected input […, \(inFeatures)], got \(x.shape)")
        }
        if x.value.rank == 2 { return try self(x) }
        let lead = Array(x.shape.dropLast())
        return try reshape(try self(try reshape(x, [lead.reduce(1, *), inFeatures])), lead + [outFeatures])
    }
}
