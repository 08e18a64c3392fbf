/* Unfused causal attention from tw_gemm + tw_softmax (see twist/attention_unfused.h).
 *
 * Layout: element (b, h, t, d) of q sits at q.offset + b*stride.b + h*stride.h + t*stride.t + d.
 * For one b, the H heads of q are therefore a strided batch of H matrices (T, D) with row stride
 * stride.t and batch stride stride.h, which is exactly a tw_gemm operand. Scores live in scratch
 * as (B, H, T, T) contiguous, so all B*H*T rows go through one softmax call. */
#include <math.h>
#include <stdio.h>

#include "twist/error.h"
#include "twist/attention_unfused.h"

/* One strided-batch gemm operand: H matrices starting at mem, `stride` apart, row stride ld. */
typedef struct operand {
    tw_mem mem;
    int64_t ld, stride;
} operand;

/* Head matrices of a (B, H, T, D) tensor for batch element b. */
static operand bhtd_operand(tw_mem base, tw_bhtd_stride stride, int b) {
    operand op = {tw_at(base.buffer, base.offset + (size_t)b * (size_t)stride.b), stride.t,
                  stride.h};
    return op;
}

/* Head matrices of the (B, H, T, T) scratch for batch element b. */
static operand scores_operand(tw_buffer *scores, int heads, int seq_len, int b) {
    size_t square = (size_t)seq_len * (size_t)seq_len;
    operand op = {tw_at(scores, (size_t)b * (size_t)heads * square), seq_len, (int64_t)square};
    return op;
}

/* C_h = alpha op(A_h) op(B_h) + beta C_h for h in [0, heads). When the output heads interleave
 * within rows (the packed (B, T, 3C) layout: batch stride D, row stride 3C) tw_gemm cannot take
 * them as one batch, since it refuses output batches whose extents overlap; issue one call per
 * head then. */
static tw_status gemm_heads(tw_device *device, int heads, bool trans_a, bool trans_b, int m, int n,
                            int k, float alpha, operand a, operand b, float beta, operand c) {
    tw_gemm_args args = {
        .dtype = TW_DTYPE_F32, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k,
        .batch = heads, .alpha = alpha, .beta = beta,
        .a = a.mem, .lda = a.ld, .stride_a = a.stride,
        .b = b.mem, .ldb = b.ld, .stride_b = b.stride,
        .c = c.mem, .ldc = c.ld, .stride_c = c.stride,
    };
    if (heads == 1 || c.stride >= (int64_t)(m - 1) * c.ld + n) return tw_gemm(device, &args);
    args.batch = 1;
    for (int h = 0; h < heads; h++) {
        args.a.offset = a.mem.offset + (size_t)h * (size_t)a.stride;
        args.b.offset = b.mem.offset + (size_t)h * (size_t)b.stride;
        args.c.offset = c.mem.offset + (size_t)h * (size_t)c.stride;
        TW_TRY(tw_gemm(device, &args));
    }
    return TW_OK;
}

/* ---- argument checks ------------------------------------------------------------------- */

static tw_status check_tensor(const char *op, const char *name, tw_device *device, tw_mem mem,
                              const tw_attention_args *args, tw_bhtd_stride stride) {
    if (!mem.buffer) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s has no buffer", op, name);
    if (tw_buffer_device(mem.buffer) != device)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s lives on another device", op, name);
    if (stride.b < 0 || stride.h < 0 || stride.t < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: negative stride for %s", op, name);
    const int64_t counts[3] = {args->batch, args->heads, args->seq_len};
    const int64_t strides[3] = {stride.b, stride.h, stride.t};
    size_t extent = (size_t)args->head_dim + mem.offset, term;
    for (int i = 0; i < 3; i++)
        if (__builtin_mul_overflow((size_t)(counts[i] - 1), (size_t)strides[i], &term) ||
            __builtin_add_overflow(extent, term, &extent))
            return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: extent of %s overflows", op, name);
    if (extent > tw_buffer_size(mem.buffer) / 4)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: %s needs %zu elements from the start of its buffer, which holds %zu",
                        op, name, extent, tw_buffer_size(mem.buffer) / 4);
    return TW_OK;
}

