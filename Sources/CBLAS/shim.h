#ifndef BACKPROP_CBLAS_SHIM_H
#define BACKPROP_CBLAS_SHIM_H
// Debian's libopenblas-dev: cblas.h also declares openblas_get_corename(),
// openblas_set_num_threads() and friends. LAPACKE comes from liblapacke-dev.
#include <cblas.h>
#include <lapacke.h>

// Exported by OpenBLAS DYNAMIC_ARCH builds (Debian's is one) but not declared in any
// header: they drop and re-run the kernel-table selection. Backprop calls them once,
// before its first BLAS call, to replace a wrongly detected core (see BLASRuntime.swift).
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);

// Also exported by the pthread build: re-read OPENBLAS_* environment variables, and stop and
// restart the worker threads (which read OPENBLAS_THREAD_TIMEOUT when they start).
void openblas_read_env(void);
int blas_thread_shutdown_(void);
int blas_thread_init(void);
#endif
