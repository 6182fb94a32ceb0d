import ArgumentParser
import Backprop
import BackpropData
import BackpropMPI
import BackpropOptim
import Foundation

/// `backprop train`: trains a classifier on an MNIST-format data set, printing a progress line
/// (terminal only), one summary line per epoch (or JSON lines), writing checkpoints each epoch,
/// the model file at the end and an SVG report.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a classifier on MNIST-format data.")

    @Option(help: "Folder with the four MNIST-format IDX files (raw or .gz), or a CSV file of label,pixel0,… lines (its last 10% is the test set).") var data = "data/mnist"
    @Option(name: .customLong("train"), help: "Training CSV file (label,pixel0,… lines), with --test instead of --data.") var trainFile: String?
    @Option(name: .customLong("test"), help: "Test CSV file, with --train.") var testFile: String?
    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("optimizer"), help: "Optimizer: sgd, adam, adamw, rmsprop (default: sgd; adam for rnn, lstm, gru).") var optimizerName: String?
    @Option(help: "Learning rate (default: 0.05 for sgd, 0.002 for rnn, lstm, gru, 0.001 otherwise).") var lr: Float?
    @Option(help: "Momentum (sgd, rmsprop).") var momentum: Float = 0.9
    @Option(help: "Weight decay.") var weightDecay: Float = 0
    @Option(help: "Learning-rate schedule over epochs: cosine, step, none.") var schedule = "cosine"
    @Option(help: "Batch size (under mpirun: the global batch, split over the ranks).") var batch = 128
    @Option(help: "Epochs.") var epochs = 10
    @Option(name: .customLong("seed"), help: "Seed for initialisation, shuffling and dropout (default 1; --resume keeps the checkpoint's).") var seedOption: UInt64?
    @Option(help: "OpenBLAS threads (default: OpenBLAS's choice).") var threads: Int?
    @Option(help: "Clip the global gradient norm to this value (default: 1 for rnn, lstm, gru; 0 turns clipping off).") var clipGradNorm: Float?
    @Option(help: "Label smoothing for the cross-entropy.") var labelSmoothing: Float = 0
    @Option(help: "Use only the first N training images (0: all).") var limit = 0
    @Option(help: "Model file to write at the end.") var out = "model.safetensors"
    @Option(help: "Checkpoint written (atomically) after every epoch (default: OUT with .checkpoint before the extension).") var checkpoint: String?
    @Option(help: "Resume from a checkpoint written by an earlier run.") var resume: String?
    @Option(help: "SVG plot of loss and accuracy per epoch.") var report: String?
    @Option(help: "Append every epoch's summary line to this file.") var log: String?
    @Flag(help: "Skip a batch whose loss or gradients are not finite instead of stopping.") var skipNonfinite = false
    @Flag(help: "One JSON object per epoch on standard output instead of text.") var json = false
    @Option(help: "Write TensorBoard event files to this folder (created if missing; --resume continues the run).") var tensorboard: String?
    @Option(help: "With --tensorboard: log the step loss and gradient norm every N steps.") var logEvery = 50

    func validate() throws {
        guard batch >= 1, batch <= 65536 else { throw ValidationError("--batch must be in 1…65536, got \(batch)") }
        guard epochs >= 1, epochs <= 100_000 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        if let lr { guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be positive, got \(lr)") } }
        guard momentum >= 0, momentum < 1 else { throw ValidationError("--momentum must be in [0, 1), got \(momentum)") }
        guard weightDecay >= 0 else { throw ValidationError("--weight-decay must be ≥ 0, got \(weightDecay)") }
        guard ["cosine", "step", "none"].contains(schedule) else { throw ValidationError("--schedule must be cosine, step or none") }
        guard ["sgd", "adam", "adamw", "rmsprop"].contains(optimizer) else {
            throw ValidationError("--optimizer must be sgd, adam, adamw or rmsprop, got \(optimizer)")
        }
        if let threads { guard threads >= 1, threads <= 1024 else { throw ValidationError("--threads must be in 1…1024") } }
        if let clipGradNorm { guard clipGradNorm >= 0, clipGradNorm.isFinite else { throw ValidationError("--clip-grad-norm must be ≥ 0 (0: off)") } }
        guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
        guard logEvery >= 1 else { throw ValidationError("--log-every must be at least 1, got \(logEvery)") }
    }

    func run() throws {
        BLAS.ensureReady()
        if let threads { BLAS.threadCount = threads }
        // Under mpirun: one rank of data-parallel training (DistributedTraining.swift).
        if let world = try Communicator.launchedByMPI() { return try runDistributed(world) }
        let session = try TrainingSession(options: self)
        try session.run()
    }

    /// The optimizer: `--optimizer`, else SGD for mlp and lenet and Adam for recurrent models.
    var optimizer: String {
        optimizerName ?? (["rnn", "lstm", "gru"].contains(model.arch) ? "adam" : "sgd")
    }

    var checkpointPath: String {
        if let checkpoint { return checkpoint }
        let url = URL(fileURLWithPath: out)
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().path
        return ext.isEmpty ? stem + ".checkpoint" : stem + ".checkpoint." + ext
    }
}
