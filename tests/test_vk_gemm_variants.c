/* Every Vulkan GEMM variant (backends/vulkan/vk_gemm.c), forced in turn with
 * tw_device_force_kernel_variant, against tests/reference.c in double precision:
 *
 *   test_vk_gemm_variants [--device vulkan:N]      (default vulkan:0; skipped without one)
 *
 * Cases: the four transpose cases (two per shape, alternating); odd sizes (edges of every tile,
 * quads crossing the matrix edge); aligned rows (vec4 loads, the texel shader) and unaligned
 * ones (offsets and leading dimensions not multiples of 4); strided batches and a broadcast B
 * (batch stride 0); beta 0 with NaN in C (must not reach the result), 1 and -0.5; k = 0; long-k
 * skinny shapes where the split-K variants split. Around every C the buffer holds NaN padding
 * that must come back unchanged.
 * Each case runs twice: split-K's fixed-order reduction must give the same bits both times.
 * Tolerance: 1e-5 * sqrt(max(k, 1)) relative to the largest |C| (as the conformance suite).
 *
 * Then tw_device_tune (`twist tune`) over the shape classes up to 3e8 flops (test-only
 * TWIST_VK_TUNE_MAX_FLOPS; the tiny preset's smallest GEMMs), in a fresh cache directory: every
 * class reported once through the progress callback and written to the cache; a second tune
 * finds them all cached; a retune times them again. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"

static tw_test_rng rng;

typedef struct gemm_case {
    int m, n, k, batch;
    bool ta, tb, aligned, broadcast_b;
    float alpha, beta;
} gemm_case;

/* Elements a (rows, cols) operand of `batch` matrices occupies with row stride ld, stride apart,
 * starting at off. */
static size_t extent(size_t off, int batch, int rows, int cols, int64_t ld, int64_t stride) {
    if (rows == 0 || cols == 0) return off + 1;
    return off + (size_t)(batch - 1) * (size_t)stride + (size_t)(rows - 1) * (size_t)ld +
           (size_t)cols + 1;
}

static tw_buffer *upload(tw_device *device, const float *x, size_t count) {
    tw_buffer *buffer = NULL;
    TW_CHECK_OK(tw_buffer_alloc(device, count * sizeof(float), &buffer));
    if (buffer) TW_CHECK_OK(tw_buffer_upload(buffer, 0, x, count * sizeof(float)));
    return buffer;
}

