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

/// Row r of `rows` rows (`count` floats at `dst + r·stride`) set to `values[r]`: a layer's output
/// pre-filled with its per-channel bias before a product adds into it (sgemm β = 1).
void bp_fill_rows(float *dst, size_t rows, size_t count, size_t stride, const float *values);

/// dst[r·count + i] = src[r·src_stride + i] + values[r] (+ 0 when `values` is NULL) for `rows` rows of
/// `count` floats: a product's scratch copied into a layer's output with the bias added. src and
/// dst must not overlap.
void bp_copy_rows_adding(const float *src, size_t src_stride, float *dst, size_t rows, size_t count, const float *values);

#endif
