import Backprop
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A labelled image data set held as bytes: `count` examples, each `featureCount` pixels
/// (`channels × rows × columns`, row-major, 0…255) and one label (0…255).
///
/// Pixels stay `UInt8` (47 MB for MNIST's training set instead of 188 MB as Float); the
/// `Batcher` converts one batch at a time into a reused Float tensor.
public struct Dataset: Sendable {
    /// All pixels, example after example: example i is `images[i*featureCount ..< (i+1)*featureCount]`.
    public let images: [UInt8]
    /// One label per example.
    public let labels: [UInt8]
    public let count: Int
    public let channels: Int
    public let rows: Int
    public let columns: Int
    /// Number of classes: the largest label + 1 (0 for an empty set).
    public let classCount: Int

    /// Pixels per example: `channels × rows × columns`.
    public var featureCount: Int { channels * rows * columns }

    /// Validates that `images` holds `labels.count` examples of `channels × rows × columns` pixels.
    public init(images: [UInt8], labels: [UInt8], rows: Int, columns: Int, channels: Int = 1) throws {
        guard rows > 0, columns > 0, channels > 0 else {
            throw BackpropError.invalidArgument("Dataset: image size \(channels) × \(rows) × \(columns) must be positive")
        }
        let (features, o1) = rows.multipliedReportingOverflow(by: columns)
        let (perExample, o2) = features.multipliedReportingOverflow(by: channels)
        let (total, o3) = perExample.multipliedReportingOverflow(by: labels.count)
        guard !o1, !o2, !o3, total == images.count else {
            throw BackpropError.shapeMismatch(where: "Dataset",
                                              detail: "\(labels.count) labels need \(labels.count) × \(channels) × \(rows) × \(columns) pixels, \(images.count) given")
        }
        self.images = images
        self.labels = labels
        self.count = labels.count
        self.rows = rows
        self.columns = columns
        self.channels = channels
        self.classCount = labels.max().map { Int($0) + 1 } ?? 0
    }

    /// The pixels of example `index` (checked).
    public func pixels(of index: Int) throws -> ArraySlice<UInt8> {
        guard index >= 0, index < count else {
            throw BackpropError.invalidArgument("example \(index) outside 0..<\(count)")
        }
        return images[(index * featureCount)..<((index + 1) * featureCount)]
    }

    /// The examples in `range` as a new data set (e.g. a validation split or `--limit`).
    public func subset(_ range: Range<Int>) throws -> Dataset {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw BackpropError.invalidArgument("subset \(range) outside 0..<\(count)")
        }
        let f = featureCount
        return try Dataset(images: Array(images[(range.lowerBound * f)..<(range.upperBound * f)]),
                           labels: Array(labels[range]), rows: rows, columns: columns, channels: channels)
    }

    // MARK: - Loading

    /// Loads an image IDX file and a label IDX file (each raw or gzip) and checks that they agree.
    public static func loadIDX(images imagesPath: String, labels labelsPath: String,
                               maxBytes: Int = IDX.defaultByteLimit) throws -> Dataset {
        let images = try IDX.readImages(path: imagesPath, maxBytes: maxBytes)
        let labels = try IDX.readLabels(path: labelsPath, maxBytes: maxBytes)
        guard labels.count == images.count else {
            throw BackpropError.badFile(path: labelsPath, offset: 4,
                                        reason: "holds \(labels.count) labels but \(imagesPath) holds \(images.count) images")
        }
        return try Dataset(images: images.pixels, labels: labels, rows: images.rows, columns: images.columns)
    }

    /// The standard MNIST file names, without the `.gz` suffix.
    public static let mnistFileNames = (
        trainImages: "train-images-idx3-ubyte", trainLabels: "train-labels-idx1-ubyte",
        testImages: "t10k-images-idx3-ubyte", testLabels: "t10k-labels-idx1-ubyte"
    )

    /// Loads MNIST (or Fashion-MNIST, which uses the same names) from `directory`, where each of
    /// the four standard files may be raw or `.gz` (`scripts/fetch-mnist` writes them).
    public static func loadMNIST(directory: String) throws -> (train: Dataset, test: Dataset) {
        let names = mnistFileNames
        func locate(_ name: String) throws -> String {
            // Also accept the dotted variant some mirrors use ("train-images.idx3-ubyte").
            let dotted = name.replacingFirst("-idx", with: ".idx")
            for candidate in [name, name + ".gz", dotted, dotted + ".gz"] {
                let path = directory.hasSuffix("/") ? directory + candidate : directory + "/" + candidate
                if access(path, F_OK) == 0 { return path }
            }
            throw BackpropError.io(path: directory,
                                   reason: "no \(name) or \(name).gz here (run scripts/fetch-mnist \(directory))")
        }
        let train = try loadIDX(images: locate(names.trainImages), labels: locate(names.trainLabels))
        let test = try loadIDX(images: locate(names.testImages), labels: locate(names.testLabels))
        guard test.rows == train.rows, test.columns == train.columns else {
            throw BackpropError.shapeMismatch(where: "Dataset.loadMNIST",
                                              detail: "training images are \(train.rows) × \(train.columns), test images \(test.rows) × \(test.columns)")
        }
        return (train, test)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = firstRange(of: target) else { return self }
        var s = self
        s.replaceSubrange(r, with: replacement)
        return s
    }
}