/* Runs one case with the forced variant; returns false on a failure (already reported). */
static bool run_case(tw_device *device, const char *variant, const gemm_case *gc) {
    const int rows_a = gc->ta ? gc->k : gc->m, cols_a = gc->ta ? gc->m : gc->k;
    const int rows_b = gc->tb ? gc->n : gc->k, cols_b = gc->tb ? gc->k : gc->n;
    const int pad = gc->aligned ? 4 : 3;
    const size_t off_a = gc->aligned ? 8 : 1, off_b = gc->aligned ? 4 : 3, off_c = 5;
    tw_gemm_args g = {.dtype = TW_DTYPE_F32, .trans_a = gc->ta, .trans_b = gc->tb, .m = gc->m,
                      .n = gc->n, .k = gc->k, .batch = gc->batch, .alpha = gc->alpha,
                      .beta = gc->beta};
    g.lda = cols_a + pad;
    g.ldb = cols_b + pad;
    g.ldc = gc->n + 2;
    g.stride_a = (int64_t)rows_a * g.lda + (gc->aligned ? 4 : 1);
    g.stride_b = gc->broadcast_b ? 0 : (int64_t)rows_b * g.ldb + (gc->aligned ? 8 : 5);
    g.stride_c = (int64_t)gc->m * g.ldc + 3;
    const size_t na = extent(off_a, gc->batch, rows_a, cols_a, g.lda, g.stride_a);
    const size_t nb = extent(off_b, gc->batch, rows_b, cols_b, g.ldb, g.stride_b);
    const size_t nc = extent(off_c, gc->batch, gc->m, gc->n, g.ldc, g.stride_c);
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    float *got = malloc(nc * sizeof *got);
    double *da = malloc(na * sizeof *da), *db = malloc(nb * sizeof *db);
    double *want = malloc(nc * sizeof *want);
    tw_test_fill_uniform(&rng, a, na, -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, b, nb, -1.0f, 1.0f);
    for (size_t i = 0; i < nc; i++) c[i] = NAN;
    for (int p = 0; p < gc->batch; p++)
        for (int r = 0; r < gc->m; r++)
            for (int j = 0; j < gc->n; j++) {
                size_t at = off_c + (size_t)p * (size_t)g.stride_c + (size_t)r * (size_t)g.ldc +
                            (size_t)j;
                c[at] = gc->beta == 0.0f ? NAN : tw_test_rng_uniform(&rng, -1.0f, 1.0f);
            }
    for (size_t i = 0; i < na; i++) da[i] = a[i];
    for (size_t i = 0; i < nb; i++) db[i] = b[i];
    for (size_t i = 0; i < nc; i++) want[i] = c[i];
    ref_gemm(gc->ta, gc->tb, gc->m, gc->n, gc->k, gc->batch, gc->alpha, da + off_a, g.lda,
             g.stride_a, db + off_b, g.ldb, g.stride_b, gc->beta, want + off_c, g.ldc,
             g.stride_c);

    char shape[200];
    snprintf(shape, sizeof shape, "%s: m=%d n=%d k=%d batch=%d op=%c%c %s%s alpha=%g beta=%g",
             variant, gc->m, gc->n, gc->k, gc->batch, gc->ta ? 'T' : 'N', gc->tb ? 'T' : 'N',
             gc->aligned ? "aligned" : "unaligned", gc->broadcast_b ? " broadcast-B" : "",
             gc->alpha, gc->beta);
    bool ok = true;
    tw_buffer *ba = upload(device, a, na), *bb = upload(device, b, nb);
    float *first = malloc(nc * sizeof *first);
    for (int run = 0; run < 2 && ok && ba && bb; run++) {
        tw_buffer *bc = upload(device, c, nc);
        if (!bc) {
            ok = false;
            break;
        }
        g.a = (tw_mem){.buffer = ba, .offset = off_a};
        g.b = (tw_mem){.buffer = bb, .offset = off_b};
        g.c = (tw_mem){.buffer = bc, .offset = off_c};
        tw_status status = tw_gemm(device, &g);
        if (status == TW_OK) status = tw_buffer_download(bc, 0, got, nc * sizeof(float));
        tw_buffer_free(bc);
        if (status != TW_OK) {
            tw_test_fail(__FILE__, __LINE__, "%s: %s", shape, tw_last_error());
            ok = false;
            break;
        }
        if (run == 1) {
            if (memcmp(first, got, nc * sizeof(float)) != 0) {
                tw_test_fail(__FILE__, __LINE__, "%s: two runs gave different bits", shape);
                ok = false;
            }
            break;
        }
        memcpy(first, got, nc * sizeof(float));
        double scale = 0.0, err = 0.0;
        size_t worst = 0;
        for (size_t i = 0; i < nc; i++) {
            if (isnan(want[i]) || isnan(got[i])) {
                if (isnan(want[i]) && isnan(got[i])) continue;
                tw_test_fail(__FILE__, __LINE__, "%s: element %zu is %g, want %g", shape, i,
                             (double)got[i], want[i]);
                ok = false;
                break;
            }
            scale = fmax(scale, fabs(want[i]));
            if (fabs(got[i] - want[i]) > err) {
                err = fabs(got[i] - want[i]);
                worst = i;
            }
        }
        const double tol = 1e-5 * sqrt(gc->k > 1 ? (double)gc->k : 1.0);
        if (ok && err > tol * fmax(scale, 1e-30)) {
            tw_test_fail(__FILE__, __LINE__,
                         "%s: error %.3g > %.3g (element %zu: got %.9g, want %.9g)", shape,
                         err / fmax(scale, 1e-30), tol, worst, (double)got[worst], want[worst]);
            ok = false;
        }
    }
    tw_buffer_free(ba);
    tw_buffer_free(bb);
    free(a), free(b), free(c), free(got), free(da), free(db), free(want), free(first);
    return ok;
}

typedef struct progress_log {
    int calls, last_done, total, cached;
    char labels[4096];
} progress_log;

static void on_progress(int done, int total, const char *label, void *user) {
    progress_log *log = user;
    TW_CHECK(done == log->last_done + 1 && done <= total, "progress %d of %d after %d", done,
             total, log->last_done);
    log->calls++;
    log->last_done = done;
    log->total = total;
    if (strstr(label, "(cached)")) log->cached++;
    if (strlen(log->labels) + strlen(label) + 2 < sizeof log->labels) {
        strcat(log->labels, label);
        strcat(log->labels, "\n");
    }
}

/* Runs tw_device_tune and returns what the progress callback saw. */
static progress_log tune(tw_device *device, bool retune) {
    progress_log log = {0};
    tw_tune_request request = {.retune = retune, .progress = on_progress, .user = &log};
    TW_CHECK_OK(tw_device_tune(device, &request));
    return log;
}

