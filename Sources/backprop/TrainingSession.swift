import ArgumentParser
import Backprop
import BackpropData
import BackpropMPI
import BackpropOptim
import Foundation

/// One training run: data, model, loss, optimizer and schedule, the epoch loop, checkpoints.
///
/// Determinism: epoch e shuffles with seed (seed, e), so a run resumed from the checkpoint of
/// epoch e continues exactly as the uninterrupted run would (same seed and thread count).
final class TrainingSession {
    let options: Train
    let train: Dataset
    let test: Dataset
    let architecture: Architecture
    let model: Layer
    let optimizer: Optimizer
    let loss: SoftmaxCrossEntropy
    let baseLR: Float
    var records: [EpochRecord] = []
    var startEpoch = 1
    /// The run's seed: `--seed`, or on `--resume` the checkpoint's, so the resumed run shuffles
    /// as the interrupted one would have.
    var seed: UInt64 = 1
    var progress = ProgressLine()
    /// Under `mpirun`: the communicator and the data-parallel wrapper (see Distributed).
    var distributed: Distributed?
    /// Rank 0, or the only process: prints and writes files.
    var isPrimary: Bool { (distributed?.rank ?? 0) == 0 }
    /// `--tensorboard`: the event-file log (TensorBoardLog.swift).
    var board: TrainingBoard?

    init(options: Train, communicator: Communicator? = nil) throws {
        self.options = options
        let (fullTrain, testSet) = try DataSources.load(data: options.data, train: options.trainFile, test: options.testFile)
        train = options.limit > 0 && options.limit < fullTrain.count ? try fullTrain.subset(0..<options.limit) : fullTrain
        test = testSet
        let classes = max(train.classCount, test.classCount)
        if let resume = options.resume {
            let loaded = try ModelFile.load(resume)
            architecture = loaded.architecture
            model = loaded.model
            let stored = loaded.metadata["backprop.seed"].flatMap(UInt64.init)
            seed = stored ?? options.seedOption ?? 1
            if let stored, let given = options.seedOption, given != stored, (communicator?.rank ?? 0) == 0 {
                FileHandle.standardError.write(Data("warning: \(resume) was trained with --seed \(stored); resuming with it, not \(given)\n".utf8))
            }
            guard architecture.inputFeatures == train.featureCount else {
                throw ValidationError("\(resume): the model takes \(architecture.inputFeatures) features but \(options.data) has \(train.featureCount)")
            }
            if let e = loaded.metadata["backprop.epoch"].flatMap(Int.init) { startEpoch = e + 1 }
            if let text = loaded.metadata["backprop.records"], let data = text.data(using: .utf8) {
                records = (try? JSONDecoder().decode([EpochRecord].self, from: data)) ?? []
            }
            baseLR = options.lr ?? TrainingSession.defaultLR(options.optimizer, architecture)
            optimizer = try TrainingSession.makeOptimizer(options, model.parameters, lr: baseLR)
            var state: [String: Tensor] = [:]
            for (k, v) in loaded.extraTensors { state[String(k.dropFirst("optimizer.".count))] = v }
            do { try optimizer.loadState(state) } catch {
                throw ValidationError("\(resume): optimizer state does not fit --optimizer \(options.optimizer): \(error)")
            }
        } else {
            seed = options.seedOption ?? 1
            architecture = try options.model.architecture(rows: train.rows, columns: train.columns * train.channels, classes: classes)
            model = try architecture.build(seed: seed)
            baseLR = options.lr ?? TrainingSession.defaultLR(options.optimizer, architecture)
            optimizer = try TrainingSession.makeOptimizer(options, model.parameters, lr: baseLR)
        }
        guard architecture.outputs >= classes else {
            throw ValidationError("the model has \(architecture.outputs) outputs but the labels have \(classes) classes")
        }
        loss = try SoftmaxCrossEntropy(labelSmoothing: options.labelSmoothing)
        if let world = communicator {
            try Distributed.checkConsistency(world, train: train, test: test, model: model,
                                             optimizerState: optimizer.state, options: options)
            distributed = Distributed(world: world, ddp: try DataParallel(model, communicator: world))
            if world.rank != 0 { return }   // only rank 0 writes files
        }
        // Probe each output with as many bytes as it will hold (the checkpoint also holds the
        // optimizer state), so a read-only folder or a full disk stops the run before training.
        let modelBytes = model.stateDict.reduce(0) { $0 + $1.1.count * 4 } + 65536
        let stateBytes = optimizer.state.values.reduce(0) { $0 + $1.count * 4 }
        try TrainingSession.checkWritable(options.out, bytes: modelBytes)
        try TrainingSession.checkWritable(options.checkpointPath, bytes: modelBytes + stateBytes)
        for path in [options.report, options.log].compactMap({ $0 }) {
            try TrainingSession.checkWritable(path, bytes: 65536)
        }
        if let dir = options.tensorboard {
            board = try TrainingBoard(directory: dir, logEvery: options.logEvery, test: test, architecture: architecture)
        }
    }

