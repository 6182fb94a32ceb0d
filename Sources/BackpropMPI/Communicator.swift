import Backprop
import CMPI
import Foundation

/// An MPI call that returned an error: which call, where, and MPI's own message.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let detail: String
    public var description: String { "\(call) failed (MPI error \(code)): \(detail)" }
}

/// A failure every rank detects together (each sees the same gathered values), so every rank
/// can stop cleanly with the same message instead of leaving the others waiting in a collective.
public struct CollectiveError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How `allreduce` combines the ranks' values.
public enum ReduceOperation: Sendable {
    /// Element-wise sum.
    case sum
    /// Element-wise sum divided by the number of ranks.
    case average
    case max
    case min
}

/// The processes of an `mpirun` job (`MPI_COMM_WORLD`): rank, size and the collectives data
/// parallel training needs. Only the thread that created it may call it (`MPI_THREAD_FUNNELED`).
///
///     if let world = try Communicator.launchedByMPI() {      // nil without mpirun
///         try world.broadcast(parameter.value, root: 0)
///         try world.allreduce(parameter.grad, .average)
///     }
public final class Communicator {
    public let rank: Int
    public let size: Int
    private let comm: MPI_Comm?
    private var finalized = false

    nonisolated(unsafe) private static var world: Communicator?

    /// Whether this process was started by Open MPI's `mpirun` (it sets `OMPI_COMM_WORLD_SIZE`).
    public static var isLaunchedByMPI: Bool {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
    }

    /// The world communicator when running under `mpirun`, initialising MPI on the first call;
    /// nil otherwise, without touching MPI (a plain run pays no MPI start-up).
    public static func launchedByMPI() throws -> Communicator? {
        guard isLaunchedByMPI else { return nil }
        return try initializeWorld()
    }

