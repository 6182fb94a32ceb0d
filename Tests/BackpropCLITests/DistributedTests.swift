import Foundation
import XCTest
import Backprop

/// `mpirun -np N backprop train`: the same model as one process, a defined split of a global
/// batch that N does not divide, clear errors for ranks started differently or diverging, and
/// a killed rank ending the job with the checkpoint intact and resumable with any N.
/// Skipped (with the reason) where Open MPI's `mpirun` is not installed.
final class DistributedTests: XCTestCase {
    static let mpirun: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    func mpirunPath() throws -> String {
        guard let path = Self.mpirun else {
            throw XCTSkip("mpirun not found on PATH: install openmpi-bin (bash scripts/install-deps) to run the distributed tests")
        }
        return path
    }

    /// Runs `mpirun` with the given arguments (root allowed, more ranks than cores allowed),
    /// killing it after `timeout` seconds (a hang fails the test instead of stalling CI).
    func mpi(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 120,
             whileRunning: ((Process) throws -> Void)? = nil) throws -> (result: CLIResult, seconds: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try mpirunPath())
        process.arguments = ["--oversubscribe"] + arguments
        var env = CLI.inheritedEnvironment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        final class Box: @unchecked Sendable { var data = Data() }
        let outBox = Box(), errBox = Box()
        let group = DispatchGroup()
        try process.run()
        group.enter()
        DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        var started = DispatchTime.now().uptimeNanoseconds
        if let whileRunning {
            try whileRunning(process)
            started = DispatchTime.now().uptimeNanoseconds
        }
        process.waitUntilExit()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        watchdog.cancel()
        group.wait()
        XCTAssertFalse(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL,
                       "mpirun \(arguments.joined(separator: " ")) did not end within \(timeout) s")
        return (CLIResult(status: process.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self),
                          stderr: String(decoding: errBox.data, as: UTF8.self)), seconds)
    }

    /// Every tensor of `b` within `tolerance` × its largest magnitude of `a`'s.
    func assertClose(_ a: String, _ b: String, tolerance: Float, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try ModelFile.load(a).model.stateDict, y = try ModelFile.load(b).model.stateDict
        XCTAssertEqual(x.map(\.name), y.map(\.name), file: file, line: line)
        for (s, t) in zip(x, y) {
            var largest: Float = 0, difference: Float = 0
            for i in 0..<s.tensor.count {
                largest = max(largest, abs(s.tensor.data[i]))
                difference = max(difference, abs(s.tensor.data[i] - t.tensor.data[i]))
            }
            XCTAssertLessThanOrEqual(difference, tolerance * max(largest, 1e-30),
                                     "\(s.name): differs by \(difference), largest magnitude \(largest)", file: file, line: line)
        }
    }

    func assertIdentical(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try ModelFile.load(a).model.stateDict, y = try ModelFile.load(b).model.stateDict
        for (s, t) in zip(x, y) {
            XCTAssertTrue((0..<s.tensor.count).allSatisfy { s.tensor.data[$0].bitPattern == t.tensor.data[$0].bitPattern },
                          "\(s.name) differs", file: file, line: line)
        }
    }

    func data(_ dir: TempDir) throws -> String {
        let path = dir.file("data")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try writeTinyDataset(into: path, train: 300, test: 100)
        return path
    }

    func testTwoRanksMatchOneProcessAfter16StepsAndOnlyRankZeroPrints() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        let common = ["train", "--data", data, "--limit", "256", "--batch", "16", "--epochs", "1", "--seed", "5", "--threads", "1"]
        let one = try CLI.run(common + ["--out", dir.file("one.safetensors")])
        XCTAssertEqual(one.status, 0, one.stderr)
        let (two, _) = try mpi(["-np", "2", CLI.executable.path] + common + ["--out", dir.file("two.safetensors"),
                                                                           "--log", dir.file("two.log")])
        XCTAssertEqual(two.status, 0, two.stdout + two.stderr)
        // 256 / 16 = 16 steps; only the summation order differs (and the replica check passed).
        try assertClose(dir.file("one.safetensors"), dir.file("two.safetensors"), tolerance: 1e-4)
        XCTAssertEqual(two.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("epoch ") }.count, 1,
                       "rank 0 alone prints:\n\(two.stdout)")
        let log = try String(contentsOfFile: dir.file("two.log"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 1, "rank 0 alone logs")
        // Same loss and accuracy as the single process (reduced over the ranks).
        let metrics = { (s: String) in s.split(separator: "\n").first { $0.hasPrefix("epoch ") }.map { String($0.prefix(60)) } }
        XCTAssertEqual(metrics(one.stdout), metrics(two.stdout))
    }

    func testGlobalBatchNotDivisibleByRanks() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        // 15 rows over 2 ranks (8 + 7), and 2 rows over 3 ranks (1 + 1 + 0: rank 2 contributes nothing).
        for (batch, ranks, limit) in [(15, 2, 240), (2, 3, 40)] {
            let common = ["train", "--data", data, "--limit", "\(limit)", "--batch", "\(batch)", "--epochs", "1", "--threads", "1"]
            let one = try CLI.run(common + ["--out", dir.file("one-\(batch).safetensors")])
            XCTAssertEqual(one.status, 0, one.stderr)
            let (n, _) = try mpi(["-np", "\(ranks)", CLI.executable.path] + common + ["--out", dir.file("n-\(batch).safetensors")])
            XCTAssertEqual(n.status, 0, n.stdout + n.stderr)
            try assertClose(dir.file("one-\(batch).safetensors"), dir.file("n-\(batch).safetensors"), tolerance: 1e-4)
        }
    }

    func testRanksWithDifferentFlagsStopBeforeTraining() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        let common = ["train", "--data", data, "--limit", "64", "--epochs", "1", "--out", dir.file("m.safetensors")]
        let (r, seconds) = try mpi(["-np", "1", CLI.executable.path] + common + ["--lr", "0.1", ":",
                                    "-np", "1", CLI.executable.path] + common + ["--lr", "0.2"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("command line (flags) of rank 1 differs from rank 0's"), r.stderr)
        XCTAssertFalse(r.stdout.contains("epoch "), "no training: \(r.stdout)")
        XCTAssertLessThan(seconds, 30)
    }

    func testRanksWithDifferentDataStopBeforeTraining() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        // Same flags, different files behind them: rank 1 runs in a folder whose data/ differs.
        let other = dir.file("other")
        try FileManager.default.createDirectory(atPath: other + "/data", withIntermediateDirectories: true)
        try writeTinyDataset(into: other + "/data", train: 300, test: 100, seed: 9)
        let here = dir.file("here")
        try FileManager.default.createDirectory(atPath: here, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: here + "/data", withDestinationPath: data)
        let common = ["train", "--data", "data", "--limit", "64", "--epochs", "1", "--out", dir.file("d.safetensors")]
        let (r, _) = try mpi(["-np", "1", "-wdir", here, CLI.executable.path] + common
                             + [":", "-np", "1", "-wdir", other, CLI.executable.path] + common, timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("training data in data of rank 1 differs from rank 0's"), r.stderr)
    }

    func testDivergedReplicaIsCaughtAtTheEpochCheck() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        let (r, _) = try mpi(["-x", "BACKPROP_TEST_PERTURB_RANK", "-np", "2", CLI.executable.path, "train", "--data", data,
                              "--limit", "64", "--epochs", "2", "--out", dir.file("p.safetensors")],
                             environment: ["BACKPROP_TEST_PERTURB_RANK": "1"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("after epoch 1: the parameters of rank 1 differ from rank 0's"), r.stderr)
    }

    func testKilledRankEndsTheJobAndResumeWithAnyNMatchesTheUninterruptedRun() throws {
        _ = try mpirunPath()
        let dir = try TempDir(), data = try data(dir)
        let common = ["train", "--data", data, "--limit", "256", "--batch", "16", "--epochs", "3", "--threads", "1"]
        let (full, _) = try mpi(["-np", "2", CLI.executable.path] + common + ["--out", dir.file("full.safetensors")])
        XCTAssertEqual(full.status, 0, full.stderr)

        // Rank 1 stops at the start of epoch 2 (after checkpoint 1), rank 0 waits for it in the
        // first reduction; then rank 1 gets SIGKILL.
        let pidFile = dir.file("rank1.pid"), checkpoint = dir.file("k.checkpoint.safetensors")
        let (killed, seconds) = try mpi(["-x", "BACKPROP_TEST_STALL", "-np", "2", CLI.executable.path] + common
                                        + ["--out", dir.file("k.safetensors")],
                                        environment: ["BACKPROP_TEST_STALL": "2:1:\(pidFile)"], timeout: 90) { _ in
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: pidFile), Date() < deadline { usleep(50_000) }
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                return XCTFail("no pid in \(pidFile): \(text)")
            }
            XCTAssertEqual(kill(pid, SIGKILL), 0)
        }
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertLessThan(seconds, 10, "the job took \(seconds) s to end after the kill")
        XCTAssertTrue(killed.stderr.contains("rank 1") && killed.stderr.contains("signal 9"), killed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("k.safetensors")))
        let loaded = try ModelFile.load(checkpoint)
        XCTAssertEqual(loaded.metadata["backprop.epoch"], "1")

        // Resume with 2 ranks: bit-identical to the uninterrupted run; with 1 process: within 1e-4.
        try FileManager.default.copyItem(atPath: checkpoint, toPath: dir.file("k1.checkpoint.safetensors"))
        let (two, _) = try mpi(["-np", "2", CLI.executable.path] + common
                               + ["--resume", checkpoint, "--out", dir.file("k.safetensors")])
        XCTAssertEqual(two.status, 0, two.stderr)
        try assertIdentical(dir.file("full.safetensors"), dir.file("k.safetensors"))
        let one = try CLI.run(common + ["--resume", dir.file("k1.checkpoint.safetensors"), "--out", dir.file("k1.safetensors")])
        XCTAssertEqual(one.status, 0, one.stderr)
        try assertClose(dir.file("full.safetensors"), dir.file("k1.safetensors"), tolerance: 1e-4)
    }
}