    /// 0.05 for SGD; 0.002 for recurrent models (with clipping at norm 1 and the cosine schedule
    /// this reaches ≥ 98.3 % on MNIST rows in 8 epochs for the LSTM); 0.001 otherwise.
    static func defaultLR(_ optimizer: String, _ architecture: Architecture) -> Float {
        if optimizer == "sgd" { return 0.05 }
        if case .recurrent = architecture { return 0.002 }
        return 0.001
    }

    /// `--clip-grad-norm` (0: off); recurrent models clip at 1 by default.
    var clipNorm: Float? {
        if let c = options.clipGradNorm { return c > 0 ? c : nil }
        if case .recurrent = architecture { return 1 }
        return nil
    }

    static func makeOptimizer(_ o: Train, _ parameters: [Parameter], lr: Float) throws -> Optimizer {
        switch o.optimizer {
        case "adam": return try Adam(parameters: parameters, lr: lr, weightDecay: o.weightDecay)
        case "adamw": return try AdamW(parameters: parameters, lr: lr, weightDecay: o.weightDecay == 0 ? 1e-2 : o.weightDecay)
        case "rmsprop": return try RMSProp(parameters: parameters, lr: lr, weightDecay: o.weightDecay, momentum: o.momentum)
        default: return try SGD(parameters: parameters, lr: lr, momentum: o.momentum, weightDecay: o.weightDecay)
        }
    }

