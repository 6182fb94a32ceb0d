import Backprop

/// A data set of Float features of any shape per sample, with an integer class label or a Float
/// target (of any shape) per sample — PyTorch's `TensorDataset(x, y)`. Values are held as arrays,
/// so the type is `Sendable`; a `DataLoader` turns it into batches.
///
///     let data = try TensorDataset(features: x, labels: y)        // x: Tensor [N, T, F], y: [Int]
///     let (train, validation) = try data.randomSplit(fraction: 0.9, seed: 1)
public struct TensorDataset: Sendable {
    /// What is learned from each sample.
    public enum Targets: Sendable, Equatable {
        /// One class index per sample (what `SoftmaxCrossEntropy` takes).
        case labels([Int32])
        /// Float values of shape `shape` per sample, sample after sample (what `MeanSquaredError` takes).
        case values([Float], shape: [Int])
    }

    /// All features, sample after sample (row-major): sample i is `features[i*featureCount ..< (i+1)*featureCount]`.
    public let features: [Float]
    /// The shape of one sample (`[F]`, `[T, F]`, `[C, H, W]`, …).
    public let sampleShape: [Int]
    public let targets: Targets
    /// Number of samples.
    public let count: Int

    /// Values per sample: the product of `sampleShape`.
    public var featureCount: Int { sampleShape.reduce(1, *) }

    /// The class labels, or nil when the targets are Float values.
    public var labels: [Int32]? { if case let .labels(l) = targets { return l }; return nil }

    /// Number of classes: the largest label + 1 (0 for Float targets or an empty set).
    public var classCount: Int { labels.flatMap { $0.max() }.map { Int($0) + 1 } ?? 0 }

    /// Features `[N] + sampleShape` flattened, with N labels (each ≥ 0).
    public init(features: [Float], sampleShape: [Int], labels: [Int]) throws {
        for (i, label) in labels.enumerated() where label < 0 || label > Int(Int32.max) {
            throw BackpropError.invalidArgument("TensorDataset: label \(label) of sample \(i) must be a class index ≥ 0")
        }
        try self.init(features: features, sampleShape: sampleShape, targets: .labels(labels.map { Int32($0) }))
    }

    /// Features `[N] + sampleShape` flattened, with Float targets `[N] + targetShape` flattened.
    public init(features: [Float], sampleShape: [Int], targets: [Float], targetShape: [Int] = [1]) throws {
        try self.init(features: features, sampleShape: sampleShape, targets: .values(targets, shape: targetShape))
    }

    /// Features `[N, …]` with N class labels.
    public init(features: Tensor, labels: [Int]) throws {
        guard features.rank >= 1 else {
            throw BackpropError.shapeMismatch(where: "TensorDataset", detail: "features must be [N, …], got \(features.shape)")
        }
        try self.init(features: features.scalars, sampleShape: Array(features.shape.dropFirst()), labels: labels)
    }

    /// Features `[N, …]` with Float targets `[N, …]`.
    public init(features: Tensor, targets: Tensor) throws {
        guard features.rank >= 1, targets.rank >= 1 else {
            throw BackpropError.shapeMismatch(where: "TensorDataset",
                                              detail: "features \(features.shape) and targets \(targets.shape) must both be [N, …]")
        }
        let targetShape = targets.rank == 1 ? [1] : Array(targets.shape.dropFirst())
        try self.init(features: features.scalars, sampleShape: Array(features.shape.dropFirst()),
                      targets: .values(targets.scalars, shape: targetShape))
    }

    /// The checked designated initialiser: `features` must hold a whole number of samples of
    /// `sampleShape`, and `targets` one per sample.
    public init(features: [Float], sampleShape: [Int], targets: Targets) throws {
        guard sampleShape.allSatisfy({ $0 >= 1 }) else {
            throw BackpropError.invalidArgument("TensorDataset: sample shape \(sampleShape) must have positive sizes")
        }
        var perSample = 1
        for d in sampleShape {
            let (p, o) = perSample.multipliedReportingOverflow(by: d)
            guard !o else { throw BackpropError.invalidArgument("TensorDataset: sample shape \(sampleShape) is too large") }
            perSample = p
        }
        guard features.count % perSample == 0 else {
            throw BackpropError.shapeMismatch(where: "TensorDataset",
                                              detail: "\(features.count) feature values are not a whole number of samples of shape \(sampleShape)")
        }
        let n = features.count / perSample
        switch targets {
        case let .labels(labels):
            guard labels.count == n else {
                throw BackpropError.shapeMismatch(where: "TensorDataset", detail: "\(n) samples of shape \(sampleShape) but \(labels.count) labels")
            }
            if let bad = labels.firstIndex(where: { $0 < 0 }) {
                throw BackpropError.invalidArgument("TensorDataset: label \(labels[bad]) of sample \(bad) must be a class index ≥ 0")
            }
        case let .values(values, shape):
            let per = shape.reduce(1, *)
            guard shape.allSatisfy({ $0 >= 1 }), values.count == n * per else {
                throw BackpropError.shapeMismatch(where: "TensorDataset",
                                                  detail: "\(n) samples of shape \(sampleShape) need \(n) targets of shape \(shape), \(values.count) values given")
            }
        }
        self.features = features
        self.sampleShape = sampleShape
        self.targets = targets
        self.count = n
    }

