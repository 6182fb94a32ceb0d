// Optimizer updates, compiled for AVX-512, AVX2 and baseline x86-64 and dispatched at run time
// (bp_multiversion.h). The loops are in optimizers.inc.
#include <math.h>
#include "bp_optimizers.h"

#define BP_KERNEL_FILE "optimizers.inc"
#include "bp_compile_versions.h"

void bp_sgd_update(size_t n, float *theta, const float *grad, float *buf, float lr, float wd, float mu,
                   float one_minus_dampening, int flags) {
    BP_PICK(sgd_update)(n, theta, grad, buf, lr, wd, mu, one_minus_dampening, flags);
}

void bp_adam_update(size_t n, float *theta, const float *grad, float *m, float *v, float *v_max,
                    float one_minus_beta1, float beta2, float one_minus_beta2, float step_size,
                    float bc2_sqrt, float eps, float decay, float l2, int flags) {
    BP_PICK(adam_update)(n, theta, grad, m, v, v_max, one_minus_beta1, beta2, one_minus_beta2, step_size,
                         bc2_sqrt, eps, decay, l2, flags);
}

void bp_rmsprop_update(size_t n, float *theta, const float *grad, float *v, float *buf, float *g_avg, float lr,
                       float wd, float alpha, float one_minus_alpha, float eps, float mu, int flags) {
    BP_PICK(rmsprop_update)(n, theta, grad, v, buf, g_avg, lr, wd, alpha, one_minus_alpha, eps, mu, flags);
}
