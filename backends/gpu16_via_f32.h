/* twist OpenCL and Vulkan backends: f16/bf16 GEMM and attention on CPU devices (PoCL, lavapipe)
 * by way of fp32 (included by backends/opencl/cl_gpu16.c and backends/vulkan/vk_gpu16.c, which
 * pass their own convert entry and fp32 op).
 *
 * On those devices the tiled 16-bit kernels, written for GPUs (hundreds of work-items per group
 * sharing tiles across barriers), run 5-90x slower than the backends' fp32 kernels; there the
 * 16-bit operands are converted to fp32 scratch, the fp32 op runs, and the tensors it writes are
 * converted back: O(n) conversions around O(n^2) / O(n^3) work, the same fp32 arithmetic.
 * Tensors in one buffer share one scratch spanning all of them (first to last element, gaps
 * included), so the fp32 op sees the same layout; gap elements go back with the same bits
 * (f16/bf16 -> f32 -> same type is exact). TWIST_GEMM16=tiled (GEMM) and TWIST_ATTENTION16=tiled
 * keep the tiled kernels on CPU devices (tests/test_gpu16.c runs both ways). */
#ifndef TW_GPU16_VIA_F32_H
#define TW_GPU16_VIA_F32_H

#include <stdlib.h>
#include <string.h>

#include "twist/backend_support.h"

typedef tw_status (*tw_gpu16_convert_fn)(void *context, size_t n, tw_mem src, tw_mem dst);
typedef tw_status (*tw_gpu16_gemm_fn)(void *context, const tw_gemm_args *args);
typedef tw_status (*tw_gpu16_attention_fn)(void *context, const tw_attention_args *args);

/* Whether environment variable `name` says "tiled". */
static inline bool tw_gpu16_tiled_forced(const char *name) {
    const char *mode = getenv(name);
    return mode && strcmp(mode, "tiled") == 0;
}

enum { TW_GPU16_MAX_TENSORS = 8 };

/* Tensors grouped by buffer: each group one fp32 scratch over [first, end) of its buffer. */
typedef struct tw_gpu16_group {
    tw_buffer *buffer;
    size_t first, end;
    bool written;
    tw_buffer *scratch;
} tw_gpu16_group;

typedef struct tw_gpu16_staging {
    tw_gpu16_group groups[TW_GPU16_MAX_TENSORS];
    int count;
} tw_gpu16_staging;

/* Adds a tensor reaching `span` elements from its offset. */
static inline void tw_gpu16_add(tw_gpu16_staging *s, tw_mem mem, size_t span, bool written) {
    for (int i = 0; i < s->count; i++) {
        tw_gpu16_group *g = &s->groups[i];
        if (g->buffer != mem.buffer) continue;
        if (mem.offset < g->first) g->first = mem.offset;
        if (mem.offset + span > g->end) g->end = mem.offset + span;
        g->written = g->written || written;
        return;
    }
    s->groups[s->count++] = (tw_gpu16_group){mem.buffer, mem.offset, mem.offset + span, written,
                                             NULL};
}

/* Allocates every group's scratch and converts its span in. */
static inline tw_status tw_gpu16_stage_in(tw_gpu16_staging *s, void *context, tw_device *device,
                                          tw_dtype dtype, tw_gpu16_convert_fn convert) {
    for (int i = 0; i < s->count; i++) {
        tw_gpu16_group *g = &s->groups[i];
        TW_TRY(tw_buffer_alloc(device, (g->end - g->first) * sizeof(float), &g->scratch));
        TW_TRY(convert(context, g->end - g->first, tw_at_typed(g->buffer, g->first, dtype),
                       tw_at(g->scratch, 0)));
    }
    return TW_OK;
}

/* The fp32 scratch tensor standing for `mem`. */
static inline tw_mem tw_gpu16_scratch_of(const tw_gpu16_staging *s, tw_mem mem) {
    for (int i = 0; i < s->count; i++)
        if (s->groups[i].buffer == mem.buffer)
            return tw_at(s->groups[i].scratch, mem.offset - s->groups[i].first);
    return mem; /* not staged: cannot happen for a tensor that was added */
}

/* Converts written groups back (when status is TW_OK) and frees every scratch; the backends
 * release a freed buffer only once the queued work using it is done. */
static inline tw_status tw_gpu16_stage_out(tw_gpu16_staging *s, void *context, tw_dtype dtype,
                                           tw_gpu16_convert_fn convert, tw_status status) {
    for (int i = 0; i < s->count; i++) {
        tw_gpu16_group *g = &s->groups[i];
        if (status == TW_OK && g->written && g->scratch)
            status = convert(context, g->end - g->first, tw_at(g->scratch, 0),
                             tw_at_typed(g->buffer, g->first, dtype));
        tw_buffer_free(g->scratch);
        g->scratch = NULL;
    }
    return status;
}

