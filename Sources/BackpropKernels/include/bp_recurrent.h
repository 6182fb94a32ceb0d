#ifndef BP_RECURRENT_H
#define BP_RECURRENT_H

#include <stddef.h>

// Gate arithmetic of the recurrent layers (RNN, LSTM, GRU), one time step over `rows` batch
// rows of hidden size `h`. Every matrix argument is a row-major block: row r of `x` starts at
// x + r * x_stride (a stride of 0 repeats one row). The products (X·W_ihᵀ, h·W_hhᵀ, δG·W_hh)
// are the caller's; these kernels do everything element-wise around them.
//
// Sigmoid and tanh are Cephes' expf / tanhf formulas, branch-free (see recurrent.inc): about
// 2e-7 absolute error, relative accuracy kept near 0 for tanh; NaN stays NaN.

/// y[i] = 1 / (1 + e^{−x[i]}) with the kernels' formula (for tests). x and y may be the same array.
void bp_fast_sigmoid(const float *x, float *y, size_t n);
/// y[i] = tanh(x[i]) with the kernels' formula (for tests). x and y may be the same array.
void bp_fast_tanh(const float *x, float *y, size_t n);

/// RNN: out = act(gates + bias), act = ReLU when `relu` is non-zero, else tanh; the result is
/// also written to `next` (h_t as the next step's product input) unless `next` is NULL.
void bp_rnn_forward_step(size_t rows, size_t h, int relu,
                         const float *gates, size_t gates_stride, const float *bias,
                         float *out, size_t out_stride, float *next, size_t next_stride);

/// RNN backward: δh = dh + dy (dh: δ from step t + 1, stride h), dgates = δh ⊙ act'(out).
/// bias_grad[j] += Σ_rows dgates[r, j]. Returns Σ_rows ‖δh row‖₂.
float bp_rnn_backward_step(size_t rows, size_t h, int relu,
                           const float *out, size_t out_stride, const float *dy, size_t dy_stride,
                           float *dh, float *dgates, size_t dgates_stride, float *bias_grad);

/// LSTM: gates [i f g o] (pre-activations without bias, 4h per row) are replaced by their
/// activations; c = f ⊙ c_prev + i ⊙ g, out = o ⊙ tanh(c) (also into `next` unless NULL; `out`
/// may be NULL when `next` is not). c and next share `state_stride`.
void bp_lstm_forward_step(size_t rows, size_t h, float *gates, size_t gates_stride, const float *bias,
                          const float *c_prev, size_t c_prev_stride,
                          float *c, float *next, size_t state_stride, float *out, size_t out_stride);

/// LSTM backward: δh = dh + dy, δc = dc + δh ⊙ o ⊙ (1 − tanh²c) (tanh(c) recomputed from the step's
/// c: one read of a row that the step after it has just read as its c_prev); writes δ of the four
/// pre-activations to dgates and dc ← δc ⊙ f (δ of c_prev). gates holds the activations,
/// dh and dc are [rows, h] with stride h. bias_grad[j] += Σ_rows dgates[r, j] (4h entries).
/// Returns Σ_rows ‖δh row‖₂.
float bp_lstm_backward_step(size_t rows, size_t h, const float *gates, size_t gates_stride,
                            const float *c, size_t c_stride, const float *c_prev, size_t c_prev_stride,
                            const float *dy, size_t dy_stride, float *dh, float *dc,
                            float *dgates, size_t dgates_stride, float *bias_grad);

/// GRU: gates [r z n] (3h per row) hold X·W_ihᵀ with h_prev·W_hrᵀ and h_prev·W_hzᵀ already
/// added to r and z (no biases); hidden_n holds h_prev·W_hnᵀ (h per row). bias = b_ih + b_hh
/// (3h; its r and z parts are used), bias_in = b_in, bias_hn = b_hn (h each). r, z, n replace the
/// gates' pre-activations; hidden_n becomes W_hn h + b_hn (kept for backward);
/// out = (1 − z) ⊙ n + z ⊙ h_prev (also into `next` unless NULL; `out` may be NULL when `next`
/// is not; h_prev and next share `state_stride`).
void bp_gru_forward_step(size_t rows, size_t h, float *gates, size_t gates_stride, float *hidden_n, size_t hidden_stride,
                         const float *bias, const float *bias_in, const float *bias_hn,
                         const float *h_prev, float *next, size_t state_stride, float *out, size_t out_stride);

/// GRU backward: δh = dh + dy (dh: δ from step t + 1, stride h); writes δ of the pre-activations
/// [r z n] to dgates (n: the input side), δ of W_hn h + b_hn (r ⊙ δn) to dhidden_n, and
/// dh ← z ⊙ δh (the direct path to h_prev, to which the caller then adds the products with
/// W_hh). The hidden side's δ of r and z equals the input side's. bias_grad[j] += Σ_rows dgates
/// (3h), bias_hn_grad[j] += Σ_rows dhidden_n (h). Returns Σ_rows ‖δh row‖₂.
float bp_gru_backward_step(size_t rows, size_t h, const float *gates, size_t gates_stride,
                           const float *hidden_n, size_t hidden_stride, const float *h_prev, size_t h_prev_stride,
                           const float *dy, size_t dy_stride, float *dh, float *dgates, size_t dgates_stride,
                           float *dhidden_n, size_t dhidden_stride, float *bias_grad, float *bias_hn_grad);

#endif