static tw_status check_args(const char *op, tw_device *device, const tw_attention_args *args,
                            bool backward) {
    if (!device || !args) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: NULL argument", op);
    if (args->dtype != TW_DTYPE_F32)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: only f32 is implemented", op);
    if (args->batch < 1 || args->heads < 1 || args->seq_len < 1 || args->head_dim < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: batch, heads, seq_len and head_dim must be >= 1 (got %d, %d, %d, %d)",
                        op, args->batch, args->heads, args->seq_len, args->head_dim);
    if (!isfinite(args->scale))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: scale is not finite", op);
    TW_TRY(check_tensor(op, "q", device, args->q, args, args->qkv_stride));
    TW_TRY(check_tensor(op, "k", device, args->k, args, args->qkv_stride));
    TW_TRY(check_tensor(op, "v", device, args->v, args, args->qkv_stride));
    if (!backward) return check_tensor(op, "out", device, args->out, args, args->out_stride);
    TW_TRY(check_tensor(op, "dout", device, args->dout, args, args->out_stride));
    TW_TRY(check_tensor(op, "dq", device, args->dq, args, args->qkv_stride));
    TW_TRY(check_tensor(op, "dk", device, args->dk, args, args->qkv_stride));
    return check_tensor(op, "dv", device, args->dv, args, args->qkv_stride);
}

/* One (B, H, T, T) float scratch buffer; the error names the op and the shape. */
static tw_status alloc_scores(const char *op, tw_device *device, const tw_attention_args *args,
                              const char *what, tw_buffer **out) {
    size_t count = (size_t)args->batch * (size_t)args->heads, bytes;
    if (__builtin_mul_overflow(count, (size_t)args->seq_len, &count) ||
        __builtin_mul_overflow(count, (size_t)args->seq_len, &count) ||
        __builtin_mul_overflow(count, sizeof(float), &bytes))
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: %s (B, H, T, T) overflows", op, what);
    tw_status status = tw_buffer_alloc(device, bytes, out);
    if (status != TW_OK) {
        char cause[512];
        snprintf(cause, sizeof cause, "%s", tw_last_error());
        return tw_error(status, "%s: %s (B, H, T, T) = (%d, %d, %d, %d): %s", op, what,
                        args->batch, args->heads, args->seq_len, args->seq_len, cause);
    }
    return TW_OK;
}

/* Waits for the device before scratch is freed, even after a failure, so a backend with an
 * asynchronous queue never releases a buffer that an enqueued kernel still reads. The first
 * error wins: its message is the one the caller sees. */
static tw_status sync_keep_first_error(tw_device *device, tw_status status) {
    if (status != TW_OK) {
        char message[512];
        snprintf(message, sizeof message, "%s", tw_last_error());
        tw_device_sync(device);
        return tw_error(status, "%s", message);
    }
    return tw_device_sync(device);
}

/* ---- forward --------------------------------------------------------------------------- */

/* P (B, H, T, T) = softmax_rows(scale Q K^T), causal. */
static tw_status probabilities(tw_device *device, const tw_attention_args *args, tw_buffer *p) {
    const int H = args->heads, T = args->seq_len, D = args->head_dim;
    for (int b = 0; b < args->batch; b++)
        TW_TRY(gemm_heads(device, H, false, true, T, T, D, args->scale,
                       bhtd_operand(args->q, args->qkv_stride, b),
                       bhtd_operand(args->k, args->qkv_stride, b), 0.0f,
                       scores_operand(p, H, T, b)));
    int rows = args->batch * H * T;
    return tw_softmax_fwd(device, rows, T, T, tw_at(p, 0), tw_at(p, 0));
}

