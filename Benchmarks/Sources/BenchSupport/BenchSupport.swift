import Backprop
import BackpropOptim
import Foundation

/// The flagship job's shapes: MNIST 784-256-128-10, batch 128; one epoch of 60 000 images is
/// 468 full batches and a last batch of 96.
public enum MNISTJob {
    public static let sizes = [784, 256, 128, 10]
    public static let batch = 128
    public static let trainImages = 60_000
    /// Batch sizes of one epoch, in order: 468 × 128, then 96.
    public static let epochBatches: [Int] = {
        let full = trainImages / batch, rest = trainImages % batch
        return Array(repeating: batch, count: full) + (rest > 0 ? [rest] : [])
    }()
}

/// One training step of the MLP 784-256-128-10 (Dense/ReLU/Sequential, fused softmax
/// cross-entropy, SGD momentum 0.9, lr 0.05) on a fixed random batch held in preallocated
/// buffers: exactly the work of one step of `backprop train` minus data loading and metrics.
public final class MLPTrainingStep {
    public let model: Sequential
    public let loss: SoftmaxCrossEntropy
    public let optimizer: SGD
    /// Full-size batch (`[batch, 784]`, values in [0, 1)) and views of its first rows for
    /// smaller batches, made once so a step allocates nothing.
    private let inputs: [Int: Tensor]
    private let labels: [Int: [Int32]]
    public private(set) var lastLoss: Float = 0

    public init(sizes: [Int] = MNISTJob.sizes, batchSizes: [Int] = [MNISTJob.batch, 96], seed: UInt64 = 1) throws {
        var rng = SeededGenerator(seed: seed)
        var layers: [Layer] = []
        for i in 0..<(sizes.count - 1) {
            layers.append(try Dense(sizes[i], sizes[i + 1], rng: &rng))
            if i < sizes.count - 2 { layers.append(ReLU()) }
        }
        model = Sequential(layers)
        model.needsInputGradient = false  // as `backprop train`: δ of the data is never used
        loss = try SoftmaxCrossEntropy()
        optimizer = try SGD(parameters: model.namedParameters.map(\.parameter), lr: 0.05, momentum: 0.9)
        var inputs: [Int: Tensor] = [:], labels: [Int: [Int32]] = [:]
        let classes = sizes[sizes.count - 1]
        for n in Set(batchSizes).sorted() {   // sorted: a Set's order changes from run to run, and so would the batches
            let x = try Tensor(zeros: [n, sizes[0]])
            x.fillUniform(0, 1, using: &rng)
            inputs[n] = x
            labels[n] = (0..<n).map { _ in Int32(rng.next() % UInt64(classes)) }
        }
        self.inputs = inputs
        self.labels = labels
    }

    /// The prepared batch of `n` rows: its input and labels.
    public func batch(_ n: Int) throws -> (input: Tensor, labels: [Int32]) {
        guard let x = inputs[n], let y = labels[n] else {
            throw BackpropError.invalidArgument("MLPTrainingStep: no batch of \(n) prepared")
        }
        return (x, y)
    }

    /// zeroGrad, forward, loss, backward, SGD step on the prepared batch of `batch` rows.
    @inline(__always)
    public func step(batch: Int = MNISTJob.batch) throws {
        guard let x = inputs[batch], let y = labels[batch] else {
            throw BackpropError.invalidArgument("MLPTrainingStep: no batch of \(batch) prepared")
        }
        optimizer.zeroGrad()
        let logits = try model.forward(x)
        let (value, delta) = try loss(logits, labels: y)
        _ = try model.backward(delta)
        try optimizer.step()
        lastLoss = value
    }
}

/// The sgemm-only floor of one training step of the MLP: the eight matrix products of a step
/// (forward Y = X·Wᵀ for 3 layers; backward dW = dYᵀ·X for 3 layers and dX = dY·W for the
/// upper 2 — the first layer's input needs no gradient), with the same transpose flags, shapes
/// and β as `Dense`, on buffers allocated once. Nothing else runs: no bias, activation, loss
/// or update. The engine's step can approach this time but not beat it.
public final class SGEMMFloorStep {
    public let sizes: [Int]
    public let maxBatch: Int
    private var weights: [Tensor] = []      // [out, in]
    private var weightGrads: [Tensor] = []  // [out, in]
    private var activations: [Tensor] = []  // activations[i]: [maxBatch, sizes[i]]
    private var deltas: [Tensor] = []       // deltas[i]: [maxBatch, sizes[i]]

