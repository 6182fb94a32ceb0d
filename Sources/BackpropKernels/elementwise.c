// Element-wise kernels. The Swift targets build for baseline x86-64 (SSE2); these loops are
// compiled for AVX-512 and AVX2 as well, and run with the widest the CPU has.
#include "bp_elementwise.h"
#include "bp_multiversion.h"

#ifdef BP_X86
#define BP_V(name) name##_v4
#pragma clang attribute push(__attribute__((target(BP_TARGET_V4))), apply_to = function)
#include "elementwise.inc"
#pragma clang attribute pop
#undef BP_V
#define BP_V(name) name##_v3
#pragma clang attribute push(__attribute__((target(BP_TARGET_V3))), apply_to = function)
#include "elementwise.inc"
#pragma clang attribute pop
#undef BP_V
#else
#define bp_isa_level() 1
#define relu_v4 relu_v1
#define relu_v3 relu_v1
#define relu_backward_v4 relu_backward_v1
#define relu_backward_v3 relu_backward_v1
#define bytes_to_floats_v4 bytes_to_floats_v1
#define bytes_to_floats_v3 bytes_to_floats_v1
#endif
#define BP_V(name) name##_v1
#include "elementwise.inc"
#undef BP_V

const char *bp_kernels_isa(void) {
    // (Not a per-version function: __AVX512F__ and friends are per file, not per target attribute.)
    int level = bp_isa_level();
    return level >= 4 ? "avx512" : level >= 3 ? "avx2" : "baseline";
}

void bp_relu(const float *x, float *y, size_t n) { BP_PICK(relu)(x, y, n); }

void bp_relu_backward(const float *y, const float *dy, float *dx, size_t n) { BP_PICK(relu_backward)(y, dy, dx, n); }

void bp_bytes_to_floats(const unsigned char *src, float *dst, size_t n, float divisor) {
    BP_PICK(bytes_to_floats)(src, dst, n, divisor);
}
