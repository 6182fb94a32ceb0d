import XCTest
@testable import Backprop

/// Freed tensor buffers of 64 KiB and more are kept for the next tensor of the same size
/// (`StorageRecycler`): what a repeated graph step relies on to stop mapping fresh pages.
final class TensorRecyclingTests: XCTestCase {
    func testFreedLargeBufferIsReusedAndZeroedAgain() throws {
        var address: UnsafeMutablePointer<Float>?
        do {
            let t = try Tensor(zeros: [256, 300])           // 300 KiB
            address = t.data
            for i in 0..<t.count { t.data[i] = .nan }       // garbage the next owner must not see
        }
        let again = try Tensor(zeros: [300, 256])           // the same byte size
        XCTAssertEqual(again.data, address, "a freed buffer of the same size was not reused")
        XCTAssertTrue(again.scalars.allSatisfy { $0 == 0 }, "a recycled buffer handed out as zeros was not zeroed")
    }

    func testSmallBuffersAreNotCached() throws {
        let before = StorageRecycler.cachedBytes
        do { _ = try Tensor(zeros: [16, 16]) }
        XCTAssertEqual(StorageRecycler.cachedBytes, before)
    }

    func testTheCacheIsBounded() throws {
        StorageRecycler.drain()
        do {
            // 40 buffers of 8 MiB alive at once, then all freed: only 256 MiB may stay cached.
            let many = try (0..<40).map { _ in try Tensor(zeros: [2048, 1024]) }
            XCTAssertEqual(many.count, 40)
        }
        XCTAssertLessThanOrEqual(StorageRecycler.cachedBytes, StorageRecycler.maximumBytes)
        XCTAssertGreaterThan(StorageRecycler.cachedBytes, 0)
        StorageRecycler.drain()
        XCTAssertEqual(StorageRecycler.cachedBytes, 0)
    }
}
