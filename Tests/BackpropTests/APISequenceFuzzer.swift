import Backprop
import BackpropOptim
import Foundation

/// Random small models driven through random sequences of public calls, every outcome checked.
///
/// One run takes a byte string (libFuzzer's input in `scripts/fuzz run api`, seeded random bytes in
/// `APISequenceFuzzTests`): its bytes choose the model, the optimizer and each call; tensor values
/// come from a generator seeded by the first bytes. Models are `Sequential` stacks (sometimes one
/// bare layer) of Dense, ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, GELU, Dropout, Flatten, Conv2D,
/// MaxPool2D, AvgPool2D, BatchNorm (1d and 2d), Residual, nested Sequential, RNN, LSTM, GRU and
/// SequenceClassifier, with batches of 0–4, widths up to 6, images up to 6×6 and up to 4 steps.
///
/// The calls: forward (same batch, another batch, a wrong shape; on a new tensor, the last input
/// resized, or a reshaped view), `trace`, backward (right or wrong δ), resize / fill / assign /
/// element writes of the input (or of the tensor it views) after forward, resize / fill of the
/// returned output, zeroGrad, train / eval, useThreads(1…3), needsInputGradient, a recurrent
/// layer's truncation, Conv2D's imagesPerGemm, Dropout's freezeMask and mask, forward and backward
/// of a second model sharing an instance (a layer, a Residual's block, a SequenceClassifier's rnn
/// or fc), append of a new layer or of an instance already in the model (models are also built
/// with one instance at two places, nested in Residual or Sequential), and SGD / Adam steps
/// (never between a forward and its backward: changed parameters are not refused, see below).
///
/// The oracle. Each forward notes what it ran with (a copy of its input, every parameter and
/// buffer, each layer's mode, and after it the dropout masks it drew). A reference — a fresh model
/// built from the same description, those values copied in with `assign`, one thread — replays it:
/// - forward must do what the reference's forward does: the same output, the same buffers after,
///   or the same `BackpropError` case; with one instance at two places it must throw `invalidUse`;
///   it must leave its input unchanged;
/// - backward with no completed forward (none yet, a Sequential's failed one, `trace`, an append since), or a
///   second time for one forward, must throw `invalidUse` and change no gradient;
/// - backward after a forward whose saved tensors nobody touched must do what the reference's
///   backward does with the same δ, starting from the same gradients (or from zeroGrad()'s): the
///   same input gradient and the same gradients after, or the same `BackpropError` case;
/// - after another model sharing an instance ran forward, or the user changed a Sequential's
///   output, backward must throw `invalidUse`; after the user changed the input or a bare layer's
///   output, it may throw a `BackpropError`, and if it returns its results must be the reference's;
///   after any error each gradient is as it was or as the reference's after its own call (the
///   layers after the point of refusal may have run);
/// - backward leaves δ unchanged; optimizer steps match the SGD (momentum) and Adam formulas and
///   leave the gradients alone; an error of another type than `BackpropError` is a finding.
/// Each run ends with a forward and backward that must work (the model still works after errors),
/// and sometimes checks the reference itself against finite differences (`GradientCheck`).
/// Traps and sanitizer reports end the process.
///
/// Not refused by the library, so not generated: parameters changed between a forward and its
/// backward (an optimizer step, `weight.value.fill`): backward uses the new values.
final class APISequenceFuzzer {
    /// The calls a run makes, as counted in `Stats.calls`.
    enum Call: String, CaseIterable, Sendable {
        case forward, forwardNewBatch, forwardWrongShape, trace
        case backward, backwardWrongShape
        case resizeInput, fillInput, assignInput, setInputElement, redrawInput
        case resizeOutput, fillOutput
        case zeroGrad, train, eval, useThreads, needsInputGradient
        case truncation, imagesPerGemm, freezeMask, fillMask
        case siblingForward, siblingBackward
        case appendLayer, appendSameInstance
        case optimizerStep
    }

    /// What `invalidUse` errors said, by the situation they name.
    enum Refusal: String, CaseIterable, Sendable {
        case beforeForward, twice, changed, twoPlaces, other
    }

    struct Stats {
        var sequences = 0
        var calls: [Call: Int] = [:]
        var errors: [String: Int] = [:]
        var refusals: [Refusal: Int] = [:]
        var compared = 0
        var gradientChecks = 0
        var sequenceHashes = Set<UInt64>()
        var findings = 0

        var totalCalls: Int { calls.values.reduce(0, +) }
        var totalErrors: Int { errors.values.reduce(0, +) }

        mutating func merge(_ other: Stats) {
            sequences += other.sequences
            for (k, v) in other.calls { calls[k, default: 0] += v }
            for (k, v) in other.errors { errors[k, default: 0] += v }
            for (k, v) in other.refusals { refusals[k, default: 0] += v }
            compared += other.compared
            gradientChecks += other.gradientChecks
            sequenceHashes.formUnion(other.sequenceHashes)
            findings += other.findings
        }

        var report: String {
            let callList = Call.allCases.map { "\($0.rawValue) \(calls[$0] ?? 0)" }.joined(separator: ", ")
            let errorList = errors.keys.sorted().map { "\($0) \(errors[$0]!)" }.joined(separator: ", ")
            let refusalList = Refusal.allCases.map { "\($0.rawValue) \(refusals[$0] ?? 0)" }.joined(separator: ", ")
            return """
                api fuzz: \(sequences) sequences (\(sequenceHashes.count) distinct), \(totalCalls) calls, \
                \(totalErrors) errors thrown, \(compared) outcomes compared with a reference, \
                \(gradientChecks) finite-difference checks, \(findings) findings
                  calls: \(callList)
                  errors: \(errorList)
                  invalidUse: \(refusalList)
                """
        }
    }

    private(set) var stats = Stats()
    /// Calls per run at most (libFuzzer inputs longer than this are cut).
    let maxCalls: Int

    init(maxCalls: Int = 40) { self.maxCalls = maxCalls }

    /// Runs the sequence `bytes` describe; returns the findings (empty when every outcome checked out).
    func run(_ bytes: [UInt8]) -> [String] {
        let run = Run(bytes, maxCalls: maxCalls)
        run.execute()
        stats.merge(run.stats)
        return run.findings
    }

    // MARK: - Choices

