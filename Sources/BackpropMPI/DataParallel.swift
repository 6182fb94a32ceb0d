import Backprop
import Foundation

/// Data-parallel training of one model replica per rank, PyTorch's `DistributedDataParallel`:
///
///     let ddp = try DataParallel(model, communicator: world)   // rank 0's parameters everywhere
///     optimizer.zeroGrad()
///     let (loss, delta) = try lossFunction(try model.forward(localBatch), labels: localLabels)
///     _ = try ddp.backward(delta)          // starts reducing buckets while backward runs
///     try ddp.waitForGradients()           // every grad now holds the average over ranks
///     try optimizer.step()                 // the same step on every rank
///
/// - Buckets: the parameters in the order backward finishes them (last layer first) are packed
///   into buckets of about `bucketBytes` (a parameter at least that big is a bucket of its own and
///   is reduced in place, with no copy). Each bucket starts an `MPI_Iallreduce` as soon as its
///   last gradient is final: for a `Sequential` model that is after the layer that owns it, so
///   the reduction of the last layers overlaps the backward of the first ones. The buckets that
///   hold the first layer's parameters become final only when backward ends, with nothing left
///   to overlap: `waitForGradients` reduces them with a blocking `MPI_Allreduce` (Open MPI's tuned
///   collectives), after a polite non-blocking barrier, as it does every bucket of a model that
///   is not a `Sequential` (whose gradients are all final only at the end). The blocking call is
///   about twice as fast as `MPI_Iallreduce` for the MLP's 800 KB first-layer gradient on shared
///   memory (216 vs 417 µs; docs/distributed.md). Which buckets are reduced which way depends
///   only on the model, so every rank issues the same collectives in the same order (MPI does
///   not match a blocking collective with a non-blocking one), also a rank with no rows.
/// - Weighting: rank r's gradient counts with `weight` (default 1/size, a plain average). With
///   unequal shares of a global batch, `weight` = rows on this rank / rows in the global batch
///   makes the sum the global batch's mean gradient. Applied by scaling δ (backward is linear in
///   δ), so it costs one pass over δ, not over the gradients.
/// - Buffers (BatchNorm's running statistics) are broadcast from rank 0 at the start;
///   `averageBuffers()` makes them equal again (the batch statistics are each rank's own, as with
///   DDP without SyncBatchNorm).
public final class DataParallel {
    public let model: Layer
    public let communicator: Communicator
    public let bucketBytes: Int
    /// Parameters in the order backward finishes them.
    public let backwardOrder: [Parameter]
    /// The buckets as index ranges into `backwardOrder`, in launch order.
    public var bucketRanges: [Range<Int>] { buckets.map(\.range) }
    /// The buckets (indices into `bucketRanges`) that `waitForGradients` reduces with blocking
    /// calls; the others are reduced with `MPI_Iallreduce` while backward runs.
    public var blockingBuckets: Range<Int> { firstBlockingBucket..<buckets.count }

    private final class Bucket {
        let range: Range<Int>
        let parameters: [Parameter]
        /// Packing buffer for buckets of several parameters; nil for one reduced in place.
        let buffer: Tensor?
        var request: CollectiveRequest?
        init(range: Range<Int>, parameters: [Parameter]) throws {
            self.range = range
            self.parameters = parameters
            let total = parameters.reduce(0) { $0 + $1.value.count }
            buffer = parameters.count > 1 ? try Tensor(zeros: [total]) : nil
        }
    }

    /// Seconds spent in `waitForGradients` (communication not hidden behind backward) since
    /// the last reset; set it to 0 to start a new measurement.
    public var waitSeconds = 0.0

    /// 256 KB: above N·α·β for tens of nodes on shared memory and 10 Gb/s links, so a bucket's
    /// latency stays small against its transfer (docs/distributed.md), and below the size of a
    /// big weight matrix, so that one is reduced in place (no packing copy) and the small
    /// gradients of the last layers start before the first layer's backward.
    public static let defaultBucketBytes = 256 << 10

    private var buckets: [Bucket] = []
    /// Buckets from this index on are reduced by blocking calls in `waitForGradients` (see above).
    private var firstBlockingBucket = 0
    /// Set by `backward` and `contributeNothing`, cleared by `waitForGradients`.
    private var reducing = false
    /// For a `Sequential` model: how many of `backwardOrder` are final once layers i… are done.
    private let finalAfterLayer: [Int]?
    private var launched = 0

    /// Broadcasts rank 0's parameters and buffers to every rank and plans the buckets.
    /// - Throws: `BackpropError.invalidArgument` for `bucketBytes` < 4; `MPIError`.
    public init(_ model: Layer, communicator: Communicator, bucketBytes: Int = DataParallel.defaultBucketBytes) throws {
        guard bucketBytes >= 4 else {
            throw BackpropError.invalidArgument("DataParallel: bucketBytes \(bucketBytes) must be at least 4 (one float)")
        }
        self.model = model
        self.communicator = communicator
        self.bucketBytes = bucketBytes
        if let sequential = model as? Sequential {
            var order: [Parameter] = [], after = [Int](repeating: 0, count: sequential.layers.count + 1)
            for i in stride(from: sequential.layers.count - 1, through: 0, by: -1) {
                order += sequential.layers[i].parameters
                after[i] = order.count
            }
            backwardOrder = order
            finalAfterLayer = after
        } else {
            backwardOrder = model.parameters.reversed()
            finalAfterLayer = nil
        }
        var start = 0, bytes = 0
        for (i, p) in backwardOrder.enumerated() {
            let size = p.value.count * 4
            if size >= bucketBytes, i > start {   // a big parameter goes alone, in place
                buckets.append(try Bucket(range: start..<i, parameters: Array(backwardOrder[start..<i])))
                start = i; bytes = 0
            }
            bytes += size
            if bytes >= bucketBytes {
                buckets.append(try Bucket(range: start..<(i + 1), parameters: Array(backwardOrder[start...i])))
                start = i + 1; bytes = 0
            }
        }
        if start < backwardOrder.count {
            buckets.append(try Bucket(range: start..<backwardOrder.count, parameters: Array(backwardOrder[start...])))
        }
        // Blocking: the buckets holding a parameter of the first layer that has any (final only
        // when backward ends), or every bucket of a model that is not a `Sequential`.
        if let sequential = model as? Sequential, let after = finalAfterLayer,
           let first = sequential.layers.firstIndex(where: { !$0.parameters.isEmpty }) {
            firstBlockingBucket = buckets.firstIndex { $0.range.upperBound > after[first + 1] } ?? buckets.count
        } else {
            firstBlockingBucket = 0
        }
        for p in model.parameters { try communicator.broadcast(p.value, root: 0) }
        for (_, t) in model.namedBuffers { try communicator.broadcast(t, root: 0) }
    }