static tw_status forward(tw_device *device, const tw_attention_args *args, tw_buffer *p) {
    const int H = args->heads, T = args->seq_len, D = args->head_dim;
    TW_TRY(probabilities(device, args, p));
    for (int b = 0; b < args->batch; b++) /* out (T, D) = P (T, T) V (T, D), per head */
        TW_TRY(gemm_heads(device, H, false, false, T, D, T, 1.0f, scores_operand(p, H, T, b),
                       bhtd_operand(args->v, args->qkv_stride, b), 0.0f,
                       bhtd_operand(args->out, args->out_stride, b)));
    return TW_OK;
}

tw_status tw_attention_unfused_fwd(tw_device *device, const tw_attention_args *args) {
    const char *op = "attention_unfused_fwd";
    TW_TRY(check_args(op, device, args, false));
    tw_buffer *p = NULL;
    TW_TRY(alloc_scores(op, device, args, "probabilities", &p));
    tw_status status = forward(device, args, p);
    status = sync_keep_first_error(device, status);
    tw_buffer_free(p);
    return status;
}

/* ---- backward -------------------------------------------------------------------------- */

typedef struct backward_scratch {
    tw_buffer *p, *dp, *ds; /* each (B, H, T, T) */
} backward_scratch;

static tw_status backward(tw_device *device, const tw_attention_args *args,
                          const backward_scratch *s) {
    const int H = args->heads, T = args->seq_len, D = args->head_dim;
    const tw_bhtd_stride qs = args->qkv_stride, os = args->out_stride;
    TW_TRY(probabilities(device, args, s->p));
    for (int b = 0; b < args->batch; b++) {
        /* dP (T, T) = dO (T, D) V^T;  dV (T, D) += P^T dO */
        TW_TRY(gemm_heads(device, H, false, true, T, T, D, 1.0f, bhtd_operand(args->dout, os, b),
                       bhtd_operand(args->v, qs, b), 0.0f, scores_operand(s->dp, H, T, b)));
        TW_TRY(gemm_heads(device, H, true, false, T, D, T, 1.0f, scores_operand(s->p, H, T, b),
                       bhtd_operand(args->dout, os, b), 1.0f, bhtd_operand(args->dv, qs, b)));
    }
    /* dS = softmax_bwd(P, dP), which adds: start from zero. */
    size_t count = (size_t)args->batch * (size_t)H * (size_t)T * (size_t)T;
    TW_TRY(tw_buffer_fill_f32(s->ds, 0, count, 0.0f));
    TW_TRY(tw_softmax_bwd(device, args->batch * H * T, T, tw_at(s->p, 0), tw_at(s->dp, 0),
                       tw_at(s->ds, 0)));
    for (int b = 0; b < args->batch; b++) {
        /* dQ (T, D) += scale dS (T, T) K;  dK (T, D) += scale dS^T Q */
        TW_TRY(gemm_heads(device, H, false, false, T, D, T, args->scale,
                       scores_operand(s->ds, H, T, b), bhtd_operand(args->k, qs, b), 1.0f,
                       bhtd_operand(args->dq, qs, b)));
        TW_TRY(gemm_heads(device, H, true, false, T, D, T, args->scale,
                       scores_operand(s->ds, H, T, b), bhtd_operand(args->q, qs, b), 1.0f,
                       bhtd_operand(args->dk, qs, b)));
    }
    return TW_OK;
}

tw_status tw_attention_unfused_bwd(tw_device *device, const tw_attention_args *args) {
    const char *op = "attention_unfused_bwd";
    TW_TRY(check_args(op, device, args, true));
    backward_scratch s = {NULL, NULL, NULL};
    tw_status status = alloc_scores(op, device, args, "probabilities", &s.p);
    if (status == TW_OK) status = alloc_scores(op, device, args, "probability gradients", &s.dp);
    if (status == TW_OK) status = alloc_scores(op, device, args, "score gradients", &s.ds);
    if (status == TW_OK) status = backward(device, args, &s);
    status = sync_keep_first_error(device, status);
    tw_buffer_free(s.ds);
    tw_buffer_free(s.dp);
    tw_buffer_free(s.p);
    return status;
}
