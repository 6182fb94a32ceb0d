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

    /// Conv2D's bias fill and bias-adding copy (`bp_fill_rows`, `bp_copy_rows_adding`) under every
    /// version: each row exactly its value (or source + value, with −0 + 0 = +0 as in Swift), row
    /// lengths 1…37 (every vector tail), a row stride wider than the row whose gap stays untouched,
    /// and no write past the last row.
    func testBiasRowKernelsUnderEveryVersion() {
        for level in Self.availableLevels {
            Kernels.limitInstructionSet(to: level)
            for count in [1, 7, 14, 16, 37] {
                let rows = 3, stride = count + 5
                let values: [Float] = [1.5, -0.0, .nan]
                var filled = [Float](repeating: 9, count: rows * stride + 4)
                bp_fill_rows(&filled, rows, count, stride, values)
                for r in 0..<rows {
                    for i in 0..<stride {
                        let v = filled[r * stride + i]
                        if i < count {
                            XCTAssertEqual(v.bitPattern, values[r].bitPattern, "level \(level), fill \(count): row \(r)")
                        } else {
                            XCTAssertEqual(v, 9, "level \(level), fill \(count): gap written")
                        }
                    }
                }
                XCTAssertEqual(Array(filled.suffix(4)), [9, 9, 9, 9], "level \(level), fill \(count): written past the rows")
                let src: [Float] = (0..<(rows * stride)).map { $0 % 4 == 0 ? -0.0 : Float($0) * 0.25 - 3 }
                for bias in [values, nil] as [[Float]?] {
                    var out = [Float](repeating: 9, count: rows * count + 4)
                    if let bias { bp_copy_rows_adding(src, stride, &out, rows, count, bias) } else {
                        bp_copy_rows_adding(src, stride, &out, rows, count, nil)
                    }
                    for r in 0..<rows {
                        for i in 0..<count {
                            let expected = src[r * stride + i] + (bias?[r] ?? 0)
                            XCTAssertEqual(out[r * count + i].bitPattern, expected.bitPattern,
                                           "level \(level), copy \(count): row \(r), element \(i)")
                        }
                    }
                    XCTAssertEqual(Array(out.suffix(4)), [9, 9, 9, 9], "level \(level), copy \(count): written past the rows")
                }
            }
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
