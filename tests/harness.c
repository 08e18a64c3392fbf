#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "twist/cpu.h"

/* Every test runs with the environment `twist` uses (include/twist/cpu.h): OpenBLAS kernels for
 * this CPU and no spinning between OpenMP and OpenBLAS threads. glibc passes main's arguments to
 * constructors, which lets the restart happen before any test code. */
__attribute__((constructor)) static void restart_tuned(int argc, char **argv, char **envp) {
    (void)argc;
    (void)envp;
    tw_cpu_restart_tuned(argv);
}

static int failure_count;

void tw_test_skip(const char *format, ...) {
    va_list args;
    va_start(args, format);
    printf("SKIP: ");
    vprintf(format, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    exit(TW_TEST_SKIP);
}

void tw_test_fail(const char *file, int line, const char *format, ...) {
    va_list args;
    va_start(args, format);
    failure_count++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
}

int tw_test_failures(void) { return failure_count; }

int tw_test_finish(const char *test_name) {
    if (failure_count == 0) {
        printf("%s: all checks passed\n", test_name);
        return 0;
    }
    printf("%s: %d check(s) failed\n", test_name, failure_count);
    return 1;
}

void tw_test_rng_seed(tw_test_rng *rng, uint64_t seed) {
    rng->state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (rng->state == 0) rng->state = 1;
}

uint64_t tw_test_rng_next(tw_test_rng *rng) {
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float tw_test_rng_uniform(tw_test_rng *rng, float lo, float hi) {
    /* 24 random bits: every value exactly representable as a float in [0, 1). */
    float unit = (float)(tw_test_rng_next(rng) >> 40) / 16777216.0f;
    return lo + (hi - lo) * unit;
}

int tw_test_rng_int(tw_test_rng *rng, int n) { return (int)(tw_test_rng_next(rng) % (uint64_t)n); }

void tw_test_fill_uniform(tw_test_rng *rng, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = tw_test_rng_uniform(rng, lo, hi);
}

void tw_test_temp_dir(const char *name, char *out, size_t size) {
    snprintf(out, size, "/tmp/twist-%s-XXXXXX", name);
    if (!mkdtemp(out)) tw_test_skip("cannot create a temporary directory %s", out);
}

void tw_test_remove_temp_dir(const char *dir) {
    if (failure_count > 0) {
        printf("files of the failed test kept in %s\n", dir);
        return;
    }
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
