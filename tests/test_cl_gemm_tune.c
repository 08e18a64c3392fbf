/* The OpenCL GEMM tuner (backends/opencl/cl_gemm.c) across processes, in a private
 * TWIST_CACHE_DIR: each step runs this program again as a child ("child" mode: one 72x80x64 GEMM
 * on opencl:0, checked against the CPU reference) with TWIST_TUNE=verbose, its stderr captured,
 * and looks at what the child measured and at the tuning cache file it left:
 *   1. the first process times the candidates and writes "gemm NN-m7-n7-k6-single <variant>";
 *   2. a second process reuses it: no timing at all;
 *   3. the file rewritten for another driver version (valid checksum) is ignored with a note and
 *      rebuilt for this driver;
 *   4. a damaged file (one byte changed) is ignored with a note and rebuilt;
 *   5. GPU tiles forced into the candidate list (TWIST_CL_TUNE_CANDIDATES) are timed and pass
 *      the result check;
 *   6. with test-only faults (TWIST_CL_TUNE_FAULT) a candidate whose program fails to build and
 *      candidates with wrong results are skipped, and the choice is a correct one;
 *   7. a cache saying CLBlast wins ("gemm <class> vendor") with "gemm <class>.own small": the
 *      default choice runs CLBlast, tw_device_set_gemm_impl(TW_GEMM_OWN) runs small, neither
 *      times anything (a wrong-results fault in the variant that must run shows that it ran);
 *   8. TWIST_TUNE=off times nothing and writes no file.
 * Skips when there is no opencl:0. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "reference.h"
#include "twist/backend.h"
#include "twist/backend_support.h"
#include "twist/error.h"

extern char **environ;

enum { M = 72, N = 80, K = 64 };
static const char class_line[] = "gemm NN-m7-n7-k6-single ";
static const char measured[] = "twist opencl gemm: NN-m7-n7-k6-single:";

/* Child: one GEMM (beta 0 over NaN) checked against the reference; exit 0, 1, or 77. */
static int child(bool own) {
    tw_device *dev = NULL;
    if (tw_device_open("opencl:0", &dev) != TW_OK) {
        printf("no opencl:0 (%s)\n", tw_last_error());
        return TW_TEST_SKIP;
    }
    if (own && tw_device_set_gemm_impl(dev, TW_GEMM_OWN) != TW_OK) return 1;
    float a[M * K], b[K * N], c[M * N];
    double ad[M * K], bd[K * N], cd[M * N];
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 7);
    tw_test_fill_uniform(&rng, a, M * K, -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, b, K * N, -1.0f, 1.0f);
    for (int i = 0; i < M * N; i++) c[i] = NAN;
    for (int i = 0; i < M * K; i++) ad[i] = a[i];
    for (int i = 0; i < K * N; i++) bd[i] = b[i];
    tw_buffer *ba = NULL, *bb = NULL, *bc = NULL;
    int code = 1;
    if (tw_buffer_alloc(dev, sizeof a, &ba) == TW_OK &&
        tw_buffer_alloc(dev, sizeof b, &bb) == TW_OK &&
        tw_buffer_alloc(dev, sizeof c, &bc) == TW_OK &&
        tw_buffer_upload(ba, 0, a, sizeof a) == TW_OK &&
        tw_buffer_upload(bb, 0, b, sizeof b) == TW_OK &&
        tw_buffer_upload(bc, 0, c, sizeof c) == TW_OK) {
        tw_gemm_args g = {.dtype = TW_DTYPE_F32, .m = M, .n = N, .k = K, .batch = 1,
                          .alpha = 1.0f, .beta = 0.0f, .lda = K, .ldb = N, .ldc = N,
                          .a = tw_at(ba, 0), .b = tw_at(bb, 0), .c = tw_at(bc, 0)};
        if (tw_gemm(dev, &g) == TW_OK && tw_buffer_download(bc, 0, c, sizeof c) == TW_OK) {
            ref_gemm(false, false, M, N, K, 1, 1.0, ad, K, 0, bd, N, 0, 0.0, cd, N, 0);
            double worst = 0.0;
            for (int i = 0; i < M * N; i++) {
                const double d = fabs(c[i] - cd[i]);
                if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
            }
            code = worst <= 1e-4 ? 0 : 1;
            printf("child: max difference %g\n", worst);
        }
    }
    if (code == 1 && tw_last_error()[0]) printf("child: %s\n", tw_last_error());
    if (ba) tw_buffer_free(ba);
    if (bb) tw_buffer_free(bb);
    if (bc) tw_buffer_free(bc);
    tw_device_close(dev);
    return code;
}

