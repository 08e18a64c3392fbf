/* Which OpenBLAS kernel family runs, which one this CPU deserves, and the restart that applies
 * the environment include/twist/cpu.h describes. */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cpu_internal.h"
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

/* Sets name=value unless name is already set; true if it set it. */
static bool set_default(const char *name, const char *value) {
    if (!value || getenv(name)) return false;
    return setenv(name, value, 0) == 0;
}

void tw_cpu_restart_tuned(char **argv) {
    const char *off = getenv("TWIST_NO_RESTART");
    if (off && strcmp(off, "0") != 0) return;
    /* The names set here are listed in TWIST_RESTART_SET, so that a child process can be run
     * in the environment it would have had (twist bench step's PyTorch peer does). */
    static const char *const names[] = {"OPENBLAS_CORETYPE", "OMP_WAIT_POLICY",
                                        "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS"};
    const char *values[] = {tw_cpu_blas_core_hint(), "passive", "4",
                            tw_cpu_blas_threads_for_limit()};
    char set[128] = "";
    for (int i = 0; i < 4; i++)
        if (set_default(names[i], values[i]))
            snprintf(set + strlen(set), sizeof set - strlen(set), "%s%s", set[0] ? "," : "",
                     names[i]);
    if (!set[0]) return;
    setenv("TWIST_RESTART_SET", set, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the settings the libraries already loaded with. */
}
