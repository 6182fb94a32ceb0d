import Backprop
import Benchmark
import BenchSupport

// One training step of the flagship MLP (784-256-128-10, ReLU, softmax cross-entropy, SGD
// momentum 0.9, lr 0.05, batch 128) on a fixed batch: zeroGrad, forward, loss, backward, step.
// mallocCountTotal must be 0: the warm-up iteration sizes every buffer, after which a step
// allocates nothing. The epoch benchmark runs 468 steps of 128 and one of 96 (the batch size
// change included) and must allocate nothing either.
// (No .peakMemoryResident here: sampling it reads /proc and itself mallocs ~16 times per
// iteration, which would be counted as the step's. With more than one OpenBLAS thread, OpenBLAS's
// thread server mallocs ~5 times per step by itself; OPENBLAS_NUM_THREADS=1 isolates the engine's.)

let benchmarks: @Sendable () -> Void = {
    guard let mlp = try? MLPTrainingStep() else {
        print("TrainingStep: could not build the MLP")
        return
    }
    Benchmark("MLP 784-256-128-10 step b128",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                   timeUnits: .microseconds, warmupIterations: 1,
                                   maxDuration: .seconds(2), maxIterations: 5000)) { benchmark in
        for _ in benchmark.scaledIterations { try mlp.step(batch: 128) }
        blackHole(mlp.lastLoss)
    }
    // The same step through the computational graph (`Variable`s, crossEntropy, backward()):
    // its wall clock against the step above, and the allocations a recorded graph still makes
    // per step (its nodes, closures and tensor objects; the large buffers are recycled).
    if let graph = try? MLPGraphStep() {
        Benchmark("MLP 784-256-128-10 graph step b128",
                  configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                       timeUnits: .microseconds, warmupIterations: 1,
                                       maxDuration: .seconds(2), maxIterations: 5000)) { benchmark in
            for _ in benchmark.scaledIterations { try graph.step(batch: 128) }
            blackHole(graph.lastLoss)
        }
    }
    // The same step through a `CapturedGraph`: recorded once, then replayed (no allocation once warm).
    if let graph = try? MLPGraphStep(captured: true) {
        Benchmark("MLP 784-256-128-10 captured graph step b128",
                  configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                       timeUnits: .microseconds, warmupIterations: 1,
                                       maxDuration: .seconds(2), maxIterations: 5000)) { benchmark in
            for _ in benchmark.scaledIterations { try graph.step(batch: 128) }
            blackHole(graph.lastLoss)
        }
    }
    for (name, graph) in [("step", false), ("graph step", true)] {
        guard let lstm = try? LSTMTrainingStep(graph: graph) else { continue }
        Benchmark("LSTM 28x28 h128 \(name) b128",
                  configuration: .init(metrics: [.wallClock, .mallocCountTotal],
                                       timeUnits: .milliseconds, warmupIterations: 1,
                                       maxDuration: .seconds(3), maxIterations: 50)) { benchmark in
            for _ in benchmark.scaledIterations { try lstm.step() }
            blackHole(lstm.lastLoss)
        }
    }
    if let lstm = try? LSTMTrainingStep(graph: true, captured: true) {
        Benchmark("LSTM 28x28 h128 captured graph step b128",
                  configuration: .init(metrics: [.wallClock, .mallocCountTotal],
                                       timeUnits: .milliseconds, warmupIterations: 1,
                                       maxDuration: .seconds(3), maxIterations: 50)) { benchmark in
            for _ in benchmark.scaledIterations { try lstm.step() }
            blackHole(lstm.lastLoss)
        }
    }
    Benchmark("MLP 784-256-128-10 epoch 468x128+96",
              configuration: .init(metrics: [.wallClock, .mallocCountTotal],
                                   timeUnits: .milliseconds, warmupIterations: 1,
                                   maxDuration: .seconds(5), maxIterations: 7)) { benchmark in
        for _ in benchmark.scaledIterations {
            for n in MNISTJob.epochBatches { try mlp.step(batch: n) }
        }
        blackHole(mlp.lastLoss)
    }
    // Inference through Layer.predict (evaluation mode) of the models `backprop bench-infer`
    // measures: one sample per call and a batch of 256. mallocCountTotal is 0 once warm for the
    // MLP and the LSTM (run with OPENBLAS_NUM_THREADS=1 to leave out OpenBLAS's thread server, see
    // above); LeNet's 2 per image are OpenBLAS's (its SkylakeX small-matrix NN kernel mallocs).
    for (name, architecture) in InferenceCase.architectures {
        guard let c = try? InferenceCase(name, architecture) else {
            print("TrainingStep: could not build \(name)")
            continue
        }
        Benchmark("predict \(name) 1 sample",
                  configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                       timeUnits: .microseconds, warmupIterations: 3,
                                       maxDuration: .seconds(2), maxIterations: 20000)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try c.predictOne()) }
        }
        Benchmark("predict \(name) b256",
                  configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                       timeUnits: .microseconds, warmupIterations: 3,
                                       maxDuration: .seconds(2), maxIterations: 2000)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try c.predictBatch()) }
        }
    }
}
