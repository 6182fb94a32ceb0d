// The autoencoder example: `TiedAutoencoder` on MNIST, 784 → 64 → 784 with the decoder weight the
// encoder weight transposed (one parameter used twice in the graph; its gradient is the sum of
// both uses'). Mean squared error, Adam; prints the per-epoch loss and draws test digits above
// their reconstructions into docs/autoencoder-reconstructions.svg.
//
//     swift run -c release autoencoder-example [--epochs 5] [--hidden 64] [--data data/mnist] [--out docs/autoencoder-reconstructions.svg]
import Backprop
import BackpropData
import BackpropOptim
import Foundation

struct Options {
    var epochs = 5
    var hidden = 64
    var batch = 64
    var lr: Float = 2e-3
    var data = "data/mnist"
    var out = "docs/autoencoder-reconstructions.svg"

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
                    "unknown argument \(arguments[i]) (options: --epochs N --hidden H --batch N --lr X --data DIR --out FILE.svg)")
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

/// Mean squared reconstruction error per pixel on `data` (no graph recorded).
func evaluate(_ model: TiedAutoencoder, _ data: Dataset) throws -> Double {
    var batcher = try Batcher(data, batchSize: 1000, shuffle: false, layout: .flat, normalization: .unit)
    var total = 0.0
    try noGrad {
        while let b = batcher.next() {
            let x = Variable(b.input)
            total += Double(try mse(try model(x), x, reduction: .sum).item())
        }
    }
    return total / Double(data.count * data.featureCount)
}

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    let (train, test) = try Dataset.loadMNIST(directory: options.data)
    guard train.count > 0, test.count > 0 else {
        throw BackpropError.invalidArgument("\(options.data): needs training and test images, found \(train.count) and \(test.count)")
    }
    let model = try TiedAutoencoder(features: train.featureCount, hidden: options.hidden, seed: 1)
    say("\(model.summary): \(model.parameters.reduce(0) { $0 + $1.value.count }) parameters (W used by encoder and decoder)")
    let optimizer = try Adam(parameters: model.parameters, lr: options.lr)
    var batcher = try Batcher(train, batchSize: options.batch, shuffle: true, seed: 1, layout: .flat, normalization: .unit)
    let start = DispatchTime.now().uptimeNanoseconds
    var testError = 0.0
    for epoch in 1...options.epochs {
        let t0 = DispatchTime.now().uptimeNanoseconds
        batcher.startEpoch(epoch)
        var lossSum = 0.0, seen = 0
        while let b = batcher.next() {
            optimizer.zeroGrad()
            let x = Variable(b.input)   // the target too: x̂ should be x
            let loss = try mse(try model(x), x)
            try loss.backward()
            try optimizer.step()
            lossSum += Double(try loss.item()) * Double(b.labels.count)
            seen += b.labels.count
        }
        let trainTime = seconds(since: t0)
        testError = try evaluate(model, test)
        say(String(format: "epoch %d/%d  train MSE %.5f  test MSE %.5f  (%.1f s)",
                     epoch, options.epochs, lossSum / Double(seen), testError, trainTime))
    }
    say(String(format: "test MSE %.5f per pixel after %d epochs, %.0f s in all", testError, options.epochs, seconds(since: start)))

    // The first test image of each class, above its reconstruction.
    var picked: [Int] = []
    for digit in 0..<10 {
        if let i = (0..<test.count).first(where: { Int(test.labels[$0]) == digit }) { picked.append(i) }
    }
    let f = test.featureCount
    let input = try Tensor(zeros: [picked.count, f])
    for (r, i) in picked.enumerated() { Normalization.unit.apply(try test.pixels(of: i), into: input.data + r * f) }
    let output = try noGrad { try model(Variable(input)) }.value.scalars
    let originals = input.scalars
    let svg = ReconstructionPicture.svg(originals: originals, reconstructions: output, count: picked.count,
                                        rows: test.rows, columns: test.columns,
                                        title: String(format: "tied-weight autoencoder 784 → %d → 784, test MSE %.4f", options.hidden, testError))
    let url = URL(fileURLWithPath: options.out)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(svg.utf8).write(to: url, options: .atomic)
    say("\(picked.count) test digits and their reconstructions written to \(options.out)")
} catch {
    FileHandle.standardError.write(Data("autoencoder-example: \(error)\n".utf8))
    exit(1)
}
