import Foundation
import XCTest
import Backprop
@testable import BackpropData

/// A fresh temporary folder per test, removed afterwards.
class DataTestCase: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "backprop-data-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func path(_ name: String) -> String { dir + "/" + name }

    @discardableResult
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    @discardableResult
    func write(_ text: String, _ name: String) throws -> String { try write(Array(text.utf8), name) }

    /// Asserts that `body` throws `BackpropError.badFile` for `path` at `offset`, with a
    /// description that names both and contains `reason`.
    func assertBadFile<T>(_ body: @autoclosure () throws -> T, path: String, offset: Int, reason: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected badFile(\(path), \(offset), …\(reason)…), nothing was thrown", file: file, line: line)
        } catch let error as BackpropError {
            guard case let .badFile(p, o, r) = error else {
                XCTFail("expected badFile, got \(error)", file: file, line: line)
                return
            }
            XCTAssertEqual(p, path, file: file, line: line)
            XCTAssertEqual(o, offset, "\(error)", file: file, line: line)
            XCTAssertTrue(r.contains(reason), "reason '\(r)' lacks '\(reason)'", file: file, line: line)
            let text = error.description
            XCTAssertTrue(text.hasPrefix(path + ": at byte \(offset): "), "description '\(text)'", file: file, line: line)
        } catch {
            XCTFail("expected BackpropError, got \(error)", file: file, line: line)
        }
    }
}

/// Big-endian IDX header bytes.
func idxHeader(type: UInt8 = 0x08, dims: [UInt32]) -> [UInt8] {
    var h: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims { h += [UInt8(d >> 24), UInt8((d >> 16) & 0xFF), UInt8((d >> 8) & 0xFF), UInt8(d & 0xFF)] }
    return h
}
