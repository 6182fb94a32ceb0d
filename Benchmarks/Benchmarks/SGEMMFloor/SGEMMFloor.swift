import Backprop
import Benchmark
import BenchSupport

// The sgemm-only floor of the flagship MLP's training step: its eight sgemm calls (3 forward,
// 3 dW, 2 dX) with the engine's shapes, flags and β, on preallocated buffers, nothing else.
// Compare with TrainingStep's benchmarks; `swift run -c release sgemm-floor` prints the ratio.

let benchmarks: @Sendable () -> Void = {
    guard let floor = try? SGEMMFloorStep() else {
        print("SGEMMFloor: could not allocate buffers")
        return
    }
    Benchmark("sgemm floor step b128",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                   timeUnits: .microseconds, warmupIterations: 1,
                                   maxDuration: .seconds(2), maxIterations: 5000)) { benchmark in
        for _ in benchmark.scaledIterations { try floor.step(batch: 128) }
    }
    Benchmark("sgemm floor epoch 468x128+96",
              configuration: .init(metrics: [.wallClock, .mallocCountTotal],
                                   timeUnits: .milliseconds, warmupIterations: 1,
                                   maxDuration: .seconds(5), maxIterations: 7)) { benchmark in
        for _ in benchmark.scaledIterations {
            for n in MNISTJob.epochBatches { try floor.step(batch: n) }
        }
    }
}
