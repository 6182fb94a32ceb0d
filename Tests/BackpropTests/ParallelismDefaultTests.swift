import XCTest
@testable import Backprop

/// Layers built in a library use every processor by default (as the command line does), and
/// `Parallelism.defaultThreads` chooses fewer for layers built afterwards.
final class ParallelismDefaultTests: XCTestCase {
    func testDefaultIsEveryProcessorAndOneLineChoosesFewer() throws {
        let saved = Parallelism.defaultThreads
        defer { Parallelism.defaultThreads = saved }
        XCTAssertEqual(saved, max(1, BLAS.processorCount))
        let conv = try Conv2D(inChannels: 1, outChannels: 2, kernelSize: 3, seed: 1)
        let lstm = try SequenceClassifier(kind: .lstm, inputSize: 3, hiddenSize: 4, classes: 2, seed: 1)
        XCTAssertEqual(conv.threads, saved)
        XCTAssertEqual(lstm.rnn.threads, saved)
        XCTAssertEqual(Sequential([conv]).threads, saved)
        Parallelism.defaultThreads = 1
        XCTAssertEqual(try MaxPool2D(kernelSize: 2).threads, 1)
        XCTAssertEqual(try LSTM(inputSize: 3, hiddenSize: 4, seed: 1).threads, 1)
        Parallelism.defaultThreads = 0
        XCTAssertEqual(Parallelism.defaultThreads, 1, "at least one")
    }

    /// Same thread count, same bits: two runs of an LSTM with the default slices agree exactly.
    func testResultsRepeatWithTheDefault() throws {
        func run() throws -> [Float] {
            let m = try SequenceClassifier(kind: .lstm, inputSize: 3, hiddenSize: 4, classes: 2, seed: 7)
            let x = try Tensor((0..<48).map { Float($0 % 7) / 7 }, shape: [4, 4, 3])
            let y = try m.forward(x)
            let (_, d) = try SoftmaxCrossEntropy()(y, labels: [0, 1, 1, 0])
            try m.backward(d)
            return m.parameters.flatMap(\.grad.scalars)
        }
        XCTAssertEqual(try run(), try run())
    }
}
