import Foundation
import XCTest
@testable import Backprop

/// State dicts of any model: `loadStateDict` (strict and not), `ModelFile.save(_:to:)` and
/// `ModelFile.load(into:from:)`, and the check that a model fits the architecture it is saved with.
final class StateDictTests: XCTestCase {
    func scratch(_ name: String) -> String {
        NSTemporaryDirectory() + "statedict-\(getpid())-\(name).safetensors"
    }

    func customModel(seed: UInt64) throws -> Sequential {
        Sequential([try Dense(5, 4, seed: seed), Tanh(), try BatchNorm(features: 4, kind: .d1), try Dense(4, 3, seed: seed + 1)])
    }

    func mismatch(_ body: () throws -> Void) -> StateDictMismatch? {
        do { try body() } catch let BackpropError.stateDictMismatch(_, _, m) { return m } catch {
            XCTFail("expected stateDictMismatch, got \(error)")
        }
        return nil
    }

    func testLoadStateDictCopiesParametersAndBuffers() throws {
        let a = try customModel(seed: 1), b = try customModel(seed: 7)
        a.train()
        _ = try a.forward(try Tensor((0..<10).map { Float($0) / 3 }, shape: [2, 5]))  // moves running stats
        XCTAssertEqual(a.stateDict.map(\.name),
                       ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias",
                        "2.running_mean", "2.running_var", "2.num_batches_tracked"])
        let skipped = try b.loadStateDict(a.stateDict)
        XCTAssertTrue(skipped.isEmpty)
        for ((n1, t1), (n2, t2)) in zip(a.stateDict, b.stateDict) {
            XCTAssertEqual(n1, n2)
            XCTAssertEqual(t1.scalars, t2.scalars, n1)
        }
        XCTAssertNotEqual(b.stateDictionary["2.running_mean"]?.scalars, [0, 0, 0, 0])
    }

    func testStrictListsEveryProblemAtOnceAndChangesNothing() throws {
        let model = try customModel(seed: 1)
        let before = model.stateDict.map { $0.tensor.scalars }
        var dict = try customModel(seed: 2).stateDictionary
        dict.removeValue(forKey: "3.bias")
        dict.removeValue(forKey: "2.running_var")
        dict["extra.weight"] = Tensor([1, 2])
        dict["0.weight"] = try Tensor(zeros: [4, 6])
        let m = mismatch { try model.loadStateDict(dict) }
        XCTAssertEqual(m?.missing.map(\.name), ["3.bias", "2.running_var"])
        XCTAssertEqual(m?.unexpected, ["extra.weight"])
        XCTAssertEqual(m?.shapeMismatches, [.init(name: "0.weight", expected: [4, 5], found: [4, 6])])
        XCTAssertEqual(model.stateDict.map { $0.tensor.scalars }, before, "a refused load changes nothing")
        do {
            try model.loadStateDict(dict, source: "weights.safetensors")
        } catch {
            let text = "\(error)"
            for word in ["weights.safetensors", "3.bias", "extra.weight", "0.weight", "[4, 6]", "Sequential"] {
                XCTAssertTrue(text.contains(word), "\(word) not in: \(text)")
            }
        }
    }

    func testNonStrictSkipsNamesButNotShapes() throws {
        let model = try customModel(seed: 1)
        var dict = try customModel(seed: 2).stateDictionary
        let fresh = dict["0.weight"]!.scalars
        dict.removeValue(forKey: "3.bias")
        dict["head.weight"] = Tensor([1])
        XCTAssertEqual(mismatch { try model.loadStateDict(dict) }?.unexpected, ["head.weight"], "strict refuses names alone")
        let skipped = try model.loadStateDict(dict, strict: false)
        XCTAssertEqual(skipped.missing.map(\.name), ["3.bias"])
        XCTAssertEqual(skipped.unexpected, ["head.weight"])
        XCTAssertEqual(model.stateDictionary["0.weight"]?.scalars, fresh)
        dict["0.weight"] = try Tensor(zeros: [5, 4])
        XCTAssertNotNil(mismatch { try model.loadStateDict(dict, strict: false) })
    }

    func testDuplicateNameInListIsRefused() throws {
        let model = try customModel(seed: 1)
        XCTAssertThrowsError(try model.loadStateDict(model.stateDict + [model.stateDict[0]])) {
            guard case .invalidArgument? = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
    }

    func testSaveAnyModelAndLoadIntoAFreshOne() throws {
        let path = scratch("custom")
        defer { unlink(path) }
        let a = try customModel(seed: 3)
        try ModelFile.save(a, to: path, metadata: ["note": "hello"])
        let b = try customModel(seed: 9)
        let metadata = try ModelFile.load(into: b, from: path)
        XCTAssertEqual(metadata["note"], "hello")
        XCTAssertNil(metadata[ModelFile.architectureKey])
        XCTAssertEqual(a.stateDict.map { $0.tensor.scalars }, b.stateDict.map { $0.tensor.scalars })
        // Loading it into a model of other sizes names the file and the tensor.
        let other = Sequential([try Dense(5, 4, seed: 1), Tanh(), try BatchNorm(features: 4, kind: .d1), try Dense(4, 2, seed: 1)])
        XCTAssertThrowsError(try ModelFile.load(into: other, from: path)) {
            guard case let .stateDictMismatch(source, _, m)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertEqual(source, path)
            XCTAssertEqual(m.shapeMismatches.map(\.name), ["3.weight", "3.bias"])
        }
        // Without metadata, the rebuilding load gives advice that fits a library user.
        XCTAssertThrowsError(try ModelFile.load(path)) {
            let text = "\($0)"
            XCTAssertTrue(text.contains("ModelFile.load(into:from:)"), text)
            XCTAssertTrue(text.contains("--arch"), text)
        }
    }

    func testSavingAModelThatDoesNotMatchItsArchitectureIsAnError() throws {
        let path = scratch("mismatch")
        defer { unlink(path) }
        let arch = Architecture.mlp(sizes: [6, 5, 3], activation: .relu)
        let good = try arch.build(seed: 1)
        try ModelFile.save(good, architecture: arch, to: path)
        let loaded = try ModelFile.load(path)
        XCTAssertEqual(loaded.architecture, arch)
        XCTAssertEqual(loaded.model.stateDict.map { $0.tensor.scalars }, good.stateDict.map { $0.tensor.scalars })
        unlink(path)

        let wrongSize = try Architecture.mlp(sizes: [6, 4, 3], activation: .relu).build(seed: 1)
        XCTAssertNotNil(mismatch { try ModelFile.save(wrongSize, architecture: arch, to: path) })
        let wrongActivation = try Architecture.mlp(sizes: [6, 5, 3], activation: .tanh).build(seed: 1)
        XCTAssertThrowsError(try ModelFile.save(wrongActivation, architecture: arch, to: path)) {
            guard case let .invalidArgument(text)? = $0 as? BackpropError else { return XCTFail("\($0)") }
            XCTAssertTrue(text.contains("Tanh"), text)
        }
        let lstm = try SequenceClassifier(kind: .lstm, inputSize: 5, hiddenSize: 7, classes: 3, seed: 1)
        let gruArch = Architecture.recurrent(kind: .gru, steps: 4, inputSize: 5, hidden: 7, layers: 1, classes: 3)
        XCTAssertThrowsError(try ModelFile.save(lstm, architecture: gruArch, to: path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "no file is written for a refused save")
        // Extra tensors may not shadow the model's own.
        XCTAssertThrowsError(try ModelFile.save(good, to: path, extraTensors: ["0.weight": Tensor([1])])) {
            guard case .invalidArgument? = $0 as? BackpropError else { return XCTFail("\($0)") }
        }
    }

    func testArchitectureShapesMatchTheBuiltModels() throws {
        let archs: [Architecture] = [
            .mlp(sizes: [7, 5, 4, 2], activation: .gelu), .lenet(classes: 4),
            .recurrent(kind: .lstm, steps: 3, inputSize: 5, hidden: 7, layers: 2, classes: 3),
            .recurrent(kind: .gru, steps: 3, inputSize: 2, hidden: 3, layers: 1, classes: 2),
            .recurrent(kind: .rnn(.tanh), steps: 3, inputSize: 2, hidden: 3, layers: 3, classes: 5),
        ]
        for arch in archs {
            let model = try arch.build(seed: 0)
            XCTAssertEqual(arch.stateDictShapes.map(\.name), model.stateDict.map(\.name), arch.json)
            XCTAssertEqual(arch.stateDictShapes.map(\.shape), model.stateDict.map(\.tensor.shape), arch.json)
            XCTAssertNoThrow(try arch.check(model), arch.json)
        }
    }
}