    public init(sizes: [Int] = MNISTJob.sizes, maxBatch: Int = MNISTJob.batch, seed: UInt64 = 2) throws {
        self.sizes = sizes
        self.maxBatch = maxBatch
        var rng = SeededGenerator(seed: seed)
        for i in 0..<sizes.count {
            let a = try Tensor(zeros: [maxBatch, sizes[i]]), d = try Tensor(zeros: [maxBatch, sizes[i]])
            a.fillUniform(0, 1, using: &rng)
            d.fillUniform(-0.01, 0.01, using: &rng)
            activations.append(a)
            deltas.append(d)
        }
        for i in 0..<(sizes.count - 1) {
            let w = try Tensor(zeros: [sizes[i + 1], sizes[i]])
            w.fillUniform(-0.05, 0.05, using: &rng)
            weights.append(w)
            weightGrads.append(try Tensor(zeros: [sizes[i + 1], sizes[i]]))
        }
    }

    /// The eight sgemm calls of one step at batch `n` (≤ `maxBatch`).
    @inline(__always)
    public func step(batch n: Int = MNISTJob.batch) throws {
        precondition(n <= maxBatch, "batch \(n) exceeds the prepared \(maxBatch)")
        let layers = sizes.count - 1
        // forward: Y = X·Wᵀ (β = 1 as Dense, which pre-fills Y with the bias)
        for i in 0..<layers {
            try gemm(Matrix(activations[i], rows: n, columns: sizes[i]), Matrix(weights[i]), transposeB: true,
                     into: Matrix(activations[i + 1], rows: n, columns: sizes[i + 1]), beta: 1, caller: "floor forward")
        }
        // backward, top layer first: dW = dYᵀ·X (β = 0, as Dense after zeroGrad), then dX = dY·W (not for the first layer)
        for i in stride(from: layers - 1, through: 0, by: -1) {
            let dy = Matrix(deltas[i + 1], rows: n, columns: sizes[i + 1])
            try gemm(dy, transposeA: true, Matrix(activations[i], rows: n, columns: sizes[i]),
                     into: Matrix(weightGrads[i]), beta: 0, caller: "floor dW")
            if i > 0 {
                try gemm(dy, Matrix(weights[i]), into: Matrix(deltas[i], rows: n, columns: sizes[i]),
                         caller: "floor dX")
            }
        }
    }

    /// Floating-point operations of one step at batch `n` (2·m·n·k per product).
    public func flops(batch n: Int) -> Double {
        var f = 0.0
        for i in 0..<(sizes.count - 1) {
            let mnk = 2.0 * Double(n) * Double(sizes[i]) * Double(sizes[i + 1])
            f += i > 0 ? 3 * mnk : 2 * mnk
        }
        return f
    }
}

/// Wall-clock seconds of `body`, by the monotonic clock.
public func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

/// Seconds for one epoch's worth of steps (468 × 128 + 96).
public func epochSeconds(_ step: (Int) throws -> Void) rethrows -> Double {
    let batches = MNISTJob.epochBatches
    return try seconds { for n in batches { try step(n) } }
}

/// Median of a non-empty list.
public func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The same training step as `MLPTrainingStep` — same weights (same seed), same batch, same
/// optimizer — run through the computational graph: `model(Variable(x))`, `crossEntropy`,
/// `backward()`, then the optimizer step. The graph's cost against the layer API's is the ratio
/// of the two steps' times.
public final class MLPGraphStep {
    public let model: Sequential
    public let optimizer: SGD
    private let inputs: [Int: Tensor]
    private let labels: [Int: [Int]]
    /// With `captured`: the step through a `CapturedGraph` (recorded once per batch size, then
    /// replayed), its inputs (batch and class indices as a tensor) made once per batch size.
    private let captured: CapturedGraph?
    private let capturedInputs: [Int: [Tensor]]
    public private(set) var lastLoss: Float = 0

