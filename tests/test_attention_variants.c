/* Every kernel variant of attention_fwd and attention_bwd on one device (--device SPEC), each
 * forced in turn (tw_device_force_kernel_variant), against the cpu backend (the reference):
 *   - the model's layout: one packed (B, T, 3C) QKV buffer, q/k/v at offsets 0, C, 2C, stride
 *     {T*3C, D, 3C}; out and dout (B, T, C);
 *   - head dims 32, 64, 128 and 36 (not a multiple of the tiles' 8 columns), T = 77 and 33 (not
 *     a multiple of any block size), so partial blocks and the causal diagonal are covered;
 *   - forward out and lse; backward dq, dk, dv added into non-zero buffers;
 *   - the backward run twice gives the same bits (no atomics, fixed summation order);
 *   - the device's peak bytes during forward + backward grow linearly in T (T and 2T);
 *   - an unknown variant name is refused with the names; NULL returns to the device's choice.
 * Exits 77 (skip) when the device is absent or has a single attention kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/error.h"

typedef struct shape {
    int B, H, T, D;
} shape;

/* The packed layout's buffers and arguments for one shape. */
typedef struct run_bufs {
    tw_buffer *qkv, *dqkv, *out, *dout, *lse;
    tw_attention_args args;
} run_bufs;

static size_t qkv_count(shape s) { return (size_t)s.B * s.T * 3 * s.H * s.D; }
static size_t out_count(shape s) { return (size_t)s.B * s.T * s.H * s.D; }
static size_t lse_count(shape s) { return (size_t)s.B * s.H * s.T; }

static tw_status bufs_make(tw_device *device, shape s, run_bufs *r) {
    memset(r, 0, sizeof *r);
    const int64_t C = (int64_t)s.H * s.D;
    TW_TRY(tw_buffer_alloc(device, qkv_count(s) * sizeof(float), &r->qkv));
    TW_TRY(tw_buffer_alloc(device, qkv_count(s) * sizeof(float), &r->dqkv));
    TW_TRY(tw_buffer_alloc(device, out_count(s) * sizeof(float), &r->out));
    TW_TRY(tw_buffer_alloc(device, out_count(s) * sizeof(float), &r->dout));
    TW_TRY(tw_buffer_alloc(device, lse_count(s) * sizeof(float), &r->lse));
    r->args = (tw_attention_args){
        .dtype = TW_DTYPE_F32,
        .batch = s.B,
        .heads = s.H,
        .seq_len = s.T,
        .head_dim = s.D,
        .scale = 1.0f / sqrtf((float)s.D),
        .qkv_stride = {(int64_t)s.T * 3 * C, s.D, 3 * C},
        .out_stride = {(int64_t)s.T * C, s.D, C},
        .q = {r->qkv, 0},
        .k = {r->qkv, (size_t)C},
        .v = {r->qkv, 2 * (size_t)C},
        .out = {r->out, 0},
        .lse = {r->lse, 0},
        .dout = {r->dout, 0},
        .dq = {r->dqkv, 0},
        .dk = {r->dqkv, (size_t)C},
        .dv = {r->dqkv, 2 * (size_t)C},
    };
    return TW_OK;
}

static void bufs_free(run_bufs *r) {
    tw_buffer_free(r->qkv);
    tw_buffer_free(r->dqkv);
    tw_buffer_free(r->out);
    tw_buffer_free(r->dout);
    tw_buffer_free(r->lse);
}

/* Results of forward + backward on one device. */
typedef struct results {
    float *out, *lse, *dqkv;
} results;

static void results_free(results *x) {
    free(x->out);
    free(x->lse);
    free(x->dqkv);
}

/* Uploads the inputs (qkv, dout, the gradient buffer's starting values), runs forward then
 * backward, downloads out, lse and the gradients. */
