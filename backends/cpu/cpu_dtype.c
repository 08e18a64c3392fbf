/* bf16 and f16 on the CPU backend: every op of the op list, and tw_convert.
 *
 * The fp32 kernels (cpu_ops.c, cpu_attention.c) are the reference; this file runs an op in a
 * 16-bit type by widening its 16-bit tensors to fp32 scratch, calling the fp32 kernel on the
 * scratch, and rounding the tensors the op writes back once at the end (round to nearest even,
 * twist/dtype.h). fp32 tensors of the op (attention lse, LayerNorm mean/rstd, cross-entropy
 * losses, AdamW's param/m/v, GEMM's C when fp32) and int32 indices are passed through as they
 * are. Ops that ADD into an output (backward ops, accumulating scatters, GEMM with beta) see the
 * widened old value, so the sum is formed in fp32 and rounded once.
 *
 * Scratch comes from tw_buffer_alloc on the device, so it counts in the device's current and
 * peak bytes, and lives for one op. Tensors of one op on the same buffer whose element ranges
 * overlap (packed QKV and its gradients, an output aliasing an input) share one scratch region,
 * which keeps the aliasing the fp32 kernel expects. Only elements the kernel changed are written
 * back: elements inside a tensor's range that the op does not touch (the gaps between rows when
 * ld > cols, the other heads of a packed QKV) keep their bits, NaN payloads included.
 *
 * Two exceptions go faster: gathers and overwriting scatters copy 16-bit elements as they are
 * (cpu_ops.c), and bf16 GEMM uses AVX512-BF16 dot products where the CPU has them
 * (cpu_gemm_bf16.c; f16 GEMM is widened for OpenBLAS's sgemm). */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "twist/dtype.h"

/* Below this many elements a conversion loop is not worth waking the thread team. */
enum { CONVERT_PARALLEL_MIN = 1 << 15 };

/* ------------------------------------------------------------------------------------------ */
/* Conversions                                                                                */
/* ------------------------------------------------------------------------------------------ */

static bool is_half(tw_dtype dtype) { return dtype == TW_DTYPE_BF16 || dtype == TW_DTYPE_F16; }

