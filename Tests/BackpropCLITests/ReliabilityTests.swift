import Foundation
import XCTest
import Backprop
import BackpropData
#if canImport(Glibc)
import Glibc
#endif

/// Faults and numerical health of `backprop train`, run as a subprocess: kill -9 and resume,
/// determinism, unwritable outputs and full disks, divergence, gradient norms and clipping.
final class ReliabilityTests: XCTestCase {
    /// The float32 tensors of a safetensors file (metadata ignored: it holds timings).
    func tensors(_ path: String) throws -> [String: [UInt32]] {
        let f = try SafetensorsFile.read(path: path)
        return f.tensors.mapValues { t in (0..<t.count).map { t.data[$0].bitPattern } }
    }

    func jsonLines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], String($0))
        }
    }

    /// Small enough for a debug build, long enough per epoch (≈ 0.1–0.3 s) that the run can be
    /// killed between its first checkpoint and its end.
    func trainArguments(_ dir: TempDir, out: String, epochs: Int = 4) -> [String] {
        ["train", "--data", dir.path, "--layers", "16,96,96,2", "--batch", "4", "--epochs", "\(epochs)",
         "--lr", "0.02", "--seed", "11", "--threads", "1", "--out", out, "--json"]
    }

    func testKillNineAfterACheckpointThenResumeGivesTheSameModelBitForBit() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path, train: 1200, test: 40)
        let reference = dir.file("ref.safetensors")
        let r = try CLI.run(trainArguments(dir, out: reference))
        XCTAssertEqual(r.status, 0, r.stderr)

        // Second run: killed with SIGKILL as soon as its first checkpoint exists.
        let killed = dir.file("killed.safetensors")
        let checkpoint = dir.file("killed.checkpoint.safetensors")
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = trainArguments(dir, out: killed)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while access(checkpoint, F_OK) != 0, process.isRunning, Date() < deadline { usleep(500) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run ended before it could be killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed), "killed before the model file was written")
        let epochDone = try XCTUnwrap(SafetensorsFile.read(path: checkpoint).metadata["backprop.epoch"].flatMap(Int.init))
        XCTAssertLessThan(epochDone, 4)

        let resumed = try CLI.run(trainArguments(dir, out: killed) + ["--resume", checkpoint])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try jsonLines(resumed.stdout).count, 4 - epochDone, "only the remaining epochs run")
        let a = try tensors(reference), b = try tensors(killed)
        XCTAssertEqual(a.keys.sorted(), ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"])
        XCTAssertTrue(a == b, "resumed model differs from the uninterrupted one")
        // The records carried over: the same training losses for all four epochs.
        func losses(_ path: String) throws -> [Double] {
            let text = try XCTUnwrap(SafetensorsFile.read(path: path).metadata["backprop.records"])
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
                .map { try XCTUnwrap($0["train_loss"] as? Double) }
        }
        XCTAssertEqual(try losses(reference), try losses(killed))
        XCTAssertEqual(try losses(killed).count, 4)

        // Killed after the last checkpoint but before the model file: resuming writes the model.
        try FileManager.default.removeItem(atPath: killed)
        let again = try CLI.run(trainArguments(dir, out: killed) + ["--resume", dir.file("ref.checkpoint.safetensors")])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(try tensors(killed) == a)
    }

    func testSameSeedAndThreadsGiveBitIdenticalLosses() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path, train: 300, test: 50)
        var runs: [[String]] = []
        for k in 0..<2 {
            let r = try CLI.run(["train", "--data", dir.path, "--layers", "16,32,2", "--epochs", "3", "--batch", "16",
                                 "--optimizer", "adam", "--seed", "7", "--threads", "1", "--out", dir.file("m\(k).safetensors"), "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            // Compare the printed text of the losses: every digit JSONEncoder writes must agree.
            runs.append(r.stdout.split(separator: "\n").map { line in
                line.split(separator: ",").filter { $0.contains("_loss\"") || $0.contains("accuracy\"") }.joined(separator: ",")
            })
        }
        XCTAssertEqual(runs[0].count, 3)
        XCTAssertTrue(runs[0].allSatisfy { $0.contains("train_loss") && $0.contains("test_loss") }, "\(runs[0])")
        XCTAssertEqual(runs[0], runs[1])
        XCTAssertTrue(try tensors(dir.file("m0.safetensors")) == tensors(dir.file("m1.safetensors")))
    }

    /// Noise images with random labels over 10 classes: nothing to learn, so the gradients
    /// never vanish and a huge learning rate makes the weights explode.
    func writeNoiseDataset(into dir: String, train: Int, test: Int) throws {
        var rng = SeededGenerator(seed: 99)
        for (prefix, n) in [("train", train), ("t10k", test)] {
            let pixels = (0..<(n * 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let labels = (0..<n).map { _ in UInt8(rng.next() % 10) }
            try IDX.write(IDX.Contents(dimensions: [n, 4, 4], bytes: pixels), to: "\(dir)/\(prefix)-images-idx3-ubyte")
            try IDX.write(IDX.Contents(dimensions: [n], bytes: labels), to: "\(dir)/\(prefix)-labels-idx1-ubyte")
        }
    }

    func testDivergenceStopsWithEpochBatchAndLayer() throws {
        let dir = try TempDir()
        try writeNoiseDataset(into: dir.path, train: 200, test: 20)
        let out = dir.file("m.safetensors")
        let r = try CLI.run(["train", "--data", dir.path, "--layers", "16,32,10", "--activation", "leaky_relu",
                             "--epochs", "2", "--batch", "8", "--lr", "1e6", "--out", out])
        XCTAssertNotEqual(r.status, 0)
        // e.g. "loss is -nan at epoch 1, batch 5 (first non-finite activation: layer 2: Dense(32 → 10))"
        XCTAssertTrue(r.stderr.contains("loss is "), r.stderr)
        XCTAssertTrue(r.stderr.contains("nan") || r.stderr.contains("inf"), r.stderr)
        XCTAssertTrue(r.stderr.contains("at epoch 1, batch "), r.stderr)
        XCTAssertTrue(r.stderr.contains("first non-finite activation: layer 2: Dense(32 → 10)"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no model file from a diverged run")

        // --skip-nonfinite: the run goes on and reports how many batches it skipped.
        let s = try CLI.run(["train", "--data", dir.path, "--layers", "16,32,10", "--activation", "leaky_relu",
                             "--epochs", "1", "--batch", "8", "--lr", "1e6", "--out", out, "--skip-nonfinite"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("non-finite batches skipped"), s.stdout)
    }

    func testGradientNormsAndClipping() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path, train: 256, test: 32)
        func run(_ extra: [String]) throws -> [[String: Any]] {
            let r = try CLI.run(["train", "--data", dir.path, "--layers", "16,8,2", "--epochs", "2", "--batch", "16",
                                 "--lr", "0.05", "--schedule", "none", "--seed", "3", "--threads", "1",
                                 "--out", dir.file("m.safetensors"), "--json"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try jsonLines(r.stdout)
        }
        let plain = try run([])
        XCTAssertEqual(plain.count, 2)
        let norms = try XCTUnwrap(plain[0]["gradient_norms"] as? [String: Double])
        XCTAssertEqual(norms.keys.sorted(), ["0.bias", "0.weight", "2.bias", "2.weight"])
        for (name, v) in norms { XCTAssertTrue(v.isFinite && v > 0, "\(name): \(v)") }
        // A clip far above every gradient norm changes nothing; a tiny one nearly freezes training.
        let loose = try run(["--clip-grad-norm", "1e9"])
        let tight = try run(["--clip-grad-norm", "1e-6"])
        func losses(_ records: [[String: Any]]) -> [Double] { records.compactMap { $0["train_loss"] as? Double } }
        XCTAssertEqual(losses(loose), losses(plain))
        XCTAssertEqual(losses(tight)[1], losses(tight)[0], accuracy: 1e-3, "steps of size ≤ 0.05 · 1e-6 (with momentum ×10)")
        XCTAssertLessThan(losses(plain)[1], losses(tight)[1] - 0.05, "unclipped training learns")
    }

    /// An output folder that cannot be written: the run stops before training, with the path and
    /// the reason, and leaves the files there untouched.
    func testUnwritableOutputFailsEarly() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path, train: 64, test: 16)
        let folder: String
        if geteuid() == 0 {
            folder = "/proc"   // root ignores permission bits; nobody can create files in /proc
        } else {
            folder = dir.file("readonly")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: folder + "/m.safetensors"))
            chmod(folder, 0o555)
        }
        defer { chmod(folder, 0o755) }
        let started = Date()
        let r = try CLI.run(["train", "--data", dir.path, "--layers", "16,8,2", "--epochs", "50",
                             "--out", folder + "/m.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(folder)/m.safetensors: cannot write in \(folder)"), r.stderr)
        XCTAssertEqual(r.stdout, "", "no epoch ran")
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        if geteuid() != 0 {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folder + "/m.safetensors")), Data([1, 2, 3]))
        }
    }

    /// A full disk, simulated with a file-size limit (`ulimit -f`, SIGXFSZ ignored so writes fail
    /// with EFBIG): the run stops before training with a clear message; the existing model file
    /// and checkpoint are untouched and no temporary file is left.
    func testFullDiskFailsEarlyAndKeepsTheExistingModel() throws {
        let dir = try TempDir()
        try writeTinyDataset(into: dir.path, train: 64, test: 16)
        let out = dir.file("m.safetensors")
        let old = [UInt8]((0..<3000).map { UInt8($0 % 251) })
        try Data(old).write(to: URL(fileURLWithPath: out))
        let command = "trap '' XFSZ; ulimit -f 2; exec \"$0\" \"$@\""   // 2 KiB per file
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command, CLI.executable.path, "train", "--data", dir.path,
                             "--layers", "16,64,2", "--epochs", "2", "--out", out]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if message.contains("ThreadSanitizer") {
            // TSan's runtime itself dies (SIGBUS) under a file-size limit, before our code runs.
            throw XCTSkip("the ThreadSanitizer runtime does not run under ulimit -f")
        }
        XCTAssertNotEqual(process.terminationStatus, 0)
        XCTAssertTrue(message.contains("File too large") && message.contains("disk full"), message)
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))), old)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left, [], "no temporary or probe file left")
    }
}
