#ifndef BP_OPTIMIZERS_H
#define BP_OPTIMIZERS_H

#include <stddef.h>

// Optimizer updates over one parameter's elements (BackpropOptim's SGD, Adam and AdamW call
// them on each part of a parameter). Every element's arithmetic is written out in PyTorch's order
// and compiled without contracting a·b + c into fused multiply-adds, so each element gets the same
// result, bit for bit, under every instruction set and every split into parts.

/// Flags of `bp_sgd_update`.
enum {
    BP_SGD_DECAY = 1,      // g ← g + wd·θ
    BP_SGD_MOMENTUM = 2,   // b ← μ·b + (1 − τ)·g (b ← g on the first step); g ← b
    BP_SGD_FIRST = 4,      // the first step: b ← g
    BP_SGD_NESTEROV = 8,   // g ← g + μ·b instead of g ← b
};

/// SGD: for i < n, g = grad[i] (+ wd·θ), the momentum step on buf[i] when BP_SGD_MOMENTUM is set
/// (buf is not touched otherwise and may be NULL), then θ[i] ← θ[i] − lr·g.
void bp_sgd_update(size_t n, float *theta, const float *grad, float *buf, float lr, float wd, float mu,
                   float one_minus_dampening, int flags);

/// Flags of `bp_adam_update`.
enum {
    BP_ADAM_SHRINK = 1,    // AdamW: θ ← θ·decay first
    BP_ADAM_L2 = 2,        // Adam: g ← g + l2·θ
    BP_ADAM_AMSGRAD = 4,   // v_max ← max(v_max, v), used in the denominator
};

/// Adam / AdamW: for i < n, m ← m + (1 − β1)·(g − m), v ← β2·v + (1 − β2)·g·g,
/// θ ← θ − step_size·m / (√v / bc2_sqrt + eps) (v_max in place of v with BP_ADAM_AMSGRAD;
/// v_max may be NULL otherwise).
void bp_adam_update(size_t n, float *theta, const float *grad, float *m, float *v, float *v_max,
                    float one_minus_beta1, float beta2, float one_minus_beta2, float step_size,
                    float bc2_sqrt, float eps, float decay, float l2, int flags);

/// Flags of `bp_rmsprop_update`.
enum {
    BP_RMSPROP_DECAY = 1,      // g ← g + wd·θ
    BP_RMSPROP_CENTERED = 2,   // g_avg ← lerp(g_avg, g, 1 − α); the root of v − g_avg²
    BP_RMSPROP_MOMENTUM = 4,   // buf ← μ·buf + g / avg; θ ← θ − lr·buf
};

/// RMSprop: for i < n, v ← α·v + (1 − α)·g·g, avg = √v (centered: √(v − g_avg²)) + eps, then
/// θ ← θ − lr·g / avg, or through the momentum buffer. buf and g_avg are touched only with their
/// flag (and may be NULL otherwise).
void bp_rmsprop_update(size_t n, float *theta, const float *grad, float *v, float *buf, float *g_avg, float lr,
                       float wd, float alpha, float one_minus_alpha, float eps, float mu, int flags);

#endif