/* dst (n) fp32 = src (n) of a 16-bit type, exactly. */
void tw_cpu_widen(tw_dtype dtype, const uint16_t *src, float *dst, size_t n) {
    if (dtype == TW_DTYPE_BF16) {
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = tw_bf16_to_f32(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = tw_f16_to_f32(src[i]);
    }
}

/* dst (n) of a 16-bit type = src (n) fp32, rounded to nearest even. */
void tw_cpu_narrow(tw_dtype dtype, const float *src, uint16_t *dst, size_t n) {
    if (dtype == TW_DTYPE_BF16) {
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = tw_f32_to_bf16(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = tw_f32_to_f16(src[i]);
    }
}

static float to_f32(tw_dtype dtype, uint16_t value) {
    return dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
}

static uint16_t from_f32(tw_dtype dtype, float value) {
    return dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(value) : tw_f32_to_f16(value);
}

/* Writes back into dst (n, 16-bit) the elements of src (n, fp32 scratch that was widened from
 * dst) whose bits the kernel changed; the others keep their 16-bit bits. */
static void narrow_changed(tw_dtype dtype, const float *src, uint16_t *dst, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        if (tw_f32_bits(src[i]) != tw_f32_bits(to_f32(dtype, dst[i])))
            dst[i] = from_f32(dtype, src[i]);
}

/* The backend's `convert` entry: any two different float types (the front end copies equal
 * types). f16 <-> bf16 goes through fp32, which holds both exactly, so it rounds once. */
tw_status tw_cpu_convert(void *context, size_t n, tw_mem src, tw_mem dst) {
    (void)context;
    const void *in = (const char *)src.buffer->handle + src.offset * tw_dtype_size(src.dtype);
    void *out = (char *)dst.buffer->handle + dst.offset * tw_dtype_size(dst.dtype);
    if (src.dtype == TW_DTYPE_F32 && is_half(dst.dtype)) {
        tw_cpu_narrow(dst.dtype, in, out, n);
    } else if (is_half(src.dtype) && dst.dtype == TW_DTYPE_F32) {
        tw_cpu_widen(src.dtype, in, out, n);
    } else if (is_half(src.dtype) && is_half(dst.dtype)) {
        const uint16_t *s = in;
        uint16_t *d = out;
        const tw_dtype from = src.dtype, to = dst.dtype;
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) d[i] = from_f32(to, to_f32(from, s[i]));
    } else {
        return tw_error(TW_ERR_UNSUPPORTED, "convert: cpu has no conversion %s -> %s",
                        tw_dtype_name(src.dtype), tw_dtype_name(dst.dtype));
    }
    return TW_OK;
}

/* Every op runs in bf16 and f16 (fp32 is never asked). */
bool tw_cpu_supports_dtype(void *context, tw_op_id op, tw_dtype dtype) {
    (void)context;
    return (unsigned)op < TW_OP_COUNT && is_half(dtype);
}

/* ------------------------------------------------------------------------------------------ */
/* Widening an op's 16-bit tensors                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Enough for the op with the most tensors (attention_bwd: q k v out dout dq dk dv). */
enum { WIDE_MAX_TENSORS = 12 };

typedef struct wide_tensor {
    tw_mem *mem;     /* the op's argument, rewritten to point into scratch */
    size_t begin, end; /* elements [begin, end) of mem->buffer it touches */
    bool written;    /* the op writes (or adds into) it */
    int group;       /* index of the scratch region it shares */
} wide_tensor;

typedef struct wide_group {
    tw_buffer *buffer; /* the 16-bit buffer */
    tw_dtype dtype;
    size_t begin, end; /* union of its tensors' ranges */
    bool written;
    tw_buffer *scratch; /* (end - begin) floats */
} wide_group;

typedef struct wide_op {
    tw_cpu_context *cpu;
    int count, groups;
    wide_tensor tensors[WIDE_MAX_TENSORS];
    wide_group group[WIDE_MAX_TENSORS];
} wide_op;

static void wide_init(wide_op *op, void *context) {
    memset(op, 0, sizeof *op);
    op->cpu = context;
}

/* Registers tensor *mem, touching `extent` elements from its offset; fp32 and int32 tensors are
 * left alone. */
static void wide_add(wide_op *op, tw_mem *mem, size_t extent, bool written) {
    if (!is_half(mem->dtype) || extent == 0) return;
    wide_tensor *t = &op->tensors[op->count++];
    t->mem = mem;
    t->begin = mem->offset;
    t->end = mem->offset + extent;
    t->written = written;
}

/* Groups overlapping ranges of one buffer, widens each group into fp32 scratch and points the
 * tensors there. On failure nothing is left allocated. */
static tw_status wide_begin(wide_op *op) {
    for (int i = 0; i < op->count; i++) op->tensors[i].group = i;
    /* Union-find by repeated merging; at most WIDE_MAX_TENSORS tensors. */
    bool merged = true;
    while (merged) {
        merged = false;
        for (int i = 0; i < op->count; i++)
            for (int j = 0; j < op->count; j++) {
                wide_tensor *a = &op->tensors[i], *b = &op->tensors[j];
                if (a->group == b->group || a->mem->buffer != b->mem->buffer ||
                    a->mem->dtype != b->mem->dtype)
                    continue;
                /* Ranges of the two groups, not just the two tensors. */
                size_t a_begin = SIZE_MAX, a_end = 0, b_begin = SIZE_MAX, b_end = 0;
                for (int k = 0; k < op->count; k++) {
                    const wide_tensor *t = &op->tensors[k];
                    if (t->group == a->group) {
                        a_begin = t->begin < a_begin ? t->begin : a_begin;
                        a_end = t->end > a_end ? t->end : a_end;
                    } else if (t->group == b->group) {
                        b_begin = t->begin < b_begin ? t->begin : b_begin;
                        b_end = t->end > b_end ? t->end : b_end;
                    }
                }
                if (a_begin >= b_end || b_begin >= a_end) continue;
                const int from = b->group;
                for (int k = 0; k < op->count; k++)
                    if (op->tensors[k].group == from) op->tensors[k].group = a->group;
                merged = true;
            }
    }
    /* Renumber groups densely and compute their ranges. */
    int map[WIDE_MAX_TENSORS];
    for (int i = 0; i < WIDE_MAX_TENSORS; i++) map[i] = -1;
    for (int i = 0; i < op->count; i++) {
        wide_tensor *t = &op->tensors[i];
        if (map[t->group] < 0) {
            map[t->group] = op->groups;
            wide_group *g = &op->group[op->groups++];
            g->buffer = t->mem->buffer;
            g->dtype = t->mem->dtype;
            g->begin = t->begin;
            g->end = t->end;
        }
        t->group = map[t->group];
        wide_group *g = &op->group[t->group];
        g->begin = t->begin < g->begin ? t->begin : g->begin;
        g->end = t->end > g->end ? t->end : g->end;
        g->written = g->written || t->written;
    }
    for (int i = 0; i < op->groups; i++) {
        wide_group *g = &op->group[i];
        tw_status status =
            tw_buffer_alloc(op->cpu->device, (g->end - g->begin) * sizeof(float), &g->scratch);
        if (status != TW_OK) {
            for (int j = 0; j < i; j++) tw_buffer_free(op->group[j].scratch);
            return status;
        }
        tw_cpu_widen(g->dtype, (const uint16_t *)g->buffer->handle + g->begin,
                     (float *)g->scratch->handle, g->end - g->begin);
    }
    for (int i = 0; i < op->count; i++) {
        wide_tensor *t = &op->tensors[i];
        const wide_group *g = &op->group[t->group];
        *t->mem = tw_at(g->scratch, t->begin - g->begin);
    }
    return TW_OK;
}

/* After the fp32 kernel returned `status`: rounds written groups back (when it succeeded) and
 * frees the scratch. */
static tw_status wide_end(wide_op *op, tw_status status) {
    for (int i = 0; i < op->groups; i++) {
        wide_group *g = &op->group[i];
        if (status == TW_OK && g->written)
            narrow_changed(g->dtype, (const float *)g->scratch->handle,
                           (uint16_t *)g->buffer->handle + g->begin, g->end - g->begin);
        tw_buffer_free(g->scratch);
    }
    return status;
}

/* Runs `call` (the fp32 kernel, on the rewritten arguments) between wide_begin and wide_end. */
#define WIDE_RUN(op, call)                                                                      \
    __extension__({                                                                         \
        tw_status wide_status_ = wide_begin(op);                                            \
        if (wide_status_ == TW_OK) wide_status_ = wide_end(op, (call));                     \
        wide_status_;                                                                       \
    })

/* Elements of a (rows, cols) matrix with row stride ld, `batch` of them `stride` apart. */
static size_t strided_extent(int batch, int rows, int cols, int64_t ld, int64_t stride) {
    return (size_t)(rows - 1) * (size_t)ld + (size_t)(batch - 1) * (size_t)stride + (size_t)cols;
}

/* Elements of a (B, H, T, D) tensor laid out with `stride` (twist/backend.h, attention). */
static size_t bhtd_extent(const tw_attention_args *args, tw_bhtd_stride stride) {
    return (size_t)args->head_dim + (size_t)(args->batch - 1) * (size_t)stride.b +
           (size_t)(args->heads - 1) * (size_t)stride.h +
           (size_t)(args->seq_len - 1) * (size_t)stride.t;
}

/* GEMM in a 16-bit type by widening A, B and (when 16-bit) C; C = alpha A B + beta C is formed
 * in fp32 by OpenBLAS and rounded once. */
tw_status tw_cpu_gemm_widened(void *context, const tw_gemm_args *args) {
    tw_gemm_args wide = *args;
    wide_op op;
    wide_init(&op, context);
    if (args->k > 0 && args->alpha != 0.0f) {
        wide_add(&op, &wide.a, strided_extent(args->batch, args->trans_a ? args->k : args->m,
                                              args->trans_a ? args->m : args->k, args->lda,
                                              args->stride_a), false);
        wide_add(&op, &wide.b, strided_extent(args->batch, args->trans_b ? args->n : args->k,
                                              args->trans_b ? args->k : args->n, args->ldb,
                                              args->stride_b), false);
    }
    wide_add(&op, &wide.c, strided_extent(args->batch, args->m, args->n, args->ldc, args->stride_c),
             true);
    wide.dtype = TW_DTYPE_F32;
    return WIDE_RUN(&op, tw_cpu_gemm(context, &wide));
}

/* ------------------------------------------------------------------------------------------ */
/* The ops in every type: the vtable's entries (TW_BACKEND_OP_INITIALISERS(tw_cpu_typed))     */
/* ------------------------------------------------------------------------------------------ */

/* bf16 goes to the AVX512-BF16 kernel where the CPU has one (unless the openblas variant is
 * forced); f16 is always widened to fp32 for OpenBLAS (x86 CPUs have no f16 dot product short
 * of AVX512-FP16, which Zen 4 lacks). */
tw_status tw_cpu_typed_gemm(void *context, const tw_gemm_args *args) {
    const tw_cpu_context *cpu = context;
    if (!is_half(args->dtype)) return tw_cpu_gemm(context, args);
    if (args->dtype == TW_DTYPE_BF16 && cpu->avx512_bf16 &&
        cpu->gemm_variant != TW_CPU_GEMM_OPENBLAS)
        return tw_cpu_gemm_bf16(context, args);
    return tw_cpu_gemm_widened(context, args);
}

/* The "gemm" variants: openblas always, avx512-bf16 where the CPU has it (other ops have one). */
int tw_cpu_variants(void *context, const char *op, const char **names, int capacity) {
    const tw_cpu_context *cpu = context;
    if (strcmp(op, "gemm") != 0) return 0;
    const char *all[] = {"openblas", "avx512-bf16"};
    const int count = cpu->avx512_bf16 ? 2 : 1;
    for (int i = 0; i < count && i < capacity; i++) names[i] = all[i];
    return count;
}

tw_status tw_cpu_force_variant(void *context, const char *op, const char *name) {
    tw_cpu_context *cpu = context;
    if (strcmp(op, "gemm") != 0) {
        if (!name) return TW_OK;
        return tw_error(TW_ERR_NOT_FOUND, "cpu has a single %s kernel: no variant \"%s\"", op,
                        name);
    }
    if (!name) cpu->gemm_variant = TW_CPU_GEMM_AUTO;
    else if (strcmp(name, "openblas") == 0) cpu->gemm_variant = TW_CPU_GEMM_OPENBLAS;
    else if (strcmp(name, "avx512-bf16") == 0 && cpu->avx512_bf16)
        cpu->gemm_variant = TW_CPU_GEMM_AVX512_BF16;
    else
        return tw_error(TW_ERR_NOT_FOUND, "cpu gemm has no variant \"%s\" (variants: openblas%s)",
                        name, cpu->avx512_bf16 ? ", avx512-bf16" : "; avx512-bf16 needs a CPU with AVX512-BF16");
    return TW_OK;
}

static tw_status attention(void *context, const tw_attention_args *args, bool backward) {
    tw_attention_args wide = *args;
    wide_op op;
    wide_init(&op, context);
    const size_t qkv = bhtd_extent(args, args->qkv_stride), out = bhtd_extent(args, args->out_stride);
    wide_add(&op, &wide.q, qkv, false);
    wide_add(&op, &wide.k, qkv, false);
    wide_add(&op, &wide.v, qkv, false);
    wide_add(&op, &wide.out, out, !backward);
    if (backward) {
        wide_add(&op, &wide.dout, out, false);
        wide_add(&op, &wide.dq, qkv, true);
        wide_add(&op, &wide.dk, qkv, true);
        wide_add(&op, &wide.dv, qkv, true);
    }
    wide.dtype = TW_DTYPE_F32;
    return WIDE_RUN(&op, backward ? tw_cpu_attention_bwd(context, &wide)
                                  : tw_cpu_attention_fwd(context, &wide));
}

tw_status tw_cpu_typed_attention_fwd(void *context, const tw_attention_args *args) {
    if (!is_half(args->dtype)) return tw_cpu_attention_fwd(context, args);
    return attention(context, args, false);
}

tw_status tw_cpu_typed_attention_bwd(void *context, const tw_attention_args *args) {
    if (!is_half(args->dtype)) return tw_cpu_attention_bwd(context, args);
    return attention(context, args, true);
}

/* The other ops: the 16-bit tensors, with their extents, then the fp32 call. fp32 ops have no
 * 16-bit tensors, so wide_begin has nothing to do and the call goes straight through. */
#define MATRIX(rows, cols) ((size_t)(rows) * (size_t)(cols))

tw_status tw_cpu_typed_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                                   tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &in, MATRIX(rows, cols), false);
    wide_add(&op, &out, MATRIX(rows, cols), true);
    return WIDE_RUN(&op, tw_cpu_softmax_fwd(context, rows, cols, causal_t, in, out));
}

