/* twist: CPU backend specifics: the environment that makes OpenBLAS and OpenMP fast.
 *
 * Three settings are only read when the libraries load, so a program that wants them sets them
 * and restarts itself (`twist` and the tests do, through tw_cpu_restart_tuned):
 *   OPENBLAS_CORETYPE   OpenBLAS chooses its GEMM kernels from the CPU it recognises. Older
 *                       builds (Debian 12 ships 0.3.21) do not know recent Xeons and fall back
 *                       to SSE3 ("Prescott") kernels, 5x slower than their AVX-512 ones (40
 *                       against 205 GFLOP/s at 1024^3 on a 2-core AVX-512 Xeon).
 *   OMP_WAIT_POLICY     A training step alternates OpenMP loops with OpenBLAS calls. OpenMP's
 *   OPENBLAS_THREAD_TIMEOUT  idle threads spin for a while after each loop, and OpenBLAS's
 *                       after each call, so each steals the cores the other needs: passive
 *                       OpenMP waiting and the shortest OpenBLAS spin (2^4 cycles) doubled the
 *                       tiny model's training throughput on 2 cores.
 *   OPENBLAS_NUM_THREADS  only under an address-space limit (ulimit -v) and when no thread count
 *                       is set: each OpenBLAS thread maps a 128 MiB buffer and OpenBLAS retries
 *                       a failed mapping forever, so the pool is sized for its buffers to take
 *                       at most a quarter of the limit (1 thread under 1 GB). */
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

/* Sets each of the variables above that is unset (OPENBLAS_CORETYPE only when
 * tw_cpu_blas_core_hint() has a value) and, if it set any, replaces the process with a fresh run
 * of the same program and arguments (execv of /proc/self/exe) so the libraries load with them.
 * Returns when nothing needed doing or the exec failed (the program then runs as it is). For
 * main() of programs, before any other work; TWIST_NO_RESTART=1 turns it off. The names it set
 * are listed, comma-separated, in TWIST_RESTART_SET. */
void tw_cpu_restart_tuned(char **argv);

#ifdef __cplusplus
}
#endif

#endif
