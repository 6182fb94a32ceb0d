import XCTest
@testable import Backprop
import BackpropKernels

/// The C kernels exist in three versions (AVX-512, AVX2, baseline). Each test here runs a layer
/// under every version this CPU has and requires the same results: a version that the dispatcher
/// picks only on some machines gets checked on this one.
final class KernelVersionTests: XCTestCase {
    override func tearDown() { Kernels.limitInstructionSet(to: 4) }

    /// The levels this CPU runs (always includes 1), each entered through `limitInstructionSet`.
    static var availableLevels: [Int] {
        let top = Kernels.limitInstructionSet(to: 4)
        return [1, 3, 4].filter { $0 <= top }
    }

    func testInstructionSetNamesTheLevel() {
        XCTAssertEqual(Kernels.limitInstructionSet(to: 1), 1)
        XCTAssertEqual(Kernels.instructionSet, "baseline")
        let top = Kernels.limitInstructionSet(to: 4)
        XCTAssertEqual(Kernels.instructionSet, top == 4 ? "avx512" : top == 3 ? "avx2" : "baseline")
    }

    func testReLUSameUnderEveryVersion() throws {
        // 37 values: not a multiple of any vector width, so every version's tail loop runs too.
        let values: [Float] = (0..<37).map { Float($0 % 7) - 3.25 + ($0 == 5 ? .nan : 0) }
        let dy: [Float] = (0..<37).map { Float($0) * 0.5 - 4 }
        var results: [[Float]] = []
        for level in Self.availableLevels {
            Kernels.limitInstructionSet(to: level)
            let relu = ReLU()
            let y = try relu.forward(Tensor(values, shape: [37]))
            let dx = try relu.backward(Tensor(dy, shape: [37]))
            results.append(y.scalars + dx.scalars)
            for i in 0..<37 {
                if values[i].isNaN { XCTAssertTrue(y.scalars[i].isNaN, "level \(level): NaN must stay NaN") } else {
                    XCTAssertEqual(y.scalars[i], max(values[i], 0), "level \(level), element \(i)")
                }
                XCTAssertEqual(dx.scalars[i], values[i] > 0 ? dy[i] : 0, "level \(level), element \(i)")
            }
        }
        for r in results.dropFirst() {
            XCTAssertTrue(zip(r, results[0]).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
        }
    }

    func testBytesToFloatsIsTrueDivisionUnderEveryVersion() {
        let bytes: [UInt8] = (0..<300).map { UInt8(($0 * 37) % 256) }   // every value, odd length
        var out = [Float](repeating: -1, count: bytes.count)
        for level in Self.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for divisor: Float in [255, 1] {
                bp_bytes_to_floats(bytes, &out, bytes.count, divisor)
                for i in bytes.indices {
                    // Bit equality with Swift's own division (x · (1/255) differs in the last bit
                    // for some bytes, which torchvision-compatible data must not).
                    XCTAssertEqual(out[i].bitPattern, (Float(bytes[i]) / divisor).bitPattern, "level \(level), byte \(bytes[i])")
                }
            }
        }
    }
}
