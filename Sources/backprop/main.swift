import ArgumentParser
import Backprop
import Foundation

/// The `backprop` command line: train, eval, predict, grads, info, bench and bench-rnn.
struct BackpropCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backprop",
        abstract: "Train, evaluate and inspect neural networks whose every matrix product runs through OpenBLAS sgemm.",
        subcommands: [Train.self, Eval.self, Predict.self, Grads.self, GraphCommand.self, Info.self, Bench.self, BenchRecurrent.self, BenchInfer.self],
        defaultSubcommand: nil)
}

/// `backprop info`: the BLAS kernels and threads in use.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the OpenBLAS core and thread count in use.")
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = BLAS.ensureReady()
        if json {
            let object: [String: Any] = ["core": s.active, "detected_core": s.detected, "cpu_best_core": s.cpuBest,
                                         "reason": s.reason, "threads": BLAS.threadCount,
                                         "kernels_isa": Kernels.instructionSet, "worker_spin": BLAS.workerSpin]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("OpenBLAS core: \(s)")
            print("CPU supports:  \(s.cpuBest)")
            print("threads:       \(BLAS.threadCount) of \(BLAS.processorCount) processors")
            print("own kernels:   \(Kernels.instructionSet)")
            print("worker spin:   \(BLAS.workerSpin) (OPENBLAS_THREAD_TIMEOUT)")
        }
    }
}

BackpropCLI.main()