    /// Initialises MPI (`MPI_Init_thread`, funneled) once and returns `MPI_COMM_WORLD`.
    public static func initializeWorld() throws -> Communicator {
        if let world { return world }
        // A rank waiting for a reduction yields its core instead of spinning on it (Open MPI spins
        // unless it knows the node is oversubscribed): on shared or busy nodes the rank it waits
        // for gets the core. `OMPI_MCA_mpi_yield_when_idle=0` in the environment turns it off.
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0)
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, bp_mpi_thread_funneled(), &provided), "MPI_Init_thread")
        let comm = bp_mpi_comm_world()
        var rank: Int32 = 0, size: Int32 = 0
        try check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(comm, &size), "MPI_Comm_size")
        let made = Communicator(comm: comm, rank: Int(rank), size: Int(size))
        world = made
        return made
    }

    private init(comm: MPI_Comm?, rank: Int, size: Int) {
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    /// `MPI_Finalize` (once; later calls do nothing). No collective may follow.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    /// Ends every rank of the job at once (`MPI_Abort`): for a failure only this rank saw, which
    /// would otherwise leave the other ranks waiting in their next collective.
    public func abort(code: Int32 = 1) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }

    static func check(_ status: Int32, _ call: String) throws {
        guard status != MPI_SUCCESS else { return }
        var buffer = [CChar](repeating: 0, count: Int(bp_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(status, &buffer, &length)
        let detail = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw MPIError(call: call, code: status, detail: detail)
    }

    private func ensureOpen(_ call: String) throws {
        if finalized { throw MPIError(call: call, code: -1, detail: "called after finalize()") }
    }

    private static func mpiOp(_ op: ReduceOperation) -> MPI_Op? {
        switch op {
        case .sum, .average: return bp_mpi_sum()
        case .max: return bp_mpi_max()
        case .min: return bp_mpi_min()
        }
    }

    // MARK: - Collectives

    /// Waits until every rank has called it.
    public func barrier() throws {
        try ensureOpen("MPI_Barrier")
        try Communicator.check(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// Combines `count` floats at `buffer` across ranks, in place.
    public func allreduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, _ op: ReduceOperation) throws {
        try ensureOpen("MPI_Allreduce")
        guard count > 0 else { return }
        guard count <= Int(Int32.max) else {
            throw MPIError(call: "MPI_Allreduce", code: -1, detail: "\(count) floats exceed MPI's Int32 count")
        }
        try Communicator.check(MPI_Allreduce(bp_mpi_in_place(), buffer, Int32(count), bp_mpi_float(),
                                             Communicator.mpiOp(op), comm), "MPI_Allreduce")
        if op == .average { scale(buffer, count, 1 / Float(size)) }
    }

    /// Combines a tensor's values across ranks, in place.
    public func allreduce(_ tensor: Tensor, _ op: ReduceOperation) throws {
        try allreduce(tensor.data, count: tensor.count, op)
        tensor.markChanged()
    }

    /// Combines doubles across ranks (metrics: loss sums, counts).
    public func allreduce(_ values: [Double], _ op: ReduceOperation) throws -> [Double] {
        try ensureOpen("MPI_Allreduce")
        var result = values
        guard !values.isEmpty else { return result }
        try result.withUnsafeMutableBufferPointer { p in
            try Communicator.check(MPI_Allreduce(bp_mpi_in_place(), p.baseAddress, Int32(p.count), bp_mpi_double(),
                                                 Communicator.mpiOp(op), comm), "MPI_Allreduce")
        }
        if op == .average { result = result.map { $0 / Double(size) } }
        return result
    }

    /// Every rank's `value`, indexed by rank (`MPI_Allgather`).
    public func allgather(_ value: UInt64) throws -> [UInt64] {
        try ensureOpen("MPI_Allgather")
        var mine = value
        var all = [UInt64](repeating: 0, count: size)
        try all.withUnsafeMutableBufferPointer { p in
            try Communicator.check(MPI_Allgather(&mine, 1, bp_mpi_uint64(), p.baseAddress, 1, bp_mpi_uint64(), comm),
                                   "MPI_Allgather")
        }
        return all
    }

    /// Copies `root`'s `count` floats at `buffer` to every rank.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws {
        try ensureOpen("MPI_Bcast")
        guard root >= 0, root < size else {
            throw MPIError(call: "MPI_Bcast", code: -1, detail: "root \(root) is not a rank of \(size)")
        }
        guard count > 0 else { return }
        try Communicator.check(MPI_Bcast(buffer, Int32(count), bp_mpi_float(), Int32(root), comm), "MPI_Bcast")
    }

    /// Copies `root`'s tensor values to every rank (same shape on every rank).
    public func broadcast(_ tensor: Tensor, root: Int = 0) throws {
        try broadcast(tensor.data, count: tensor.count, root: root)
        tensor.markChanged()
    }

    /// Starts a non-blocking in-place sum of `count` floats (`MPI_Iallreduce`). The buffer must stay
    /// untouched until the request's `wait()` returns. Open MPI advances such a reduction only
    /// inside MPI calls: `test()` now and then (between layers of backward) keeps it moving.
    /// Starts a non-blocking barrier (`MPI_Ibarrier`): its request completes once every rank has
    /// started it. Waiting on it politely (`waitPolitely`) and then calling a blocking collective
    /// keeps a rank that arrives early from spinning inside MPI while the others still compute.
    public func startBarrier() throws -> CollectiveRequest {
        try ensureOpen("MPI_Ibarrier")
        var request = bp_mpi_request_null()
        try Communicator.check(MPI_Ibarrier(comm, &request), "MPI_Ibarrier")
        return CollectiveRequest(request: request)
    }

    public func startAllreduce(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws -> CollectiveRequest {
        try ensureOpen("MPI_Iallreduce")
        var request = bp_mpi_request_null()
        if count > 0 {
            try Communicator.check(MPI_Iallreduce(bp_mpi_in_place(), buffer, Int32(count), bp_mpi_float(),
                                                  bp_mpi_sum(), comm, &request), "MPI_Iallreduce")
        }
        return CollectiveRequest(request: request)
    }
}

/// A non-blocking collective started by `Communicator.startAllreduce` or `startBarrier`.
public final class CollectiveRequest {
    private var request: MPI_Request?
    public private(set) var isComplete = false

    init(request: MPI_Request?) {
        self.request = request
        isComplete = request == bp_mpi_request_null()
    }

    /// Lets MPI progress the reduction; true when it is done.
    @discardableResult
    public func test() throws -> Bool {
        if isComplete { return true }
        var flag: Int32 = 0
        try Communicator.check(MPI_Test(&request, &flag, bp_mpi_status_ignore()), "MPI_Test")
        if flag != 0 { isComplete = true }
        return isComplete
    }

    /// Waits by testing (each test also advances the reduction: Open MPI progresses it only inside
    /// MPI calls), and after the first 2 ms sleeping 50 µs between tests: a rank left waiting that
    /// long waits for a rank that is not running (a busy or oversubscribed node), which may need
    /// the core. Sleeping earlier would slow every reduction down (measured: 35 % of an MLP epoch
    /// spent waiting with a 50 µs threshold, docs/distributed.md).
    public func waitPolitely() throws {
        let start = DispatchTime.now().uptimeNanoseconds
        while try !test() {
            if DispatchTime.now().uptimeNanoseconds - start > 2_000_000 { usleep(50) }
        }
    }

    /// Blocks until the reduction is done.
    public func wait() throws {
        if isComplete { return }
        try Communicator.check(MPI_Wait(&request, bp_mpi_status_ignore()), "MPI_Wait")
        isComplete = true
    }
}

func scale(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ factor: Float) {
    for i in 0..<n { p[i] *= factor }
}

/// A 64-bit hash of raw bytes, eight at a time (for consistency checks across ranks, not security).
public func contentHash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
    var h = seed ^ UInt64(bytes.count)
    let words = bytes.count / 8
    for i in 0..<words {
        let w = bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
        h = (h ^ w) &* 0x0000_0100_0000_01b3
        h ^= h >> 29
    }
    for i in (words * 8)..<bytes.count {
        h = (h ^ UInt64(bytes[i])) &* 0x0000_0100_0000_01b3
    }
    return h ^ (h >> 32)
}

/// `contentHash` of every tensor's floats, in order.
public func contentHash(_ tensors: [Tensor]) -> UInt64 {
    var h: UInt64 = 0x9E37_79B9_7F4A_7C15
    for t in tensors {
        h = contentHash(UnsafeRawBufferPointer(start: t.data, count: t.count * 4), seed: h)
    }
    return h
}