static tw_status run_both(tw_device *device, shape s, const float *qkv, const float *dout,
                          const float *dqkv0, results *x) {
    run_bufs r;
    tw_status status = bufs_make(device, s, &r);
    x->out = malloc(out_count(s) * sizeof(float));
    x->lse = malloc(lse_count(s) * sizeof(float));
    x->dqkv = malloc(qkv_count(s) * sizeof(float));
    if (status == TW_OK && (!x->out || !x->lse || !x->dqkv))
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "test: out of memory");
    if (status == TW_OK) status = tw_buffer_upload(r.qkv, 0, qkv, qkv_count(s) * sizeof(float));
    if (status == TW_OK) status = tw_buffer_upload(r.dout, 0, dout, out_count(s) * sizeof(float));
    if (status == TW_OK)
        status = tw_buffer_upload(r.dqkv, 0, dqkv0, qkv_count(s) * sizeof(float));
    if (status == TW_OK) status = tw_attention_fwd(device, &r.args);
    if (status == TW_OK) status = tw_attention_bwd(device, &r.args);
    if (status == TW_OK) status = tw_buffer_download(r.out, 0, x->out, out_count(s) * 4);
    if (status == TW_OK) status = tw_buffer_download(r.lse, 0, x->lse, lse_count(s) * 4);
    if (status == TW_OK) status = tw_buffer_download(r.dqkv, 0, x->dqkv, qkv_count(s) * 4);
    bufs_free(&r);
    return status;
}

/* Largest |got - want| / (1 + |want|) over n floats. */
static double worst(const float *got, const float *want, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1.0 + fabs((double)want[i]));
        if (!(e <= w)) w = e; /* NaN counts as worst */
    }
    return w;
}

static void check_shape(tw_device *device, tw_device *cpu, const char *variant, shape s) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 1234u + (uint64_t)s.D * 7u + (uint64_t)s.T);
    float *qkv = malloc(qkv_count(s) * sizeof(float));
    float *dout = malloc(out_count(s) * sizeof(float));
    float *dqkv0 = malloc(qkv_count(s) * sizeof(float));
    if (!qkv || !dout || !dqkv0) {
        TW_CHECK(false, "out of memory");
        free(qkv), free(dout), free(dqkv0);
        return;
    }
    tw_test_fill_uniform(&rng, qkv, qkv_count(s), -2.0f, 2.0f);
    tw_test_fill_uniform(&rng, dout, out_count(s), -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, dqkv0, qkv_count(s), -0.5f, 0.5f); /* added into */
    results want = {0}, got = {0}, again = {0};
    tw_status a = run_both(cpu, s, qkv, dout, dqkv0, &want);
    tw_status b = run_both(device, s, qkv, dout, dqkv0, &got);
    tw_status c = run_both(device, s, qkv, dout, dqkv0, &again);
    TW_CHECK(a == TW_OK && b == TW_OK && c == TW_OK, "%s B=%d H=%d T=%d D=%d: %s", variant, s.B,
             s.H, s.T, s.D, tw_last_error());
    if (a == TW_OK && b == TW_OK && c == TW_OK) {
        double e_out = worst(got.out, want.out, out_count(s));
        double e_lse = worst(got.lse, want.lse, lse_count(s));
        double e_grad = worst(got.dqkv, want.dqkv, qkv_count(s));
        printf("  %-6s B=%d H=%d T=%3d D=%3d  out %.2e  lse %.2e  dq/dk/dv %.2e\n", variant, s.B,
               s.H, s.T, s.D, e_out, e_lse, e_grad);
        TW_CHECK(e_out <= 1e-4 && e_lse <= 1e-4, "%s T=%d D=%d: forward off by %g / %g", variant,
                 s.T, s.D, e_out, e_lse);
        TW_CHECK(e_grad <= 2e-4, "%s T=%d D=%d: gradients off by %g", variant, s.T, s.D, e_grad);
        TW_CHECK(memcmp(got.dqkv, again.dqkv, qkv_count(s) * sizeof(float)) == 0 &&
                     memcmp(got.out, again.out, out_count(s) * sizeof(float)) == 0,
                 "%s T=%d D=%d: two runs differ (not deterministic)", variant, s.T, s.D);
    }
    results_free(&want), results_free(&got), results_free(&again);
    free(qkv), free(dout), free(dqkv0);
}

/* Peak device bytes of forward + backward beyond the argument buffers. */
static size_t scratch_peak(tw_device *device, shape s) {
    run_bufs r;
    tw_status status = bufs_make(device, s, &r);
    size_t before = tw_device_bytes_in_use(device);
    if (status == TW_OK) status = tw_buffer_fill_f32(r.qkv, 0, qkv_count(s), 0.1f);
    if (status == TW_OK) status = tw_buffer_fill_f32(r.dout, 0, out_count(s), 0.1f);
    if (status == TW_OK) status = tw_buffer_fill_f32(r.dqkv, 0, qkv_count(s), 0.0f);
    if (status == TW_OK) status = tw_device_sync(device);
    tw_device_reset_peak(device);
    if (status == TW_OK) status = tw_attention_fwd(device, &r.args);
    if (status == TW_OK) status = tw_attention_bwd(device, &r.args);
    if (status == TW_OK) status = tw_device_sync(device);
    size_t peak = tw_device_peak_bytes(device);
    TW_CHECK(status == TW_OK, "peak at T=%d: %s", s.T, tw_last_error());
    bufs_free(&r);
    return peak > before ? peak - before : 0;
}

