#ifndef BP_ELEMENTWISE_H
#define BP_ELEMENTWISE_H

#include <stddef.h>

/// The instruction set the kernels of this module run with on this CPU: "avx512", "avx2" or
/// "baseline" (see bp_multiversion.h).
const char *bp_kernels_isa(void);

/// Caps the instruction set of the kernels (4 AVX-512, 3 AVX2, 1 baseline) at `level`, or at
/// what the CPU has, whichever is lower; returns the level now in use. For tests that compare
/// the versions; the environment variable BACKPROP_KERNELS (avx512, avx2, baseline) does the same
/// for a whole process.
int bp_set_isa_level(int level);

/// y[i] = max(x[i], 0) for i < n; NaN stays NaN, as in PyTorch. x and y may be the same array.
void bp_relu(const float *x, float *y, size_t n);

/// dx[i] = dy[i] where y[i] > 0, else 0 (y: ReLU's output). dy and dx may be the same array
/// (y must not be).
void bp_relu_backward(const float *y, const float *dy, float *dx, size_t n);

/// dst[i] = (float)src[i] / divisor: pixels to floats (divisor 255 gives torchvision's ToTensor
/// values bit for bit: a true division, not a multiplication by 1/255).
void bp_bytes_to_floats(const unsigned char *src, float *dst, size_t n, float divisor);

#endif
