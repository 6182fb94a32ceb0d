// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Backprop",
    products: [
        .library(name: "Backprop", targets: ["Backprop"]),
        .library(name: "BackpropOptim", targets: ["BackpropOptim"]),
        .library(name: "BackpropData", targets: ["BackpropData"]),
        .library(name: "BackpropTensorBoard", targets: ["BackpropTensorBoard"]),
        .library(name: "BackpropMPI", targets: ["BackpropMPI"]),
        .executable(name: "backprop", targets: ["backprop"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Open MPI, for data-parallel training; only BackpropMPI (and the CLI) link it.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),
        // Element-wise C kernels compiled per instruction set (AVX-512, AVX2, baseline) and
        // chosen at load time; the Swift targets themselves build for baseline x86-64.
        .target(name: "BackpropKernels"),
        .target(name: "Backprop", dependencies: ["CBLAS", "BackpropKernels"]),
        .target(name: "BackpropOptim", dependencies: ["Backprop", "BackpropKernels"]),
        .target(name: "BackpropData", dependencies: ["Backprop", "BackpropKernels", "CZlib"]),
        // TensorBoard event files (hand-written protobuf encoder, CRC-32C).
        .target(name: "BackpropTensorBoard", dependencies: ["Backprop"]),
        .target(name: "BackpropMPI", dependencies: ["Backprop", "CMPI"]),
        .executableTarget(
            name: "backprop",
            dependencies: [
                "Backprop", "BackpropOptim", "BackpropData", "BackpropTensorBoard", "BackpropMPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "regression-example", dependencies: ["Backprop", "BackpropOptim"], path: "Examples/regression-example"),
        .executableTarget(name: "attention-example", dependencies: ["Backprop", "BackpropOptim", "BackpropData"], path: "Examples/attention-example"),
        .executableTarget(name: "autoencoder-example", dependencies: ["Backprop", "BackpropOptim", "BackpropData"], path: "Examples/autoencoder-example"),
        .executableTarget(name: "mpi-bench", dependencies: ["BackpropMPI"]),
        .testTarget(name: "BackpropTests", dependencies: ["Backprop", "BackpropOptim"], resources: [.copy("Fixtures")]),
        .testTarget(name: "BackpropDataTests", dependencies: ["BackpropData", "Backprop"], resources: [.copy("Fixtures")]),
        .testTarget(name: "BackpropTensorBoardTests", dependencies: ["BackpropTensorBoard", "Backprop"], resources: [.copy("Fixtures")]),
        .testTarget(name: "BackpropMPITests", dependencies: ["BackpropMPI", "Backprop"]),
        .testTarget(name: "BackpropCLITests", dependencies: ["backprop", "Backprop", "BackpropData"], resources: [.copy("Fixtures")]),
        // Library examples (each a short program using only the public API; ExamplesTests runs them).
        .executableTarget(name: "xor-example", dependencies: ["Backprop", "BackpropOptim"], path: "Examples/xor-example"),
        .executableTarget(name: "custom-layer-example", dependencies: ["Backprop"], path: "Examples/custom-layer-example"),
        .executableTarget(name: "mnist-library-example", dependencies: ["Backprop", "BackpropOptim", "BackpropData"], path: "Examples/mnist-library-example"),
        .executableTarget(name: "lstm-sequence-example", dependencies: ["Backprop", "BackpropOptim", "BackpropData"], path: "Examples/lstm-sequence-example"),
        .executableTarget(name: "sgd-schedule-example", dependencies: ["Backprop", "BackpropOptim", "BackpropData"], path: "Examples/sgd-schedule-example"),
        .executableTarget(name: "pytorch-import-example", dependencies: ["Backprop"], path: "Examples/pytorch-import-example"),
    ]
)
