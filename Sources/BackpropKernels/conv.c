// Convolution lowering kernels (im2col / col2im), compiled for AVX-512, AVX2 and baseline
// x86-64 like elementwise.c (see bp_multiversion.h).
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include "bp_conv.h"

#define BP_KERNEL_FILE "conv.inc"
#include "bp_compile_versions.h"

void bp_im2col(const bp_conv_geometry *g, const float *x, float *padded, float *cols, size_t ld) {
    BP_PICK(im2col)(g, x, padded, cols, ld);
}

void bp_col2im(const bp_conv_geometry *g, const float *cols, size_t ld, float *padded, float *dx) {
    BP_PICK(col2im)(g, (float *)cols, ld, padded, dx, 0);   // consume = 0: cols is only read
}

void bp_col2im_consume(const bp_conv_geometry *g, float *cols, size_t ld, float *padded, float *dx) {
    BP_PICK(col2im)(g, cols, ld, padded, dx, 1);
}

void bp_maxpool2x2_backward(const float *dy, const int *argmax, const float *y, float *dx, long planes, long height,
                            long width, long out_height, long out_width) {
    BP_PICK(maxpool2x2_backward)(dy, argmax, y, dx, planes, height, width, out_height, out_width);
}

void bp_maxpool2x2_forward(const float *x, float *y, int *argmax, long planes, long height, long width, long out_height,
                           long out_width, int relu) {
    BP_PICK(maxpool2x2_forward)(x, y, argmax, planes, height, width, out_height, out_width, relu);
}


/// The loops of `bp_row_weights`, inlined with `kernel_w` a constant for the usual widths so that
/// each row's copy is a fixed-size move rather than a call to memcpy (LeNet's conv2: 5-float rows).
static inline __attribute__((always_inline)) void row_weights(const float *w, float *rows, long out, long channels,
                                                              long kernel_h, long kernel_w) {
    const long ck = channels * kernel_w, plane = out * ck;
    for (long o = 0; o < out; o++)
        for (long c = 0; c < channels; c++) {
            const float *s = w + (o * channels + c) * kernel_h * kernel_w;
            float *d = rows + o * ck + c * kernel_w;
            for (long i = 0; i < kernel_h; i++, s += kernel_w, d += plane) memcpy(d, s, sizeof(float) * (size_t)kernel_w);
        }
}

void bp_row_weights(const float *w, float *rows, long out, long channels, long kernel_h, long kernel_w) {
    switch (kernel_w) {
    case 1: row_weights(w, rows, out, channels, kernel_h, 1); break;
    case 2: row_weights(w, rows, out, channels, kernel_h, 2); break;
    case 3: row_weights(w, rows, out, channels, kernel_h, 3); break;
    case 4: row_weights(w, rows, out, channels, kernel_h, 4); break;
    case 5: row_weights(w, rows, out, channels, kernel_h, 5); break;
    case 7: row_weights(w, rows, out, channels, kernel_h, 7); break;
    default: row_weights(w, rows, out, channels, kernel_h, kernel_w); break;
    }
}