    public init(sizes: [Int] = MNISTJob.sizes, batchSizes: [Int] = [MNISTJob.batch, 96], seed: UInt64 = 1,
                captured: Bool = false) throws {
        // The layer-API step's model, batch and labels for this seed, so both steps do the same work.
        let twin = try MLPTrainingStep(sizes: sizes, batchSizes: batchSizes, seed: seed)
        model = twin.model
        optimizer = try SGD(parameters: model.namedParameters.map(\.parameter), lr: 0.05, momentum: 0.9)
        var inputs: [Int: Tensor] = [:], labels: [Int: [Int]] = [:]
        for n in Set(batchSizes).sorted() {   // sorted: a Set's order changes from run to run, and so would the batches
            inputs[n] = try twin.batch(n).input
            labels[n] = try twin.batch(n).labels.map(Int.init)
        }
        self.inputs = inputs
        self.labels = labels
        var capturedInputs: [Int: [Tensor]] = [:]
        for (n, x) in inputs { capturedInputs[n] = [x, try Tensor(labels[n, default: []].map(Float.init), shape: [n])] }
        self.capturedInputs = capturedInputs
        let model = self.model
        self.captured = captured ? CapturedGraph { v in try crossEntropy(try model(v[0]), target: v[1]) } : nil
    }

    /// zeroGrad, forward on the graph, cross-entropy, backward, SGD step on the prepared batch.
    @inline(__always)
    public func step(batch: Int = MNISTJob.batch) throws {
        guard let x = inputs[batch], let y = labels[batch], let both = capturedInputs[batch] else {
            throw BackpropError.invalidArgument("MLPGraphStep: no batch of \(batch) prepared")
        }
        optimizer.zeroGrad()
        if let captured {
            let loss = try captured.forward(both)
            try captured.backward()
            try optimizer.step()
            lastLoss = loss.value.data[0]
            return
        }
        let loss = try crossEntropy(try model(Variable(x)), labels: y)
        try loss.backward()
        try optimizer.step()
        lastLoss = try loss.item()
    }
}

/// One training step of the MNIST-rows LSTM classifier (28 steps of 28 features, hidden 128, 10
/// classes, batch 128, SGD momentum 0.9) on a fixed random batch, through the layer API
/// (`forward`, fused softmax cross-entropy, `backward`) or through the computational graph
/// (`model(Variable(x))`, `crossEntropy`, `backward()`): same seed, so the same weights and batch.
public final class LSTMTrainingStep {
    public let model: SequenceClassifier
    public let optimizer: SGD
    public let throughGraph: Bool
    private let captured: CapturedGraph?
    private let capturedInputs: [Tensor]
    private let x: Tensor
    private let labels: [Int32]
    private let graphLabels: [Int]
    private let loss = SoftmaxCrossEntropy()
    public private(set) var lastLoss: Float = 0

    public init(graph: Bool, captured: Bool = false, batch: Int = 128, steps: Int = 28, features: Int = 28, hidden: Int = 128,
                seed: UInt64 = 1) throws {
        throughGraph = graph
        model = try SequenceClassifier(kind: .lstm, inputSize: features, hiddenSize: hidden, classes: 10, seed: seed)
        model.needsInputGradient = false
        optimizer = try SGD(parameters: model.parameters, lr: 0.05, momentum: 0.9)
        var rng = SeededGenerator(seed: seed + 1)
        x = try Tensor(zeros: [batch, steps, features])
        x.fillUniform(0, 1, using: &rng)
        labels = (0..<batch).map { _ in Int32(rng.next() % 10) }
        graphLabels = labels.map(Int.init)
        capturedInputs = [x, try Tensor(labels.map(Float.init), shape: [batch])]
        let model = self.model
        self.captured = graph && captured ? CapturedGraph { v in try crossEntropy(try model(v[0]), target: v[1]) } : nil
    }

    public func step() throws {
        optimizer.zeroGrad()
        if let captured {
            let value = try captured.forward(capturedInputs)
            try captured.backward()
            lastLoss = value.value.data[0]
        } else if throughGraph {
            let value = try crossEntropy(try model(Variable(x)), labels: graphLabels)
            try value.backward()
            lastLoss = try value.item()
        } else {
            let (value, delta) = try loss(try model.forward(x), labels: labels)
            _ = try model.backward(delta)
            lastLoss = value
        }
        try optimizer.step()
    }
}