    /// Fails early, before any training, when an output cannot be written: creates a temporary
    /// file next to `path`, reserves `bytes` bytes in it, fsyncs and removes it. (`access(2)` alone
    /// says yes to root on a read-only folder and knows nothing of free space.)
    static func checkWritable(_ path: String, bytes: Int) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("\(path): folder \(dir) does not exist")
        }
        let probe = dir + "/.backprop-write-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ValidationError("\(path): cannot write in \(dir): \(String(cString: strerror(errno)))")
        }
        defer { close(fd); unlink(probe) }
        // Reserve the space (fast: no data is written; glibc falls back to writing zeros on file
        // systems without fallocate). Fails with ENOSPC on a full disk, EFBIG over `ulimit -f`.
        let status = posix_fallocate(fd, 0, off_t(bytes))
        guard status == 0 else {
            throw ValidationError("\(path): cannot reserve \(bytes) bytes in \(dir) (\(String(cString: strerror(status)))); is the disk full?")
        }
        guard fsync(fd) == 0 else {
            throw ValidationError("\(path): cannot write in \(dir): fsync failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Learning rate of epoch `e` (1-based) under the schedule.
    func learningRate(epoch e: Int) -> Float {
        switch options.schedule {
        case "cosine":
            let t = Float(e - 1) / Float(max(options.epochs, 1))
            return baseLR * 0.5 * (1 + cos(Float.pi * t))
        case "step":
            return baseLR * pow(0.1, Float((e - 1) / max(1, options.epochs / 3)))
        default:
            return baseLR
        }
    }

    func run() throws {
        if startEpoch == options.epochs + 1, options.resume != nil {
            // Killed after the last checkpoint but before the model file: just write it.
            guard isPrimary else { return }
            try ModelFile.save(model, architecture: architecture, to: options.out, metadata: runMetadata())
            if !options.json { print("all \(options.epochs) epochs were done; model written to \(options.out)") }
            return
        }
        if startEpoch > options.epochs {
            if distributed != nil {
                throw CollectiveError("\(options.resume ?? ""): already trained \(startEpoch - 1) epochs; ask for more with --epochs")
            }
            throw ValidationError("\(options.resume ?? ""): already trained \(startEpoch - 1) epochs; ask for more with --epochs")
        }
        let parameters = model.namedParameters
        let parameterList = parameters.map(\.parameter)
        model.needsInputGradient = false  // δ of the data is never used: skip that product
        // Convolutional and recurrent layers run each batch as concurrent slices, one per thread
        // (their per-image and per-step products are too small for BLAS's own threads).
        let threadCount = options.threads ?? (distributed != nil ? Distributed.defaultThreads() : BLAS.processorCount)
        model.useThreads(threadCount)
        ParallelChunks.maximumThreads = threadCount  // optimizer steps
        let clipNorm = self.clipNorm
        var batcher = try Batcher(train, batchSize: options.batch, shuffle: true, seed: seed,
                                  layout: architecture.batchLayout)
        if let d = distributed { try batcher.setShard(rank: d.rank, of: d.size) }
        var firstStep = true
        try board?.start(model: model, architecture: architecture, test: test, settings: boardSettings(), step: startEpoch - 1)
        for epoch in startEpoch...options.epochs {
            distributed?.testHookAtEpochStart(epoch)
            let lr = learningRate(epoch: epoch)
            optimizer.learningRate = lr
            model.train()
            batcher.startEpoch(epoch)
            var lossSum = 0.0, correct = 0, seen = 0, batchIndex = 0, skipped = 0
            var normSums = [Double](repeating: 0, count: parameters.count), normCount = 0
            let batches = batcher.batchesPerEpoch
            let t0 = DispatchTime.now().uptimeNanoseconds
            while let b = batcher.next() {
                batchIndex += 1
                optimizer.zeroGrad()
                var value: Float = 0, output: Tensor?
                if let d = distributed {
                    // Every rank takes part in every reduction, even with no rows (zero gradients)
                    // or a non-finite loss (a NaN δ makes the reduced gradients NaN on every rank,
                    // so every rank takes the same branch of the checks below).
                    if b.count == 0 { try d.ddp.contributeNothing() } else {
                        let y = try model.forward(b.input)
                        let (v, delta) = try loss(y, labels: b.labels)
                        if !v.isFinite { delta.data.update(repeating: .nan, count: delta.count) }
                        _ = try d.ddp.backward(delta, weight: Float(b.count) / Float(b.globalCount))
                        value = v; output = y
                    }
                    try d.ddp.waitForGradients()
                } else {
                    let y = try model.forward(b.input)
                    let (v, delta) = try loss(y, labels: b.labels)
                    guard v.isFinite else {
                        if options.skipNonfinite { skipped += 1; continue }
                        throw TrainingFailure("loss is \(v) at epoch \(epoch), batch \(batchIndex) (\(nonFiniteLayer(b.input)))")
                    }
                    _ = try model.backward(delta)
                    value = v; output = y
                }
                // One vectorised pass per gradient gives both its norm (logged per epoch) and the
                // health check: the sum of squares is NaN or ∞ exactly when the gradient is.
                var badGradient: String?
                var totalSquares = 0.0
                for (i, p) in parameters.enumerated() {
                    let squares = p.parameter.grad.sumOfSquares()
                    if !squares.isFinite, !p.parameter.grad.allFinite { badGradient = p.name; break }
                    normSums[i] += Double(squares).squareRoot()
                    totalSquares += Double(squares)
                }
                if let bad = badGradient {
                    if options.skipNonfinite { skipped += 1; continue }
                    if distributed != nil {
                        throw CollectiveError("gradient of \(bad) (averaged over the ranks) is not finite at epoch \(epoch), batch \(batchIndex)")
                    }
                    throw TrainingFailure("gradient of \(bad) (layer \(bad.split(separator: ".").first ?? "?")) is not finite at epoch \(epoch), batch \(batchIndex)")
                }
                normCount += 1
                try board?.step(epoch: epoch, batch: batchIndex, batches: batches, loss: value, squares: totalSquares,
                                parameters: parameters)
                if let maxNorm = clipNorm { _ = try clipGradNorm(parameterList, maxNorm: maxNorm) }
                try optimizer.step()
                if firstStep { firstStep = false; distributed?.testHookAfterFirstStep(model) }
                let n = b.labels.count
                lossSum += Double(value) * Double(n)
                if let output { correct += countCorrect(output, b.labels) }
                seen += n
                guard isPrimary else { continue }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                progress.update(epoch: epoch, epochs: options.epochs, batch: batchIndex, batches: batches,
                                loss: lossSum / Double(max(seen, 1)), imagesPerSecond: Double(seen) / max(elapsed, 1e-9),
                                elapsed: elapsed)
            }
            if let d = distributed {
                (lossSum, correct, seen) = try d.reduceMetrics(lossSum, correct, seen)
                skipped = Int(try d.world.allreduce([Double(skipped)], .max)[0])
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if let d = distributed { d.reportWaiting(epoch: epoch, seconds: seconds) }
            progress.clear()
            let testLoss: Double, testAccuracy: Double
            if let d = distributed {
                try d.ddp.averageBuffers()
                try d.ddp.checkReplicasAgree(context: "after epoch \(epoch)")
                (testLoss, testAccuracy) = try d.evaluate(model, on: test, batchSize: max(options.batch, 256), loss: loss,
                                                         layout: architecture.batchLayout)
            } else {
                (testLoss, testAccuracy) = try evaluate(model, on: test, batchSize: max(options.batch, 256), loss: loss,
                                                        layout: architecture.batchLayout)
            }
            var norms: [String: Double] = [:]
            for (i, p) in parameters.enumerated() { norms[p.name] = normSums[i] / Double(max(normCount, 1)) }
            let record = EpochRecord(epoch: epoch, train_loss: lossSum / Double(max(seen, 1)),
                                     train_accuracy: Double(correct) / Double(max(seen, 1)),
                                     test_loss: testLoss, test_accuracy: testAccuracy, seconds: seconds,
                                     images_per_second: Double(seen) / max(seconds, 1e-9),
                                     learning_rate: Double(lr), gradient_norms: norms)
            records.append(record)
            guard isPrimary else { continue }
            emit(record, skipped: skipped)
            try board?.epoch(record, model: model, parameters: parameters)
            try saveCheckpoint(epoch: epoch)
            if let report = options.report { try writeReport(to: report) }
        }
        guard isPrimary else { return }
        try ModelFile.save(model, architecture: architecture, to: options.out, metadata: runMetadata())
        try board?.close()
        if !options.json, let last = records.last {
            let total = records.map(\.seconds).reduce(0, +)
            print(String(format: "test accuracy %.2f%% after %d epochs, %.1f s of training; model written to %@",
                         last.test_accuracy * 100, last.epoch, total, options.out))
        }
    }

    /// The settings the `--tensorboard` log shows as text beside the command line.
    func boardSettings() -> [(String, String)] {
        [("model", architecture.json), ("optimizer", options.optimizer), ("lr", "\(baseLR)"),
         ("schedule", options.schedule), ("batch", "\(options.batch)"), ("epochs", "\(options.epochs)"),
         ("seed", "\(seed)"), ("clip_grad_norm", clipNorm.map { "\($0)" } ?? "off"),
         ("weight_decay", "\(options.weightDecay)"), ("label_smoothing", "\(options.labelSmoothing)"),
         ("first_epoch", "\(startEpoch)"), ("training_images", "\(train.count)")]
    }

    func emit(_ r: EpochRecord, skipped: Int) {
        let line: String
        if options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            // A diverged epoch still prints its line: NaN and ∞ as the strings JavaScript uses.
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity",
                                                                          negativeInfinity: "-Infinity", nan: "NaN")
            line = (try? String(decoding: encoder.encode(r), as: UTF8.self)) ?? "{}"
        } else {
            line = String(format: "epoch %2d  train loss %.4f  acc %.2f%%  test loss %.4f  acc %.2f%%  %.2f s  %.0f img/s  lr %.4g",
                          r.epoch, r.train_loss, r.train_accuracy * 100, r.test_loss, r.test_accuracy * 100,
                          r.seconds, r.images_per_second, r.learning_rate)
                + (skipped > 0 ? "  (\(skipped) non-finite batches skipped)" : "")
        }
        print(line)
        fflush(nil)
        if let log = options.log { appendLine(line, to: log) }
    }

    func runMetadata() -> [String: String] {
        var m: [String: String] = ["backprop.seed": "\(seed)", "backprop.optimizer": options.optimizer]
        if let data = try? JSONEncoder().encode(records) { m["backprop.records"] = String(decoding: data, as: UTF8.self) }
        if let last = records.last { m["backprop.epoch"] = "\(last.epoch)"; m["backprop.test_accuracy"] = "\(last.test_accuracy)" }
        return m
    }

    func saveCheckpoint(epoch: Int) throws {
        var extra: [String: Tensor] = [:]
        for (k, v) in optimizer.state { extra["optimizer.\(k)"] = v }
        try ModelFile.save(model, architecture: architecture, to: options.checkpointPath,
                           metadata: runMetadata(), extraTensors: extra)
    }

    func writeReport(to path: String) throws {
        let svg = SVGReport.render(records, title: "backprop train — \(architecture.json)")
        try AtomicFile.write(Data(svg.utf8), to: path)
    }

    func nonFiniteLayer(_ input: Tensor) -> String {
        guard input.allFinite else { return "the input batch holds NaN or Inf" }
        if let sequential = model as? Sequential, let trace = try? sequential.trace(input) {
            for step in trace where !step.output.allFinite {
                return "first non-finite activation: layer \(step.layer)"
            }
        }
        return "activations finite; the loss overflowed"
    }
}

