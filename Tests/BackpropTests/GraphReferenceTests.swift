import Foundation
import XCTest
@testable import Backprop

/// The graph against PyTorch: `Fixtures/graph_reference.json` holds random expression graphs
/// (scripts/make-graph-reference.py: every op of `Graph/Ops`, random shapes, row/column/scalar
/// broadcasting, leaves used several times) with torch.autograd's loss and leaf gradients computed
/// in float64 from the same float32 leaves. Each program runs here in float32 through the graph;
/// the loss and every gradient must agree within 1e-5 relative: |ours − torch| ≤ 1e-5 · max(|x|)
/// over the tensor (its largest magnitude, at least 0.1: a gradient that is exactly zero by
/// cancellation — a constant added to every logit, x / x — comes out of float32 arithmetic as
/// rounding of ~1e-7), element by element.
final class GraphReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        let opsCovered: [String]
        let cases: [Case]
    }
    struct Case: Decodable {
        let seed: Int
        let leaves: [Leaf]
        let ops: [Op]
        let result: String
        let loss: Double
        let grads: [String: [Double]]
    }
    struct Leaf: Decodable {
        let name: String
        let shape: [Int]
        let values: [Float]
        let requiresGrad: Bool
    }
    struct Op: Decodable {
        let out: String
        let op: String
        let args: [String]
        let axis: Int?
        let keepDim: Bool?
        let shape: [Int]?
        let range: [Int]?
        let labels: [Int]?
        let reduction: String?
        let approximate: String?
        let form: String?
        let constant: Float?
    }

    static let tolerance = 1e-5

    func loadFixture() throws -> Fixture {
        guard let url = Bundle.module.url(forResource: "graph_reference", withExtension: "json", subdirectory: "Fixtures") else {
            throw XCTSkip("Fixtures/graph_reference.json is missing from the test bundle")
        }
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// Runs one fixture op through the graph.
    func apply(_ op: Op, _ args: [Variable]) throws -> Variable {
        switch op.op {
        case "add": return try args[0] + args[1]
        case "sub": return try args[0] - args[1]
        case "mul": return try args[0] * args[1]
        case "div": return try args[0] / args[1]
        case "neg": return -args[0]
        case "scalar":
            let c = try XCTUnwrap(op.constant), x = args[0]
            switch op.form {
            case "add": return x + c
            case "sub": return x - c
            case "mul": return x * c
            case "div": return x / c
            case "rsub": return c - x
            case "rdiv": return c / x
            default: throw BackpropError.invalidArgument("unknown scalar form \(op.form ?? "nil")")
            }
        case "exp": return exp(args[0])
        case "log": return log(args[0])
        case "tanh": return tanh(args[0])
        case "sigmoid": return sigmoid(args[0])
        case "relu": return relu(args[0])
        case "gelu": return gelu(args[0], approximate: op.approximate == "tanh" ? .tanh : .none)
        case "matmul": return try matmul(args[0], args[1])
        case "sum":
            guard let axis = op.axis else { return sum(args[0]) }
            return try sum(args[0], axis: axis, keepDim: op.keepDim ?? false)
        case "mean":
            guard let axis = op.axis else { return mean(args[0]) }
            return try mean(args[0], axis: axis, keepDim: op.keepDim ?? false)
        case "softmax": return try softmax(args[0], axis: op.axis ?? -1)
        case "logSoftmax": return try logSoftmax(args[0], axis: op.axis ?? -1)
        case "transpose": return try transpose(args[0])
        case "reshape": return try reshape(args[0], try XCTUnwrap(op.shape))
        case "rows":
            let r = try XCTUnwrap(op.range)
            return try rows(args[0], r[0]..<r[1])
        case "concat": return try concat(args, axis: op.axis ?? 0)
        case "crossEntropy":
            return try crossEntropy(args[0], labels: try XCTUnwrap(op.labels), reduction: op.reduction == "sum" ? .sum : .mean)
        case "mse": return try mse(args[0], args[1])
        default: throw BackpropError.invalidArgument("the fixture names an op this test does not know: \(op.op)")
        }
    }

    /// max over elements of |a − b| / max(max|b|, 0.1).
    func relativeError(_ ours: [Float], _ reference: [Double]) -> Double {
        let scale = max(reference.map(abs).max() ?? 0, 0.1)
        var worst = 0.0
        for (a, b) in zip(ours, reference) { worst = max(worst, abs(Double(a) - b) / scale) }
        return worst
    }

    func testRandomExpressionGraphsAgreeWithTorchAutograd() throws {
        let fixture = try loadFixture()
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 50)
        // Every op the graph offers for 2-d values appears in some program.
        for op in ["add", "sub", "mul", "div", "matmul", "sum", "mean", "exp", "log", "tanh", "sigmoid", "relu", "gelu",
                   "softmax", "logSoftmax", "reshape", "transpose", "rows", "concat", "crossEntropy", "mse"] {
            XCTAssertTrue(fixture.opsCovered.contains(op), "no fixture program uses \(op)")
        }
        var worstLoss = 0.0, worstGrad = 0.0, gradients = 0
        for c in fixture.cases {
            var values: [String: Variable] = [:]
            for leaf in c.leaves {
                values[leaf.name] = Variable(try Tensor(leaf.values, shape: leaf.shape), requiresGrad: leaf.requiresGrad)
            }
            for op in c.ops {
                let args = try op.args.map { try XCTUnwrap(values[$0], "case \(c.seed): \(op.out) reads unknown \($0)") }
                values[op.out] = try apply(op, args)
            }
            let result = try XCTUnwrap(values[c.result])
            let loss = try result.item()
            let lossError = abs(Double(loss) - c.loss) / max(abs(c.loss), 1e-3)
            worstLoss = max(worstLoss, lossError)
            XCTAssertLessThanOrEqual(lossError, Self.tolerance, "case \(c.seed): loss \(loss) against torch's \(c.loss)")
            try result.backward()
            for leaf in c.leaves where leaf.requiresGrad {
                let reference = try XCTUnwrap(c.grads[leaf.name])
                guard let grad = values[leaf.name]?.grad else {
                    // torch gives zeros where the loss does not depend on a leaf; so must we (nil grad).
                    XCTAssertTrue(reference.allSatisfy { $0 == 0 }, "case \(c.seed): \(leaf.name) received no grad")
                    continue
                }
                XCTAssertEqual(grad.shape, leaf.shape, "case \(c.seed): \(leaf.name)")
                let e = relativeError(grad.scalars, reference)
                worstGrad = max(worstGrad, e)
                gradients += 1
                XCTAssertLessThanOrEqual(e, Self.tolerance, "case \(c.seed): ∂loss/∂\(leaf.name) differs from torch's by \(e) relative")
            }
        }
        XCTAssertGreaterThan(gradients, 60)
        print("graph vs torch.autograd: \(fixture.cases.count) programs, \(gradients) gradients; worst relative error loss \(worstLoss), gradient \(worstGrad)")
    }
}
