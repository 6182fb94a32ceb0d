import Backprop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure to write TensorBoard event files, with the path concerned.
public enum TensorBoardError: Error, CustomStringConvertible, Equatable {
    /// The log directory exists but is not a directory.
    case notADirectory(path: String)
    /// The log directory or the event file could not be created.
    case cannotCreate(path: String, reason: String)
    /// Writing records to the event file failed (full disk, I/O error).
    case cannotWrite(path: String, reason: String)
    /// The writer was used after `close()`.
    case closed(path: String)

    public var description: String {
        switch self {
        case .notADirectory(let p): return "\(p): not a directory (TensorBoard log directory)"
        case .cannotCreate(let p, let r): return "\(p): cannot create the TensorBoard log: \(r)"
        case .cannotWrite(let p, let r): return "\(p): cannot write TensorBoard events: \(r)"
        case .closed(let p): return "\(p): SummaryWriter used after close()"
        }
    }
}

/// Writes TensorBoard event files, like PyTorch's `torch.utils.tensorboard.SummaryWriter`.
///
/// One writer is one file `events.out.tfevents.<seconds>.<host>.<pid>.<n>` in `logDirectory`
/// (created if missing). The file is a sequence of records (TFRecord framing: UInt64 length,
/// masked CRC-32C of those 8 bytes, the serialized `Event`, masked CRC-32C of it; little-endian);
/// the first `Event` holds `file_version = "brain.Event:2"`.
///
/// Records are assembled whole in memory and reach the file on `flush()` (and when 1 MiB is
/// pending, and on `close()`), so a process killed at any point leaves a file whose every complete
/// record is readable; TensorBoard stops at a truncated last record.
///
/// A second writer in the same directory (a resumed run) continues the same run: TensorBoard
/// reads the files of a directory in name order, and the new file's time field is made to sort
/// after every event file already there.
public final class SummaryWriter {
    public let logDirectory: String
    /// The event file being written.
    public let path: String
    private var fd: Int32
    private var pending: [UInt8] = []
    private let clock: () -> Double
    private static let flushThreshold = 1 << 20

    /// Opens a new event file in `logDirectory`, creating the directory (and its parents) if
    /// needed, and writes the `file_version` record to it at once: an unusable directory fails here.
    public convenience init(logDirectory: String, filenameSuffix: String = "") throws {
        let now = Date().timeIntervalSince1970
        var host = [UInt8](repeating: 0, count: 256)
        let named = host.withUnsafeMutableBufferPointer { gethostname(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 255) } == 0
        let hostName = named ? String(decoding: host.prefix { $0 != 0 }, as: UTF8.self) : "localhost"
        var seconds = Int(now)
        if let latest = SummaryWriter.latestEventFileTime(in: logDirectory), latest >= seconds { seconds = latest + 1 }
        let base = "events.out.tfevents." + String(format: "%010d", seconds) + "." + hostName + ".\(getpid())"
        try self.init(logDirectory: logDirectory, fileName: base, suffix: filenameSuffix, clock: { Date().timeIntervalSince1970 })
    }

    /// The writer with a given file name (a number is added if it exists) and clock (tests).
    init(logDirectory: String, fileName: String, suffix: String = "", clock: @escaping () -> Double) throws {
        self.logDirectory = logDirectory
        self.clock = clock
        try SummaryWriter.makeDirectory(logDirectory)
        var candidate = "", descriptor: Int32 = -1
        for n in 0..<1000 {
            candidate = logDirectory + "/" + fileName + (n == 0 ? "" : ".\(n)") + suffix
            descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if descriptor >= 0 || errno != EEXIST { break }
        }
        guard descriptor >= 0 else {
            throw TensorBoardError.cannotCreate(path: candidate, reason: String(cString: strerror(errno)))
        }
        fd = descriptor
        path = candidate
        var event = ProtoWriter()
        event.double(1, clock())
        event.string(3, "brain.Event:2", always: true)
        append(event.bytes)
        do { try flush() } catch {
            Glibc.close(descriptor)
            unlink(candidate)
            fd = -1
            throw error
        }
    }

    deinit { if fd >= 0 { try? close() } }

    // MARK: Summaries

    /// A point of the scalar series `tag` (`Summary.Value.simple_value`, a Float in the file).
    public func addScalar(_ tag: String, _ value: Double, step: Int, wallTime: Double? = nil) throws {
        try addSummary(step: step, wallTime: wallTime) { v in
            v.string(1, tag)
            v.float(2, Float(value), always: true)  // simple_value (a oneof member)
        }
    }

