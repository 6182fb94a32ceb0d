import ArgumentParser
import Backprop
import BackpropData
import BackpropMPI
import Foundation

/// `mpirun -np N backprop train …`: one rank per process, each training on its share of every
/// global batch (`Batcher.shareRange`), gradients averaged by allreduce (`DataParallel`), the
/// same optimizer step on every rank. Rank 0 alone prints and writes files.
struct Distributed {
    let world: Communicator
    let ddp: DataParallel

    var rank: Int { world.rank }
    var size: Int { world.size }

    /// OpenBLAS threads per rank when `--threads` is not given: the cores shared by the ranks on
    /// this host (`OMPI_COMM_WORLD_LOCAL_SIZE`), at least 1.
    static func defaultThreads() -> Int {
        let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        return max(1, BLAS.processorCount / max(local, 1))
    }

    /// Before training: every rank must have the same command line, data and (with `--resume`)
    /// checkpoint; a rank that differs is named in a `CollectiveError` every rank throws.
    static func checkConsistency(_ world: Communicator, train: Dataset, test: Dataset, model: Layer,
                                 optimizerState: [String: Tensor], options: Train) throws {
        let arguments = Array(CommandLine.arguments.dropFirst()).joined(separator: "\u{0}")
        var checks: [(what: String, hash: UInt64)] = []
        checks.append(("command line (flags)", arguments.utf8.withContiguousStorageIfAvailable {
            contentHash(UnsafeRawBufferPointer($0))
        } ?? contentHash(UnsafeRawBufferPointer(start: nil, count: 0))))
        func hash(_ d: Dataset) -> UInt64 {
            let h = d.images.withUnsafeBytes { contentHash($0) }
            return d.labels.withUnsafeBytes { contentHash($0, seed: h) }
        }
        checks.append(("training data in \(options.data)", hash(train)))
        checks.append(("test data in \(options.data)", hash(test)))
        let stateNames = optimizerState.keys.sorted()
        checks.append((options.resume.map { "model in \($0)" } ?? "initial model",
                       contentHash(model.stateDict.map(\.tensor) + stateNames.compactMap { optimizerState[$0] })))
        for check in checks {
            let all = try world.allgather(check.hash)
            let differing = all.indices.filter { all[$0] != all[0] }
            if !differing.isEmpty {
                throw CollectiveError("the \(check.what) of rank\(differing.count > 1 ? "s" : "") "
                    + differing.map(String.init).joined(separator: ", ")
                    + " differ\(differing.count > 1 ? "" : "s") from rank 0's; every rank must be started with the same flags and files")
            }
        }
    }

    /// Loss sum, correct count and rows, summed over the ranks.
    func reduceMetrics(_ lossSum: Double, _ correct: Int, _ seen: Int) throws -> (Double, Int, Int) {
        let r = try world.allreduce([lossSum, Double(correct), Double(seen)], .sum)
        return (r[0], Int(r[1]), Int(r[2]))
    }

    /// Test loss and accuracy, each rank evaluating its share of every batch.
    func evaluate(_ model: Layer, on data: Dataset, batchSize: Int, loss: SoftmaxCrossEntropy,
                  layout: BatchLayout) throws -> (Double, Double) {
        let wasTraining = model.isTraining
        model.eval()
        defer { model.isTraining = wasTraining }
        var batcher = try Batcher(data, batchSize: batchSize, shuffle: false, seed: 0, layout: layout)
        try batcher.setShard(rank: rank, of: size)
        batcher.startEpoch(1)
        var total = 0.0, correct = 0, seen = 0
        while let b = batcher.next() {
            guard b.count > 0 else { continue }
            let out = try model.forward(b.input)
            let (value, _) = try loss(out, labels: b.labels)
            total += Double(value) * Double(b.labels.count)
            correct += countCorrect(out, b.labels)
            seen += b.labels.count
        }
        let (t, c, s) = try reduceMetrics(total, correct, seen)
        return (t / Double(max(s, 1)), Double(c) / Double(max(s, 1)))
    }

    /// With `BACKPROP_MPI_TIMING=1`: each rank writes to standard error how much of the epoch it
    /// spent waiting for gradient reductions (the communication backward did not hide).
    func reportWaiting(epoch: Int, seconds: Double) {
        defer { ddp.waitSeconds = 0 }
        guard ProcessInfo.processInfo.environment["BACKPROP_MPI_TIMING"] == "1" else { return }
        FileHandle.standardError.write(Data(String(format: "rank %d epoch %d: %.3f s of %.3f s waiting for gradients\n",
                                                   rank, epoch, ddp.waitSeconds, seconds).utf8))
    }

    /// Test hooks (environment variables, used by the fault tests):
    /// `BACKPROP_TEST_PERTURB_RANK=r` changes one weight of rank r after its first step, so the
    /// per-epoch replica check must fail; `BACKPROP_TEST_STALL=epoch:rank:pidfile` makes that
    /// rank write its process id to pidfile at the start of that epoch and wait there (at most
    /// 120 s) to be killed.
    func testHookAfterFirstStep(_ model: Layer) {
        guard let r = ProcessInfo.processInfo.environment["BACKPROP_TEST_PERTURB_RANK"].flatMap(Int.init), r == rank,
              let p = model.parameters.first, p.value.count > 0 else { return }
        p.value.data[0] += 1e-3
        p.value.markChanged()
    }

    func testHookAtEpochStart(_ epoch: Int) {
        guard let spec = ProcessInfo.processInfo.environment["BACKPROP_TEST_STALL"] else { return }
        let parts = spec.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3, Int(parts[0]) == epoch, Int(parts[1]) == rank else { return }
        try? AtomicFile.write(Data("\(getpid())\n".utf8), to: parts[2])
        sleep(120)
        exit(3)
    }
}

extension Train {
    /// The training run under `mpirun`: failures every rank sees alike (`CollectiveError`) end
    /// every rank with the message printed once; a failure of one rank ends the job through
    /// `MPI_Abort`, naming the rank.
    func runDistributed(_ world: Communicator) throws {
        if threads == nil { BLAS.threadCount = Distributed.defaultThreads() }
        do {
            let session = try TrainingSession(options: self, communicator: world)
            try session.run()
        } catch let error as CollectiveError {
            // One write: mpirun forwards each rank's stderr as it comes and may print its own
            // notice between two writes of one message ("Error: " and the text, as a thrown
            // error would be printed). Written before the barrier: once another rank has exited
            // with a non-zero status, mpirun may end rank 0 before it prints (seen once in ~20
            // runs of `testDivergedReplicaIsCaughtAtTheEpochCheck` when rank 0 printed after
            // `MPI_Finalize`).
            if world.rank == 0 { FileHandle.standardError.write(Data("Error: \(error)\n".utf8)) }
            try? world.barrier()
            world.finalize()
            throw ExitCode(1)
        } catch {
            FileHandle.standardError.write(Data("Error: rank \(world.rank) of \(world.size): \(error)\n".utf8))
            world.abort(code: 1)
        }
        world.finalize()
    }
}
