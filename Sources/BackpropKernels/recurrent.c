// Gate kernels of the recurrent layers, compiled for AVX-512, AVX2 and baseline x86-64 and
// dispatched at run time (bp_multiversion.h). The loops are in recurrent.inc.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "bp_recurrent.h"

#define BP_KERNEL_FILE "recurrent.inc"
#include "bp_compile_versions.h"

void bp_fast_sigmoid(const float *x, float *y, size_t n) { BP_PICK(sigmoid_array)(x, y, n); }

void bp_fast_tanh(const float *x, float *y, size_t n) { BP_PICK(tanh_array)(x, y, n); }

void bp_rnn_forward_step(size_t rows, size_t h, int relu, const float *gates, size_t gates_stride, const float *bias,
                         float *out, size_t out_stride, float *next, size_t next_stride) {
    BP_PICK(rnn_forward)(rows, h, relu, gates, gates_stride, bias, out, out_stride, next, next_stride);
}

float bp_rnn_backward_step(size_t rows, size_t h, int relu, const float *out, size_t out_stride, const float *dy,
                           size_t dy_stride, float *dh, float *dgates, size_t dgates_stride, float *bias_grad) {
    return BP_PICK(rnn_backward)(rows, h, relu, out, out_stride, dy, dy_stride, dh, dgates, dgates_stride, bias_grad);
}

void bp_lstm_forward_step(size_t rows, size_t h, float *gates, size_t gates_stride, const float *bias,
                          const float *c_prev, size_t c_prev_stride,
                          float *c, float *next, size_t state_stride, float *out, size_t out_stride) {
    BP_PICK(lstm_forward)(rows, h, gates, gates_stride, bias, c_prev, c_prev_stride, c, next, state_stride,
                            out, out_stride);
}

float bp_lstm_backward_step(size_t rows, size_t h, const float *gates, size_t gates_stride,
                            const float *c, size_t c_stride, const float *c_prev, size_t c_prev_stride,
                            const float *dy, size_t dy_stride, float *dh, float *dc,
                            float *dgates, size_t dgates_stride, float *bias_grad) {
    return BP_PICK(lstm_backward)(rows, h, gates, gates_stride, c, c_stride, c_prev, c_prev_stride,
                                    dy, dy_stride, dh, dc, dgates, dgates_stride, bias_grad);
}

void bp_gru_forward_step(size_t rows, size_t h, float *gates, size_t gates_stride, float *hidden_n, size_t hidden_stride,
                         const float *bias, const float *bias_in, const float *bias_hn,
                         const float *h_prev, float *next, size_t state_stride, float *out, size_t out_stride) {
    BP_PICK(gru_forward)(rows, h, gates, gates_stride, hidden_n, hidden_stride, bias, bias_in, bias_hn, h_prev, next,
                           state_stride, out, out_stride);
}

float bp_gru_backward_step(size_t rows, size_t h, const float *gates, size_t gates_stride,
                           const float *hidden_n, size_t hidden_stride, const float *h_prev, size_t h_prev_stride,
                           const float *dy, size_t dy_stride, float *dh, float *dgates, size_t dgates_stride,
                           float *dhidden_n, size_t dhidden_stride, float *bias_grad, float *bias_hn_grad) {
    return BP_PICK(gru_backward)(rows, h, gates, gates_stride, hidden_n, hidden_stride, h_prev, h_prev_stride,
                                   dy, dy_stride, dh, dgates, dgates_stride, dhidden_n, dhidden_stride,
                                   bias_grad, bias_hn_grad);
}