    /// Runs the model's backward with δ scaled by `weight` (default 1/size), starting each bucket's
    /// reduction as soon as its gradients are final. Returns δ of the input, as `backward` does.
    public func backward(_ outputGradient: Tensor, weight: Float? = nil) throws -> Tensor {
        try checkIdle()
        let w = weight ?? 1 / Float(communicator.size)
        if w != 1 {
            let d = outputGradient.data
            for i in 0..<outputGradient.count { d[i] *= w }
            outputGradient.markChanged()
        }
        let result: Tensor
        if let sequential = model as? Sequential, let after = finalAfterLayer {
            result = try sequential.backward(outputGradient) { i in
                try self.launch(upTo: after[i])
                for b in self.buckets[..<self.launched] { try b.request?.test() }
            }
        } else {
            result = try model.backward(outputGradient)
        }
        try launch(upTo: backwardOrder.count)
        reducing = true
        return result
    }

    /// For a rank with no rows in this global batch: contributes zero gradients to the reduction
    /// (the other ranks' `backward` would otherwise wait for it).
    public func contributeNothing() throws {
        try checkIdle()
        for p in backwardOrder { p.zeroGrad(); p.grad.data.update(repeating: 0, count: p.grad.count) }
        try launch(upTo: backwardOrder.count)
        reducing = true
    }

    /// Waits for every bucket and unpacks the sums into the gradients.
    public func waitForGradients() throws {
        guard reducing else {
            throw BackpropError.invalidUse(where: "DataParallel", detail: "waitForGradients() before backward() or contributeNothing()")
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        for b in buckets[..<launched] {
            try b.request?.waitPolitely()
            b.request = nil
        }
        if launched < buckets.count {
            try communicator.startBarrier().waitPolitely()   // every rank is here: no spinning below
            for b in buckets[launched...] {
                pack(b)
                if let buffer = b.buffer {
                    try communicator.allreduce(buffer.data, count: buffer.count, .sum)
                } else if let p = b.parameters.first {
                    try communicator.allreduce(p.grad.data, count: p.value.count, .sum)
                }
            }
        }
        for b in buckets {
            guard let buffer = b.buffer else { continue }
            var offset = 0
            for p in b.parameters {
                p.grad.data.update(from: buffer.data + offset, count: p.value.count)
                offset += p.value.count
            }
        }
        launched = 0
        reducing = false
    }

    /// Averages the model's buffers (BatchNorm's running statistics) over the ranks.
    public func averageBuffers() throws {
        for (_, t) in model.namedBuffers { try communicator.allreduce(t, .average) }
    }

    /// A hash of the parameters' values, gathered from every rank: ranks whose replica differs
    /// from rank 0's are listed in the thrown `CollectiveError` (every rank throws the same).
    public func checkReplicasAgree(context: String) throws {
        let hashes = try communicator.allgather(contentHash(model.parameters.map(\.value)))
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard differing.isEmpty else {
            throw CollectiveError("\(context): the parameters of rank\(differing.count > 1 ? "s" : "") "
                + differing.map(String.init).joined(separator: ", ")
                + " differ from rank 0's (hashes " + hashes.map { String($0, radix: 16) }.joined(separator: ", ") + ")")
        }
    }

    private func checkIdle() throws {
        guard !reducing, launched == 0 else {   // (launched > 0 alone: a backward that threw midway)
            throw BackpropError.invalidUse(where: "DataParallel", detail: "backward() again before waitForGradients()")
        }
    }

    /// Starts the non-blocking reduction of every bucket before `firstBlockingBucket` whose
    /// parameters all lie in the first `final` of `backwardOrder`.
    private func launch(upTo final: Int) throws {
        while launched < firstBlockingBucket, buckets[launched].range.upperBound <= final {
            let b = buckets[launched]
            pack(b)
            if let buffer = b.buffer {
                b.request = try communicator.startAllreduce(buffer.data, count: buffer.count)
            } else if let p = b.parameters.first {
                b.request = try communicator.startAllreduce(p.grad.data, count: p.value.count)
            }
            launched += 1
        }
    }

    /// Copies a bucket's gradients into its packing buffer (none for a bucket reduced in place).
    private func pack(_ b: Bucket) {
        guard let buffer = b.buffer else { return }
        var offset = 0
        for p in b.parameters {
            (buffer.data + offset).update(from: p.grad.data, count: p.value.count)
            offset += p.value.count
        }
    }
}