tw_status tw_cpu_typed_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy,
                                   tw_mem dx) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &y, MATRIX(rows, cols), false);
    wide_add(&op, &dy, MATRIX(rows, cols), false);
    wide_add(&op, &dx, MATRIX(rows, cols), true);
    return WIDE_RUN(&op, tw_cpu_softmax_bwd(context, rows, cols, y, dy, dx));
}

tw_status tw_cpu_typed_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                                     tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean,
                                     tw_mem rstd) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &x, MATRIX(rows, cols), false);
    wide_add(&op, &weight, (size_t)cols, false);
    wide_add(&op, &bias, (size_t)cols, false);
    wide_add(&op, &out, MATRIX(rows, cols), true);
    return WIDE_RUN(&op, tw_cpu_layernorm_fwd(context, rows, cols, eps, x, weight, bias, out,
                                              mean, rstd));
}

tw_status tw_cpu_typed_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                                     tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx,
                                     tw_mem dweight, tw_mem dbias) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &dout, MATRIX(rows, cols), false);
    wide_add(&op, &x, MATRIX(rows, cols), false);
    wide_add(&op, &weight, (size_t)cols, false);
    wide_add(&op, &dx, MATRIX(rows, cols), true);
    wide_add(&op, &dweight, (size_t)cols, true);
    wide_add(&op, &dbias, (size_t)cols, true);
    return WIDE_RUN(&op, tw_cpu_layernorm_bwd(context, rows, cols, dout, x, weight, mean, rstd,
                                              dx, dweight, dbias));
}

