// Element-wise kernels. The Swift targets build for baseline x86-64 (SSE2); these loops are
// compiled for AVX-512 and AVX2 as well, and run with the widest the CPU has.
#include "bp_elementwise.h"

#define BP_KERNEL_FILE "elementwise.inc"
#include "bp_compile_versions.h"

const char *bp_kernels_isa(void) {
    // (Not a per-version function: __AVX512F__ and friends are per file, not per target attribute.)
    int level = bp_isa_level();
    return level >= 4 ? "avx512" : level >= 3 ? "avx2" : "baseline";
}

void bp_relu(const float *x, float *y, size_t n) {
    if (x == y) BP_PICK(relu_inplace)(y, n); else BP_PICK(relu)(x, y, n);
}

void bp_relu_backward(const float *y, const float *dy, float *dx, size_t n) {
    if (dy == dx) BP_PICK(relu_backward_inplace)(y, dx, n); else BP_PICK(relu_backward)(y, dy, dx, n);
}

void bp_bytes_to_floats(const unsigned char *src, float *dst, size_t n, float divisor) {
    BP_PICK(bytes_to_floats)(src, dst, n, divisor);
}

void bp_fill_rows(float *dst, size_t rows, size_t count, size_t stride, const float *values) {
    BP_PICK(fill_rows)(dst, rows, count, stride, values);
}

void bp_copy_rows_adding(const float *src, size_t src_stride, float *dst, size_t rows, size_t count, const float *values) {
    BP_PICK(copy_rows_adding)(src, src_stride, dst, rows, count, values);
}