    /// The histogram of `tensor`'s values (see `Histogram`); nothing is written when the tensor
    /// holds no finite value.
    public func addHistogram(_ tag: String, _ tensor: Tensor, step: Int, wallTime: Double? = nil) throws {
        guard let h = Histogram(UnsafeBufferPointer(start: tensor.data, count: tensor.count)) else { return }
        try addHistogram(tag, h, step: step, wallTime: wallTime)
    }

    public func addHistogram(_ tag: String, _ histogram: Histogram, step: Int, wallTime: Double? = nil) throws {
        try addSummary(step: step, wallTime: wallTime) { v in
            v.string(1, tag)
            v.message(5) { histogram.encode(into: &$0) }
        }
    }

    /// Text for TensorBoard's Text tab (markdown), as PyTorch's `add_text` writes it — except that
    /// the tag is kept as given (PyTorch appends `/text_summary`).
    public func addText(_ tag: String, _ text: String, step: Int, wallTime: Double? = nil) throws {
        try addSummary(step: step, wallTime: wallTime) { v in
            v.string(1, tag)
            v.message(8) { t in                      // tensor: TensorProto
                t.int(1, 7)                          // dtype DT_STRING
                t.message(2) { s in s.message(2) { $0.int(1, 1) } }  // shape [1]
                t.string(8, text, always: true)      // string_val
            }
            v.message(9) { m in m.message(1) { $0.string(1, "text") } }  // metadata.plugin_data.plugin_name
        }
    }

    /// A model's graph (see `ModelGraph.nodes(of:input:)`) for the Graphs tab.
    public func addGraph(_ model: Layer, input: Tensor? = nil, wallTime: Double? = nil) throws {
        try addGraph(nodes: try ModelGraph.nodes(of: model, input: input), wallTime: wallTime)
    }

    /// A recorded autodiff computation ending at `output` (see `ModelGraph.nodes(of:)`).
    public func addGraph(_ output: Variable, wallTime: Double? = nil) throws {
        try addGraph(nodes: ModelGraph.nodes(of: output), wallTime: wallTime)
    }

    public func addGraph(nodes: [GraphNode], wallTime: Double? = nil) throws {
        try checkOpen()
        var event = ProtoWriter()
        event.double(1, wallTime ?? clock())
        event.bytes(4, encodeGraph(nodes), always: true)  // graph_def (serialized GraphDef)
        append(event.bytes)
        try flushIfLarge()
    }

    /// Hands every pending record to the file.
    public func flush() throws {
        try checkOpen()
        var offset = 0
        while offset < pending.count {
            let n = pending.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TensorBoardError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
            offset += n
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file; later calls do nothing, later writes throw `.closed`.
    public func close() throws {
        guard fd >= 0 else { return }
        defer { Glibc.close(fd); fd = -1 }
        try flush()
    }

    // MARK: Records

    private func checkOpen() throws {
        guard fd >= 0 else { throw TensorBoardError.closed(path: path) }
    }

    /// `Event` {wall_time 1, step 2, summary 5 {value 1 {…}}}.
    private func addSummary(step: Int, wallTime: Double?, _ value: (inout ProtoWriter) -> Void) throws {
        try checkOpen()
        var event = ProtoWriter()
        event.double(1, wallTime ?? clock())
        event.int(2, Int64(step))
        event.message(5) { summary in summary.message(1, value) }
        append(event.bytes)
        try flushIfLarge()
    }

    private func flushIfLarge() throws {
        if pending.count >= SummaryWriter.flushThreshold { try flush() }
    }

    /// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
    private func append(_ data: [UInt8]) {
        var length: [UInt8] = []
        for i in 0..<8 { length.append(UInt8(truncatingIfNeeded: UInt64(data.count) >> (8 * UInt64(i)))) }
        pending += length
        pending += littleEndian(CRC32C.masked(length))
        pending += data
        pending += littleEndian(CRC32C.masked(data))
    }

    private func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }

    /// `mkdir -p`, with the system's reason when a folder cannot be made; a path that exists
    /// and is not a folder is `.notADirectory`.
    static func makeDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw TensorBoardError.notADirectory(path: path) }
            return
        }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw TensorBoardError.cannotCreate(path: prefix, reason: "cannot make the folder: " + String(cString: strerror(errno)))
            }
        }
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TensorBoardError.notADirectory(path: path)
        }
    }

    /// The largest `<seconds>` of the `events.out.tfevents.<seconds>.…` files in `directory`.
    static func latestEventFileTime(in directory: String) -> Int? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        let prefix = "events.out.tfevents."
        return names.compactMap { name -> Int? in
            guard name.hasPrefix(prefix) else { return nil }
            return Int(name.dropFirst(prefix.count).prefix { $0 != "." })
        }.max()
    }
}
