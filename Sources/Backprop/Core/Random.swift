#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A small, fast, seedable generator (xoshiro256**, seeded through SplitMix64).
/// One seed drives initialisation, shuffling and dropout, so runs repeat exactly.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func nextUnit() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }

    /// Standard normal (Box–Muller).
    public mutating func nextNormal() -> Float {
        var u1 = nextUnit()
        while u1 <= Float.leastNormalMagnitude { u1 = nextUnit() }
        let u2 = nextUnit()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Float.pi * u2)
    }
}

@inline(__always) private func _log(_ x: Float) -> Float { Float(log(Double(x))) }
@inline(__always) private func _cos(_ x: Float) -> Float { Float(cos(Double(x))) }

extension Tensor {
    /// Fills with values uniform in [low, high).
    public func fillUniform(_ low: Float, _ high: Float, using rng: inout SeededGenerator) {
        markChanged()
        let p = data
        for i in 0..<count { p[i] = low + (high - low) * rng.nextUnit() }
    }

    /// Fills with normal values of the given mean and standard deviation.
    public func fillNormal(mean: Float = 0, std: Float = 1, using rng: inout SeededGenerator) {
        markChanged()
        let p = data
        for i in 0..<count { p[i] = mean + std * rng.nextNormal() }
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { markChanged(); data.update(repeating: value, count: count) }
}

// MARK: - The default generator

import Synchronization

/// The generator that layers built without a `seed:` or `rng:` take their seeds from (PyTorch's
/// default CPU generator). Each such layer draws one seed from it, so two unseeded layers differ
/// from each other, and a program that calls `manualSeed(_:)` first builds the same layers, masks
/// and weights on every run. Without `manualSeed` it starts from a fixed seed, so plain runs repeat
/// too. Safe to use from several threads.
public enum DefaultGenerator {
    /// The seed the default generator starts from when `manualSeed` is never called.
    public static let initialSeed: UInt64 = 0x5EED_BAC4_B40B

    private static let state = Mutex(SeededGenerator(seed: initialSeed))

    /// The next seed for a layer built without one (advances the default generator).
    public static func nextSeed() -> UInt64 { state.withLock { $0.next() } }

    /// Restarts the default generator from `seed`.
    public static func seed(_ seed: UInt64) { state.withLock { $0 = SeededGenerator(seed: seed) } }
}

/// PyTorch's `torch.manual_seed`: restarts the default generator, so every layer built afterwards
/// without an explicit seed or generator (and every `Dropout` mask they draw) repeats exactly.
public func manualSeed(_ seed: UInt64) { DefaultGenerator.seed(seed) }

extension SeededGenerator {
    /// A generator for `seed`, or for the next seed of the default generator when nil.
    public init(seedOrDefault seed: UInt64?) { self.init(seed: seed ?? DefaultGenerator.nextSeed()) }
}