tw_status tw_cpu_typed_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &x, n, false);
    wide_add(&op, &out, n, true);
    return WIDE_RUN(&op, tw_cpu_gelu_fwd(context, n, x, out));
}

tw_status tw_cpu_typed_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &x, n, false);
    wide_add(&op, &dout, n, false);
    wide_add(&op, &dx, n, true);
    return WIDE_RUN(&op, tw_cpu_gelu_bwd(context, n, x, dout, dx));
}

tw_status tw_cpu_typed_embedding_fwd(void *context, int batch, int seq_len, int channels,
                                     int vocab, tw_mem tokens, tw_mem wte, tw_mem wpe,
                                     tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &wte, MATRIX(vocab, channels), false);
    wide_add(&op, &wpe, MATRIX(seq_len, channels), false);
    wide_add(&op, &out, MATRIX(batch, seq_len) * (size_t)channels, true);
    return WIDE_RUN(&op, tw_cpu_embedding_fwd(context, batch, seq_len, channels, vocab, tokens,
                                              wte, wpe, out));
}

tw_status tw_cpu_typed_embedding_bwd(void *context, int batch, int seq_len, int channels,
                                     int vocab, tw_mem tokens, tw_mem dout, tw_mem dwte,
                                     tw_mem dwpe) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &dout, MATRIX(batch, seq_len) * (size_t)channels, false);
    wide_add(&op, &dwte, MATRIX(vocab, channels), true);
    wide_add(&op, &dwpe, MATRIX(seq_len, channels), true);
    return WIDE_RUN(&op, tw_cpu_embedding_bwd(context, batch, seq_len, channels, vocab, tokens,
                                              dout, dwte, dwpe));
}

