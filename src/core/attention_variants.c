/* Choosing between a backend's attention kernel variants by measurement
 * (twist/backend_support.h: tw_attention_measure). Used by the Vulkan (vk_attention.c) and
 * OpenCL (cl_attention.c) backends; the choice is cached per shape class in tw_tune_cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/backend_support.h"
#include "twist/clock.h"
#include "twist/error.h"

void tw_attention_class_key(char *key, size_t capacity, const char *op, int head_dim,
                            int seq_len) {
    long bucket = 64;
    while (bucket < seq_len && bucket < (1L << 30)) bucket *= 2;
    snprintf(key, capacity, "%s d%d-t%ld", op, head_dim, bucket);
}

/* Scratch tensors of one measurement: qkv (3 * H*T*D), out/dout (H*T*D each), lse (H*T),
 * dqkv (3 * H*T*D) in the contiguous (B=1, H, T, D) layout. */
typedef struct scratch {
    tw_buffer *qkv, *dqkv, *out, *dout, *lse;
} scratch;

static void scratch_free(scratch *s) {
    tw_buffer_free(s->qkv);
    tw_buffer_free(s->dqkv);
    tw_buffer_free(s->out);
    tw_buffer_free(s->dout);
    tw_buffer_free(s->lse);
    memset(s, 0, sizeof *s);
}

static tw_status scratch_make(tw_device *device, const tw_attention_args *args, bool backward,
                              int max_heads, scratch *s, tw_attention_args *a) {
    const int64_t bh = (int64_t)args->batch * args->heads;
    const int H = bh < max_heads ? (int)bh : max_heads, T = args->seq_len, D = args->head_dim;
    const size_t hd = (size_t)H * T * D;
    memset(s, 0, sizeof *s);
    TW_TRY(tw_buffer_alloc(device, 3 * hd * sizeof(float), &s->qkv));
    tw_status status = tw_buffer_alloc(device, hd * sizeof(float), &s->out);
    if (status == TW_OK) status = tw_buffer_alloc(device, (size_t)H * T * sizeof(float), &s->lse);
    if (status == TW_OK && backward)
        status = tw_buffer_alloc(device, hd * sizeof(float), &s->dout);
    if (status == TW_OK && backward)
        status = tw_buffer_alloc(device, 3 * hd * sizeof(float), &s->dqkv);
    /* Varied inputs, so that the results of the variants can be compared. */
    float *host = status == TW_OK ? malloc(3 * hd * sizeof(float)) : NULL;
    if (status == TW_OK && !host) status = tw_error(TW_ERR_OUT_OF_MEMORY, "attention tuning");
    if (status == TW_OK) {
        for (size_t i = 0; i < 3 * hd; i++) host[i] = (float)sin(0.37 * (double)i);
        status = tw_buffer_upload(s->qkv, 0, host, 3 * hd * sizeof(float));
    }
    if (status == TW_OK && backward) {
        for (size_t i = 0; i < hd; i++) host[i] = 0.5f * (float)cos(0.11 * (double)i);
        status = tw_buffer_upload(s->dout, 0, host, hd * sizeof(float));
    }
    free(host);
    if (status != TW_OK) {
        scratch_free(s);
        return status;
    }
    const tw_bhtd_stride stride = {(int64_t)hd, (int64_t)T * D, D};
    *a = (tw_attention_args){
        .dtype = args->dtype,
        .batch = 1,
        .heads = H,
        .seq_len = T,
        .head_dim = D,
        .scale = args->scale,
        .qkv_stride = stride,
        .out_stride = stride,
        .q = {s->qkv, 0},
        .k = {s->qkv, hd},
        .v = {s->qkv, 2 * hd},
        .out = {s->out, 0},
        .lse = {s->lse, 0},
    };
    if (backward) {
        a->dout = (tw_mem){s->dout, 0};
        a->dq = (tw_mem){s->dqkv, 0};
        a->dk = (tw_mem){s->dqkv, hd};
        a->dv = (tw_mem){s->dqkv, 2 * hd};
    }
    return TW_OK;
}

/* The results of one run of variant v from scratch: forward out and lse, or the backward's
 * gradients added into zeros. */
