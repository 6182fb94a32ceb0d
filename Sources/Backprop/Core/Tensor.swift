import Foundation

/// A tensor: a shape plus contiguous, row-major Float storage.
///
/// A Tensor is a reference type (like a PyTorch tensor): layers hand out their output
/// buffers and reuse them on the next call, so the training loop allocates nothing once
/// the first batch has run. Copy with `copy()` when you want to keep a value.
///
/// Storage is owned by a `TensorStorage` that can be shared by several tensors of equal
/// element count (a reshaped view, see `reshaped(_:)`). Its capacity may exceed the
/// current element count, so a buffer sized for a batch of 128 also holds the last,
/// smaller batch without reallocating.
public final class Tensor {
    /// Sizes of each dimension, outermost first (batch-major, row-major).
    public private(set) var shape: [Int]
    /// Number of elements: the product of `shape`.
    public private(set) var count: Int
    public private(set) var storage: TensorStorage

    /// Creates a zero-filled tensor. Throws if a dimension is negative.
    public init(zeros shape: [Int]) throws {
        let n = try Tensor.elementCount(shape)
        self.shape = shape
        self.count = n
        self.storage = TensorStorage(capacity: n)
    }

    /// Creates a tensor holding `values` (row-major) with the given shape.
    public init(_ values: [Float], shape: [Int]) throws {
        let n = try Tensor.elementCount(shape)
        guard n == values.count else {
            throw BackpropError.shapeMismatch(where: "Tensor(_:shape:)",
                                              detail: "shape \(shape) holds \(n) elements but \(values.count) values were given")
        }
        self.shape = shape
        self.count = n
        self.storage = TensorStorage(capacity: n)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { storage.pointer.update(from: base, count: n) }
        }
    }

    /// A 1-d tensor of `values`.
    public convenience init(_ values: [Float]) {
        // A 1-d shape always matches its values, and they already fit in memory: nothing to check.
        self.init(uncheckedShape: [values.count])
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { data.update(from: base, count: values.count) }
        }
    }

    /// Internal: a tensor of zeros whose shape has been validated by the caller.
    init(uncheckedShape shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = TensorStorage(capacity: count)
    }

    /// Internal: a tensor whose shape has been validated by the caller and whose contents are
    /// unspecified: for a result its maker writes in full before anyone reads it.
    init(uninitializedShape shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = TensorStorage(capacity: count, zeroed: false)
    }

    private init(shape: [Int], count: Int, storage: TensorStorage) {
        self.shape = shape
        self.count = count
        self.storage = storage
    }

    static func elementCount(_ shape: [Int]) throws -> Int {
        var n = 1
        for d in shape {
            guard d >= 0 else {
                throw BackpropError.invalidArgument("tensor shape \(shape) has a negative dimension")
            }
            let (m, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, m <= Int(Int32.max) else {
                throw BackpropError.invalidArgument("tensor shape \(shape) is too large (more than 2^31 elements)")
            }
            n = m
        }
        return n
    }

    // MARK: - Raw access

    /// Pointer to the first element. Valid while the tensor is alive.
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.pointer }

    /// The values, row-major, copied into an array.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// Element `i` of the flat row-major storage (checked).
    public subscript(flat i: Int) -> Float {
        get { precondition(i >= 0 && i < count, "flat index \(i) out of range 0..<\(count)"); return data[i] }
        set { precondition(i >= 0 && i < count, "flat index \(i) out of range 0..<\(count)"); data[i] = newValue; markChanged() }
    }

    /// Element at a multi-dimensional index (checked).
    public subscript(_ index: Int...) -> Float {
        get { data[offset(of: index)] }
        set { data[offset(of: index)] = newValue; markChanged() }
    }

    private func offset(of index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) does not fit shape \(shape)")
        var o = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "index \(index) out of range for shape \(shape)")
            o = o * d + i
        }
        return o
    }

    /// Matrix view of the tensor: first dimension as rows, the rest flattened as columns.
    public var rows: Int { shape.first ?? 1 }
    public var columnsPerRow: Int { rows == 0 ? 0 : count / rows }

    // MARK: - Resizing and views

    /// Counts a change of contents made through `data` (see `TensorStorage.version`), so a layer
    /// that saved this tensor for backward notices it. Tensor's own methods call it; optimizers
    /// call it after updating a parameter in place.
    @inline(__always) public func markChanged() { storage.version &+= 1 }

    /// Reshapes in place to `newShape`, reusing storage when it is large enough (contents are
    /// then unspecified). Used by layers to size their output buffers for a batch, so it counts
    /// as a change even when the shape stays: a forward that resizes its output is about to
    /// overwrite it. Traps on a negative dimension or an element count above 2^31.
    public func resize(to newShape: [Int]) {
        markChanged()
        if newShape == shape { return }
        let n: Int
        do { n = try Tensor.elementCount(newShape) } catch { preconditionFailure("resize(to:): \(error)") }
        if n > storage.capacity { storage = TensorStorage(capacity: n) }
        shape = newShape
        count = n
    }

    /// Allocation-free forms of `resize(to:)` for the hot loop: an array literal such as
    /// `[n, features]` is a heap allocation on every call, these compare sizes first and build
    /// a new shape only when it changes.
    public func resize(_ d0: Int) {
        markChanged()
        if shape.count == 1 && shape[0] == d0 { return }
        resize(to: [d0])
    }

    public func resize(_ d0: Int, _ d1: Int) {
        markChanged()
        if shape.count == 2 && shape[0] == d0 && shape[1] == d1 { return }
        resize(to: [d0, d1])
    }

    public func resize(_ d0: Int, _ d1: Int, _ d2: Int) {
        markChanged()
        if shape.count == 3 && shape[0] == d0 && shape[1] == d1 && shape[2] == d2 { return }
        resize(to: [d0, d1, d2])
    }

    public func resize(_ d0: Int, _ d1: Int, _ d2: Int, _ d3: Int) {
        markChanged()
        if shape.count == 4 && shape[0] == d0 && shape[1] == d1 && shape[2] == d2 && shape[3] == d3 { return }
        resize(to: [d0, d1, d2, d3])
    }

    /// A tensor sharing this one's storage with another shape of the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        let n = try Tensor.elementCount(newShape)
        guard n == count else {
            throw BackpropError.shapeMismatch(where: "Tensor.reshaped",
                                              detail: "cannot view shape \(shape) (\(count) elements) as \(newShape) (\(n) elements)")
        }
        return Tensor(shape: newShape, count: n, storage: storage)
    }

    /// Re-points an existing view at `source`'s storage with `newShape` (same element count).
    /// Allocation-free alternative to `reshaped` for layers that keep a view between calls.
    func becomeView(of source: Tensor, shape newShape: [Int]) {
        precondition(newShape.reduce(1, *) == source.count, "becomeView: shape \(newShape) does not hold \(source.count) elements")
        storage = source.storage
        shape = newShape
        count = source.count
    }

    /// An independent copy.
    public func copy() -> Tensor {
        let t = Tensor(uncheckedShape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Copies `other`'s values into this tensor (shapes must hold the same element count).
    public func assign(_ other: Tensor) throws {
        guard other.count == count else {
            throw BackpropError.shapeMismatch(where: "Tensor.assign", detail: "cannot copy \(other.shape) into \(shape)")
        }
        markChanged()
        data.update(from: other.data, count: count)
    }

    /// Copies `values` in (row-major); count must match.
    public func assign(_ values: [Float]) throws {
        guard values.count == count else {
            throw BackpropError.shapeMismatch(where: "Tensor.assign", detail: "\(values.count) values for shape \(shape)")
        }
        markChanged()
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { data.update(from: base, count: count) }
        }
    }
}

