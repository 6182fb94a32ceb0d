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

    /// bp_relu(x, x) and bp_relu_backward(y, g, g) take the one-pointer loops (the two-pointer
    /// loops' overlap check would make them scalar): same results as out of place, every version.
    func testReLUInPlaceEqualsOutOfPlace() {
        let x: [Float] = (0..<45).map { Float(($0 * 13) % 11) - 5.5 + ($0 == 7 ? .nan : 0) }
        let g: [Float] = (0..<45).map { Float($0) * 0.25 - 3 }
        for level in Self.availableLevels {
            Kernels.limitInstructionSet(to: level)
            var y = [Float](repeating: 0, count: 45), inPlace = x
            bp_relu(x, &y, 45)
            inPlace.withUnsafeMutableBufferPointer { p in bp_relu(p.baseAddress, p.baseAddress, 45) }
            XCTAssertTrue(zip(y, inPlace).allSatisfy { $0.bitPattern == $1.bitPattern }, "level \(level): forward")
            XCTAssertTrue(y[7].isNaN, "level \(level): NaN stays NaN in place")
            var dx = [Float](repeating: 0, count: 45), dInPlace = g
            bp_relu_backward(y, g, &dx, 45)
            dInPlace.withUnsafeMutableBufferPointer { p in bp_relu_backward(y, p.baseAddress, p.baseAddress, 45) }
            XCTAssertEqual(dx, dInPlace, "level \(level): backward")
            XCTAssertEqual(dx, (0..<45).map { y[$0] > 0 ? g[$0] : 0 }, "level \(level): backward values")
        }
    }
}