static tw_status results_of(tw_device *device, tw_attention_variant_fn fn, void *context,
                            const tw_attention_args *a, bool backward, int v, float *host,
                            size_t count) {
    const size_t hd = (size_t)a->heads * a->seq_len * a->head_dim;
    if (backward) TW_TRY(tw_buffer_fill_f32(a->dq.buffer, 0, 3 * hd, 0.0f));
    TW_TRY(fn(context, a, v));
    if (backward) return tw_buffer_download(a->dq.buffer, 0, host, count * sizeof(float));
    TW_TRY(tw_buffer_download(a->out.buffer, 0, host, hd * sizeof(float)));
    return tw_buffer_download(a->lse.buffer, 0, host + hd, (count - hd) * sizeof(float));
}

/* Whether got agrees with want to fp32 accuracy (sums in other orders). */
static bool agrees(const float *got, const float *want, size_t count) {
    double largest = 0.0, worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double w = fabs((double)want[i]), e = fabs((double)got[i] - (double)want[i]);
        if (w > largest) largest = w;
        if (!(e <= worst)) worst = e; /* NaN sticks */
    }
    return worst <= 1e-3 * (1.0 + largest);
}

/* One run of variant v, waited for; seconds in *seconds. */
static tw_status timed_run(tw_device *device, tw_attention_variant_fn fn, void *context,
                           const tw_attention_args *a, int v, double *seconds) {
    double start = tw_now_seconds();
    tw_status status = fn(context, a, v);
    if (status == TW_OK) status = tw_device_sync(device);
    *seconds = tw_now_seconds() - start;
    return status;
}

tw_status tw_attention_measure(tw_device *device, const tw_attention_args *args, bool backward,
                               tw_attention_variant_fn fwd, tw_attention_variant_fn bwd,
                               void *context, int fwd_variant, int max_heads, const bool *usable,
                               int count, int *best, double *ms) {
    *best = -1;
    for (int v = 0; v < count && ms; v++) ms[v] = -1.0;
    scratch s;
    tw_attention_args a;
    TW_TRY(scratch_make(device, args, backward, max_heads > 0 ? max_heads : 1, &s, &a));
    tw_status status = TW_OK;
    if (backward) {
        double ignored;
        status = timed_run(device, fwd, context, &a, fwd_variant, &ignored);
    }
    /* Results: the reference variant's (fwd_variant, the backend's default, run first), and
     * each candidate's, compared with it: a variant that disagrees is skipped. */
    const size_t hd = (size_t)a.heads * a.seq_len * a.head_dim;
    const size_t result_count = backward ? 3 * hd : hd + (size_t)a.heads * a.seq_len;
    float *want = malloc(result_count * sizeof(float)), *got = malloc(result_count * sizeof(float));
    if (status == TW_OK && (!want || !got))
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "attention tuning: out of host memory");
    tw_attention_variant_fn fn = backward ? bwd : fwd;
    bool have_reference = false;
    if (status == TW_OK && fwd_variant >= 0 && fwd_variant < count && usable[fwd_variant])
        have_reference = results_of(device, fn, context, &a, backward, fwd_variant, want,
                                    result_count) == TW_OK;
    double best_seconds = 0.0;
    for (int v = 0; v < count && status == TW_OK; v++) {
        if (!usable[v]) continue;
        double first = 0.0, second = 0.0;
        /* The first run builds the kernels and gives the results; a variant that fails or
         * disagrees with the reference is skipped. */
        if (results_of(device, fn, context, &a, backward, v, got, result_count) != TW_OK ||
            (have_reference && !agrees(got, want, result_count)))
            continue;
        if (timed_run(device, fn, context, &a, v, &first) != TW_OK ||
            timed_run(device, fn, context, &a, v, &second) != TW_OK)
            continue;
        double seconds = first < second ? first : second;
        if (ms) ms[v] = seconds * 1e3;
        if (*best < 0 || seconds < best_seconds) {
            *best = v;
            best_seconds = seconds;
        }
    }
    free(want);
    free(got);
    scratch_free(&s);
    if (status != TW_OK) return status;
    if (*best < 0)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: no attention variant ran",
                        backward ? "attention_bwd" : "attention_fwd");
    return TW_OK;
}