static void check_tune(tw_device *device, const char *cache_dir) {
    progress_log first = tune(device, false);
    printf("tune: %d classes\n%s", first.calls, first.labels);
    TW_CHECK(first.calls >= 2 && first.calls == first.total && first.cached == 0,
             "first tune: %d calls of %d, %d cached", first.calls, first.total, first.cached);
    char path[1200];
    snprintf(path, sizeof path, "%s", cache_dir);
    FILE *list = NULL;
    char command[1400];
    snprintf(command, sizeof command, "cat %s/tune-vulkan-*.txt 2>/dev/null | grep -c '^gemm '",
             cache_dir);
    list = popen(command, "r");
    int entries = 0;
    if (list) {
        if (fscanf(list, "%d", &entries) != 1) entries = 0;
        pclose(list);
    }
    TW_CHECK(entries == first.calls, "the tuning cache in %s holds %d gemm entries, want %d",
             path, entries, first.calls);
    progress_log again = tune(device, false);
    TW_CHECK(again.calls == first.calls && again.cached == again.calls,
             "second tune: %d of %d classes cached", again.cached, again.calls);
    progress_log retuned = tune(device, true);
    TW_CHECK(retuned.calls == first.calls && retuned.cached == 0,
             "retune: %d of %d classes came from the cache", retuned.cached, retuned.calls);
}

int main(int argc, char **argv) {
    const char *spec = "vulkan:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--device vulkan:N]\n", argv[0]);
            return 2;
        }
    }
    /* The tuning part writes its cache here (set before the device opens its cache). */
    char cache_dir[1024];
    tw_test_temp_dir("vk-gemm-tune", cache_dir, sizeof cache_dir);
    setenv("TWIST_CACHE_DIR", cache_dir, 1);
    setenv("TWIST_VK_TUNE_MAX_FLOPS", "3e8", 1);
    unsetenv("TWIST_TUNE");
    tw_device *device = NULL;
    if (tw_device_open(spec, &device) != TW_OK) tw_test_skip("%s", tw_last_error());
    tw_test_rng_seed(&rng, 20261205);

    const char *names[64];
    int count = tw_device_kernel_variants(device, "gemm", names, 64);
    printf("device %s: %d gemm variants\n", tw_device_get_info(device)->spec, count);
    TW_CHECK(count >= 2 && count <= 64, "expected the gemm variants, got %d", count);
    TW_CHECK_ERROR(tw_device_force_kernel_variant(device, "gemm", "no_such_variant"),
                   TW_ERR_NOT_FOUND, count > 0 ? names[0] : "variant");
    TW_CHECK_ERROR(tw_device_force_kernel_variant(device, "softmax_fwd", "x"), TW_ERR_NOT_FOUND,
                   "single");

    /* m, n, k, batch, aligned, broadcast_b. */
    static const int shapes[][6] = {
        {1, 1, 1, 1, 0, 0},     {3, 5, 7, 1, 0, 0},      {7, 9, 0, 2, 1, 0},
        {33, 65, 17, 1, 1, 0},  {65, 33, 129, 1, 0, 0},  {64, 128, 64, 1, 1, 0},
        {130, 70, 40, 3, 1, 1}, {129, 131, 33, 2, 0, 0}, {16, 24, 1000, 1, 1, 0},
        {9, 5, 700, 2, 0, 0},   {200, 8, 300, 1, 1, 0}};
    static const float alphas[] = {1.0f, -1.25f, 0.5f};
    static const float betas[] = {0.0f, 1.0f, -0.5f};
    for (int v = 0; v < count && v < 64; v++) {
        TW_CHECK_OK(tw_device_force_kernel_variant(device, "gemm", names[v]));
        int cases = 0, failed = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int half = 0; half < 2; half++) {
                /* Two transpose cases per shape, all four over consecutive shapes. */
                const int t = (int)((s + (size_t)half * 2) % 4);
                const int *x = shapes[s];
                gemm_case gc = {x[0], x[1], x[2], x[3], t & 1, t >> 1, x[4] != 0, x[5] != 0,
                                alphas[(s + (size_t)t) % 3], betas[(s * 4 + (size_t)t) % 3]};
                cases++;
                if (!run_case(device, names[v], &gc)) failed++;
            }
        printf("%-30s %3d cases  %s\n", names[v], cases, failed ? "FAIL" : "ok");
        fflush(stdout);
    }
    TW_CHECK_OK(tw_device_force_kernel_variant(device, "gemm", NULL));
    check_tune(device, cache_dir);
    TW_CHECK(tw_device_bytes_in_use(device) == 0, "device bytes still in use: %zu",
             tw_device_bytes_in_use(device));
    tw_device_close(device);
    if (tw_test_failures() == 0) tw_test_remove_temp_dir(cache_dir);
    return tw_test_finish("vk_gemm_variants");
}