    /// Choices read from the input bytes; past the end every choice is the first option and every
    /// chance fails.
    struct Choices {
        private let bytes: [UInt8]
        private var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var isExhausted: Bool { position >= bytes.count }
        mutating func byte() -> UInt8 {
            guard position < bytes.count else { return 0 }
            position += 1
            return bytes[position - 1]
        }
        mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(byte()) % n }
        mutating func range(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }
        mutating func chance(_ numerator: Int, in denominator: Int) -> Bool { below(denominator) >= denominator - numerator }
        mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }
    }

    // MARK: - Models

    /// A shape without its batch dimension.
    enum Shape: Equatable {
        case vector(Int)
        case image(Int, Int, Int)
        case sequence(Int, Int)

        func dims(batch n: Int) -> [Int] {
            switch self {
            case let .vector(f): return [n, f]
            case let .image(c, h, w): return [n, c, h, w]
            case let .sequence(t, f): return [n, t, f]
            }
        }
    }

    /// A layer to build: the description the fuzzed model and each reference are built from.
    indirect enum Spec {
        case dense(Int, Int, bias: Bool)
        case relu, tanh, sigmoid, softmax
        case leakyReLU(Float)
        case gelu(tanh: Bool)
        case dropout(Float)
        case flatten
        case conv(Int, Int, kernel: Int, stride: Int, padding: Int, bias: Bool)
        case maxPool(kernel: Int, stride: Int?, padding: Int)
        case avgPool(kernel: Int, stride: Int?, padding: Int, countIncludePad: Bool)
        case batchNorm(Int, image: Bool, affine: Bool, momentum: Float?)
        case recurrent(RecurrentLayer.Cell, input: Int, hidden: Int, layers: Int, sequences: Bool)
        case classifier(RecurrentKind, relu: Bool, input: Int, hidden: Int, layers: Int, classes: Int)
        case residual(Spec)
        case sequential([Spec])

        func build(seed: UInt64) throws -> Layer {
            switch self {
            case let .dense(i, o, bias): return try Dense(i, o, bias: bias, seed: seed)
            case .relu: return ReLU()
            case .tanh: return Tanh()
            case .sigmoid: return Sigmoid()
            case .softmax: return Softmax()
            case let .leakyReLU(slope): return LeakyReLU(negativeSlope: slope)
            case let .gelu(tanh): return GELU(approximate: tanh ? .tanh : .none)
            case let .dropout(p): return try Dropout(p: p, seed: seed)
            case .flatten: return Flatten()
            case let .conv(i, o, k, s, p, bias):
                return try Conv2D(inChannels: i, outChannels: o, kernelSize: k, stride: s, padding: p, bias: bias, seed: seed)
            case let .maxPool(k, s, p): return try MaxPool2D(kernelSize: k, stride: s, padding: p)
            case let .avgPool(k, s, p, include): return try AvgPool2D(kernelSize: k, stride: s, padding: p, countIncludePad: include)
            case let .batchNorm(f, image, affine, momentum):
                return image ? try BatchNorm2d(f, momentum: momentum, affine: affine)
                             : try BatchNorm1d(f, momentum: momentum, affine: affine)
            case let .recurrent(cell, i, h, layers, sequences):
                switch cell {
                case let .rnn(nonlinearity):
                    return try RNN(inputSize: i, hiddenSize: h, numLayers: layers, nonlinearity: nonlinearity,
                                   returnSequences: sequences, seed: seed)
                case .lstm: return try LSTM(inputSize: i, hiddenSize: h, numLayers: layers, returnSequences: sequences, seed: seed)
                case .gru: return try GRU(inputSize: i, hiddenSize: h, numLayers: layers, returnSequences: sequences, seed: seed)
                }
            case let .classifier(kind, relu, i, h, layers, classes):
                return try SequenceClassifier(kind: kind, inputSize: i, hiddenSize: h, numLayers: layers, classes: classes,
                                              nonlinearity: relu ? .relu : .tanh, seed: seed)
            case let .residual(block): return Residual(try block.build(seed: seed &+ 1))
            case let .sequential(list):
                return Sequential(try list.enumerated().map { try $0.element.build(seed: seed &+ UInt64($0.offset) &* 7919) })
            }
        }

        /// Finite differences apply: no kinks (ReLU, max-pooling), and no batch normalisation (a
        /// few samples' statistics, or a small running variance, make the function too curved for them).
        var suitsFiniteDifferences: Bool {
            switch self {
            case .relu, .leakyReLU, .maxPool, .batchNorm: return false
            case .recurrent(.rnn(.relu), _, _, _, _): return false
            case .classifier(.rnn, true, _, _, _, _): return false
            case let .residual(block): return block.suitsFiniteDifferences
            case let .sequential(list): return list.allSatisfy(\.suitsFiniteDifferences)
            default: return true
            }
        }
    }

    /// The leaves of a model, in order (containers list their sublayers).
    static func leaves(_ layer: Layer) -> [Layer] {
        if let container = layer as? LayerContainer { return container.sublayers.flatMap(leaves) }
        return [layer]
    }

    /// What a forward ran with, and what became of it.
    final class Pending {
        let spec: Spec
        let inputObject: Tensor
        let input: Tensor
        let state: [String: Tensor]
        let modes: [Bool]
        var masks: [Tensor?] = []
        var output: Tensor?
        var outputObject: Tensor?
        /// A backward paired with it returned.
        var consumed = false
        /// A tensor it saved may have changed (the user's input or output, a shared instance).
        var disturbed = false
        /// A layer of the model ran another forward since (a model sharing an instance), or the
        /// user changed the output a Sequential returned: backward must refuse.
        var outputsChanged = false

        init(spec: Spec, inputObject: Tensor, state: [String: Tensor], modes: [Bool]) {
            self.spec = spec
            self.inputObject = inputObject
            self.input = inputObject.copy()
            self.state = state
            self.modes = modes
        }
    }

    enum Outcome {
        case value(Tensor)
        case error(BackpropError)

        var error: BackpropError? { if case let .error(e) = self { return e }; return nil }
        var value: Tensor? { if case let .value(t) = self { return t }; return nil }
    }

    static func caseName(_ error: BackpropError) -> String {
        switch error {
        case .shapeMismatch: return "shapeMismatch"
        case .invalidArgument: return "invalidArgument"
        case .badFile: return "badFile"
        case .io: return "io"
        case .nonFinite: return "nonFinite"
        case .invalidUse: return "invalidUse"
        case .stateDictMismatch: return "stateDictMismatch"
        }
    }

    static func refusal(_ error: BackpropError) -> Refusal? {
        guard case let .invalidUse(_, detail) = error else { return nil }
        if detail.contains("twice") { return .twice }
        if detail.contains("resized or overwritten") { return .changed }
        if detail.contains("positions") { return .twoPlaces }
        if detail.contains("before") { return .beforeForward }
        return .other
    }

    /// Equal within `tolerance` of the largest magnitude of `b` (and of `scale`, and 1): thread
    /// counts change summation order.
    static func close(_ a: Tensor, _ b: Tensor, tolerance: Float = 1e-4, scale atLeast: Float = 1) -> Bool {
        guard a.shape == b.shape else { return false }
        let x = a.scalars, y = b.scalars
        var scale = max(1, atLeast)
        for v in y where v.isFinite { scale = max(scale, abs(v)) }
        for i in 0..<x.count {
            if !x[i].isFinite || !y[i].isFinite {
                if !(x[i].isNaN && y[i].isNaN) && x[i] != y[i] { return false }
            } else if abs(x[i] - y[i]) > tolerance * scale {
                return false
            }
        }
        return true
    }

    static func maxDifference(_ a: Tensor, _ b: Tensor) -> String {
        guard a.shape == b.shape else { return "shapes \(a.shape) and \(b.shape)" }
        let x = a.scalars, y = b.scalars
        var worst: Float = 0, at = 0
        for i in 0..<x.count where abs(x[i] - y[i]) > worst || (abs(x[i] - y[i])).isNaN { worst = abs(x[i] - y[i]); at = i }
        return "largest difference \(worst) at \(at) (\(x.isEmpty ? 0 : x[at]) vs \(y.isEmpty ? 0 : y[at]))"
    }

    static func magnitude(_ t: Tensor?) -> Float {
        var m: Float = 0
        for v in t?.scalars ?? [] where v.isFinite { m = max(m, abs(v)) }
        return m
    }

    // MARK: - One run

    private final class Run {
        var choices: Choices
        var rng: SeededGenerator
        let maxCalls: Int
        var stats = Stats()
        var findings: [String] = []
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var log: [String] = []

        var inputShape = Shape.vector(1)
        var outputShape = Shape.vector(1)
        var spec = Spec.relu
        var topSpecs: [Spec]?              // the layers of a top-level Sequential
        var topShapes: [Shape] = []        // the input shape of each of them
        var model: Layer = ReLU()
        var duplicated = false
        var batch = 1
        var input: Tensor?
        var inputBase: Tensor?             // when the input is a reshaped view: the tensor it views
        var output: Tensor?
        var pending: Pending?
        var gradientsZeroed = false
        var optimizer: OptimizerCheck?
        var sibling: (model: Sequential, shape: Shape, outputShape: [Int]?)?
        var seedCounter: UInt64 = 1

        init(_ bytes: [UInt8], maxCalls: Int) {
            choices = Choices(bytes)
            var seed: UInt64 = 0x9e37_79b9
            for b in bytes.prefix(8) { seed = seed &* 1_099_511_628_211 ^ UInt64(b) }
            rng = SeededGenerator(seed: seed)
            self.maxCalls = maxCalls
        }

        func nextSeed() -> UInt64 { seedCounter += 1; return seedCounter }

        // MARK: Bookkeeping

        func mix(_ text: String) {
            for b in text.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
            hash = (hash ^ 0xff) &* 0x100_0000_01b3
        }

        func record(_ call: Call, _ detail: String = "") {
            stats.calls[call, default: 0] += 1
            mix(call.rawValue + detail)
            log.append(call.rawValue + detail)
        }

        func fail(_ message: String) {
            stats.findings += 1
            findings.append("""
                \(message)
                  model: \(model.summary)
                  calls: \(log.joined(separator: ", "))
                """)
        }

        /// Runs `body`; a BackpropError becomes an outcome (counted unless the reference threw it),
        /// any other error a finding (nil).
        func attempt(_ what: String, counted: Bool = true, _ body: () throws -> Tensor) -> Outcome? {
            do {
                return .value(try body())
            } catch let error as BackpropError {
                if counted {
                    stats.errors[APISequenceFuzzer.caseName(error), default: 0] += 1
                    if let r = APISequenceFuzzer.refusal(error) { stats.refusals[r, default: 0] += 1 }
                }
                return .error(error)
            } catch {
                fail("\(what) threw \(type(of: error)), not BackpropError: \(error)")
                return nil
            }
        }

        func zeros(_ shape: [Int]) -> Tensor {
            do { return try Tensor(zeros: shape) } catch {
                fail("Tensor(zeros: \(shape)) threw \(error)")
                return Tensor([0])
            }
        }

        func random(_ shape: [Int]) -> Tensor {
            let t = zeros(shape)
            t.fillUniform(-1, 1, using: &rng)
            return t
        }

        var leaves: [Layer] { APISequenceFuzzer.leaves(model) }

        func gradients(of layer: Layer) -> [String: Tensor] {
            var list: [String: Tensor] = [:]
            for (name, p) in layer.namedParameters { list[name] = p.grad.copy() }
            return list
        }

        func zeroGradients(of layer: Layer) -> [String: Tensor] {
            var list: [String: Tensor] = [:]
            for (name, p) in layer.namedParameters { list[name] = zeros(p.shape) }
            return list
        }

        // MARK: Generation

        func activation() -> Spec {
            switch choices.below(7) {
            case 0: return .relu
            case 1: return .tanh
            case 2: return .sigmoid
            case 3: return .leakyReLU(choices.pick([0.01, 0.2]))
            case 4: return .gelu(tanh: false)
            case 5: return .softmax
            default: return .gelu(tanh: true)
            }
        }

        func dropout() -> Spec { .dropout(choices.pick([0, 0.25, 0.5])) }

        func batchNorm(_ features: Int, image: Bool) -> Spec {
            .batchNorm(features, image: image, affine: !choices.chance(1, in: 4), momentum: choices.chance(1, in: 4) ? nil : 0.1)
        }

        func cell() -> RecurrentLayer.Cell {
            switch choices.below(4) {
            case 0: return .rnn(.tanh)
            case 1: return .rnn(.relu)
            case 2: return .lstm
            default: return .gru
            }
        }

        /// A layer that maps `shape` to itself.
        func sameShapeLayer(_ shape: Shape) -> Spec {
            switch choices.below(4) {
            case 0:
                switch shape {
                case let .vector(f): return .dense(f, f, bias: !choices.chance(1, in: 4))
                case let .image(c, _, _):
                    return choices.chance(1, in: 2) ? .conv(c, c, kernel: 3, stride: 1, padding: 1, bias: true)
                                                    : .conv(c, c, kernel: 1, stride: 1, padding: 0, bias: false)
                case let .sequence(_, f): return .recurrent(cell(), input: f, hidden: f, layers: choices.range(1...2), sequences: true)
                }
            case 1: return dropout()
            case 2:
                switch shape {
                case let .vector(f): return batchNorm(f, image: false)
                case let .image(c, _, _): return batchNorm(c, image: true)
                case let .sequence(t, _): return batchNorm(t, image: false)
                }
            default: return activation()
            }
        }

        func block(_ shape: Shape) -> Spec {
            let count = choices.range(1...3)
            if count == 1 && choices.chance(1, in: 2) { return sameShapeLayer(shape) }
            return .sequential((0..<count).map { _ in sameShapeLayer(shape) })
        }

        func layer(_ shape: inout Shape, depth: Int) -> Spec {
            switch shape {
            case let .vector(f):
                switch choices.below(7) {
                case 0, 1:
                    let out = choices.range(1...6)
                    shape = .vector(out)
                    return .dense(f, out, bias: !choices.chance(1, in: 4))
                case 2: return activation()
                case 3: return dropout()
                case 4: return batchNorm(f, image: false)
                case 5: return depth < 2 ? .residual(block(shape)) : activation()
                default:
                    guard depth < 2 else { return activation() }
                    return .sequential(layers(&shape, count: choices.range(1...2), depth: depth + 1))
                }
            case let .image(c, h, w):
                switch choices.below(9) {
                case 0, 1:
                    var k = choices.range(1...3), p = choices.range(0...1)
                    let s = choices.range(1...2), out = choices.range(1...3)
                    if h + 2 * p < k || w + 2 * p < k { k = 1; p = 0 }
                    shape = .image(out, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
                    return .conv(c, out, kernel: k, stride: s, padding: p, bias: !choices.chance(1, in: 4))
                case 2, 3:
                    let k = choices.range(1...3), p = choices.range(0...(k / 2))
                    let s: Int? = choices.chance(1, in: 2) ? nil : choices.range(1...2)
                    guard h + 2 * p >= k, w + 2 * p >= k else { return activation() }
                    let st = s ?? k
                    shape = .image(c, (h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1)
                    return choices.chance(1, in: 2) ? .maxPool(kernel: k, stride: s, padding: p)
                                                    : .avgPool(kernel: k, stride: s, padding: p, countIncludePad: choices.chance(1, in: 2))
                case 4: return activation()
                case 5: return dropout()
                case 6: return batchNorm(c, image: true)
                case 7: return depth < 2 ? .residual(block(shape)) : activation()
                default:
                    shape = .vector(c * h * w)
                    return .flatten
                }
            case let .sequence(t, f):
                switch choices.below(9) {
                case 0, 1:
                    let hidden = choices.range(1...4)
                    shape = .sequence(t, hidden)
                    return .recurrent(cell(), input: f, hidden: hidden, layers: choices.range(1...2), sequences: true)
                case 2:
                    let hidden = choices.range(1...4)
                    shape = .vector(hidden)
                    return .recurrent(cell(), input: f, hidden: hidden, layers: choices.range(1...2), sequences: false)
                case 3:
                    let classes = choices.range(1...4)
                    shape = .vector(classes)
                    return .classifier(choices.pick([.rnn, .lstm, .gru]), relu: choices.chance(1, in: 3), input: f,
                                       hidden: choices.range(1...4), layers: choices.range(1...2), classes: classes)
                case 4: return activation()
                case 5: return dropout()
                case 6: return depth < 2 ? .residual(block(shape)) : batchNorm(t, image: false)
                case 7:
                    shape = .vector(t * f)
                    return .flatten
                default:
                    let out = choices.range(1...4)
                    shape = .vector(out)
                    return .dense(t * f, out, bias: true)
                }
            }
        }

        func layers(_ shape: inout Shape, count: Int, depth: Int) -> [Spec] {
            (0..<count).map { _ in layer(&shape, depth: depth) }
        }

        func buildModel() {
            switch choices.below(3) {
            case 0: inputShape = .vector(choices.range(1...6))
            case 1: inputShape = .image(choices.range(1...3), choices.range(2...6), choices.range(2...6))
            default: inputShape = .sequence(choices.range(1...4), choices.range(1...5))
            }
            batch = choices.range(1...4)
            var shape = inputShape
            if choices.chance(1, in: 8) {
                spec = layer(&shape, depth: 0)
            } else {
                var specs: [Spec] = [], shapes: [Shape] = []
                for _ in 0..<choices.range(1...4) {
                    shapes.append(shape)
                    specs.append(layer(&shape, depth: 0))
                }
                topSpecs = specs
                topShapes = shapes
                spec = .sequential(specs)
            }
            outputShape = shape
            do {
                model = try spec.build(seed: nextSeed())
            } catch {
                fail("building \(spec) threw \(error)")
                return
            }
            if topSpecs != nil && choices.chance(1, in: 10) { placeOneInstanceTwice() }
            mix(model.summary)
            log.append(model.summary)
            makeOptimizer()
        }

        /// Rebuilds the top-level Sequential with one element-wise instance at a second place: later
        /// in the list, inside a Residual, or inside a nested Sequential.
        func placeOneInstanceTwice() {
            guard let top = model as? Sequential else { return }
            var list = top.layers
            var first = list.firstIndex { $0 is Tanh || $0 is Sigmoid || $0 is ReLU || $0 is GELU || $0 is Dropout }
            if first == nil {
                list.insert(Tanh(), at: 0)
                topShapes.insert(topShapes[0], at: 0)
                first = 0
            }
            let original = list[first!]
            let at = first! + 1 + choices.below(list.count - first!)
            let shape = at < topShapes.count ? topShapes[at] : outputShape
            switch choices.below(3) {
            case 0: list.insert(original, at: at)
            case 1: list.insert(Residual(original), at: at)
            default: list.insert(Sequential(original, Sigmoid()), at: at)
            }
            topShapes.insert(shape, at: at)
            model = Sequential(list)
            duplicated = true
        }

        func makeOptimizer() {
            let params = model.parameters
            let kind = choices.below(3)
            guard kind > 0 else { return }
            do {
                optimizer = try OptimizerCheck(kind == 1 ? .sgd(lr: 0.05, momentum: choices.pick([0, 0.9])) : .adam(lr: 0.01),
                                               parameters: params)
                if params.isEmpty { fail("an optimizer accepted an empty parameter list") }
            } catch let error as BackpropError {
                if !params.isEmpty { fail("optimizer init threw \(error) for \(params.count) parameters") }
            } catch {
                fail("optimizer init threw \(type(of: error)): \(error)")
            }
        }

        // MARK: The run

        func execute() {
            buildModel()
            guard findings.isEmpty else { return }
            var count = 0
            while !choices.isExhausted && count < maxCalls && findings.isEmpty {
                perform(nextCall())
                count += 1
            }
            if findings.isEmpty {
                // The model must still work, whatever happened before.
                forward(.forward)
                if findings.isEmpty { backward(.backward) }
                if findings.isEmpty && choices.chance(1, in: 2) { checkReferenceWithFiniteDifferences() }
            }
            stats.sequences += 1
            stats.sequenceHashes.insert(hash)
        }

        static let schedule: [Call] = {
            var list: [Call] = []
            for call in Call.allCases {
                switch call {
                case .forward: list += Array(repeating: call, count: 8)
                case .backward: list += Array(repeating: call, count: 10)
                case .forwardNewBatch, .zeroGrad: list += Array(repeating: call, count: 3)
                case .backwardWrongShape, .train, .eval, .useThreads, .optimizerStep, .siblingForward, .fillInput:
                    list += Array(repeating: call, count: 2)
                default: list.append(call)
                }
            }
            return list
        }()

        func nextCall() -> Call {
            let call = choices.pick(Run.schedule)
            let sequential = model is Sequential
            let applicable: Bool
            switch call {
            case .trace, .siblingForward, .appendLayer: applicable = sequential && topSpecs != nil
            case .appendSameInstance: applicable = sequential && topSpecs != nil && choices.chance(1, in: 4)
            case .siblingBackward: applicable = sibling != nil
            case .resizeInput, .fillInput, .assignInput, .setInputElement, .redrawInput: applicable = input != nil
            case .resizeOutput, .fillOutput: applicable = output != nil
            case .truncation: applicable = leaves.contains { $0 is RecurrentLayer }
            case .imagesPerGemm: applicable = leaves.contains { $0 is Conv2D }
            case .freezeMask, .fillMask: applicable = leaves.contains { $0 is Dropout }
            case .optimizerStep: applicable = optimizer != nil && !(pending.map { !$0.consumed } ?? false)
            default: applicable = true
            }
            return applicable ? call : .forward
        }

        func perform(_ call: Call) {
            switch call {
            case .forward, .forwardNewBatch, .forwardWrongShape: forward(call)
            case .trace: trace()
            case .backward, .backwardWrongShape: backward(call)
            case .resizeInput, .fillInput, .assignInput, .setInputElement, .redrawInput: changeInput(call)
            case .resizeOutput, .fillOutput: changeOutput(call)
            case .zeroGrad:
                record(call)
                model.zeroGrad()
                gradientsZeroed = true
            case .train:
                record(call)
                model.train()
            case .eval:
                record(call)
                model.eval()
            case .useThreads:
                let n = choices.range(1...3)
                record(call, "(\(n))")
                model.useThreads(n)
            case .needsInputGradient:
                let value = !model.needsInputGradient
                record(call, "(\(value))")
                model.needsInputGradient = value
            case .truncation:
                let layers = leaves.compactMap { $0 as? RecurrentLayer }
                let layer = choices.pick(layers)
                let value: Int? = choices.pick([nil, 1, 2, 3, 0])
                record(call, "(\(value.map(String.init) ?? "nil"))")
                layer.truncation = value
            case .imagesPerGemm:
                let layer = choices.pick(leaves.compactMap { $0 as? Conv2D })
                let value = choices.range(1...4)
                record(call, "(\(value))")
                layer.imagesPerGemm = value
            case .freezeMask:
                let layer = choices.pick(leaves.compactMap { $0 as? Dropout })
                record(call, "(\(!layer.freezeMask))")
                layer.freezeMask.toggle()
            case .fillMask:
                let layer = choices.pick(leaves.compactMap { $0 as? Dropout })
                let value: Float = choices.pick([0, 1, 2])
                record(call, "(\(value))")
                layer.mask.fill(value)
                pending?.disturbed = true
            case .siblingForward: siblingForward()
            case .siblingBackward: siblingBackward()
            case .appendLayer: appendLayer()
            case .appendSameInstance: appendSameInstance()
            case .optimizerStep: optimizerStep()
            }
        }

        // MARK: Reference

        /// A fresh model as `p`'s forward saw it, run forward on a copy of its input.
        func reference(_ p: Pending) -> (model: Layer, outcome: Outcome, replayedMasks: Bool)? {
            let ref: Layer
            do {
                ref = try p.spec.build(seed: 1)
                for (name, tensor) in ref.stateDict {
                    guard let value = p.state[name] else {
                        fail("reference: no saved value for \(name)")
                        return nil
                    }
                    try tensor.assign(value)
                }
            } catch {
                fail("reference: building or loading \(p.spec) threw \(error)")
                return nil
            }
            let refLeaves = APISequenceFuzzer.leaves(ref)
            guard refLeaves.count == p.modes.count else {
                fail("reference: \(refLeaves.count) layers, the forward had \(p.modes.count)")
                return nil
            }
            for (leaf, mode) in zip(refLeaves, p.modes) { leaf.isTraining = mode }
            let masks = p.masks.contains { $0 != nil }
            if masks {
                // Dropout draws its own masks: draw once, overwrite with the forward's, keep them.
                for leaf in refLeaves { (leaf as? Dropout)?.freezeMask = true }
                guard let first = attempt("reference forward", counted: false, { try ref.forward(p.input.copy()) }) else { return nil }
                if first.error == nil {
                    for (leaf, mask) in zip(refLeaves, p.masks) {
                        guard let mask, let d = leaf as? Dropout else { continue }
                        do { try d.mask.assign(mask) } catch {
                            fail("reference: dropout mask \(d.mask.shape) cannot take \(mask.shape)")
                            return nil
                        }
                    }
                }
            }
            guard let outcome = attempt("reference forward", counted: false, { try ref.forward(p.input.copy()).copy() }) else { return nil }
            return (ref, outcome, masks)
        }

        /// The reference's backward with δ, under the live model's current settings, accumulating
        /// into `start` (nil: gradients marked zero by zeroGrad()); returns its gradients after.
        func referenceBackward(_ p: Pending, _ delta: Tensor,
                               from start: [String: Tensor]?) -> (outcome: Outcome, gradients: [String: Tensor])? {
            guard let (ref, forwardOutcome, _) = reference(p) else { return nil }
            guard forwardOutcome.error == nil else {
                fail("reference forward failed on a replay of a forward that worked: \(forwardOutcome.error!)")
                return nil
            }
            let liveLeaves = leaves, refLeaves = APISequenceFuzzer.leaves(ref)
            for (live, copy) in zip(liveLeaves, refLeaves) {
                if let l = live as? RecurrentLayer, let c = copy as? RecurrentLayer { c.truncation = l.truncation }
            }
            ref.needsInputGradient = model.needsInputGradient
            if let start {
                for (name, param) in ref.namedParameters {
                    guard let g = start[name], (try? param.grad.assign(g)) != nil else {
                        fail("reference: no starting gradient for \(name)")
                        return nil
                    }
                }
            } else {
                ref.zeroGrad()
            }
            guard let outcome = attempt("reference backward", counted: false, { try ref.backward(delta.copy()).copy() }) else { return nil }
            return (outcome, gradients(of: ref))
        }

        // MARK: Forward

        /// The forward's input: the last one resized, a new tensor, or a reshaped view of a new one.
        func inputTensor(_ shape: [Int]) -> Tensor {
            let x: Tensor
            inputBase = nil
            switch choices.below(3) {
            case 0 where input != nil:
                x = input!
                x.resize(to: shape)
            case 1:
                let base = zeros([shape.reduce(1, *)])
                do { x = try base.reshaped(shape) } catch {
                    fail("reshaped(\(shape)) of \(base.shape) threw \(error)")
                    return base
                }
                inputBase = base
            default:
                x = zeros(shape)
            }
            if choices.chance(1, in: 4) { x.fillNormal(std: 0.5, using: &rng) } else { x.fillUniform(-1, 1, using: &rng) }
            if let p = pending, p.inputObject === x { p.disturbed = true }
            input = x
            return x
        }

        func wrongShape(_ dims: [Int]) -> [Int] {
            var d = dims
            switch choices.below(4) {
            case 0: d[d.count - 1] += 1
            case 1: d.append(1)
            case 2: if d.count > 2 { d.removeLast() } else { d.append(2) }
            default: d = [d[0]]
            }
            return d
        }

        /// The masks the forward noted in `p` drew: a copy for each Dropout that was training.
        func masks(_ p: Pending) -> [Tensor?] {
            leaves.enumerated().map { i, leaf in
                guard let d = leaf as? Dropout, p.modes[i], d.p > 0 else { return nil }
                return d.mask.copy()
            }
        }

        func snapshot(_ x: Tensor) -> Pending {
            var state: [String: Tensor] = [:]
            for (name, t) in model.stateDict { state[name] = t.copy() }
            return Pending(spec: spec, inputObject: x, state: state, modes: leaves.map(\.isTraining))
        }

        func forward(_ call: Call) {
            var n = batch
            if call == .forwardNewBatch {
                n = choices.range(0...4)
                if n == batch { n = batch % 4 + 1 }
                batch = n
            }
            var dims = inputShape.dims(batch: n)
            if call == .forwardWrongShape { dims = wrongShape(dims) }
            let x = inputTensor(dims)
            let p = snapshot(x)
            record(call, "\(dims)")
            guard let outcome = attempt("forward", { try model.forward(x) }) else { return }
            if !APISequenceFuzzer.close(x, p.input, tolerance: 0) { fail("forward changed its input") }
            if case let .value(y) = outcome {
                p.output = y.copy()
                p.outputObject = y
                p.masks = masks(p)
                output = y
            }
            checkForward(outcome, p, call)
            switch outcome {
            case .value: pending = p
            case .error:
                if model is Sequential { pending = nil } else { pending?.disturbed = true }
            }
        }

        func checkForward(_ outcome: Outcome, _ p: Pending, _ call: Call) {
            if duplicated {
                guard let e = outcome.error, APISequenceFuzzer.refusal(e) == .twoPlaces else {
                    fail("\(call) of a model holding one instance at two places: \(outcome.error.map { "\($0)" } ?? "returned"), not invalidUse")
                    return
                }
                return
            }
            guard let (ref, expected, replayedMasks) = reference(p) else { return }
            stats.compared += 1
            switch (outcome, expected) {
            case let (.value(y), .value(r)):
                if !APISequenceFuzzer.close(y, r) {
                    fail("\(call): output differs from the reference's: \(APISequenceFuzzer.maxDifference(y, r))")
                }
                if !replayedMasks {
                    let refBuffers = Dictionary(ref.namedBuffers.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
                    for (name, t) in model.namedBuffers {
                        guard let r = refBuffers[name], APISequenceFuzzer.close(t, r) else {
                            fail("\(call): buffer \(name) differs from the reference's after forward")
                            return
                        }
                    }
                }
            case let (.error(e), .error(r)):
                if APISequenceFuzzer.caseName(e) != APISequenceFuzzer.caseName(r) {
                    fail("\(call): threw \(e), the reference threw \(r)")
                }
            case let (.value, .error(r)):
                fail("\(call): returned, the reference threw \(r)")
            case let (.error(e), .value):
                fail("\(call): threw \(e), the reference returned")
            }
        }

        func trace() {
            guard let top = model as? Sequential else { return }
            let x = inputTensor(inputShape.dims(batch: batch))
            let p = snapshot(x)
            record(.trace)
            guard let outcome = attempt("trace", { try top.trace(x).last?.output ?? x }) else { return }
            if !APISequenceFuzzer.close(x, p.input, tolerance: 0) { fail("trace changed its input") }
            if case .value = outcome { p.masks = masks(p) }
            checkForward(outcome, p, .trace)
            pending = nil      // trace's pass is not one backward can pair with
        }

        // MARK: Backward

        func backward(_ call: Call) {
            let p = pending
            var dims = p?.output?.shape ?? outputShape.dims(batch: batch)
            if call == .backwardWrongShape { dims = wrongShape(dims) }
            let delta = random(dims)
            let deltaCopy = delta.copy()
            // The gradients it starts from: nil when zeroGrad() marked them zero (not read then,
            // so the backward takes its overwrite-instead-of-add path).
            let start = gradientsZeroed ? nil : gradients(of: model)
            let before = start ?? zeroGradients(of: model)
            record(call, "\(dims)")
            let outcome = attempt("backward", { try model.backward(delta) })
            gradientsZeroed = false
            guard let outcome else { return }
            if !APISequenceFuzzer.close(delta, deltaCopy, tolerance: 0) { fail("backward changed its δ") }
            let after = gradients(of: model)

            func requireNoChange(_ why: String) {
                for (name, g) in after where !APISequenceFuzzer.close(g, before[name] ?? zeros(g.shape), tolerance: 0) {
                    fail("\(call) \(why): it threw, yet changed the gradient of \(name)")
                    return
                }
            }

            // A wrong δ may be refused for its shape first.
            let anyError = call == .backwardWrongShape
            guard let p else {
                if let e = outcome.error, anyError || duplicated || APISequenceFuzzer.refusal(e) == .beforeForward {
                    requireNoChange("with no completed forward")
                } else {
                    fail("\(call) with no completed forward: \(outcome.error.map { "\($0)" } ?? "returned"), not invalidUse (backward before forward)")
                }
                return
            }
            if p.consumed {
                if let e = outcome.error, anyError || APISequenceFuzzer.refusal(e) != nil {
                    requireNoChange("a second time for one forward")
                } else {
                    fail("\(call) a second time for one forward: \(outcome.error.map { "\($0)" } ?? "returned"), not invalidUse")
                }
                return
            }
            guard let (expected, refAfter) = referenceBackward(p, deltaCopy, from: start) else { return }
            stats.compared += 1
            // One scale for the whole call: sums of large terms that cancel (a normalised feature of
            // tiny variance) keep the absolute error of those terms, and threads change their order.
            var scale = APISequenceFuzzer.magnitude(expected.value)
            for g in refAfter.values { scale = max(scale, APISequenceFuzzer.magnitude(g)) }
            for g in before.values { scale = max(scale, APISequenceFuzzer.magnitude(g)) }

            /// After an error each gradient is as it was, or as the reference's after its own call:
            /// layers after the point of refusal may have run.
            func requireNothingOrReference() {
                for (name, g) in after where !APISequenceFuzzer.close(g, before[name] ?? zeros(g.shape), tolerance: 0) {
                    guard let r = refAfter[name], APISequenceFuzzer.close(g, r, scale: scale) else {
                        fail("\(call) threw, and changed the gradient of \(name) to other than the reference's: "
                             + (refAfter[name].map { APISequenceFuzzer.maxDifference(g, $0) } ?? "no reference"))
                        return
                    }
                }
                // A right δ refused part way: the layers after that point used their records.
                if call == .backward { p.disturbed = true }
            }

            if p.outputsChanged {
                // A nested container (Residual, SequenceClassifier) notices its sublayer's pass when
                // its turn comes: a wrong δ may be refused for its shape before.
                if let e = outcome.error, anyError || APISequenceFuzzer.refusal(e) != nil {
                    requireNothingOrReference()
                } else {
                    fail("\(call) after a layer's output changed (another model ran a shared instance, or the output was changed): "
                         + "\(outcome.error.map { "\($0)" } ?? "returned"), not invalidUse")
                }
                return
            }
            switch (outcome, expected) {
            case let (.value(dx), .value(r)):
                if !APISequenceFuzzer.close(dx, r, scale: scale) {
                    fail("\(call): δ of the input differs from the reference's: \(APISequenceFuzzer.maxDifference(dx, r))")
                    return
                }
                for (name, g) in after {
                    guard let r = refAfter[name], APISequenceFuzzer.close(g, r, scale: scale) else {
                        fail("\(call): gradient of \(name) differs from the reference's: "
                             + (refAfter[name].map { APISequenceFuzzer.maxDifference(g, $0) } ?? "no reference"))
                        return
                    }
                }
                p.consumed = true
            case let (.error(e), .error(r)) where !p.disturbed && APISequenceFuzzer.caseName(e) != APISequenceFuzzer.caseName(r):
                fail("\(call): threw \(e), the reference threw \(r)")
            case let (.error(e), .value) where !p.disturbed:
                fail("\(call) after an untouched forward: threw \(e), the reference returned")
            case let (.value, .error(r)):
                fail("\(call): returned, the reference threw \(r)")
            case (.error, _):
                requireNothingOrReference()
            }
        }

        // MARK: The user's tensors

        func changeInput(_ call: Call) {
            guard let input else { return }
            if let p = pending, p.inputObject === input { p.disturbed = true }
            // The input itself, or the tensor it is a view of.
            let x = inputBase.map { choices.chance(1, in: 2) ? $0 : input } ?? input
            switch call {
            case .resizeInput:
                var dims = x.shape
                switch choices.below(4) {
                case 0: break
                case 1: if !dims.isEmpty { dims[0] = max(0, dims[0] - 1) }
                case 2: if !dims.isEmpty { dims[0] += 3 }
                default: dims = [x.count + choices.range(0...40)]
                }
                record(call, "\(dims)")
                x.resize(to: dims)
            case .fillInput:
                let v: Float = choices.pick([0, 1, -0.5])
                record(call, "(\(v))")
                x.fill(v)
            case .assignInput:
                let wrong = choices.chance(1, in: 4)
                let values = (0..<(x.count + (wrong ? 1 : 0))).map { _ in Float(rng.nextUnit()) }
                let before = x.copy()
                record(call, wrong ? "(wrong count)" : "")
                guard let outcome = attempt("assign", { try x.assign(values); return x }) else { return }
                if wrong {
                    if outcome.error == nil { fail("assign of \(values.count) values to \(x.shape) returned") }
                    if !APISequenceFuzzer.close(x, before, tolerance: 0) { fail("a refused assign changed the tensor") }
                } else if let e = outcome.error {
                    fail("assign of \(values.count) values to \(x.shape) threw \(e)")
                }
            case .setInputElement:
                guard x.count > 0 else { record(call, "(empty)"); return }
                let i = choices.below(x.count)
                record(call, "[\(i)]")
                x[flat: i] = 0.5
            default:
                record(call)
                x.fillUniform(-1, 1, using: &rng)
            }
        }

        func changeOutput(_ call: Call) {
            guard let y = output else { return }
            if let p = pending, p.outputObject === y {
                p.disturbed = true
                if model is Sequential { p.outputsChanged = true }
            }
            if call == .resizeOutput {
                var dims = y.shape
                switch choices.below(3) {
                case 0: break
                case 1: dims = [y.count + choices.range(1...40)]
                default: dims = [max(0, y.count - 1)]
                }
                record(call, "\(dims)")
                y.resize(to: dims)
            } else {
                record(call)
                y.fill(choices.pick([0, 3]))
            }
        }

        // MARK: Shared instances, appends

        /// A second model holding one instance of this one: a top-level layer, a Residual's block,
        /// or a SequenceClassifier's recurrent layer or fc.
        func siblingForward() {
            guard let top = model as? Sequential, !top.layers.isEmpty else { return }
            if sibling == nil {
                let i = choices.below(top.layers.count)
                var shared = top.layers[i]
                var shape = topShapes.indices.contains(i) ? topShapes[i] : outputShape
                if let r = shared as? Residual, choices.chance(1, in: 2) {
                    shared = r.block
                } else if let c = shared as? SequenceClassifier, choices.chance(2, in: 3) {
                    if choices.chance(1, in: 2) {
                        shared = c.rnn
                    } else {
                        shared = c.fc
                        shape = .vector(c.rnn.hiddenSize)
                    }
                }
                sibling = (Sequential(shared), shape, nil)
            }
            guard let s = sibling else { return }
            let n = choices.range(1...4)
            let x = random(s.shape.dims(batch: n))
            record(.siblingForward, "\(x.shape)")
            guard let outcome = attempt("forward of a model sharing an instance", { try s.model.forward(x) }) else { return }
            sibling?.outputShape = outcome.value?.shape
            if outcome.error == nil { pending?.outputsChanged = true } else { pending?.disturbed = true }
        }

        func siblingBackward() {
            guard let s = sibling else { return }
            let delta = random(s.outputShape ?? [1, 1])
            record(.siblingBackward, "\(delta.shape)")
            gradientsZeroed = false
            _ = attempt("backward of a model sharing an instance", { try s.model.backward(delta) })
        }

        func appendLayer() {
            guard let top = model as? Sequential, var specs = topSpecs else { return }
            var shape = outputShape
            let added = layer(&shape, depth: 2)
            let instance: Layer
            do { instance = try added.build(seed: nextSeed()) } catch {
                fail("building \(added) threw \(error)")
                return
            }
            record(.appendLayer, "(\(instance.summary))")
            top.append(instance)
            specs.append(added)
            topSpecs = specs
            topShapes.append(outputShape)
            outputShape = shape
            spec = .sequential(specs)
            pending = nil      // the model changed: backward needs a new forward
        }

        func appendSameInstance() {
            guard let top = model as? Sequential, let instance = top.layers.last else { return }
            record(.appendSameInstance, "(\(instance.summary))")
            top.append(instance)
            topShapes.append(outputShape)
            duplicated = true
            pending = nil
        }

        // MARK: Optimizer

        func optimizerStep() {
            guard let check = optimizer else { return }
            let all = model.parameters
            let values = all.map(\.value.scalars), grads = all.map { $0.grad.scalars }
            record(.optimizerStep)
            gradientsZeroed = false     // reading them above wrote the zeros
            guard let outcome = attempt("optimizer step", { try check.optimizer.step(); return Tensor([0]) }) else { return }
            if let e = outcome.error {
                fail("\(check.kind) step threw \(e)")
                return
            }
            for (i, p) in all.enumerated() {
                if p.grad.scalars != grads[i] { fail("optimizer step changed a gradient"); return }
                let tracked = check.parameters.firstIndex { $0 === p }
                if tracked == nil && p.value.scalars != values[i] { fail("optimizer step changed a parameter it was not given"); return }
            }
            let expected = check.step(values: check.parameters.map { p in values[all.firstIndex { $0 === p }!] },
                                      gradients: check.parameters.map { p in grads[all.firstIndex { $0 === p }!] })
            for (p, e) in zip(check.parameters, expected) {
                let got = p.value.scalars
                for i in 0..<got.count where abs(Double(got[i]) - e[i]) > 1e-5 * max(1, abs(e[i])) {
                    fail("\(check.kind) step: parameter element \(i) is \(got[i]), the update formula gives \(e[i])")
                    return
                }
            }
        }

        // MARK: Finite differences

        /// The reference itself against finite differences, for models without kinks.
        func checkReferenceWithFiniteDifferences() {
            guard let p = pending, !duplicated, p.spec.suitsFiniteDifferences, let y = p.output, y.count > 0 else { return }
            guard let (ref, outcome, _) = reference(p), outcome.error == nil else { return }
            for leaf in APISequenceFuzzer.leaves(ref) { (leaf as? Dropout)?.freezeMask = true }
            ref.needsInputGradient = true
            do {
                // A second, smaller step before calling it a disagreement (steep tanh, sigmoid).
                let seed = nextSeed()
                var report = try GradientCheck.check(ref, input: p.input, seed: seed, maxElements: 8)
                if report.maxError > 2e-2 {
                    report = try GradientCheck.check(ref, input: p.input, step: 1e-3, seed: seed, maxElements: 8)
                }
                stats.gradientChecks += 1
                if report.maxError > 2e-2 { fail("finite differences disagree with the reference's backward: \(report)") }
            } catch {
                fail("GradientCheck threw \(error)")
            }
        }
    }

    /// An optimizer and the update it must make, computed here from its formula.
    final class OptimizerCheck {
        enum Kind: CustomStringConvertible {
            case sgd(lr: Float, momentum: Float)
            case adam(lr: Float)
            var description: String {
                switch self {
                case let .sgd(lr, momentum): return "SGD(lr: \(lr), momentum: \(momentum))"
                case let .adam(lr): return "Adam(lr: \(lr))"
                }
            }
        }

        let kind: Kind
        let optimizer: Optimizer
        let parameters: [Parameter]
        private var first: [[Double]]
        private var second: [[Double]]
        private var steps = 0

        init(_ kind: Kind, parameters: [Parameter]) throws {
            self.kind = kind
            self.parameters = parameters
            switch kind {
            case let .sgd(lr, momentum): optimizer = try SGD(parameters: parameters, lr: lr, momentum: momentum)
            case let .adam(lr): optimizer = try Adam(parameters: parameters, lr: lr)
            }
            first = parameters.map { Array(repeating: 0, count: $0.value.count) }
            second = first
        }

        /// The values after one step from `values` with `gradients`.
        func step(values: [[Float]], gradients: [[Float]]) -> [[Double]] {
            steps += 1
            var result: [[Double]] = []
            for k in 0..<values.count {
                var v = values[k].map(Double.init)
                let g = gradients[k].map(Double.init)
                switch kind {
                case let .sgd(lr, momentum):
                    for i in 0..<v.count {
                        var d = g[i]
                        if momentum != 0 {
                            first[k][i] = steps == 1 ? g[i] : Double(momentum) * first[k][i] + g[i]
                            d = first[k][i]
                        }
                        v[i] -= Double(lr) * d
                    }
                case let .adam(lr):
                    let b1 = 0.9, b2 = 0.999, eps = 1e-8
                    let c1 = 1 - pow(b1, Double(steps)), c2 = 1 - pow(b2, Double(steps))
                    for i in 0..<v.count {
                        first[k][i] = b1 * first[k][i] + (1 - b1) * g[i]
                        second[k][i] = b2 * second[k][i] + (1 - b2) * g[i] * g[i]
                        v[i] -= Double(lr) / c1 * first[k][i] / (second[k][i].squareRoot() / c2.squareRoot() + eps)
                    }
                }
                result.append(v)
            }
            return result
        }
    }
}
