import Backprop
import BackpropKernels

/// Cuts a data set into batches, an epoch at a time, in a shuffled or fixed order:
///
///     var batcher = try Batcher(train, batchSize: 128, shuffle: true, seed: 1,
///                               layout: .flat, normalization: .unit)
///     for epoch in 0..<epochs {
///         batcher.startEpoch(epoch)
///         while let batch = batcher.next() {
///             let logits = try model.forward(batch.input)          // [B, 784]
///             let (loss, delta) = try lossFunction(logits, labels: batch.labels)
///             …
///         }
///     }
///
/// - Shuffling: epoch e's order is a Fisher–Yates permutation drawn from a `SeededGenerator`
///   seeded from (`seed`, e) alone, so an epoch's order does not depend on what ran before
///   (a run resumed at epoch e sees the same batches). `shuffle: false` keeps the file order.
/// - Every example appears once per epoch; the last batch holds the remainder (fewer than
///   `batchSize`) unless `dropLast` is set.
/// - No allocation per batch: the input tensor (sized for `batchSize` once) and the label
///   array are reused; a partial last batch reuses the same storage with a smaller first
///   dimension. (If the caller keeps the previous `Batch`'s `labels` alive, Swift's
///   copy-on-write gives the new batch a fresh array: values stay correct.)
/// - A copy of a `Batcher` shares the input buffer with the original.
public struct Batcher {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let dropLast: Bool
    public let layout: BatchLayout
    public let normalization: Normalization

    /// The current epoch (as given to `startEpoch`); -1 before the first.
    public private(set) var epoch = -1
    /// The order of the current epoch: example indices.
    public private(set) var order: [Int]
    /// Data parallelism: this process's rank and the number of ranks. Each batch is then this
    /// rank's share of the global batch `next()` would give a single process (same order):
    /// `shareRange(rows:rank:of:)`.
    public private(set) var shard = (rank: 0, count: 1)

    private var position = 0
    private var batchIndex = 0
    private let input: Tensor
    private var labelBuffer: [Int32]
    private let lookup: [Float]
    private let fullShape: [Int]
    private let lastShape: [Int]