    /// Values per target sample (1 for labels).
    var targetCount: Int {
        if case let .values(_, shape) = targets { return shape.reduce(1, *) }
        return 1
    }

    /// The samples at `indices`, in that order, as a new data set.
    public func subset(_ indices: [Int]) throws -> TensorDataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw BackpropError.invalidArgument("TensorDataset.subset: index \(bad) outside 0..<\(count)")
        }
        let x = gatherRows(features, width: featureCount, indices)
        switch targets {
        case let .labels(labels):
            return try TensorDataset(features: x, sampleShape: sampleShape, targets: .labels(indices.map { labels[$0] }))
        case let .values(values, shape):
            return try TensorDataset(features: x, sampleShape: sampleShape,
                                     targets: .values(gatherRows(values, width: targetCount, indices), shape: shape))
        }
    }

    /// The samples in `range` (row slicing), as a new data set.
    public func subset(_ range: Range<Int>) throws -> TensorDataset {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw BackpropError.invalidArgument("TensorDataset.subset: \(range) outside 0..<\(count)")
        }
        return try subset(Array(range))
    }

    /// PyTorch's `random_split`: disjoint random subsets of the given sizes (which must add up
    /// to `count`), drawn from `seed` alone.
    public func randomSplit(_ lengths: [Int], seed: UInt64) throws -> [TensorDataset] {
        try splitIndices(count: count, lengths: lengths, seed: seed).map { try subset($0) }
    }

    /// Two random subsets: `fraction` of the samples (rounded down) and the rest.
    public func randomSplit(fraction: Double, seed: UInt64) throws -> (TensorDataset, TensorDataset) {
        let parts = try randomSplit(splitLengths(count: count, fraction: fraction), seed: seed)
        return (parts[0], parts[1])
    }
}

extension Dataset {
    /// The examples at `indices`, in that order, as a new data set.
    public func subset(indices: [Int]) throws -> Dataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw BackpropError.invalidArgument("Dataset.subset: index \(bad) outside 0..<\(count)")
        }
        return try Dataset(images: gatherRows(images, width: featureCount, indices), labels: indices.map { labels[$0] }, rows: rows, columns: columns, channels: channels)
    }

    /// PyTorch's `random_split`: disjoint random subsets of the given sizes (adding up to `count`).
    public func randomSplit(_ lengths: [Int], seed: UInt64) throws -> [Dataset] {
        try splitIndices(count: count, lengths: lengths, seed: seed).map { try subset(indices: $0) }
    }

    /// Two random subsets: `fraction` of the examples (rounded down) and the rest.
    public func randomSplit(fraction: Double, seed: UInt64) throws -> (Dataset, Dataset) {
        let parts = try randomSplit(splitLengths(count: count, fraction: fraction), seed: seed)
        return (parts[0], parts[1])
    }

    /// The data set as Float features (normalised as `normalization` says) with its labels, in
    /// the shape `layout` gives one example (`[784]`, `[1, 28, 28]`, `[28, 28]`).
    public func tensorDataset(layout: BatchLayout = .flat, normalization: Normalization = .unit) throws -> TensorDataset {
        let table = normalization.table
        return try TensorDataset(features: images.map { table[Int($0)] },
                                 sampleShape: Array(layout.shape(batch: 1, for: self).dropFirst()),
                                 targets: .labels(labels.map { Int32($0) }))
    }
}

/// Rows `indices` (in that order) of `array`, whose rows are `width` elements each; the indices
/// are checked by the caller.
func gatherRows<T>(_ array: [T], width: Int, _ indices: [Int]) -> [T] {
    var rows: [T] = []
    rows.reserveCapacity(indices.count * width)
    for i in indices { rows.append(contentsOf: array[(i * width)..<((i + 1) * width)]) }
    return rows
}

func splitLengths(count: Int, fraction: Double) throws -> [Int] {
    guard fraction >= 0, fraction <= 1 else {
        throw BackpropError.invalidArgument("randomSplit: fraction \(fraction) must be in [0, 1]")
    }
    let first = Int((Double(count) * fraction).rounded(.down))
    return [first, count - first]
}

/// A seeded permutation of 0..<count cut into pieces of `lengths`.
func splitIndices(count: Int, lengths: [Int], seed: UInt64) throws -> [[Int]] {
    guard lengths.allSatisfy({ $0 >= 0 }), lengths.reduce(0, +) == count else {
        throw BackpropError.invalidArgument("randomSplit: lengths \(lengths) must be ≥ 0 and add up to the \(count) samples")
    }
    var order = Array(0..<count)
    var rng = SeededGenerator(seed: Batcher.epochSeed(seed, -1))
    Batcher.fisherYates(&order, using: &rng)
    var parts: [[Int]] = []
    var start = 0
    for n in lengths {
        parts.append(Array(order[start..<(start + n)]))
        start += n
    }
    return parts
}
