import Backprop
import BackpropData
import BackpropTensorBoard
import Foundation

/// What `backprop train --tensorboard DIR` logs, with PyTorch's `SummaryWriter` (step = epoch
/// unless said otherwise):
/// - each epoch: `loss/train`, `loss/test`, `accuracy/train`, `accuracy/test`, `lr`,
///   `images_per_second` — the numbers of that epoch's `--json` line — and per parameter (its
///   `state_dict` name) `grad_norm/<name>` (the line's `gradient_norms`), histograms
///   `weight/<name>` (the values at the end of the epoch) and `grad/<name>` (the gradient of the
///   epoch's last batch, before clipping);
/// - every `--log-every` steps (step = batches since the start of epoch 1): `loss/step` (that
///   batch's loss) and `grad_norm/total` (its global gradient norm before clipping);
/// - recurrent models, each epoch: `hidden_grad_norm/tNN`, the mean ‖∂L/∂h_t‖ over a fixed batch
///   (the first 64 test images, plain cross-entropy) for t = 1…T, as `backprop grads` reports it;
/// - at the start: the model's graph (unless DIR already holds a run's files) and the run's
///   command line and settings as text (`flags`).
/// Records reach the file at the end of every epoch. With the environment variable
/// `BACKPROP_TENSORBOARD_TIMING=1`, `close()` prints the time spent in these calls to stderr
/// (scripts/tensorboard-cost reads it).
final class TrainingBoard {
    let writer: SummaryWriter
    let logEvery: Int
    /// DIR already held event files (a resumed run): its graph is there, not written again.
    let continuing: Bool
    /// Nanoseconds spent in `start`, `step`, `epoch` and `close`.
    private(set) var spent: UInt64 = 0
    /// The fixed batch of the hidden-state gradients (recurrent models only).
    private var probe: (input: Tensor, labels: [Int32])?
    /// The histograms of the last batch's gradients, written with the epoch's other records.
    private var gradientHistograms: [(String, Histogram)] = []

    /// Opens the log directory (creating it); an unusable one stops the run here, before training.
    init(directory: String, logEvery: Int, test: Dataset, architecture: Architecture) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        continuing = names.contains { $0.hasPrefix("events.out.tfevents.") }
        writer = try SummaryWriter(logDirectory: directory)
        try TrainingSession.checkWritable(writer.path, bytes: 1 << 20)
        self.logEvery = logEvery
        if case .recurrent = architecture, test.count > 0 {
            var batcher = try Batcher(test, batchSize: min(64, test.count), shuffle: false, seed: 0, layout: .sequence)
            batcher.startEpoch(1)
            if let b = batcher.next() { probe = (b.input.copy(), b.labels) }
        }
    }

    /// The graph (traced on one test image) and the flags; `step` is the epoch before the first.
    func start(model: Layer, architecture: Architecture, test: Dataset, settings: [(String, String)], step: Int) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { spent += DispatchTime.now().uptimeNanoseconds - t0 }
        var sample: Tensor?
        if test.count > 0 {
            var batcher = try Batcher(test, batchSize: 1, shuffle: false, seed: 0, layout: architecture.batchLayout)
            batcher.startEpoch(1)
            sample = batcher.next()?.input.copy()
        }
        if !continuing { try writer.addGraph(model, input: sample) }
        var text = "    " + CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ") + "\n\n"
        text += "| setting | value |\n|---|---|\n"
        for (k, v) in settings { text += "| \(k) | \(v) |\n" }
        try writer.addText("flags", text, step: step)
        try writer.flush()
    }

    /// After a batch's backward pass and health check, before clipping. `squares`: Σ‖g‖².
    func step(epoch: Int, batch: Int, batches: Int, loss: Float, squares: Double,
              parameters: [(name: String, parameter: Parameter)]) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { spent += DispatchTime.now().uptimeNanoseconds - t0 }
        let global = (epoch - 1) * batches + batch
        if global % logEvery == 0 {
            try writer.addScalar("loss/step", Double(loss), step: global)
            try writer.addScalar("grad_norm/total", squares.squareRoot(), step: global)
        }
        if batch == batches {
            gradientHistograms = parameters.compactMap { p in
                let g = p.parameter.grad
                return Histogram(UnsafeBufferPointer(start: g.data, count: g.count)).map { ("grad/" + p.name, $0) }
            }
        }
    }

    /// The epoch's records, then a flush.
    func epoch(_ r: EpochRecord, model: Layer, parameters: [(name: String, parameter: Parameter)]) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { spent += DispatchTime.now().uptimeNanoseconds - t0 }
        let e = r.epoch
        for (tag, value) in [("loss/train", r.train_loss), ("loss/test", r.test_loss),
                             ("accuracy/train", r.train_accuracy), ("accuracy/test", r.test_accuracy),
                             ("lr", r.learning_rate), ("images_per_second", r.images_per_second)] {
            try writer.addScalar(tag, value, step: e)
        }
        for p in parameters {
            if let norm = r.gradient_norms[p.name] { try writer.addScalar("grad_norm/" + p.name, norm, step: e) }
            try writer.addHistogram("weight/" + p.name, p.parameter.value, step: e)
        }
        for (tag, h) in gradientHistograms { try writer.addHistogram(tag, h, step: e) }
        gradientHistograms = []
        if let probe, let classifier = model as? SequenceClassifier {
            let wasTraining = model.isTraining
            model.train()
            model.zeroGrad()
            let output = try model.forward(probe.input)
            let (_, delta) = try SoftmaxCrossEntropy()(output, labels: probe.labels)
            _ = try model.backward(delta)
            model.zeroGrad()
            model.isTraining = wasTraining
            for (t, norm) in classifier.hiddenGradientNorms.enumerated() {
                try writer.addScalar(String(format: "hidden_grad_norm/t%02d", t + 1), Double(norm), step: e)
            }
        }
        try writer.flush()
    }

    func close() throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try writer.close()
        spent += DispatchTime.now().uptimeNanoseconds - t0
        if ProcessInfo.processInfo.environment["BACKPROP_TENSORBOARD_TIMING"] == "1" {
            FileHandle.standardError.write(Data(String(format: "tensorboard-timing: %.6f s in logging\n", Double(spent) / 1e9).utf8))
        }
    }
}
