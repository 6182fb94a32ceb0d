// swift-tools-version:6.1
import PackageDescription

// Benchmarks for Backprop, kept out of the root package so that building the engine never pulls
// in ordo-one/benchmark. Run from the repository root:
//
//     swift package --package-path Benchmarks benchmark                       # all suites
//     swift package --package-path Benchmarks benchmark --target TrainingStep  # one suite
//     swift run -c release --package-path Benchmarks sgemm-floor               # epoch vs sgemm floor
//     swift run -c release --package-path Benchmarks graph-step                # graph vs layer API step
//
// See README.md beside this file.
let package = Package(
    name: "BackpropBenchmarks",
    dependencies: [
        .package(name: "Backprop", path: ".."),
        // MallocInterposer gives the malloc metrics (mallocCountTotal). Naming the trait list
        // explicitly also drops the package's other default trait (RuntimeInterposer, ARC hooks
        // for Swift 6.3 on Linux), which we do not use.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // What the benchmark suites and the sgemm-floor executable share: the MNIST MLP's
        // training step and the bare sequence of its sgemm calls, each on preallocated buffers.
        .target(
            name: "BenchSupport",
            dependencies: [
                .product(name: "Backprop", package: "Backprop"),
                .product(name: "BackpropOptim", package: "Backprop"),
            ]
        ),
        .executableTarget(name: "sgemm-floor", dependencies: ["BenchSupport", .product(name: "Backprop", package: "Backprop")]),
        .executableTarget(name: "graph-step", dependencies: ["BenchSupport", .product(name: "Backprop", package: "Backprop")]),
    ]
)

// Benchmark suites: Benchmarks/<Name>/<Name>.swift, the layout the benchmark plugin expects.
for name in ["GEMM", "TrainingStep", "SGEMMFloor"] {
    package.targets.append(
        .executableTarget(
            name: name,
            dependencies: [
                "BenchSupport",
                .product(name: "Backprop", package: "Backprop"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/\(name)",
            swiftSettings: [.swiftLanguageMode(.v5)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    )
}
