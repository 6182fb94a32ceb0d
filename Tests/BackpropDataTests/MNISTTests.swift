import XCTest
import Backprop
@testable import BackpropData

/// Runs only when `scripts/fetch-mnist` has written data/mnist (git-ignored); CI skips it.
final class MNISTTests: XCTestCase {
    func testLoadsTheRealDataSetWhenPresent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent("data/mnist").path
        guard FileManager.default.fileExists(atPath: directory + "/train-images-idx3-ubyte.gz")
                || FileManager.default.fileExists(atPath: directory + "/train-images-idx3-ubyte") else {
            throw XCTSkip("no MNIST in \(directory); run scripts/fetch-mnist")
        }
        let (train, test) = try Dataset.loadMNIST(directory: directory)
        XCTAssertEqual(train.count, 60000); XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(train.rows, 28); XCTAssertEqual(train.columns, 28)
        XCTAssertEqual(train.classCount, 10); XCTAssertEqual(test.classCount, 10)
        XCTAssertTrue(train.labels.allSatisfy { $0 <= 9 })
        // The well-known first labels of each set.
        XCTAssertEqual(Array(train.labels.prefix(6)), [5, 0, 4, 1, 9, 2])
        XCTAssertEqual(Array(test.labels.prefix(6)), [7, 2, 1, 0, 4, 1])
        var batcher = try Batcher(test, batchSize: 128, shuffle: false, layout: .image, normalization: .mnist)
        XCTAssertEqual(batcher.batchesPerEpoch, 79)
        XCTAssertEqual(batcher.next()?.input.shape, [128, 1, 28, 28])
    }
}
