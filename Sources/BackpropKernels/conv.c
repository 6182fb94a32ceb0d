// Convolution lowering kernels (im2col / col2im), compiled for AVX-512, AVX2 and baseline
// x86-64 like elementwise.c (see bp_multiversion.h).
#include <string.h>
#include "bp_conv.h"
#include "bp_multiversion.h"

#ifdef BP_X86
#define BP_V(name) name##_v4
#pragma clang attribute push(__attribute__((target(BP_TARGET_V4))), apply_to = function)
#include "conv.inc"
#pragma clang attribute pop
#undef BP_V
#define BP_V(name) name##_v3
#pragma clang attribute push(__attribute__((target(BP_TARGET_V3))), apply_to = function)
#include "conv.inc"
#pragma clang attribute pop
#undef BP_V
#else
#define bp_isa_level() 1
#define im2col_v4 im2col_v1
#define im2col_v3 im2col_v1
#define col2im_v4 col2im_v1
#define col2im_v3 col2im_v1
#define maxpool2x2_backward_v4 maxpool2x2_backward_v1
#define maxpool2x2_backward_v3 maxpool2x2_backward_v1
#define relu_inplace_v4 relu_inplace_v1
#define relu_inplace_v3 relu_inplace_v1
#define relu_backward_inplace_v4 relu_backward_inplace_v1
#define relu_backward_inplace_v3 relu_backward_inplace_v1
#endif
#define BP_V(name) name##_v1
#include "conv.inc"
#undef BP_V

void bp_im2col(const bp_conv_geometry *g, const float *x, float *padded, float *cols, size_t ld) {
    BP_PICK(im2col)(g, x, padded, cols, ld);
}

void bp_col2im(const bp_conv_geometry *g, const float *cols, size_t ld, float *padded, float *dx) {
    BP_PICK(col2im)(g, cols, ld, padded, dx);
}

void bp_maxpool2x2_backward(const float *dy, const int *argmax, const float *y, float *dx, long planes, long height,
                            long width, long out_height, long out_width) {
    BP_PICK(maxpool2x2_backward)(dy, argmax, y, dx, planes, height, width, out_height, out_width);
}

void bp_relu_inplace(float *x, size_t n) { BP_PICK(relu_inplace)(x, n); }

void bp_relu_backward_inplace(const float *y, float *g, size_t n) { BP_PICK(relu_backward_inplace)(y, g, n); }
