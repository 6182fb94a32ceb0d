// Compiles the kernel file named by BP_KERNEL_FILE once per instruction set: with BP_V(name)
// expanding to name_v4 (AVX-512), name_v3 (AVX2+FMA) and name_v1 (baseline), and BP_LEVEL to 4, 3
// and 1 (for code that only one version may contain, such as AVX-512 intrinsics). Included by each
// kernel `.c` file after it defines BP_KERNEL_FILE; see bp_multiversion.h. (No include guard:
// every kernel file includes it once for its own .inc.)
#include "bp_multiversion.h"

#ifdef BP_X86
#define BP_V(name) name##_v4
#define BP_LEVEL 4
#pragma clang attribute push(__attribute__((target(BP_TARGET_V4))), apply_to = function)
#include BP_KERNEL_FILE
#pragma clang attribute pop
#undef BP_V
#undef BP_LEVEL
#define BP_V(name) name##_v3
#define BP_LEVEL 3
#pragma clang attribute push(__attribute__((target(BP_TARGET_V3))), apply_to = function)
#include BP_KERNEL_FILE
#pragma clang attribute pop
#undef BP_V
#undef BP_LEVEL
#endif
#define BP_V(name) name##_v1
#define BP_LEVEL 1
#include BP_KERNEL_FILE
#undef BP_V
#undef BP_LEVEL