tw_status tw_cpu_typed_softmax_xent_fwd(void *context, int rows, int vocab, int ld,
                                        tw_mem logits, tw_mem targets, tw_mem losses, tw_mem lse,
                                        tw_mem correct) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &logits, (size_t)(rows - 1) * (size_t)ld + (size_t)vocab, false);
    return WIDE_RUN(&op, tw_cpu_softmax_xent_fwd(context, rows, vocab, ld, logits, targets,
                                                 losses, lse, correct));
}

tw_status tw_cpu_typed_softmax_xent_bwd(void *context, int rows, int vocab, int ld,
                                        float grad_scale, tw_mem logits, tw_mem targets,
                                        tw_mem lse, tw_mem dlogits) {
    wide_op op;
    wide_init(&op, context);
    const size_t extent = (size_t)(rows - 1) * (size_t)ld + (size_t)vocab;
    wide_add(&op, &logits, extent, false);
    wide_add(&op, &dlogits, extent, true);
    return WIDE_RUN(&op, tw_cpu_softmax_xent_bwd(context, rows, vocab, ld, grad_scale, logits,
                                                 targets, lse, dlogits));
}

tw_status tw_cpu_typed_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &bias, (size_t)cols, false);
    wide_add(&op, &out, MATRIX(rows, cols), true);
    return WIDE_RUN(&op, tw_cpu_bias_add(context, rows, cols, bias, out));
}

