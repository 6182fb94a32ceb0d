import BackpropKernels

/// The C kernels of the `BackpropKernels` target: element-wise loops compiled for AVX-512,
/// AVX2+FMA and baseline x86-64, the widest of which this CPU supports runs.
public enum Kernels {
    /// The instruction set the C kernels run with here: `avx512`, `avx2` or `baseline`.
    public static var instructionSet: String { String(cString: bp_kernels_isa()) }

    /// Caps the C kernels' instruction set at `level` (4 AVX-512, 3 AVX2, 1 baseline) or at the
    /// CPU's, whichever is lower, and returns the level in use: tests run every version this way.
    @discardableResult
    public static func limitInstructionSet(to level: Int) -> Int { Int(bp_set_isa_level(Int32(level))) }
}