/// The memory behind one or more tensors: `capacity` Floats, 64-byte aligned (from 1 MiB on, on
/// 2 MiB huge pages), zero-filled, with a version counter. Tensors of one element count can share
/// it (a reshaped view); see `Tensor`.
public final class TensorStorage {
    public let pointer: UnsafeMutablePointer<Float>
    public let capacity: Int
    /// Counts the changes made to this storage through `Tensor`'s methods (resize, fill, assign,
    /// subscript writes) and by each forward pass that writes a layer's output into it: PyTorch's
    /// version counter. A layer notes it at forward and compares at backward, so a tensor changed
    /// in between is an error instead of wrong gradients or an out-of-bounds product. Writes
    /// through `data` are not counted (as PyTorch's `.data`).
    public internal(set) var version = 0

    /// `zeroed: false` leaves the contents unspecified, for a buffer its maker overwrites in full
    /// (a graph op's result): no pass over memory that is about to be written anyway.
    init(capacity: Int, zeroed: Bool = true) {
        self.capacity = Swift.max(capacity, 1)
        let bytes = TensorStorage.allocationBytes(self.capacity)
        let raw: UnsafeMutableRawPointer
        if let recycled = StorageRecycler.take(bytes: bytes) {
            raw = recycled
        } else if bytes >= TensorStorage.hugePageThreshold {
            // Large buffers (a recurrent layer's activations, im2col columns, big batches) on 2 MiB
            // pages: their kernels stream through megabytes, and with 4 KiB pages every 4 KiB
            // costs a TLB miss. Linux gives an allocation transparent huge pages only when asked
            // (`transparent_hugepage=madvise`, Debian's default): the LSTM gate kernels ran ~35 %
            // faster on cold data with them. The request is a hint; if refused, nothing changes.
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: TensorStorage.hugePage)
            #if os(Linux)
            _ = madvise(raw, bytes, MADV_HUGEPAGE)
            #endif
        } else {
            // 64-byte alignment: whole cache lines and AVX-512 registers for BLAS and SIMD loops.
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        if zeroed {
            pointer = raw.initializeMemory(as: Float.self, repeating: 0, count: self.capacity)
        } else {
            pointer = raw.bindMemory(to: Float.self, capacity: self.capacity)
        }
    }

