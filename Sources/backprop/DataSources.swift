import Backprop
import BackpropData
import Foundation

/// Where `train` and `eval` read their images: a folder with the four MNIST-format IDX files
/// (MNIST, Fashion-MNIST, any set in that format), or CSV files of `label,pixel0,…` lines (the
/// Kaggle MNIST download: a header line, then a label and 784 pixels 0…255 per line).
enum DataSources {
    static let expected = "a folder with the four MNIST-format IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        + "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) or a CSV file of label,pixel0,…,pixelN lines (.csv or .csv.gz)"

    /// Fraction of a single CSV file held out as the test set (its last lines).
    static let heldOut = 0.1

    static func isCSV(_ path: String) -> Bool { path.hasSuffix(".csv") || path.hasSuffix(".csv.gz") }

    /// The training and test sets: `--train FILE --test FILE` (CSV files) when given, else
    /// `--data`: an IDX folder, or one CSV file whose last 10 % is held out as the test set.
    static func load(data: String, train: String? = nil, test: String? = nil) throws -> (train: Dataset, test: Dataset) {
        switch (train, test) {
        case let (train?, test?):
            let a = try readCSV(train), b = try readCSV(test)
            guard a.featureCount == b.featureCount else {
                throw BackpropError.badFile(path: test, offset: nil,
                                            reason: "\(b.featureCount) pixels per line but \(train) has \(a.featureCount)")
            }
            return (a, b)
        case (nil, nil):
            break
        default:
            throw BackpropError.invalidArgument("give both --train FILE and --test FILE, or --data")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory) else {
            throw BackpropError.io(path: data, reason: "does not exist; expected \(expected)")
        }
        if isDirectory.boolValue { return try Dataset.loadMNIST(directory: data) }
        guard isCSV(data) else {
            throw BackpropError.badFile(path: data, offset: nil, reason: "not a folder or a .csv file; expected \(expected)")
        }
        let all = try readCSV(data)
        guard all.count >= 2 else {
            throw BackpropError.badFile(path: data, offset: nil, reason: "\(all.count) example\(all.count == 1 ? "" : "s"): at least 2 are needed to hold out a test set")
        }
        let testCount = max(1, Int(Double(all.count) * heldOut))
        return (try all.subset(0..<(all.count - testCount)), try all.subset((all.count - testCount)..<all.count))
    }

    /// The test set alone for `eval`: a CSV file is read whole; a folder gives its t10k files.
    static func loadTest(data: String) throws -> Dataset {
        var isDirectory: ObjCBool = false
        if isCSV(data), FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory), !isDirectory.boolValue {
            return try readCSV(data)
        }
        return try load(data: data).test
    }

    static func readCSV(_ path: String) throws -> Dataset {
        guard isCSV(path) else {
            throw BackpropError.badFile(path: path, offset: nil, reason: "not a .csv or .csv.gz file; expected a CSV file of label,pixel0,…,pixelN lines")
        }
        return try CSV.read(path: path)
    }
}
