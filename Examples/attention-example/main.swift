// The attention example: a one-head self-attention classifier over MNIST rows (28 tokens of 28
// pixels), `AttentionClassifier` on the graph: batched matmul, softmax(QKᵀ/√D)V, LayerNorm on
// [N, T, D], differentiated by the graph. Adam with a cosine learning rate; prints per-epoch
// loss and accuracy and draws the attention map of one test digit into docs/attention-map.svg.
//
//     swift run -c release attention-example [--epochs 6] [--width 64] [--data data/mnist] [--out docs/attention-map.svg]
import Backprop
import BackpropData
import BackpropOptim
import Foundation

struct Options {
    var epochs = 6
    var width = 64
    var hidden = 128
    var batch = 64
    var lr: Float = 3e-3
    var data = "data/mnist"
    var out = "docs/attention-map.svg"

    init(_ arguments: [String]) throws {
        var i = 0
        func value() throws -> String {
            guard i + 1 < arguments.count else { throw BackpropError.invalidArgument("\(arguments[i]) needs a value") }
            i += 1
            return arguments[i]
        }
        func number(_ text: String) throws -> Int {
            guard let n = Int(text), n > 0 else { throw BackpropError.invalidArgument("\(arguments[i - 1]) needs a positive integer, got \(text)") }
            return n
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--epochs": epochs = try number(try value())
            case "--width": width = try number(try value())
            case "--hidden": hidden = try number(try value())
            case "--batch": batch = try number(try value())
            case "--lr":
                let text = try value()
                guard let x = Float(text), x > 0, x.isFinite else { throw BackpropError.invalidArgument("--lr needs a positive number, got \(text)") }
                lr = x
            case "--data": data = try value()
            case "--out": out = try value()
            default:
                throw BackpropError.invalidArgument(
                    "unknown argument \(arguments[i]) (options: --epochs N --width D --hidden H --batch N --lr X --data DIR --out FILE.svg)")
            }
            i += 1
        }
    }
}

/// Prints a line at once, also into a pipe or a file (progress of a long run).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

func seconds(since t0: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

/// Accuracy on `data` (no graph recorded), in batches of 1000.
func evaluate(_ model: AttentionClassifier, _ data: Dataset) throws -> (loss: Double, accuracy: Double) {
    var batcher = try Batcher(data, batchSize: 1000, shuffle: false, layout: .sequence, normalization: .mnist)
    var correct = 0, lossSum = 0.0
    try noGrad {
        while let b = batcher.next() {
            let labels = b.labels.map(Int.init)
            let logits = try model(Variable(b.input))
            lossSum += Double(try crossEntropy(logits, labels: labels, reduction: .sum).item())
            correct += zip(try argmax(logits), labels).filter { $0 == $1 }.count
        }
    }
    return (lossSum / Double(data.count), Double(correct) / Double(data.count))
}

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    let (train, test) = try Dataset.loadMNIST(directory: options.data)
    guard train.count > 0, test.count > 0 else {
        throw BackpropError.invalidArgument("\(options.data): needs training and test images, found \(train.count) and \(test.count)")
    }
    let model = try AttentionClassifier(tokens: train.rows, features: train.columns * train.channels,
                                        width: options.width, hidden: options.hidden, classes: 10, seed: 1)
    let parameterCount = model.parameters.reduce(0) { $0 + $1.value.count }
    say("\(model.summary): \(parameterCount) parameters; \(train.count) training and \(test.count) test images")
    let optimizer = try Adam(parameters: model.parameters, lr: options.lr)
    var batcher = try Batcher(train, batchSize: options.batch, shuffle: true, seed: 1, layout: .sequence, normalization: .mnist)
    let steps = options.epochs * batcher.batchesPerEpoch
    var step = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var lastAccuracy = 0.0
    for epoch in 1...options.epochs {
        let t0 = DispatchTime.now().uptimeNanoseconds
        batcher.startEpoch(epoch)
        var lossSum = 0.0, correct = 0, seen = 0
        while let b = batcher.next() {
            // Cosine decay from lr to 0 over the run, per step.
            optimizer.learningRate = options.lr * 0.5 * (1 + cos(Float.pi * Float(step) / Float(steps)))
            step += 1
            let labels = b.labels.map(Int.init)
            optimizer.zeroGrad()
            let logits = try model(Variable(b.input))
            let loss = try crossEntropy(logits, labels: labels)
            try loss.backward()
            try optimizer.step()
            lossSum += Double(try loss.item()) * Double(labels.count)
            correct += zip(try argmax(logits), labels).filter { $0 == $1 }.count
            seen += labels.count
        }
        let trainTime = seconds(since: t0)
        let (testLoss, testAccuracy) = try evaluate(model, test)
        lastAccuracy = testAccuracy
        say(String(format: "epoch %d/%d  train loss %.4f  train accuracy %.2f %%  test loss %.4f  test accuracy %.2f %%  (%.1f s)",
                     epoch, options.epochs, lossSum / Double(seen), 100 * Double(correct) / Double(seen),
                     testLoss, 100 * testAccuracy, trainTime))
    }
    say(String(format: "test accuracy %.2f %% after %d epochs, %.0f s in all", 100 * lastAccuracy, options.epochs, seconds(since: start)))

    // The attention map of the first test digit.
    let index = 0
    let pixels = try test.pixels(of: index)
    let input = try Tensor(zeros: [1, test.rows, test.columns * test.channels])
    Normalization.mnist.apply(pixels, into: input.data)
    let (logits, attention) = try noGrad { try model.forward(Variable(input)) }
    let predicted = try argmax(logits)[0]
    let svg = AttentionPicture.svg(digit: Array(pixels), rows: test.rows, columns: test.columns,
                                   attention: attention.value.scalars, tokens: test.rows,
                                   title: "test image \(index): label \(test.labels[index]), predicted \(predicted)")
    let url = URL(fileURLWithPath: options.out)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(svg.utf8).write(to: url, options: .atomic)
    say("attention map of test image \(index) (label \(test.labels[index]), predicted \(predicted)) written to \(options.out)")
} catch {
    FileHandle.standardError.write(Data("attention-example: \(error)\n".utf8))
    exit(1)
}
