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

    /// The positive default edges, p_0 = 1e-12 < p_1 < … (the upper half of `defaultEdges`).
    static let positiveEdges: [Double] = Array(defaultEdges[(defaultEdges.count / 2 + 1)...])

    /// For each cell of positive Floats sharing their exponent and top 4 mantissa bits (the bit
    /// pattern >> 19), the number of positive edges below the cell's smallest value. A cell spans
    /// a ratio of at most 17/16 < 1.1, so it holds at most one edge: one comparison places a value.
    static let cellBase: [Int32] = {
        let p = positiveEdges
        return (0..<(1 << 12)).map { cell -> Int32 in
            let lo = Double(Float(bitPattern: UInt32(cell) << 19))
            var a = 0, b = p.count  // first index with p[i] >= lo
            while a < b {
                let m = (a + b) >> 1
                if p[m] < lo { a = m + 1 } else { b = m }
            }
            return Int32(a)
        }
    }()

    /// The bin of `x` among the `2P` bins of `defaultEdges` ([e_i, e_{i+1}), the last closed), or
    /// -1 outside them. (Same answer as a binary search over `defaultEdges`; tested against one.)
    @inline(__always)
    static func bin(_ x: Float, positive p: UnsafeBufferPointer<Double>, base: UnsafeBufferPointer<Int32>) -> Int {
        let count = p.count
        let a = x.magnitude
        if a == 0 { return count }  // [0, p_0)
        let v = Double(a)
        let c = Int(base[Int(a.bitPattern >> 19)])
        if x > 0 {
            // i = P + #(p_k ≤ v); v == p_{P-1} falls in the last (closed) bin, beyond it in none.
            let n = c + (c < count && p[c] <= v ? 1 : 0)
            if n < count { return count + n }
            return v == p[count - 1] ? 2 * count - 1 : -1
        }
        // x < 0: i = P − 1 − #(p_k < |x|); |x| beyond every edge: none.
        let m = c + (c < count && p[c] < v ? 1 : 0)
        return m < count ? count - 1 - m : -1
    }

    /// The histogram of `values`, or nil when none of them is finite (or all lie beyond ±1e20).
    public init?(_ values: UnsafeBufferPointer<Float>) {
        let edges = Histogram.defaultEdges
        let bins = edges.count - 1
        var counts = [Double](repeating: 0, count: bins)
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, squares = 0.0, n = 0
        Histogram.positiveEdges.withUnsafeBufferPointer { p in
            Histogram.cellBase.withUnsafeBufferPointer { base in
                counts.withUnsafeMutableBufferPointer { counts in
                    for x in values where x.isFinite {
                        let v = Double(x)
                        lo = Swift.min(lo, v); hi = Swift.max(hi, v)
                        sum += v; squares += v * v; n += 1
                        let i = Histogram.bin(x, positive: p, base: base)
                        if i >= 0 { counts[i] += 1 }
                    }
                }
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
