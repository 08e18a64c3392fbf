/* twist: CPU backend specifics.
 *
 * OpenBLAS chooses its GEMM kernels once, when it is loaded, from the CPU it recognises. Older
 * builds (Debian 12 ships 0.3.21) do not know recent Xeons and fall back to SSE3 ("Prescott")
 * kernels that run about 5x slower than their AVX-512 ones (40 against 205 GFLOP/s at 1024^3 on
 * a 2-core AVX-512 Xeon). The choice can only be overridden through the environment variable
 * OPENBLAS_CORETYPE, read at load time, so a program that wants full speed sets it and restarts
 * itself: `twist` does (tools/twist.c), and library users can do the same with this hint. */
#ifndef TWIST_CPU_H
#define TWIST_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", "Prescott", ...). */
const char *tw_cpu_blas_core(void);

/* The OPENBLAS_CORETYPE value that would give this CPU faster kernels than the ones in use, or
 * NULL when OpenBLAS already uses the right family (or the CPU is not x86-64). */
const char *tw_cpu_blas_core_hint(void);

/* When tw_cpu_blas_core_hint() is not NULL and OPENBLAS_CORETYPE is unset: sets it and replaces
 * the process with a fresh run of the same program and arguments (execv of /proc/self/exe), so
 * OpenBLAS loads again with the right kernels. Returns only if nothing needed doing or the exec
 * failed (the program then simply runs with the slower kernels). For main() of programs. */
void tw_cpu_restart_with_blas_hint(char **argv);

#ifdef __cplusplus
}
#endif

#endif
