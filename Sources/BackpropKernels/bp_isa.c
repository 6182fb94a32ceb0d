#include <stdlib.h>
#include <string.h>
#include "bp_multiversion.h"

static int cpu_level(void) {
    int l = 1;
#ifdef BP_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 3;
    if (l == 3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) l = 4;
#endif
    return l;
}

static int level;  // 0: not decided yet (a benign race: every thread computes the same value)

int bp_isa_level(void) {
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l) return l;
    l = cpu_level();
    const char *cap = getenv("BACKPROP_KERNELS");
    if (cap && strcmp(cap, "avx2") == 0 && l > 3) l = 3;
    if (cap && strcmp(cap, "baseline") == 0) l = 1;
    __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    return l;
}

int bp_set_isa_level(int cap) {
    int l = cpu_level();
    if (cap < l) l = cap >= 4 ? 4 : cap >= 3 ? 3 : 1;
    __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    return l;
}
