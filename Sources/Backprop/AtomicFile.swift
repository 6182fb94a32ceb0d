import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Atomic file writes: the bytes go to a temporary file in the destination's folder, are
/// flushed to disk, and the temporary file is renamed over the destination. A crash or a full
/// disk leaves either the old file or the new one, never half of one.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        try data.withUnsafeBytes { raw in
            try write(UnsafeRawBufferPointer(raw), to: path)
        }
    }

    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let temp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw BackpropError.io(path: path, reason: "cannot create a file in \(dir): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer {
            if !ok { close(fd); unlink(temp) }
        }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw BackpropError.io(path: path, reason: "write failed after \(offset) of \(bytes.count) bytes: \(String(cString: strerror(errno))); the previous file is unchanged")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            throw BackpropError.io(path: path, reason: "fsync failed: \(String(cString: strerror(errno))); the previous file is unchanged")
        }
        guard close(fd) == 0 else {
            unlink(temp); ok = true
            throw BackpropError.io(path: path, reason: "close failed: \(String(cString: strerror(errno))); the previous file is unchanged")
        }
        ok = true
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw BackpropError.io(path: path, reason: "rename failed: \(reason); the previous file is unchanged")
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