tw_status tw_cpu_typed_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &dout, MATRIX(rows, cols), false);
    wide_add(&op, &dbias, (size_t)cols, true);
    return WIDE_RUN(&op, tw_cpu_bias_bwd(context, rows, cols, dout, dbias));
}

tw_status tw_cpu_typed_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &a, n, false);
    wide_add(&op, &b, n, false);
    wide_add(&op, &out, n, true);
    return WIDE_RUN(&op, tw_cpu_add(context, n, a, b, out));
}

tw_status tw_cpu_typed_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &x, n, false);
    wide_add(&op, &out, n, true);
    return WIDE_RUN(&op, tw_cpu_scale(context, n, alpha, x, out));
}

tw_status tw_cpu_typed_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &x, n, false);
    return WIDE_RUN(&op, tw_cpu_sum_sq(context, n, x, out));
}

tw_status tw_cpu_typed_adamw_step(void *context, size_t n, const tw_adamw_args *args,
                                  tw_mem param, tw_mem grad, tw_mem m, tw_mem v) {
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &grad, n, false);
    return WIDE_RUN(&op, tw_cpu_adamw_step(context, n, args, param, grad, m, v));
}

/* Gathers and overwriting scatters copy 16-bit elements as they are (cpu_ops.c). */
tw_status tw_cpu_typed_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                                   tw_mem src, tw_mem dst) {
    return tw_cpu_gather_rows(context, src_rows, cols, count, idx, src, dst);
}

tw_status tw_cpu_typed_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                                    tw_mem src, tw_mem dst, bool accumulate) {
    if (!accumulate) return tw_cpu_scatter_rows(context, dst_rows, cols, count, idx, src, dst, false);
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &src, MATRIX(count, cols), false);
    wide_add(&op, &dst, MATRIX(dst_rows, cols), true);
    return WIDE_RUN(&op, tw_cpu_scatter_rows(context, dst_rows, cols, count, idx, src, dst,
                                             accumulate));
}

tw_status tw_cpu_typed_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                                   tw_mem src, tw_mem dst) {
    return tw_cpu_gather_cols(context, rows, src_cols, count, idx, src, dst);
}

tw_status tw_cpu_typed_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                                    tw_mem src, tw_mem dst, bool accumulate) {
    if (!accumulate) return tw_cpu_scatter_cols(context, rows, dst_cols, count, idx, src, dst, false);
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &src, MATRIX(rows, count), false);
    wide_add(&op, &dst, MATRIX(rows, dst_cols), true);
    return WIDE_RUN(&op, tw_cpu_scatter_cols(context, rows, dst_cols, count, idx, src, dst,
                                             accumulate));
}