    /// - Throws: `invalidArgument` when `batchSize` < 1.
    public init(_ dataset: Dataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
                dropLast: Bool = false, layout: BatchLayout = .flat,
                normalization: Normalization = .unit) throws {
        guard batchSize >= 1 else {
            throw BackpropError.invalidArgument("Batcher: batch size \(batchSize) must be at least 1")
        }
        if case let .standardized(_, std) = normalization, !(std > 0 && std.isFinite) {
            throw BackpropError.invalidArgument("Batcher: standard deviation \(std) must be positive and finite")
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.layout = layout
        self.normalization = normalization
        order = Array(0..<dataset.count)
        fullShape = layout.shape(batch: batchSize, for: dataset)
        let remainder = dataset.count % batchSize
        lastShape = layout.shape(batch: remainder == 0 ? batchSize : remainder, for: dataset)
        input = try Tensor(zeros: fullShape)
        labelBuffer = []
        labelBuffer.reserveCapacity(batchSize)
        lookup = normalization.table
    }

    /// Makes `next()` return rank `rank`'s share of each batch of `count` ranks.
    /// - Throws: `invalidArgument` unless 0 ≤ rank < count.
    public mutating func setShard(rank: Int, of count: Int) throws {
        guard count >= 1, rank >= 0, rank < count else {
            throw BackpropError.invalidArgument("Batcher: rank \(rank) of \(count) ranks is out of range")
        }
        shard = (rank, count)
    }

    /// The rows of a global batch of `rows` that rank `rank` of `count` takes: consecutive
    /// stretches in rank order, the first `rows % count` ranks one row more than the others
    /// (`rows` = 10, 4 ranks: 3, 3, 2, 2). A rank may get none when `rows` < `count`.
    public static func shareRange(rows: Int, rank: Int, of count: Int) -> Range<Int> {
        let base = rows / count, extra = rows % count
        let start = rank * base + Swift.min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// Batches per epoch: ⌈count / batchSize⌉, or ⌊count / batchSize⌋ with `dropLast`.
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// Starts epoch `epoch` (default: the one after the current): rewinds and, when shuffling,
    /// draws this epoch's order. `next()` starts epoch 0 by itself if no epoch was started.
    public mutating func startEpoch(_ epoch: Int? = nil) {
        self.epoch = epoch ?? (self.epoch + 1)
        position = 0
        batchIndex = 0
        let n = order.count
        order.withUnsafeMutableBufferPointer { o in
            for i in 0..<n { o[i] = i }
        }
        if shuffle {
            var rng = SeededGenerator(seed: Batcher.epochSeed(seed, self.epoch))
            Batcher.fisherYates(&order, using: &rng)
        }
    }

    /// The next batch of the epoch, or nil when the epoch is over.
    public mutating func next() -> Batch? {
        if epoch < 0 { startEpoch(0) }
        let remaining = dataset.count - position
        guard remaining > 0, !(dropLast && remaining < batchSize) else { return nil }
        let globalRows = min(batchSize, remaining)
        let share = Batcher.shareRange(rows: globalRows, rank: shard.rank, of: shard.count)
        let b = share.count
        if shard.count == 1 {
            input.resize(to: b == batchSize ? fullShape : lastShape)
        } else {
            input.resize(to: layout.shape(batch: b, for: dataset))
        }
        labelBuffer.removeAll(keepingCapacity: true)

        let f = dataset.featureCount
        let start = position + share.lowerBound
        let destination = input.data
        dataset.images.withUnsafeBufferPointer { images in
            lookup.withUnsafeBufferPointer { table in
                order.withUnsafeBufferPointer { order in
                    guard let pixels = images.baseAddress, let t = table.baseAddress else { return }
                    for r in 0..<b {
                        let src = pixels + order[start + r] * f
                        let dst = destination + r * f
                        // x / 255 as a true division (bit-identical to torchvision's ToTensor), in
                        // the C kernel: AVX-512 divides 16 lanes at a time, Swift's SSE build 4.
                        switch normalization {
                        case .unit: bp_bytes_to_floats(src, dst, f, 255)
                        case .raw: bp_bytes_to_floats(src, dst, f, 1)
                        case .standardized: for j in 0..<f { dst[j] = t[Int(src[j])] }
                        }
                    }
                }
            }
        }
        dataset.labels.withUnsafeBufferPointer { labels in
            for r in 0..<b { labelBuffer.append(Int32(labels[order[start + r]])) }
        }
        position += globalRows
        defer { batchIndex += 1 }
        return Batch(input: input, labels: labelBuffer, indices: order[start..<(start + b)], index: batchIndex,
                     globalCount: globalRows)
    }

    // MARK: - Shuffling (kept here, not in the standard library, so orders never change with Swift)

    /// The generator seed for `epoch` of a run seeded with `seed` (SplitMix-style mixing).
    static func epochSeed(_ seed: UInt64, _ epoch: Int) -> UInt64 {
        var z = seed &+ UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (Lemire's multiply-and-reject: no modulo bias).
    static func uniform(below n: UInt64, using rng: inout SeededGenerator) -> UInt64 {
        precondition(n > 0)
        var m = rng.next().multipliedFullWidth(by: n)
        if m.low < n {
            let threshold = (0 &- n) % n
            while m.low < threshold { m = rng.next().multipliedFullWidth(by: n) }
        }
        return m.high
    }

    /// Fisher–Yates shuffle: every permutation equally likely.
    static func fisherYates(_ a: inout [Int], using rng: inout SeededGenerator) {
        guard a.count > 1 else { return }
        a.withUnsafeMutableBufferPointer { p in
            for i in stride(from: p.count - 1, to: 0, by: -1) {
                let j = Int(uniform(below: UInt64(i + 1), using: &rng))
                p.swapAt(i, j)
            }
        }
    }
}

/// How a batch's pixels are laid out in the input tensor.
public enum BatchLayout: Sendable, Equatable {
    /// `[B, channels·rows·columns]` — for multilayer perceptrons.
    case flat
    /// `[B, channels, rows, columns]` (NCHW) — for convolutional networks. MNIST: `[B, 1, 28, 28]`.
    case image
    /// `[B, rows, channels·columns]` — one image row per time step, for recurrent networks.
    /// MNIST: `[B, 28, 28]`.
    case sequence

    /// The tensor shape for `batch` examples of `dataset`.
    public func shape(batch: Int, for dataset: Dataset) -> [Int] {
        switch self {
        case .flat: return [batch, dataset.featureCount]
        case .image: return [batch, dataset.channels, dataset.rows, dataset.columns]
        case .sequence: return [batch, dataset.rows, dataset.channels * dataset.columns]
        }
    }
}

/// How a pixel byte x (0…255) becomes a Float.
public enum Normalization: Sendable, Equatable {
    /// x, unchanged (0…255).
    case raw
    /// x / 255, in 0…1 — torchvision's `ToTensor()`.
    case unit
    /// (x / 255 − mean) / std — `ToTensor()` then `Normalize(mean, std)`, in Float as torchvision does.
    case standardized(mean: Float, std: Float)

    /// MNIST's training-set statistics, the usual `Normalize((0.1307,), (0.3081,))`.
    public static let mnist = Normalization.standardized(mean: 0.1307, std: 0.3081)

    /// The Float for pixel byte `x`.
    public func value(_ x: UInt8) -> Float {
        switch self {
        case .raw: return Float(x)
        case .unit: return Float(x) / 255
        case let .standardized(mean, std): return (Float(x) / 255 - mean) / std
        }
    }

    /// All 256 values, indexed by byte: the Batcher converts pixels by table lookup.
    public var table: [Float] { (0...255).map { value(UInt8($0)) } }

    /// Writes the normalised `pixels` to `destination` (e.g. one row of a tensor, for prediction).
    public func apply<C: Collection>(_ pixels: C, into destination: UnsafeMutablePointer<Float>) where C.Element == UInt8 {
        var d = destination
        for x in pixels {
            d.pointee = value(x)
            d += 1
        }
    }
}

/// One batch: the input tensor and the labels (or Float targets), valid until the batcher's or
/// loader's next batch.
public struct Batch {
    /// `[B, …]` in the batcher's layout; the batcher's own buffer, overwritten by the next batch
    /// (copy it with `input.copy()` to keep it).
    public let input: Tensor
    /// The B labels, as the losses take them.
    public let labels: [Int32]
    /// Which examples of the data set are in this batch, in order.
    public let indices: ArraySlice<Int>
    /// The batch's number within its epoch, from 0.
    public let index: Int
    /// Float targets `[B] + targetShape` when the data set has them (a `TensorDataset` with
    /// values; `labels` is then empty), else nil. The loader's own buffer, like `input`.
    public let targets: Tensor?
    /// B: `batchSize`, or fewer for the last batch of an epoch (with a shard: this rank's share).
    public var count: Int { indices.count }
    /// The rows of the whole batch over all ranks (`count` without a shard).
    public let globalCount: Int

    init(input: Tensor, labels: [Int32], indices: ArraySlice<Int>, index: Int, targets: Tensor? = nil,
         globalCount: Int? = nil) {
        self.input = input
        self.labels = labels
        self.indices = indices
        self.index = index
        self.targets = targets
        self.globalCount = globalCount ?? indices.count
    }
}
