import Foundation
import XCTest
@testable import Backprop
#if canImport(Glibc)
import Glibc
#endif

/// The atomic writer under a write that fails half-way, the way a full disk does: a file-size
/// limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes `write(2)` fail with EFBIG after the first
/// 4 KiB. The destination keeps its old content and no temporary file is left behind.
final class AtomicFileFaultTests: XCTestCase {
    func testWriteFailingHalfWayKeepsTheOldFile() throws {
        let dir = NSTemporaryDirectory() + "backprop-atomic-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let old = SafetensorsFile(tensors: ["w": Tensor([1, 2, 3])])
        try old.write(to: path)
        let oldBytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let big = SafetensorsFile(tensors: ["w": try Tensor(zeros: [100, 100])])   // 40 KB

        var saved = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved), 0)
        let previousHandler = signal(SIGXFSZ, SIG_IGN)
        var limited = saved
        limited.rlim_cur = 4096
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limited), 0)
        var caught: Error?
        do { try big.write(to: path) } catch { caught = error }
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved), 0)
        signal(SIGXFSZ, previousHandler)

        guard case let .io(p, reason)? = caught as? BackpropError else { return XCTFail("expected .io, got \(String(describing: caught))") }
        XCTAssertTrue(p.contains(".model.safetensors.tmp-"), "names the temporary file being written: \(p)")
        XCTAssertTrue(reason.contains("write failed after 4096 of") && reason.contains("File too large"), reason)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), oldBytes)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        // With the limit lifted the same write succeeds.
        try big.write(to: path)
        XCTAssertEqual(try SafetensorsFile.read(path: path).tensors["w"]?.shape, [100, 100])
    }
}
