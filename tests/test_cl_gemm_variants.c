/* Every OpenCL GEMM variant (backends/opencl/gemm_own.h, plus CLBlast "vendor") forced in turn
 * through tw_device_force_kernel_variant on opencl:0 and compared with the double-precision CPU
 * reference (tests/reference.c): all four transpose cases, strided batches (and a broadcast B
 * with batch stride 0), odd sizes that leave partial tiles and partial float4 vectors, 4-float
 * aligned operands (the float4 load/store paths) and unaligned offsets / leading dimensions (the
 * scalar paths), beta 0 with C full of NaN (C must not be read), beta 1 and -0.5, alpha 0.5,
 * k == 0, and long-k shapes with few output tiles (split-K with its fixed-order reduction, run
 * twice for identical bits). Skips when there is no opencl:0. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"
#include "twist/backend.h"
#include "twist/error.h"

typedef struct gemm_case {
    bool ta, tb;
    int m, n, k, batch;
    int pad;     /* extra floats per row of every operand (0: compact) */
    size_t off;  /* element offset of A, B and C */
    float alpha, beta;
    bool broadcast_b; /* batch stride of B is 0 */
} gemm_case;

static tw_device *dev;

/* Runs one case with the forced variant; false (after a failure is recorded) on mismatch.
 * `bits` (may be NULL) receives C for the determinism check. */
static bool run_case(const char *variant, const gemm_case *c, float *bits) {
    const int a_rows = c->ta ? c->k : c->m, a_cols = c->ta ? c->m : c->k;
    const int b_rows = c->tb ? c->n : c->k, b_cols = c->tb ? c->k : c->n;
    const int64_t lda = a_cols + c->pad, ldb = b_cols + c->pad, ldc = c->n + c->pad;
    const int64_t sa = (int64_t)a_rows * lda, sb = c->broadcast_b ? 0 : (int64_t)b_rows * ldb,
                  sc = (int64_t)c->m * ldc;
    const size_t na = c->off + (size_t)sa * c->batch + 1;
    const size_t nb = c->off + (size_t)(c->broadcast_b ? b_rows * ldb : sb * c->batch) + 1;
    const size_t nc = c->off + (size_t)sc * c->batch + 1;
    float *a = malloc(na * 4), *b = malloc(nb * 4), *cc = malloc(nc * 4);
    double *ad = malloc(na * 8), *bd = malloc(nb * 8), *cd = malloc(nc * 8);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, (uint64_t)(c->m * 131 + c->n * 7 + c->k));
    tw_test_fill_uniform(&rng, a, na, -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, b, nb, -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, cc, nc, -1.0f, 1.0f);
    if (c->beta == 0.0f)
        for (size_t i = 0; i < nc; i++) cc[i] = NAN; /* must not be read */
    for (size_t i = 0; i < na; i++) ad[i] = a[i];
    for (size_t i = 0; i < nb; i++) bd[i] = b[i];
    for (size_t i = 0; i < nc; i++) cd[i] = cc[i];

    tw_buffer *ba = NULL, *bb = NULL, *bc = NULL;
    bool ok = true;
    TW_CHECK_OK(tw_buffer_alloc(dev, na * 4, &ba));
    TW_CHECK_OK(tw_buffer_alloc(dev, nb * 4, &bb));
    TW_CHECK_OK(tw_buffer_alloc(dev, nc * 4, &bc));
    if (ba && bb && bc) {
        TW_CHECK_OK(tw_buffer_upload(ba, 0, a, na * 4));
        TW_CHECK_OK(tw_buffer_upload(bb, 0, b, nb * 4));
        TW_CHECK_OK(tw_buffer_upload(bc, 0, cc, nc * 4));
        tw_gemm_args g = {.dtype = TW_DTYPE_F32, .trans_a = c->ta, .trans_b = c->tb, .m = c->m,
                          .n = c->n, .k = c->k, .batch = c->batch, .alpha = c->alpha,
                          .beta = c->beta, .lda = lda, .ldb = ldb, .ldc = ldc, .stride_a = sa,
                          .stride_b = sb, .stride_c = sc};
        g.a = tw_at(ba, c->off);
        g.b = tw_at(bb, c->off);
        g.c = tw_at(bc, c->off);
        tw_status status = tw_gemm(dev, &g);
        if (status == TW_OK) status = tw_buffer_download(bc, 0, cc, nc * 4);
        if (status != TW_OK) {
            tw_test_fail(__FILE__, __LINE__, "%s: gemm %dx%dx%d failed: %s", variant, c->m, c->n,
                         c->k, tw_last_error());
            ok = false;
        }
    } else {
        ok = false;
    }
    if (ok) {
        ref_gemm(c->ta, c->tb, c->m, c->n, c->k, c->batch, c->alpha, ad + c->off, lda, sa,
                 bd + c->off, ldb, sb, c->beta, cd + c->off, ldc, sc);
        const double tol = 1e-5 * sqrt(c->k > 1 ? (double)c->k : 1.0) + 1e-6;
        double worst = 0.0;
        size_t at = 0;
        for (size_t i = 0; i < nc; i++) {
            /* Gaps between rows and past the end must be untouched (NaN stays NaN). */
            const bool inside_nan = isnan(cd[i]) && isnan(cc[i]);
            const double d = inside_nan ? 0.0 : fabs((double)cc[i] - cd[i]);
            if (!(d <= worst)) {
                worst = isnan(d) ? INFINITY : d;
                at = i;
            }
        }
        if (!(worst <= tol * (1.0 + fabs(cd[at])))) {
            tw_test_fail(__FILE__, __LINE__,
                         "%s: %c%c m=%d n=%d k=%d batch=%d pad=%d off=%zu alpha=%g beta=%g%s: "
                         "element %zu is %g, expected %g",
                         variant, c->ta ? 'T' : 'N', c->tb ? 'T' : 'N', c->m, c->n, c->k,
                         c->batch, c->pad, c->off, c->alpha, c->beta,
                         c->broadcast_b ? " broadcast B" : "", at, cc[at], cd[at]);
            ok = false;
        }
        if (bits) memcpy(bits, cc, nc * 4);
    }
    if (ba) tw_buffer_free(ba);
    if (bb) tw_buffer_free(bb);
    if (bc) tw_buffer_free(bc);
    free(a), free(b), free(cc), free(ad), free(bd), free(cd);
    return ok;
}