/* "tune" mode (by hand, not run by ctest: it times 4096^3 and the presets' shapes):
 * tw_device_tune on opencl:0 with its progress printed. */
static void progress(int done, int total, const char *label, void *user) {
    (void)user;
    printf("[%d/%d] %s\n", done, total, label);
    fflush(stdout);
}

static int tune_all(void) {
    tw_device *dev = NULL;
    if (tw_device_open("opencl:0", &dev) != TW_OK) return TW_TEST_SKIP;
    tw_tune_request request = {.retune = true, .progress = progress};
    const tw_status status = tw_device_tune(dev, &request);
    if (status != TW_OK) printf("tune: %s\n", tw_last_error());
    tw_device_close(dev);
    return status == TW_OK ? 0 : 1;
}

static char dir[256];
static char self[4096];

static char *read_all(const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = calloc(1, 1 << 20);
    if (text && fread(text, 1, (1 << 20) - 1, file) == 0) text[0] = '\0';
    fclose(file);
    return text;
}

/* The tuning cache file of the child's device (tune-opencl-*.txt), or "" when none. */
static void cache_file(char *out, size_t size) {
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *entry;
    while ((entry = readdir(d)))
        if (strncmp(entry->d_name, "tune-opencl-", 12) == 0)
            snprintf(out, size, "%s/%s", dir, entry->d_name);
    closedir(d);
}

/* Runs the child with `env` (NAME=value strings, NULL-terminated) added to ours; returns its
 * exit code and its stderr (caller frees). */
static int run_child_impl(const char *const *env, const char *impl, char **err_text) {
    char err_path[512];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int count = 0;
    while (environ[count]) count++;
    char **envp = calloc((size_t)count + 16, sizeof *envp);
    int n = 0;
    for (int i = 0; i < count; i++) {
        /* Ours minus the variables the steps set themselves. */
        if (strncmp(environ[i], "TWIST_TUNE=", 11) == 0 ||
            strncmp(environ[i], "TWIST_CL_TUNE_", 14) == 0 ||
            strncmp(environ[i], "TWIST_GEMM_VERBOSE=", 19) == 0 ||
            strncmp(environ[i], "TWIST_QUIET=", 12) == 0)
            continue;
        envp[n++] = environ[i];
    }
    for (int i = 0; env[i] && n < count + 15; i++) envp[n++] = (char *)env[i];
    char *argv[] = {self, "child", (char *)impl, NULL};
    pid_t pid = 0;
    int code = -1;
    if (posix_spawn(&pid, self, &actions, NULL, argv, envp) == 0) {
        int status = 0;
        waitpid(pid, &status, 0);
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    }
    posix_spawn_file_actions_destroy(&actions);
    free(envp);
    *err_text = read_all(err_path);
    if (!*err_text) *err_text = calloc(1, 1);
    return code;
}

static int run_child(const char *const *env, char **err_text) {
    return run_child_impl(env, NULL, err_text);
}

static int count_lines(const char *text, const char *needle) {
    int count = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) count++;
    return count;
}

/* Rewrites the cache file with `driver` as its driver line and a valid checksum. */
static void rewrite_driver(const char *path, const char *driver) {
    char *text = read_all(path);
    TW_CHECK(text != NULL, "no cache file %s", path);
    if (!text) return;
    char *line = strstr(text, "\ndriver ");
    char *sum = strstr(text, "\nchecksum ");
    TW_CHECK(line && sum, "cache file %s has no driver/checksum line", path);
    if (line && sum) {
        char *end = strchr(line + 1, '\n');
        char out[1 << 16];
        int length = snprintf(out, sizeof out, "%.*s\ndriver %s%.*s\n", (int)(line - text), text,
                              driver, (int)(sum - end), end);
        const uint64_t hash = tw_fnv1a64(TW_FNV1A_INIT, out, (size_t)length);
        snprintf(out + length, sizeof out - (size_t)length, "checksum %016llx\n",
                 (unsigned long long)hash);
        FILE *file = fopen(path, "wb");
        if (file) {
            fputs(out, file);
            fclose(file);
        }
    }
    free(text);
}