static void force_both(tw_device *device, const char *name) {
    TW_CHECK_OK(tw_device_force_kernel_variant(device, "attention_fwd", name));
    TW_CHECK_OK(tw_device_force_kernel_variant(device, "attention_bwd", name));
}

int main(int argc, char **argv) {
    const char *spec = argc == 3 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    if (!spec) {
        fprintf(stderr, "usage: test_attention_variants --device SPEC\n");
        return 2;
    }
    tw_device *device = NULL, *cpu = NULL;
    tw_status status = tw_device_open(spec, &device);
    if (status == TW_ERR_NOT_FOUND || status == TW_ERR_UNSUPPORTED)
        tw_test_skip("%s: %s", spec, tw_last_error());
    TW_CHECK_OK(status);
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (!device || !cpu) return tw_test_finish("attention_variants");

    const char *fwd[8], *bwd[8];
    int nf = tw_device_kernel_variants(device, "attention_fwd", fwd, 8);
    int nb = tw_device_kernel_variants(device, "attention_bwd", bwd, 8);
    if (nf < 2 || nb < 2) {
        tw_device_close(device);
        tw_device_close(cpu);
        tw_test_skip("%s has a single attention kernel", spec);
    }
    TW_CHECK(nf == nb && nf <= 8, "attention_fwd has %d variants, attention_bwd %d", nf, nb);
    printf("%s (%s): attention variants:", spec, tw_device_get_info(device)->name);
    for (int v = 0; v < nf; v++) printf(" %s", fwd[v]);
    printf("\n");

    static const shape shapes[] = {{2, 2, 77, 32}, {1, 2, 77, 64}, {1, 2, 77, 128},
                                   {2, 1, 33, 36}};
    for (int v = 0; v < nf && v < 8; v++) {
        force_both(device, fwd[v]);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            check_shape(device, cpu, fwd[v], shapes[i]);
        /* Linear memory: the scratch at 2T at most twice that at T (a (T, T) matrix would be
         * four times), plus a little slack for rounding of allocations. */
        shape s1 = {1, 2, 128, 64}, s2 = {1, 2, 256, 64};
        size_t p1 = scratch_peak(device, s1), p2 = scratch_peak(device, s2);
        printf("  %-6s scratch bytes: T=128 %zu, T=256 %zu\n", fwd[v], p1, p2);
        TW_CHECK(p2 <= 2 * p1 + 4096, "%s: scratch grows faster than T: %zu -> %zu bytes",
                 fwd[v], p1, p2);
    }

    /* Unknown names are refused with the list; NULL returns to the device's own choice. */
    TW_CHECK_ERROR(tw_device_force_kernel_variant(device, "attention_fwd", "no-such-kernel"),
                   TW_ERR_NOT_FOUND, "tiled");
    force_both(device, NULL);
    check_shape(device, cpu, "chosen", shapes[1]);

    /* The device's choice for a small class (T <= 64, measured even on CPU devices) is measured
     * and stored in the tuning cache: a second context, opened once TWIST_CACHE_DIR names a
     * fresh directory, writes its entries there. */
    char dir[512];
    tw_test_temp_dir("attention-variants", dir, sizeof dir);
    setenv("TWIST_CACHE_DIR", dir, 1);
    setenv("TWIST_TUNE", "auto", 1);
    tw_device *fresh = NULL;
    TW_CHECK_OK(tw_device_open(spec, &fresh));
    if (fresh) {
        shape small = {1, 2, 40, 32};
        check_shape(fresh, cpu, "tuned", small);
        tw_device_close(fresh);
        char command[2200];
        snprintf(command, sizeof command,
                 "grep -q '^attention_fwd d32-t64 ' %s/tune-*.txt && "
                 "grep -q '^attention_bwd d32-t64 ' %s/tune-*.txt",
                 dir, dir);
        TW_CHECK(system(command) == 0, "no tuned attention entries in %s/tune-*.txt", dir);
    }
    if (tw_test_failures() == 0) tw_test_remove_temp_dir(dir);

    tw_device_close(device);
    tw_device_close(cpu);
    return tw_test_finish("attention_variants");
}
