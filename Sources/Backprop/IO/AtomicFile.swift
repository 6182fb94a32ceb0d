import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Atomic file writes: the bytes go to a temporary file in the destination's folder, are
/// flushed to disk, and the temporary file is renamed over the destination. A crash or a full
/// disk leaves either the old file or the new one, never half of one. Each write has its own
/// temporary file (process id and a random number in its name, created with `O_EXCL`), so
/// concurrent writes to one destination do not mix: the last rename wins, whole. The one atomic
/// writer of the package: model files, checkpoints, plots, IDX and PGM files all go through it.
/// Failures are `BackpropError.io` naming the file.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        try write([UInt8](data), to: path)
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        func ioError(_ what: String, _ code: Int32, _ p: String = path) -> BackpropError {
            .io(path: p, reason: "\(what): \(String(cString: strerror(code)))")
        }
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temp = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ioError("cannot create a temporary file in \(directory)", errno)
        }
        var failure: BackpropError?
        do { try writeFully(fd, bytes, path: temp) } catch let error as BackpropError { failure = error }
        if failure == nil, fsync(fd) != 0 { failure = ioError("fsync failed", errno, temp) }
        if close(fd) != 0, failure == nil { failure = ioError("close failed", errno, temp) }
        if failure == nil, rename(temp, path) != 0 { failure = ioError("cannot rename \(temp) to \(path)", errno) }
        if let failure {
            unlink(temp)
            throw failure
        }
        // Make the rename durable (best effort: some file systems refuse fsync on directories).
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// Writes all of `bytes` to `fd`, retrying on EINTR and short writes; `.io` error on failure.
    static func writeFully(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let r = systemWrite(fd, buffer.baseAddress! + done, buffer.count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw BackpropError.io(path: path, reason: "write failed after \(done) of \(buffer.count) bytes: \(String(cString: strerror(errno)))")
                }
                done += r
            }
        }
    }
}

/// write(2) from whichever C library was imported above; inside `AtomicFile` a bare `write` would
/// name its own `write(_:to:)`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