static void expect_choice(const char *step, const char *variant) {
    char path[512];
    cache_file(path, sizeof path);
    char *text = path[0] ? read_all(path) : NULL;
    const char *at = text ? strstr(text, class_line) : NULL;
    TW_CHECK(at != NULL, "%s: the cache file (%s) has no \"%s\" line", step,
             path[0] ? path : "none", class_line);
    if (at && variant) {
        char got[64] = "";
        sscanf(at + strlen(class_line), "%63s", got);
        TW_CHECK(strcmp(got, variant) == 0, "%s: cached %s, expected %s", step, got, variant);
    }
    free(text);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child(argc > 2 && strcmp(argv[2], "own") == 0);
    if (argc > 1 && strcmp(argv[1], "tune") == 0) return tune_all();
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    if (length <= 0) tw_test_skip("cannot find this program (/proc/self/exe)");
    self[length] = '\0';
    tw_test_temp_dir("cl-gemm-tune", dir, sizeof dir);
    setenv("TWIST_CACHE_DIR", dir, 1);
    char *err = NULL, path[512];

    /* 1. First process: timing, file written. */
    const char *verbose[] = {"TWIST_TUNE=verbose", NULL};
    int code = run_child(verbose, &err);
    if (code == TW_TEST_SKIP) {
        free(err);
        tw_test_remove_temp_dir(dir);
        tw_test_skip("no opencl:0");
    }
    TW_CHECK(code == 0, "step 1: child exit %d: %s", code, err);
    TW_CHECK(count_lines(err, measured) >= 2, "step 1: no measurements on stderr: %s", err);
    expect_choice("step 1", NULL);
    free(err);

    /* 2. Second process: the cached choice, no timing. */
    code = run_child(verbose, &err);
    TW_CHECK(code == 0, "step 2: child exit %d: %s", code, err);
    TW_CHECK(count_lines(err, measured) == 0, "step 2: timed again despite the cache: %s", err);
    free(err);

    /* 3. Another driver version: ignored with a note, tuned again, rewritten for this one. */
    cache_file(path, sizeof path);
    char *before = read_all(path);
    rewrite_driver(path, "an-older-driver 0.1");
    code = run_child(verbose, &err);
    TW_CHECK(code == 0, "step 3: child exit %d: %s", code, err);
    TW_CHECK(strstr(err, "written for driver \"an-older-driver 0.1\"") != NULL,
             "step 3: no note about the other driver: %s", err);
    TW_CHECK(count_lines(err, measured) >= 2, "step 3: not tuned again: %s", err);
    char *after = read_all(path);
    const char *old_line = before ? strstr(before, "\ndriver ") : NULL;
    const char *new_line = after ? strstr(after, "\ndriver ") : NULL;
    TW_CHECK(old_line && new_line && strstr(after, "an-older-driver") == NULL &&
                 strncmp(old_line, new_line, strcspn(old_line + 1, "\n") + 1) == 0,
             "step 3: the file was not rewritten for this driver: %s", after ? after : "");
    free(before);
    free(after);
    free(err);

    /* 4. A damaged file (one byte of the class name changed): ignored, rebuilt. */
    char *text = read_all(path);
    char *at = text ? strstr(text, class_line) : NULL;
    TW_CHECK(at != NULL, "step 4: no class line to damage");
    if (at) {
        at[6] = 'X'; /* "gemm NX-..." */
        FILE *file = fopen(path, "wb");
        if (file) {
            fputs(text, file);
            fclose(file);
        }
        code = run_child(verbose, &err);
        TW_CHECK(code == 0, "step 4: child exit %d: %s", code, err);
        TW_CHECK(strstr(err, "checksum does not match") != NULL,
                 "step 4: no note about the damaged file: %s", err);
        TW_CHECK(count_lines(err, measured) >= 2, "step 4: not tuned again: %s", err);
        expect_choice("step 4", NULL);
        free(err);
    }
    free(text);

    /* 5. GPU tiles as candidates (the tuner skips them on CPU devices by default): each is
     * timed, none is skipped. */
    remove(path);
    const char *gpu[] = {"TWIST_TUNE=verbose",
                         "TWIST_CL_TUNE_CANDIDATES=cpu,small,medium,splitk,vendor", NULL};
    code = run_child(gpu, &err);
    TW_CHECK(code == 0, "step 5: child exit %d: %s", code, err);
    TW_CHECK(strstr(err, "single: small ") && strstr(err, "single: medium ") &&
                 strstr(err, "single: vendor ") && !strstr(err, "skipped"),
             "step 5: candidates not all timed: %s", err);
    free(err);

    /* 6. Faults: small fails to build, medium and vendor give wrong results: all skipped, the
     * choice is cpu (the reference, the only correct candidate left) and the child's result is
     * right. */
    remove(path);
    const char *faults[] = {"TWIST_TUNE=verbose",
                            "TWIST_CL_TUNE_CANDIDATES=cpu,small,medium,vendor",
                            "TWIST_CL_TUNE_FAULT=small:build,medium:wrong,vendor:wrong", NULL};
    code = run_child(faults, &err);
    TW_CHECK(code == 0, "step 6: child exit %d: %s", code, err);
    TW_CHECK(strstr(err, "small skipped: failed") != NULL, "step 6: small not skipped: %s", err);
    TW_CHECK(strstr(err, "medium skipped: wrong results") != NULL,
             "step 6: medium not skipped: %s", err);
    TW_CHECK(strstr(err, "vendor skipped: wrong results") != NULL,
             "step 6: vendor not skipped: %s", err);
    expect_choice("step 6", "cpu");
    free(err);

    /* 7. A cache saying CLBlast wins and the best own variant is small: the AUTO child runs
     * CLBlast and the TW_GEMM_OWN child small, without timing; a wrong-results fault in the
     * variant that must run shows that it did. */
    cache_file(path, sizeof path);
    if (!path[0]) snprintf(path, sizeof path, "%s/none", dir);
    text = read_all(path);
    char *driver_line = text ? strstr(text, "\ndriver ") : NULL;
    TW_CHECK(driver_line != NULL, "step 7: no cache file to start from");
    if (driver_line) {
        char out[4096];
        const int used = snprintf(out, sizeof out, "twist-tune 1%.*s\n%svendor\n%.23s.own small\n",
                              (int)strcspn(driver_line + 1, "\n") + 1, driver_line, class_line,
                              class_line);
        snprintf(out + used, sizeof out - (size_t)used, "checksum %016llx\n",
                 (unsigned long long)tw_fnv1a64(TW_FNV1A_INIT, out, (size_t)used));
        FILE *file = fopen(path, "wb");
        if (file) {
            fputs(out, file);
            fclose(file);
        }
        const char *plain[] = {"TWIST_TUNE=verbose", NULL};
        const char *vendor_wrong[] = {"TWIST_TUNE=verbose", "TWIST_CL_TUNE_FAULT=vendor:wrong",
                                      NULL};
        const char *small_wrong[] = {"TWIST_TUNE=verbose", "TWIST_CL_TUNE_FAULT=small:wrong",
                                     NULL};
        const struct {
            const char *const *env;
            const char *impl;
            int expect;
        } runs[] = {{plain, NULL, 0}, {vendor_wrong, NULL, 1}, {small_wrong, NULL, 0},
                    {plain, "own", 0}, {small_wrong, "own", 1}, {vendor_wrong, "own", 0}};
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            code = run_child_impl(runs[r].env, runs[r].impl, &err);
            TW_CHECK(code == runs[r].expect, "step 7 (%s, %s): child exit %d, expected %d: %s",
                     runs[r].impl ? "own" : "auto", runs[r].env[1] ? runs[r].env[1] : "no fault",
                     code, runs[r].expect, err);
            TW_CHECK(count_lines(err, measured) == 0, "step 7: timed despite the cache: %s", err);
            free(err);
        }
    }
    free(text);

    /* 8. TWIST_TUNE=off: the default variant, nothing timed, no file. */
    remove(path);
    const char *off[] = {"TWIST_TUNE=off", NULL};
    code = run_child(off, &err);
    TW_CHECK(code == 0, "step 8: child exit %d: %s", code, err);
    TW_CHECK(count_lines(err, measured) == 0, "step 8: timed with TWIST_TUNE=off: %s", err);
    cache_file(path, sizeof path);
    TW_CHECK(path[0] == '\0', "step 8: TWIST_TUNE=off wrote %s", path);
    free(err);

    const int failures = tw_test_failures();
    if (failures == 0) tw_test_remove_temp_dir(dir);
    return tw_test_finish("cl_gemm_tune");
}
