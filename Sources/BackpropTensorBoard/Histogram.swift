/// A histogram as TensorBoard stores it (`HistogramProto`), binned the way PyTorch's
/// `SummaryWriter.add_histogram(..., bins="tensorflow")` bins: on TensorBoard's default
/// exponential edges (±1e-12·1.1^k up to 1e20, and 0), each bin [edge_i, edge_{i+1}) with the
/// last one closed, keeping the bins from the first to the last non-empty one plus one empty
/// bin on the left, each bucket described by its right edge (`bucket_limit`).
///
/// NaN and ±∞ are left out (PyTorch refuses such a tensor); `num` counts the values binned.
public struct Histogram: Equatable, Sendable {
    public var min: Double
    public var max: Double
    public var num: Double
    public var sum: Double
    public var sumSquares: Double
    /// Right edge of each bucket.
    public var bucketLimits: [Double]
    /// Count of each bucket.
    public var buckets: [Double]

    /// TensorBoard's default bucket edges, computed as PyTorch and TensorBoard's own test-data
    /// generator do (`v = 1e-12; while v < 1e20: v *= 1.1`), negatives mirrored, 0 in between.
    public static let defaultEdges: [Double] = {
        var positive: [Double] = []
        var v = 1e-12
        while v < 1e20 {
            positive.append(v)
            v *= 1.1
        }
        return positive.reversed().map { -$0 } + [0] + positive
    }()

    public init(min: Double, max: Double, num: Double, sum: Double, sumSquares: Double,
                bucketLimits: [Double], buckets: [Double]) {
        self.min = min; self.max = max; self.num = num; self.sum = sum; self.sumSquares = sumSquares
        self.bucketLimits = bucketLimits; self.buckets = buckets
    }

    /// The histogram of `values`, or nil when none of them is finite (or all lie beyond ±1e20).
    public init?(_ values: UnsafeBufferPointer<Float>) {
        let edges = Histogram.defaultEdges
        let bins = edges.count - 1
        var counts = [Double](repeating: 0, count: bins)
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, squares = 0.0, n = 0
        let first = edges[0], last = edges[bins]
        edges.withUnsafeBufferPointer { e in
            for x in values where x.isFinite {
                let v = Double(x)
                lo = Swift.min(lo, v); hi = Swift.max(hi, v)
                sum += v; squares += v * v; n += 1
                guard v >= first, v <= last else { continue }  // outside every bin, as numpy
                // Largest i with e[i] ≤ v (the closed last bin takes v == last).
                var a = 0, b = bins  // invariant: e[a] ≤ v, and e[b] > v or b == bins
                while b - a > 1 {
                    let m = (a + b) >> 1
                    if e[m] <= v { a = m } else { b = m }
                }
                counts[a] += 1
            }
        }
        guard n > 0, let f = counts.firstIndex(where: { $0 > 0 }),
              let l = counts.lastIndex(where: { $0 > 0 }) else { return nil }
        if f > 0 {
            buckets = Array(counts[(f - 1)...l])
            bucketLimits = Array(edges[f...(l + 1)])
        } else {
            buckets = [0] + counts[0...l]
            bucketLimits = Array(edges[0...(l + 1)])
        }
        min = lo; max = hi; num = Double(n); self.sum = sum; sumSquares = squares
    }

    public init?(_ values: [Float]) {
        guard let h = values.withUnsafeBufferPointer({ Histogram($0) }) else { return nil }
        self = h
    }

    /// `HistogramProto`: min 1, max 2, num 3, sum 4, sum_squares 5, bucket_limit 6, bucket 7.
    func encode(into w: inout ProtoWriter) {
        w.double(1, min)
        w.double(2, max)
        w.double(3, num)
        w.double(4, sum)
        w.double(5, sumSquares)
        w.packedDoubles(6, bucketLimits)
        w.packedDoubles(7, buckets)
    }
}
