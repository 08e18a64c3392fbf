/* Which OpenBLAS kernel family runs, and which one this CPU deserves (see include/twist/cpu.h). */
#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "twist/cpu.h"

const char *tw_cpu_blas_core(void) {
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

static bool core_is_one_of(const char *core, const char *const *names) {
    for (; *names; names++)
        if (strcasecmp(core, *names) == 0) return true;
    return false;
}

const char *tw_cpu_blas_core_hint(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    const char *core = tw_cpu_blas_core();
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_cores[] = {"Haswell",    "Zen",           "SkylakeX",
                                             "Cooperlake", "SapphireRapids", NULL};
    __builtin_cpu_init();
    bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    /* SkylakeX rather than Cooperlake: the two measure alike for fp32 and SkylakeX is known to
     * every OpenBLAS that has AVX-512 kernels at all. */
    if (has_avx512 && !core_is_one_of(core, avx512_cores)) return "SkylakeX";
    if (!has_avx512 && has_avx2 && !core_is_one_of(core, avx2_cores)) return "Haswell";
#endif
    return NULL;
}

void tw_cpu_restart_with_blas_hint(char **argv) {
    const char *hint = tw_cpu_blas_core_hint();
    if (!hint || getenv("OPENBLAS_CORETYPE")) return;
    if (setenv("OPENBLAS_CORETYPE", hint, 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels already loaded. */
}
