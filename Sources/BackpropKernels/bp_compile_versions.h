// Compiles the kernel file named by BP_KERNEL_FILE once per instruction set: with BP_V(name)
// expanding to name_v4 (AVX-512), name_v3 (AVX2+FMA) and name_v1 (baseline). Included by each
// kernel `.c` file after it defines BP_KERNEL_FILE; see bp_multiversion.h. (No include guard:
// every kernel file includes it once for its own .inc.)
#include "bp_multiversion.h"

#ifdef BP_X86
#define BP_V(name) name##_v4
#pragma clang attribute push(__attribute__((target(BP_TARGET_V4))), apply_to = function)
#include BP_KERNEL_FILE
#pragma clang attribute pop
#undef BP_V
#define BP_V(name) name##_v3
#pragma clang attribute push(__attribute__((target(BP_TARGET_V3))), apply_to = function)
#include BP_KERNEL_FILE
#pragma clang attribute pop
#undef BP_V
#endif
#define BP_V(name) name##_v1
#include BP_KERNEL_FILE
#undef BP_V
