import Backprop

/// PyTorch's `DataLoader`: a `Sequence` of batches, one epoch per `for` loop.
///
///     let loader = try DataLoader(train, batchSize: 64, shuffle: true, seed: 1)
///     for epoch in 0..<10 {
///         for batch in loader {                       // epoch 0, 1, 2, … in turn
///             let logits = try model(batch.input)     // [B] + sampleShape
///             let (loss, delta) = try SoftmaxCrossEntropy()(logits, labels: batch.labels)
///             …
///         }
///     }
///
/// - Each `for` loop (each `makeIterator()`) runs the next epoch; `epoch(e)` runs epoch `e`
///   itself (to resume). Epoch e's order depends only on (`seed`, e), and is the order a
///   `Batcher` with the same seed gives.
/// - Every sample appears once per epoch; the last batch holds the remainder unless `dropLast`.
/// - Buffers are reused: `batch.input` (and `batch.targets`) are the loader's own tensors,
///   overwritten by the next batch (copy them to keep them). One loop at a time per loader.
/// - `TensorDataset` gives Float features of any shape with labels (`batch.labels`) or Float
///   targets (`batch.targets`, `[B] + targetShape`); a `Dataset` of `UInt8` images goes through
///   the `Batcher`'s conversion (layout and normalisation as there).
///
/// A loader holds mutable buffers: it is a class confined to one task at a time (create one
/// per task; the data sets themselves are `Sendable`).
public final class DataLoader: Sequence {
    private enum Source {
        case tensors(TensorDataset)
        case images(Batcher)
    }

    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let dropLast: Bool
    /// Number of samples per epoch.
    public let sampleCount: Int
    /// The epoch the next `for` loop runs.
    public var nextEpoch = 0

    private let source: Source
    private let input: Tensor
    private let targetBuffer: Tensor?
    private let sampleShape: [Int]
    private let targetShape: [Int]

    /// Batches of a `TensorDataset`.
    /// - Throws: `invalidArgument` when `batchSize` < 1.
    public init(_ dataset: TensorDataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
                dropLast: Bool = false) throws {
        guard batchSize >= 1 else {
            throw BackpropError.invalidArgument("DataLoader: batch size \(batchSize) must be at least 1")
        }
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.sampleCount = dataset.count
        self.source = .tensors(dataset)
        self.sampleShape = dataset.sampleShape
        input = try Tensor(zeros: [batchSize] + dataset.sampleShape)
        if case let .values(_, shape) = dataset.targets {
            targetShape = shape
            targetBuffer = try Tensor(zeros: [batchSize] + shape)
        } else {
            targetShape = []
            targetBuffer = nil
        }
    }

    /// Batches of a `Dataset` of `UInt8` images, converted as a `Batcher` does (its fast path).
    public init(_ dataset: Dataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0, dropLast: Bool = false,
                layout: BatchLayout = .flat, normalization: Normalization = .unit) throws {
        let batcher = try Batcher(dataset, batchSize: batchSize, shuffle: shuffle, seed: seed, dropLast: dropLast,
                                  layout: layout, normalization: normalization)
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.sampleCount = dataset.count
        self.source = .images(batcher)
        self.sampleShape = Array(layout.shape(batch: 1, for: dataset).dropFirst())
        input = Tensor([0])
        targetBuffer = nil
        targetShape = []
    }

    /// Batches per epoch: ⌈count / batchSize⌉, or ⌊count / batchSize⌋ with `dropLast`.
    public var count: Int {
        dropLast ? sampleCount / batchSize : (sampleCount + batchSize - 1) / batchSize
    }

    /// Runs the next epoch (`nextEpoch`, then increments it).
    public func makeIterator() -> Iterator {
        defer { nextEpoch += 1 }
        return epoch(nextEpoch).makeIterator()
    }

    /// Epoch `e` (its order drawn from `seed` and `e`), without changing `nextEpoch`.
    public func epoch(_ e: Int) -> Epoch { Epoch(loader: self, epoch: e) }

    /// One epoch's batches.
    public struct Epoch: Sequence {
        let loader: DataLoader
        public let epoch: Int

        public func makeIterator() -> Iterator { Iterator(loader: loader, epoch: epoch) }
    }

    /// Yields the batches of one epoch.
    public struct Iterator: IteratorProtocol {
        let loader: DataLoader
        private var batcher: Batcher?
        private var order: [Int] = []
        private var position = 0
        private var index = 0
        private var labels: [Int32] = []

        init(loader: DataLoader, epoch: Int) {
            self.loader = loader
            switch loader.source {
            case var .images(b):
                b.startEpoch(epoch)
                batcher = b
            case let .tensors(data):
                order = Array(0..<data.count)
                if loader.shuffle {
                    var rng = SeededGenerator(seed: Batcher.epochSeed(loader.seed, epoch))
                    Batcher.fisherYates(&order, using: &rng)
                }
                labels.reserveCapacity(loader.batchSize)
            }
        }

        public mutating func next() -> Batch? {
            if batcher != nil { return batcher?.next() ?? nil }   // mutated in place
            guard case let .tensors(data) = loader.source else { return nil }
            let remaining = order.count - position
            guard remaining > 0, !(loader.dropLast && remaining < loader.batchSize) else { return nil }
            let b = Swift.min(loader.batchSize, remaining)
            let input = loader.input
            input.resize(to: [b] + loader.sampleShape)
            let f = data.featureCount
            let start = position
            data.features.withUnsafeBufferPointer { x in
                guard let src = x.baseAddress else { return }
                for r in 0..<b {
                    (input.data + r * f).update(from: src + order[start + r] * f, count: f)
                }
            }
            input.markChanged()
            labels.removeAll(keepingCapacity: true)
            switch data.targets {
            case let .labels(all):
                for r in 0..<b { labels.append(all[order[start + r]]) }
            case let .values(values, _):
                if let t = loader.targetBuffer {
                    let k = data.targetCount
                    t.resize(to: [b] + loader.targetShape)
                    values.withUnsafeBufferPointer { v in
                        guard let src = v.baseAddress else { return }
                        for r in 0..<b { (t.data + r * k).update(from: src + order[start + r] * k, count: k) }
                    }
                    t.markChanged()
                }
            }
            position += b
            defer { index += 1 }
            return Batch(input: input, labels: labels, indices: order[start..<(start + b)], index: index,
                         targets: loader.targetBuffer)
        }
    }
}
