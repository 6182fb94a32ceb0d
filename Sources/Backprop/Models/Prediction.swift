import Foundation

// Prediction and metrics: argmax, predict, accuracy and the confusion matrix.

extension Tensor {
    /// The index of the largest value of each row (`torch.argmax(x, dim=1)` for `[N, C]`; the
    /// values after the first dimension count as one row for higher ranks). A rank-1 tensor is
    /// one row. Ties give the first index; a NaN counts as the largest value (as in PyTorch).
    public func argmax() -> [Int] {
        let rows = rank <= 1 ? 1 : self.rows
        let c = rank <= 1 ? count : columnsPerRow
        guard rows > 0, c > 0 else { return [] }
        var result = [Int](repeating: 0, count: rows)
        for r in 0..<rows {
            let p = data + r * c
            var best = 0
            var value = p[0]
            if !value.isNaN {
                for j in 1..<c where p[j] > value || p[j].isNaN {
                    best = j
                    value = p[j]
                    if value.isNaN { break }
                }
            }
            result[r] = best
        }
        return result
    }

    /// Softmax over each row of `[N, C]`, as a new tensor (`torch.softmax(x, dim=1)`).
    public func softmaxRows() throws -> Tensor {
        guard rank == 2, shape[1] > 0 else {
            throw BackpropError.shapeMismatch(where: "softmaxRows", detail: "expected [N, C] with C > 0, got \(shape)")
        }
        let out = try Tensor(zeros: shape)
        let c = shape[1]
        for r in 0..<shape[0] {
            let (_, sum) = exponentiateShifted(data + r * c, into: out.data + r * c, count: c)
            let inv = 1 / sum
            for j in 0..<c { out.data[r * c + j] *= inv }
        }
        return out
    }
}

extension Layer {
    /// The model's output for `input` in evaluation mode, copied so that it outlives the next
    /// forward (`evaluationForward` without the copy).
    public func inferenceOutput(_ input: Tensor) throws -> Tensor {
        try evaluationForward(input).copy()
    }

    /// The class each sample of the batch `input` is predicted to be: the argmax of the model's
    /// `[N, C]` output, in evaluation mode.
    public func predict(_ input: Tensor) throws -> [Int] {
        let out = try evaluationForward(input)
        guard out.rank == 2 else {
            throw BackpropError.shapeMismatch(where: "predict", detail: "\(summary) gives \(out.shape); [N, classes] expected")
        }
        return out.argmax()
    }

    /// Class probabilities `[N, C]` for the batch `input`: softmax of the model's output, in
    /// evaluation mode.
    public func predictProbabilities(_ input: Tensor) throws -> Tensor {
        try evaluationForward(input).softmaxRows()
    }

    /// The class and the class probabilities of one sample, given without its batch dimension
    /// (`[784]`, `[1, 28, 28]`, `[T, F]`: the shape of one row of a batch).
    public func predict(sample: Tensor) throws -> (label: Int, probabilities: [Float]) {
        let batch = try sample.copy().reshaped([1] + sample.shape)
        let p = try predictProbabilities(batch)
        return (p.argmax().first ?? 0, p.scalars)
    }
}

/// The fraction of `predictions` equal to `labels` (0 for none); the counts must match.
public func accuracy(predictions: [Int], labels: [Int32]) throws -> Double {
    guard predictions.count == labels.count else {
        throw BackpropError.shapeMismatch(where: "accuracy", detail: "\(predictions.count) predictions for \(labels.count) labels")
    }
    guard !labels.isEmpty else { return 0 }
    let correct = zip(predictions, labels).reduce(0) { $0 + ($1.0 == Int($1.1) ? 1 : 0) }
    return Double(correct) / Double(labels.count)
}

/// The fraction of rows of `logits` `[N, C]` whose argmax is the label.
public func accuracy(logits: Tensor, labels: [Int32]) throws -> Double {
    guard logits.rank == 2 else {
        throw BackpropError.shapeMismatch(where: "accuracy", detail: "logits must be [N, C], got \(logits.shape)")
    }
    return try accuracy(predictions: logits.argmax(), labels: labels)
}

/// Counts of (true class, predicted class) pairs: `counts[t][p]`, rows the labels, columns the
/// predictions (scikit-learn's `confusion_matrix` layout).
public struct ConfusionMatrix: Sendable, Equatable, CustomStringConvertible {
    public let classes: Int
    public private(set) var counts: [[Int]]

    public init(classes: Int) throws {
        guard classes >= 1, classes <= 1 << 16 else {
            throw BackpropError.invalidArgument("ConfusionMatrix: classes \(classes) must be in 1…65536")
        }
        self.classes = classes
        counts = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    /// Adds one batch of predictions and labels (both in `0..<classes`).
    public mutating func add(predictions: [Int], labels: [Int32]) throws {
        guard predictions.count == labels.count else {
            throw BackpropError.shapeMismatch(where: "ConfusionMatrix", detail: "\(predictions.count) predictions for \(labels.count) labels")
        }
        for (i, (p, t)) in zip(predictions, labels).enumerated() {
            guard p >= 0, p < classes, t >= 0, Int(t) < classes else {
                throw BackpropError.invalidArgument("ConfusionMatrix: sample \(i) has label \(t) and prediction \(p); both must be in 0..<\(classes)")
            }
        }
        for (p, t) in zip(predictions, labels) { counts[Int(t)][p] += 1 }
    }

    /// Adds the argmax of each row of `logits` against `labels`.
    public mutating func add(logits: Tensor, labels: [Int32]) throws {
        guard logits.rank == 2 else {
            throw BackpropError.shapeMismatch(where: "ConfusionMatrix", detail: "logits must be [N, C], got \(logits.shape)")
        }
        try add(predictions: logits.argmax(), labels: labels)
    }

    /// Samples counted.
    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }

    /// Correct predictions over all samples (0 when empty).
    public var accuracy: Double {
        let t = total
        return t == 0 ? 0 : Double((0..<classes).reduce(0) { $0 + counts[$1][$1] }) / Double(t)
    }

    /// For each class, the fraction of its samples predicted correctly (recall); nil for a class
    /// with no samples.
    public var perClassAccuracy: [Double?] {
        (0..<classes).map { c in
            let n = counts[c].reduce(0, +)
            return n == 0 ? nil : Double(counts[c][c]) / Double(n)
        }
    }

    /// A table: one row per true class, one column per predicted class, then the class's accuracy.
    public var description: String {
        let width = max(String(counts.flatMap { $0 }.max() ?? 0).count, String(classes - 1).count, 3)
        func pad(_ s: String) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
        var lines = ["true\\pred " + (0..<classes).map { pad("\($0)") }.joined(separator: " ") + "  accuracy"]
        for c in 0..<classes {
            let acc = perClassAccuracy[c].map { String(format: "%.2f%%", $0 * 100) } ?? "-"
            lines.append(String(repeating: " ", count: max(0, 9 - String(c).count)) + "\(c) "
                         + counts[c].map { pad("\($0)") }.joined(separator: " ") + "  " + acc)
        }
        return lines.joined(separator: "\n")
    }
}