    /// Bytes allocated for `capacity` floats: whole huge pages from `hugePageThreshold` up.
    static func allocationBytes(_ capacity: Int) -> Int {
        let bytes = capacity * MemoryLayout<Float>.stride
        return bytes >= hugePageThreshold ? (bytes + hugePage - 1) / hugePage * hugePage : bytes
    }

    /// 2 MiB: the x86-64 huge page.
    static let hugePage = 2 << 20
    /// Buffers from 1 MiB up are rounded up to whole huge pages (at most 2× for the smallest).
    static let hugePageThreshold = 1 << 20

    deinit {
        let raw = UnsafeMutableRawPointer(pointer)
        if !StorageRecycler.give(raw, bytes: TensorStorage.allocationBytes(capacity)) { raw.deallocate() }
    }
}

/// Freed tensor buffers of 64 KiB and more, kept (up to 256 MiB in all) for the next tensor of the
/// same size. A computational graph makes fresh tensors for every op's result and gradient and
/// drops them when the step's graph goes; with the same shapes step after step, the next step's
/// tensors take these buffers instead of asking the allocator, which for buffers this large maps
/// fresh pages from the kernel (a page fault and a zeroed page per 4 KiB) and unmaps them again.
enum StorageRecycler {
    static let minimumBytes = 64 << 10
    static let maximumBytes = 256 << 20

    struct Cache {
        var free: [Int: [UnsafeMutableRawPointer]] = [:]
        var bytes = 0
    }
    nonisolated(unsafe) private static var cache = Cache()
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    /// A cached buffer of exactly `bytes`, or nil.
    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= minimumBytes else { return nil }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard let p = cache.free[bytes]?.popLast() else { return nil }
        cache.bytes -= bytes
        return p
    }

    /// Keeps `pointer` (of `bytes`) for reuse; false when it is too small or the cache is full
    /// (the caller frees it).
    static func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard bytes >= minimumBytes else { return false }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard cache.bytes + bytes <= maximumBytes else { return false }
        cache.free[bytes, default: []].append(pointer)
        cache.bytes += bytes
        return true
    }

    /// Frees every cached buffer (the memory goes back to the allocator).
    static func drain() {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for (_, list) in cache.free { for p in list { p.deallocate() } }
        cache = Cache()
    }

    /// Bytes held by the cache now.
    static var cachedBytes: Int {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return cache.bytes
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", …" : "")])"
    }
}
