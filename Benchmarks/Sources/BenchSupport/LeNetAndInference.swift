import Backprop
import BackpropOptim

/// A LeNet training step as `backprop train` runs it (batch slices on every core, first layer
/// without δ of its input, softmax cross-entropy, Adam) on a fixed random batch, and its
/// products alone (`ProductsFloor`: the same sgemm calls on preallocated buffers).
public final class LeNetTrainingStep {
    public let model: Sequential
    public let floor: ProductsFloor
    let loss: SoftmaxCrossEntropy
    let optimizer: Adam
    let input: Tensor
    let labels: [Int32]
    public private(set) var lastLoss: Float = 0

    public init(batch: Int = MNISTJob.batch, threads: Int = BLAS.processorCount, seed: UInt64 = 1) throws {
        model = try Architectures.leNet(seed: seed)
        model.useThreads(threads)
        model.needsInputGradient = false
        var rng = SeededGenerator(seed: seed &+ 1)
        input = try Tensor(zeros: [batch, 1, 28, 28]); input.fillUniform(0, 1, using: &rng)
        labels = (0..<batch).map { Int32($0 % 10) }
        loss = try SoftmaxCrossEntropy()
        optimizer = try Adam(parameters: model.parameters)
        floor = try ProductsFloor(trainingStepOf: model, inputShape: input.shape)
    }

    public func step() throws {
        model.zeroGrad()
        let (value, delta) = try loss(try model.forward(input), labels: labels)
        _ = try model.backward(delta)
        try optimizer.step()
        lastLoss = value
    }

    /// Floating-point operations of the step's products.
    public var flops: Double { 2 * Double(floor.calls.reduce(0) { $0 + $1.multiplyAdds }) }
}

/// The three models `backprop bench-infer` measures, randomly initialised, in evaluation mode,
/// with a one-sample and a batch input, called through `Layer.predict`.
public final class InferenceCase {
    public let name: String
    public let model: Layer
    public let one: Tensor
    public let batch: Tensor

    public static let architectures: [(String, Architecture)] = [
        ("MLP 784-256-128-10", .mlp(sizes: MNISTJob.sizes, activation: .relu)),
        ("LeNet", .lenet(classes: 10)),
        ("LSTM 128", .recurrent(kind: .lstm, steps: 28, inputSize: 28, hidden: 128, layers: 1, classes: 10)),
    ]

    public init(_ name: String, _ architecture: Architecture, batch n: Int = 256, threads: Int = BLAS.processorCount) throws {
        self.name = name
        model = try architecture.build(seed: 1)
        model.useThreads(threads)
        model.isTraining = false
        var rng = SeededGenerator(seed: 2)
        one = try Tensor(zeros: architecture.inputShape(batch: 1)); one.fillUniform(0, 1, using: &rng)
        batch = try Tensor(zeros: architecture.inputShape(batch: n)); batch.fillUniform(0, 1, using: &rng)
    }

    /// One single-sample prediction; returns the first logit (to keep the call alive).
    public func predictOne() throws -> Float { try model.evaluationForward(one).data[0] }
    public func predictBatch() throws -> Float { try model.evaluationForward(batch).data[0] }
}
