import XCTest
@testable import Backprop

final class ParameterTableTests: XCTestCase {
    func testTableShowsEveryParameterWithStatistics() throws {
        let dense = try Dense(3, 2, seed: 1)
        try dense.weight.value.assign([1, 2, 3, 4, 5, 6])
        try dense.weight.grad.assign([3, 4, 0, 0, 0, 0])                // ‖grad‖ = 5
        let model = Sequential(dense, ReLU(), try Dense(2, 1, seed: 2))
        let table = model.parameterTable(valuesShown: 4)
        let lines = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2 + 4, table)                       // title, header, 4 rows
        XCTAssertTrue(lines[0].hasPrefix(model.summary), lines[0])
        XCTAssertTrue(lines[0].contains("4 parameter tensors, 11 values"), lines[0])
        for word in ["name", "shape", "mean", "std", "min", "max", "‖grad‖", "values", "grads"] {
            XCTAssertTrue(lines[1].contains(word), lines[1])
        }
        XCTAssertEqual(lines[2...].map { String($0.prefix(while: { $0 != " " })) }, ["0.weight", "0.bias", "2.weight", "2.bias"])
        let row = lines[2]
        // mean 3.5, population std √(35/12) = 1.708, min 1, max 6, ‖grad‖ 5
        for field in ["[2, 3]", "3.5", "1.708", " 1 ", " 6 ", " 5 ", "[1, 2, 3, 4, …]", "[3, 4, 0, 0, …]"] {
            XCTAssertTrue(row.contains(field), "missing \(field) in: \(row)")
        }
        // columns line up: every row starts its shape column where the header does
        let shapeColumn = lines[1].range(of: "shape")!.lowerBound.utf16Offset(in: lines[1])
        for line in lines[2...] {
            XCTAssertEqual(line.range(of: "[")!.lowerBound.utf16Offset(in: line), shapeColumn, line)
        }
        print(table)
    }

    func testTableAfterBackwardShowsGradients() throws {
        var rng = SeededGenerator(seed: 4)
        let model = Residual(Sequential(try Dense(4, 4, rng: &rng), Tanh()))
        let x = try Tensor(zeros: [3, 4]); x.fillUniform(-1, 1, using: &rng)
        let y = try model.forward(x)
        let (_, dy) = try MeanSquaredError()(y, target: try Tensor(zeros: [3, 4]))
        _ = try model.backward(dy)
        let table = model.parameterTable(valuesShown: 2)
        let weightRow = try XCTUnwrap(table.split(separator: "\n").first { $0.hasPrefix("block.0.weight") })
        let norm = String(format: "%.4g", Double(try XCTUnwrap(model.parameter(named: "block.0.weight")).grad.l2Norm()))
        XCTAssertNotEqual(norm, "0")
        XCTAssertTrue(weightRow.contains(norm), String(weightRow))
        XCTAssertTrue(weightRow.contains("…]"))
    }

    func testLayerWithoutParameters() {
        XCTAssertEqual(GELU().parameterTable(), "GELU: 0 parameter tensors, 0 values")
    }
}

final class TensorOpsTests: XCTestCase {
    func testReductions() throws {
        let t = Tensor([3, -4, 1, 0])
        XCTAssertEqual(t.sum(), 0)
        XCTAssertEqual(t.mean(), 0)
        XCTAssertEqual(t.l2Norm(), Float(26).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(t.standardDeviation(), Float(6.5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(t.minimum(), -4)
        XCTAssertEqual(t.maximum(), 3)
        let empty = try Tensor(zeros: [0, 3])
        XCTAssertNil(empty.minimum())
        XCTAssertNil(empty.maximum())
        XCTAssertEqual(empty.mean(), 0)
        XCTAssertTrue(empty.allFinite)
    }

    func testAllFinite() {
        XCTAssertTrue(Tensor([1, -2, 3e38]).allFinite)
        XCTAssertFalse(Tensor([1, .nan, 3]).allFinite)
        XCTAssertFalse(Tensor([1, .infinity]).allFinite)
        XCTAssertFalse(Tensor([-.infinity, 0]).allFinite)
    }

    func testArithmetic() throws {
        let a = Tensor([1, 2, 3])
        try a.add(Tensor([10, 20, 30]))
        XCTAssertEqual(a.scalars, [11, 22, 33])
        try a.add(Tensor([1, 1, 1]), scaledBy: -2)
        XCTAssertEqual(a.scalars, [9, 20, 31])
        a.scale(by: 0.5)
        XCTAssertEqual(a.scalars, [4.5, 10, 15.5])
        XCTAssertThrowsError(try a.add(Tensor([1, 2])))
        XCTAssertThrowsError(try a.add(Tensor([1]), scaledBy: 2))
    }
}