struct TrainingFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Number of rows whose arg-max equals the label.
func countCorrect(_ output: Tensor, _ labels: [Int32]) -> Int {
    let c = output.columnsPerRow, p = output.data
    var correct = 0
    for i in 0..<min(output.rows, labels.count) {
        let row = p + i * c
        var best = 0
        for j in 1..<c where row[j] > row[best] { best = j }
        if best == Int(labels[i]) { correct += 1 }
    }
    return correct
}

/// Mean loss and accuracy of `model` on `data`, in evaluation mode.
func evaluate(_ model: Layer, on data: Dataset, batchSize: Int, loss: some ClassLabelLoss,
              layout: BatchLayout) throws -> (Double, Double) {
    let wasTraining = model.isTraining
    model.eval()
    defer { model.isTraining = wasTraining }
    var batcher = try Batcher(data, batchSize: batchSize, shuffle: false, seed: 0, layout: layout)
    batcher.startEpoch(1)
    var total = 0.0, correct = 0, seen = 0
    while let b = batcher.next() {
        let out = try model.forward(b.input)
        let (value, _) = try loss(out, labels: b.labels)
        total += Double(value) * Double(b.labels.count)
        correct += countCorrect(out, b.labels)
        seen += b.labels.count
    }
    return (total / Double(max(seen, 1)), Double(correct) / Double(max(seen, 1)))
}

func appendLine(_ line: String, to path: String) {
    guard let handle = FileHandle(forWritingAtPath: path) ?? {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        return FileHandle(forWritingAtPath: path)
    }() else { return }
    handle.seekToEndOfFile()
    handle.write(Data((line + "\n").utf8))
    try? handle.close()
}