/* Elements from a strided-batched matrix operand's offset to its last element. */
static inline size_t tw_gpu16_matrix_span(int batch, int64_t stride, int rows, int cols,
                                          int64_t ld) {
    return (size_t)(batch - 1) * (size_t)stride + (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
}

/* 16-bit GEMM (m, n, k, batch > 0) through the fp32 GEMM. A C of fp32 is used in place. */
static inline tw_status tw_gpu16_gemm_via_f32(void *context, tw_device *device,
                                              const tw_gemm_args *g, tw_gpu16_convert_fn convert,
                                              tw_gpu16_gemm_fn gemm32) {
    const int a_rows = g->trans_a ? g->k : g->m, a_cols = g->trans_a ? g->m : g->k;
    const int b_rows = g->trans_b ? g->n : g->k, b_cols = g->trans_b ? g->k : g->n;
    const bool c_typed = g->c.dtype != TW_DTYPE_F32;
    tw_gpu16_staging s = {.count = 0};
    tw_gpu16_add(&s, g->a, tw_gpu16_matrix_span(g->batch, g->stride_a, a_rows, a_cols, g->lda),
                 false);
    tw_gpu16_add(&s, g->b, tw_gpu16_matrix_span(g->batch, g->stride_b, b_rows, b_cols, g->ldb),
                 false);
    if (c_typed)
        tw_gpu16_add(&s, g->c, tw_gpu16_matrix_span(g->batch, g->stride_c, g->m, g->n, g->ldc),
                     true);
    tw_status status = tw_gpu16_stage_in(&s, context, device, g->dtype, convert);
    if (status == TW_OK) {
        tw_gemm_args f = *g;
        f.dtype = TW_DTYPE_F32;
        f.a = tw_gpu16_scratch_of(&s, g->a);
        f.b = tw_gpu16_scratch_of(&s, g->b);
        if (c_typed) f.c = tw_gpu16_scratch_of(&s, g->c);
        status = gemm32(context, &f);
    }
    return tw_gpu16_stage_out(&s, context, g->dtype, convert, status);
}

/* Elements from a (B, H, T, D) tensor's offset to its last element. */
static inline size_t tw_gpu16_bhtd_span(const tw_attention_args *a, tw_bhtd_stride stride) {
    return (size_t)(a->batch - 1) * (size_t)stride.b + (size_t)(a->heads - 1) * (size_t)stride.h +
           (size_t)(a->seq_len - 1) * (size_t)stride.t + (size_t)a->head_dim;
}

/* 16-bit attention through the fp32 one: forward writes out, backward adds into dq, dk, dv
 * (converted in first, so the fp32 op adds to their values). lse stays where it is (fp32). */
static inline tw_status tw_gpu16_attention_via_f32(void *context, tw_device *device,
                                                   const tw_attention_args *a, bool backward,
                                                   tw_gpu16_convert_fn convert,
                                                   tw_gpu16_attention_fn attention32) {
    const size_t qkv = tw_gpu16_bhtd_span(a, a->qkv_stride);
    const size_t out = tw_gpu16_bhtd_span(a, a->out_stride);
    tw_gpu16_staging s = {.count = 0};
    tw_gpu16_add(&s, a->q, qkv, false);
    tw_gpu16_add(&s, a->k, qkv, false);
    tw_gpu16_add(&s, a->v, qkv, false);
    tw_gpu16_add(&s, a->out, out, !backward);
    if (backward) {
        tw_gpu16_add(&s, a->dout, out, false);
        tw_gpu16_add(&s, a->dq, qkv, true);
        tw_gpu16_add(&s, a->dk, qkv, true);
        tw_gpu16_add(&s, a->dv, qkv, true);
    }
    tw_status status = tw_gpu16_stage_in(&s, context, device, a->dtype, convert);
    if (status == TW_OK) {
        tw_attention_args f = *a;
        f.dtype = TW_DTYPE_F32;
        f.q = tw_gpu16_scratch_of(&s, a->q);
        f.k = tw_gpu16_scratch_of(&s, a->k);
        f.v = tw_gpu16_scratch_of(&s, a->v);
        f.out = tw_gpu16_scratch_of(&s, a->out);
        if (backward) {
            f.dout = tw_gpu16_scratch_of(&s, a->dout);
            f.dq = tw_gpu16_scratch_of(&s, a->dq);
            f.dk = tw_gpu16_scratch_of(&s, a->dk);
            f.dv = tw_gpu16_scratch_of(&s, a->dv);
        }
        status = attention32(context, &f);
    }
    return tw_gpu16_stage_out(&s, context, a->dtype, convert, status);
}

#endif
