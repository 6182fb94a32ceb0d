/// Ready-made convolutional networks: functions that return the layers of a LeNet-style network
/// (`leNet`, `leNetWide`) or a ResNet basic block (`residualBlock`), built with PyTorch's default
/// initialisation from a seed (or the default generator's next seed when none is given).
/// Parameter names are those of the equivalent `torch.nn.Sequential`
/// (`0.weight`, `3.bias`, …). (`Architecture`, in Models/Architecture.swift, is the stored
/// description a model file names; its `.lenet` case is built by `leNet` here.)
public enum Architectures {
    /// A LeNet-style network for 1×28×28 images (MNIST), input `[N, 1, 28, 28]`:
    ///
    ///     0 Conv2D(1 → 16, 5×5, padding 2)   [N, 16, 28, 28]
    ///     1 ReLU
    ///     2 MaxPool2D(2×2)                   [N, 16, 14, 14]
    ///     3 Conv2D(16 → 32, 5×5, padding 2)  [N, 32, 14, 14]
    ///     4 ReLU
    ///     5 MaxPool2D(2×2)                   [N, 32, 7, 7]
    ///     6 Flatten                          [N, 1568]
    ///     7 Dense(1568 → 128)
    ///     8 ReLU
    ///     9 Dense(128 → classes)             logits
    ///
    /// 16/32 channels rather than 32/64 (`leNetWide`): about a quarter of the arithmetic
    /// (≈ 0.77 GFLOP per forward of 128 images). Networks of this size are commonly reported at
    /// ≥ 99 % MNIST test accuracy within a few epochs; the step times are measured by
    /// ConvArchitectureTests.testLeNetStepTiming (release build, BACKPROP_TIMING=1).
    public static func leNet(classes: Int = 10, seed: UInt64? = nil) throws -> Sequential {
        try leNet(channels: (16, 32), classes: classes, seed: seed, name: "leNet")
    }

    /// The wider LeNet variant (32/64 channels, Dense(3136 → 128)), same layer order as `leNet`.
    public static func leNetWide(classes: Int = 10, seed: UInt64? = nil) throws -> Sequential {
        try leNet(channels: (32, 64), classes: classes, seed: seed, name: "leNetWide")
    }

    /// The LeNet layers with `channels` output channels in the two convolutions.
    private static func leNet(channels: (Int, Int), classes: Int, seed: UInt64?, name: String) throws -> Sequential {
        guard classes > 0 else { throw BackpropError.invalidArgument("\(name): classes must be positive, got \(classes)") }
        var rng = SeededGenerator(seedOrDefault: seed)
        let (c1, c2) = channels
        return Sequential([
            try Conv2D(inChannels: 1, outChannels: c1, kernelSize: 5, padding: 2, rng: &rng),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            try Conv2D(inChannels: c1, outChannels: c2, kernelSize: 5, padding: 2, rng: &rng),
            ReLU(),
            try MaxPool2D(kernelSize: 2),
            Flatten(),
            try Dense(c2 * 7 * 7, 128, rng: &rng),
            ReLU(),
            try Dense(128, classes, rng: &rng),
        ])
    }

    /// A ResNet basic block without the final activation, shape-preserving (`[N, C, H, W]` in
    /// and out):
    ///
    ///     Residual(Sequential(Conv2D(C → C, 3×3, padding 1, no bias), BatchNorm2d(C), ReLU,
    ///                         Conv2D(C → C, 3×3, padding 1, no bias), BatchNorm2d(C)))
    ///
    /// y = x + block(x); put a ReLU after it as ResNet does. Names: `block.0.weight`,
    /// `block.1.weight`, `block.1.bias`, `block.1.running_mean`, …, `block.4.*`.
    public static func residualBlock(channels: Int, rng: inout SeededGenerator) throws -> Residual {
        Residual(Sequential([
            try Conv2D(inChannels: channels, outChannels: channels, kernelSize: 3, padding: 1, bias: false, rng: &rng),
            try BatchNorm2d(channels),
            ReLU(),
            try Conv2D(inChannels: channels, outChannels: channels, kernelSize: 3, padding: 1, bias: false, rng: &rng),
            try BatchNorm2d(channels),
        ]))
    }
}
