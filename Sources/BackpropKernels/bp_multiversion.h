#ifndef BP_MULTIVERSION_H
#define BP_MULTIVERSION_H
// Compiling one kernel file three times: for AVX-512 (x86-64-v4), for AVX2+FMA (x86-64-v3) and
// for the baseline, with one dispatch by the CPU's features at run time.
//
// Why not clang's `target_clones`: its ifunc resolver runs while the dynamic loader is still
// relocating, and reads libgcc's CPU model before libgcc has filled it in, so on this Debian
// system it always chose the baseline copy. `__builtin_cpu_supports` called from ordinary code
// (after start-up) answers correctly, so the choice is made on the first call instead.
//
// A kernel file `foo.c` writes its loops once in `foo.inc`, naming each function BP_V(name), then
//
//     #define BP_KERNEL_FILE "foo.inc"
//     #include "bp_compile_versions.h"
//
// and calls BP_PICK(name) in its public wrappers: name_v4, name_v3 or name_v1 for this CPU
// (always name_v1 off x86-64, where only that version is compiled).

#if defined(__x86_64__) && defined(__clang__)
#define BP_X86 1
#define BP_TARGET_V4 "avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma,bmi,bmi2,f16c,lzcnt,movbe"
#define BP_TARGET_V3 "avx2,fma,bmi,bmi2,f16c,lzcnt,movbe"
#endif

/// 4 with AVX-512 (F, BW, DQ, VL), 3 with AVX2 and FMA, else 1. Decided once per process.
int bp_isa_level(void);

#ifdef BP_X86
#define BP_PICK(name) (bp_isa_level() >= 4 ? name##_v4 : bp_isa_level() >= 3 ? name##_v3 : name##_v1)
#else
#define BP_PICK(name) name##_v1
#endif

#endif