/* Shapes: (m, n, k, batch, pad, offset). Aligned ones (pad and offset multiples of 4, sizes
 * multiples of 4) take the float4 paths; the others the scalar edges. */
static const int shapes[][6] = {
    {1, 1, 1, 1, 0, 0},       {3, 5, 7, 1, 1, 1},      {33, 17, 9, 1, 0, 3},
    {64, 64, 32, 1, 0, 0},    {128, 128, 48, 1, 4, 4}, {130, 66, 37, 2, 0, 0},
    {72, 136, 20, 3, 4, 8},   {31, 129, 65, 1, 3, 7},  {40, 36, 600, 1, 0, 0},
    {20, 24, 333, 2, 0, 4},   {5, 3, 0, 2, 0, 0},      {96, 40, 17, 1, 2, 2},
};

static void test_variant(const char *variant) {
    TW_CHECK_OK(tw_device_force_kernel_variant(dev, "gemm", variant));
    const float alphas[] = {1.0f, 0.5f, -1.0f};
    const float betas[] = {0.0f, 1.0f, -0.5f};
    int failures = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int t = 0; t < 4; t++) {
            gemm_case c = {.ta = t >> 1, .tb = t & 1, .m = shapes[s][0], .n = shapes[s][1],
                           .k = shapes[s][2], .batch = shapes[s][3], .pad = shapes[s][4],
                           .off = (size_t)shapes[s][5], .alpha = alphas[(s + t) % 3],
                           .beta = betas[(s * 4 + t) % 3]};
            c.broadcast_b = c.batch > 1 && t == 2;
            cases++;
            if (!run_case(variant, &c, NULL)) failures++;
        }
    }
    /* Split-K (few output tiles, long k): the same bits twice. */
    gemm_case c = {.ta = false, .tb = true, .m = 40, .n = 36, .k = 700, .batch = 1,
                   .alpha = 1.0f, .beta = 1.0f};
    const size_t nc = (size_t)40 * 36 + 1;
    float *first = malloc(nc * 4), *second = malloc(nc * 4);
    if (run_case(variant, &c, first) && run_case(variant, &c, second))
        TW_CHECK(memcmp(first, second, nc * 4) == 0, "%s: two runs differ in their bits",
                 variant);
    free(first);
    free(second);
    printf("%-8s %d cases, %d failed\n", variant, cases + 2, failures);
}

/* argv[1], optional: test only that variant (to look at one). */
int main(int argc, char **argv) {
    tw_status status = tw_device_open("opencl:0", &dev);
    if (status != TW_OK) tw_test_skip("no opencl:0 (%s)", tw_last_error());
    const char *names[32];
    const int count = tw_device_kernel_variants(dev, "gemm", names, 32);
    TW_CHECK(count >= 9, "opencl gemm lists %d variants, expected cpu, tiled, large, large32, "
             "wide, medium, small, splitk and vendor (PoCL allows every one)", count);
    for (int i = 0; i < count && i < 32; i++)
        if (argc < 2 || strcmp(argv[1], names[i]) == 0) test_variant(names[i]);

    TW_CHECK_ERROR(tw_device_force_kernel_variant(dev, "gemm", "nonesuch"), TW_ERR_NOT_FOUND,
                   "large");
    TW_CHECK_OK(tw_device_force_kernel_variant(dev, "gemm", NULL));
    tw_device_close(dev);
    return tw_test_finish("cl_gemm_variants");
}
