/* Choosing between a backend's attention kernel variants by measurement
 * (twist/backend_support.h: tw_attention_measure). Used by the Vulkan (vk_attention.c) and
 * OpenCL (cl_attention.c) backends; the choice is cached per shape class in tw_tune_cache. */
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
    /* Small constant inputs: every variant does the same arithmetic whatever the values. */
    if (status == TW_OK) status = tw_buffer_fill_f32(s->qkv, 0, 3 * hd, 0.05f);
    if (status == TW_OK && backward) status = tw_buffer_fill_f32(s->dout, 0, hd, 0.01f);
    if (status == TW_OK && backward) status = tw_buffer_fill_f32(s->dqkv, 0, 3 * hd, 0.0f);
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
    double best_seconds = 0.0;
    for (int v = 0; v < count && status == TW_OK; v++) {
        if (!usable[v]) continue;
        tw_attention_variant_fn fn = backward ? bwd : fwd;
        double first = 0.0, second = 0.0, third = 0.0;
        /* The untimed run builds the kernels; a variant that fails is skipped. */
        if (timed_run(device, fn, context, &a, v, &first) != TW_OK ||
            timed_run(device, fn, context, &a, v, &second) != TW_OK ||
            timed_run(device, fn, context, &a, v, &third) != TW_OK)
            continue;
        double seconds = second < third ? second : third;
        if (ms) ms[v] = seconds * 1e3;
        if (*best < 0 || seconds < best_seconds) {
            *best = v;
            best_seconds = seconds;
        }
    }
    scratch_free(&s);
    if (status != TW_OK) return status;
    if (*best < 0)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: no attention variant ran",
                        backward ? "attention_bwd" : "attention_fwd");
    return TW_OK;
}
