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
 * peak bytes; it is kept for the next op (tw_cpu_context.wide_scratch) and grown when an op needs
 * more. Tensors of one op on the same buffer whose element ranges
 * overlap (packed QKV and its gradients, an output aliasing an input) share one scratch region,
 * which keeps the aliasing the fp32 kernel expects. Only elements the kernel changed are written
 * back: elements inside a tensor's range that the op does not touch (the gaps between rows when
 * ld > cols, the other heads of a packed QKV) keep their bits, NaN payloads included.
 *
 * Two exceptions go faster: gathers and overwriting scatters copy 16-bit elements as they are
 * (cpu_ops.c), and bf16 GEMM uses AVX512-BF16 dot products where the CPU has them
 * (cpu_gemm_bf16.c; f16 GEMM is widened for OpenBLAS's sgemm). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_math.h"
#include "twist/dtype.h"

/* Below this many elements a conversion loop is not worth waking the thread team. */
enum { CONVERT_PARALLEL_MIN = 1 << 15 };

/* ------------------------------------------------------------------------------------------ */
/* Conversions                                                                                */
/* ------------------------------------------------------------------------------------------ */

static bool is_half(tw_dtype dtype) { return dtype == TW_DTYPE_BF16 || dtype == TW_DTYPE_F16; }

/* The conversion loops. twist/dtype.h's functions written without branches, so that GCC
 * vectorises them (HOT_LOOP: AVX-512 and AVX2 clones), with the same results bit for bit: each
 * case is computed and the right one selected. They run over chunks of CONVERT_CHUNK elements,
 * the chunks spread over the threads (OpenMP outlines a parallel body before target clones are
 * made, so the loops live in functions of their own). Buffers are reached as uint16_t/uint32_t
 * arrays (their memory has no declared type). */
enum { CONVERT_CHUNK = 1 << 14 };

INLINE uint32_t widen_bits(tw_dtype dtype, uint32_t h) {
    if (dtype == TW_DTYPE_BF16) return h << 16;
    /* f16: exponent and mantissa moved into fp32 position, then scaled by 2^112 (exact, and
     * right for subnormals, which are fp32 denormals before the scaling); infinities and NaNs
     * keep an all-ones exponent. */
    const uint32_t sign = (h & 0x8000u) << 16, magnitude = h & 0x7fffu;
    const float scaled = tw_f32_from_bits(magnitude << 13) * 0x1p112f;
    const uint32_t special = 0x7f800000u | (magnitude & 0x3ffu) << 13;
    return sign | (magnitude >= 0x7c00u ? special : tw_f32_bits(scaled));
}

INLINE uint32_t narrow_bits(tw_dtype dtype, uint32_t bits) {
    if (dtype == TW_DTYPE_BF16) {
        const uint32_t nan = (bits >> 16) | 0x0040u;
        const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
        return (bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
    }
    const uint32_t sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7fffffffu;
    const uint32_t subnormal =
        tw_f32_bits(tw_f32_from_bits(magnitude) + 0.5f) - 0x3f000000u; /* see tw_f32_to_f16 */
    const uint32_t normal = (magnitude + 0xfffu + ((magnitude >> 13) & 1u) - (112u << 23)) >> 13;
    uint32_t value = magnitude < 0x38800000u ? subnormal : normal;
    value = magnitude >= 0x477ff000u ? 0x7c00u : value;
    value = magnitude > 0x7f800000u ? 0x7e00u : value;
    return sign | value;
}

HOT_LOOP static void widen_range(tw_dtype dtype, const uint16_t *src, uint32_t *dst, size_t n) {
    if (dtype == TW_DTYPE_BF16) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = widen_bits(TW_DTYPE_BF16, src[i]);
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = widen_bits(TW_DTYPE_F16, src[i]);
    }
}

HOT_LOOP static void narrow_range(tw_dtype dtype, const uint32_t *src, uint16_t *dst, size_t n) {
    if (dtype == TW_DTYPE_BF16) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = (uint16_t)narrow_bits(TW_DTYPE_BF16, src[i]);
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = (uint16_t)narrow_bits(TW_DTYPE_F16, src[i]);
    }
}

/* dst (16-bit) = src (fp32 scratch widened from dst) rounded, only where the kernel changed the
 * bits; elsewhere dst keeps its own (NaN payloads included). */
HOT_LOOP static void narrow_changed_range(tw_dtype dtype, const uint32_t *src, uint16_t *dst,
                                          size_t n) {
    if (dtype == TW_DTYPE_BF16) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            const uint32_t old = dst[i];
            dst[i] = (uint16_t)(src[i] == widen_bits(TW_DTYPE_BF16, old)
                                    ? old : narrow_bits(TW_DTYPE_BF16, src[i]));
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            const uint32_t old = dst[i];
            dst[i] = (uint16_t)(src[i] == widen_bits(TW_DTYPE_F16, old)
                                    ? old : narrow_bits(TW_DTYPE_F16, src[i]));
        }
    }
}

/* dst (n) fp32 = src (n) of a 16-bit type, exactly. */
void tw_cpu_widen(tw_dtype dtype, const uint16_t *src, float *dst, size_t n) {
    uint32_t *out = (uint32_t *)(void *)dst;
    const size_t chunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * CONVERT_CHUNK;
        widen_range(dtype, src + begin, out + begin,
                    n - begin < CONVERT_CHUNK ? n - begin : CONVERT_CHUNK);
    }
}

/* dst (n) of a 16-bit type = src (n) fp32, rounded to nearest even. */
void tw_cpu_narrow(tw_dtype dtype, const float *src, uint16_t *dst, size_t n) {
    const uint32_t *in = (const uint32_t *)(const void *)src;
    const size_t chunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * CONVERT_CHUNK;
        narrow_range(dtype, in + begin, dst + begin,
                     n - begin < CONVERT_CHUNK ? n - begin : CONVERT_CHUNK);
    }
}

static float to_f32(tw_dtype dtype, uint16_t value) {
    return dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
}

static uint16_t from_f32(tw_dtype dtype, float value) {
    return dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(value) : tw_f32_to_f16(value);
}

static void narrow_changed(tw_dtype dtype, const float *src, uint16_t *dst, size_t n) {
    const uint32_t *in = (const uint32_t *)(const void *)src;
    const size_t chunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * CONVERT_CHUNK;
        narrow_changed_range(dtype, in + begin, dst + begin,
                             n - begin < CONVERT_CHUNK ? n - begin : CONVERT_CHUNK);
    }
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
enum { WIDE_MAX_TENSORS = TW_CPU_WIDE_MAX };

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
    int first_slot; /* its groups use the kept scratch from wide_scratch[first_slot] on */
    int count, groups;
    wide_tensor tensors[WIDE_MAX_TENSORS];
    wide_group group[WIDE_MAX_TENSORS];
} wide_op;

/* Scratch slots: a chunk of an op uses those from 0 (at most CHUNK_SLOTS groups), the tensors
 * an op keeps across its chunks (a gradient summed over every row) those from CHUNK_SLOTS. */
enum { CHUNK_SLOTS = 8 };

static void wide_init(wide_op *op, void *context) {
    memset(op, 0, sizeof *op);
    op->cpu = context;
}

static void wide_init_global(wide_op *op, void *context) {
    wide_init(op, context);
    op->first_slot = CHUNK_SLOTS;
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
 * tensors there. */
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
        tw_buffer **kept = &op->cpu->wide_scratch[op->first_slot + i];
        const size_t bytes = (g->end - g->begin) * sizeof(float);
        if (!*kept || tw_buffer_size(*kept) < bytes) {
            tw_buffer_free(*kept);
            *kept = NULL;
            TW_TRY(tw_buffer_alloc(op->cpu->device, bytes, kept));
        }
        g->scratch = *kept;
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

/* After the fp32 kernel returned `status`: rounds written groups back (when it succeeded); the
 * scratch stays for the next op. */
static tw_status wide_end(wide_op *op, tw_status status) {
    for (int i = 0; i < op->groups; i++) {
        wide_group *g = &op->group[i];
        if (status == TW_OK && g->written)
            narrow_changed(g->dtype, (const float *)g->scratch->handle,
                           (uint16_t *)g->buffer->handle + g->begin, g->end - g->begin);
    }
    return status;
}

void tw_cpu_wide_release(tw_cpu_context *cpu) {
    for (int i = 0; i < TW_CPU_WIDE_MAX; i++) {
        tw_buffer_free(cpu->wide_scratch[i]);
        cpu->wide_scratch[i] = NULL;
    }
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

/* ------------------------------------------------------------------------------------------ */
/* Chunks. Most ops are independent per row (or element, or batch), so a 16-bit op runs a
 * chunk of rows at a time and its fp32 scratch stays near the chunk budget however large the
 * tensors are: bf16 then saves memory instead of adding a widened copy of the largest tensor
 * (the logits) to the peak. The budget is 4 MiB: cross-entropy forward + backward over (2048,
 * 50257) bf16 logits took 483-546 ms with it against 543-910 ms with 16 MiB (the chunk stays in
 * cache from widening through the kernel to rounding). Tensors summed across every row
 * (LayerNorm's and bias gradients, embedding gradients) are widened once for the whole op.
 * Chunk sizes depend only on the shape, so results stay the same run after run. */
/* ------------------------------------------------------------------------------------------ */

/* The chunk budget in bytes (tw_cpu_context.chunk_bytes): 4 MiB, or TWIST_CPU_CHUNK_BYTES
 * (read when the device opens; the tests make it small so that small shapes run in many
 * chunks). */
enum { CHUNK_BYTES = 4 << 20 };

size_t tw_cpu_chunk_bytes_from_env(void) {
    const char *text = getenv("TWIST_CPU_CHUNK_BYTES");
    if (!text || !*text) return CHUNK_BYTES;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end != '\0' || value < 64) {
        tw_note("TWIST_CPU_CHUNK_BYTES=%s is not a byte count of at least 64: using %d", text,
                CHUNK_BYTES);
        return CHUNK_BYTES;
    }
    return (size_t)value;
}

/* Rows per chunk when each row widens `floats_per_row` elements: a multiple of `multiple`. */
static size_t chunk_rows(const void *context, size_t rows, size_t floats_per_row,
                         size_t multiple) {
    const tw_cpu_context *cpu = context;
    size_t step = cpu->chunk_bytes / sizeof(float) / (floats_per_row ? floats_per_row : 1);
    step = step / multiple * multiple;
    if (step < multiple) step = multiple;
    return step < rows ? step : rows;
}

/* The tensor `elements` of its own type further on. */
static tw_mem advance(tw_mem mem, size_t elements) {
    mem.offset += elements;
    return mem;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

#define MATRIX(rows, cols) ((size_t)(rows) * (size_t)(cols))

/* Chunks of rows: `r0` the first row, `count` rows of this chunk. */
#define FOR_CHUNKS(rows, floats_per_row, multiple)                                                \
    for (size_t step_ = chunk_rows(context, (size_t)(rows), (floats_per_row), (multiple)),      \
                r0 = 0,                                                                         \
                count = min_size(step_, (size_t)(rows));                                        \
         r0 < (size_t)(rows); r0 += step_, count = min_size(step_, (size_t)(rows) - r0))


/* GEMM in a 16-bit type through OpenBLAS's sgemm: per matrix of the batch, B widened whole and
 * A and C a chunk of rows at a time; C = alpha A B + beta C is formed in fp32 and rounded once
 * (C is not widened when it is fp32). */
tw_status tw_cpu_gemm_widened(void *context, const tw_gemm_args *args) {
    const bool product = args->k > 0 && args->alpha != 0.0f; /* else C = beta C: A, B unread */
    const size_t per_row = (product ? (size_t)args->k : 0) + (is_half(args->c.dtype) ? (size_t)args->n : 0);
    for (int p = 0; p < args->batch; p++) {
        tw_gemm_args one = *args;
        one.batch = 1;
        one.dtype = TW_DTYPE_F32;
        one.a = advance(args->a, (size_t)p * (size_t)args->stride_a);
        one.b = advance(args->b, (size_t)p * (size_t)args->stride_b);
        one.c = advance(args->c, (size_t)p * (size_t)args->stride_c);
        wide_op global;
        wide_init_global(&global, context);
        if (product)
            wide_add(&global, &one.b, strided_extent(1, args->trans_b ? args->n : args->k,
                                                     args->trans_b ? args->k : args->n,
                                                     args->ldb, 0), false);
        TW_TRY(wide_begin(&global));
        tw_status status = TW_OK;
        FOR_CHUNKS(args->m, per_row, 1) {
            tw_gemm_args chunk = one;
            chunk.m = (int)count;
            /* Row r0 of op(A) is column r0 of A when A is stored transposed. */
            chunk.a = advance(one.a, args->trans_a ? r0 : r0 * (size_t)args->lda);
            chunk.c = advance(one.c, r0 * (size_t)args->ldc);
            wide_op op;
            wide_init(&op, context);
            if (product)
                wide_add(&op, &chunk.a, strided_extent(1, args->trans_a ? args->k : (int)count,
                                                       args->trans_a ? (int)count : args->k,
                                                       args->lda, 0), false);
            wide_add(&op, &chunk.c, strided_extent(1, (int)count, args->n, args->ldc, 0), true);
            status = WIDE_RUN(&op, tw_cpu_gemm(context, &chunk));
            if (status != TW_OK) break;
        }
        TW_TRY(wide_end(&global, status));
    }
    return TW_OK;
}

/* Attention is independent per batch element: chunks of batches, offsets moved by the strides. */
static tw_status attention(void *context, const tw_attention_args *args, bool backward) {
    const size_t qkv = bhtd_extent(args, args->qkv_stride), out = bhtd_extent(args, args->out_stride);
    const size_t per_batch = (size_t)(args->qkv_stride.b ? args->qkv_stride.b : (int64_t)qkv) *
                                 (backward ? 2 : 1) +
                             (size_t)(args->out_stride.b ? args->out_stride.b : (int64_t)out) *
                                 (backward ? 2 : 1);
    const size_t step = chunk_rows(context, (size_t)args->batch, per_batch, 1);
    const size_t lse_per_batch = (size_t)args->heads * (size_t)args->seq_len;
    for (size_t b0 = 0; b0 < (size_t)args->batch; b0 += step) {
        tw_attention_args wide = *args;
        wide.batch = (int)min_size(step, (size_t)args->batch - b0);
        const size_t q_move = b0 * (size_t)args->qkv_stride.b, o_move = b0 * (size_t)args->out_stride.b;
        wide.q = advance(args->q, q_move), wide.k = advance(args->k, q_move);
        wide.v = advance(args->v, q_move), wide.out = advance(args->out, o_move);
        wide.lse = advance(args->lse, b0 * lse_per_batch);
        if (backward) {
            wide.dout = advance(args->dout, o_move);
            wide.dq = advance(args->dq, q_move), wide.dk = advance(args->dk, q_move);
            wide.dv = advance(args->dv, q_move);
        }
        const size_t chunk_qkv = bhtd_extent(&wide, args->qkv_stride);
        const size_t chunk_out = bhtd_extent(&wide, args->out_stride);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &wide.q, chunk_qkv, false);
        wide_add(&op, &wide.k, chunk_qkv, false);
        wide_add(&op, &wide.v, chunk_qkv, false);
        wide_add(&op, &wide.out, chunk_out, !backward);
        if (backward) {
            wide_add(&op, &wide.dout, chunk_out, false);
            wide_add(&op, &wide.dq, chunk_qkv, true);
            wide_add(&op, &wide.dk, chunk_qkv, true);
            wide_add(&op, &wide.dv, chunk_qkv, true);
        }
        wide.dtype = TW_DTYPE_F32;
        TW_TRY(WIDE_RUN(&op, backward ? tw_cpu_attention_bwd(context, &wide)
                                      : tw_cpu_attention_fwd(context, &wide)));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_attention_fwd(void *context, const tw_attention_args *args) {
    if (!is_half(args->dtype)) return tw_cpu_attention_fwd(context, args);
    return attention(context, args, false);
}

tw_status tw_cpu_typed_attention_bwd(void *context, const tw_attention_args *args) {
    if (!is_half(args->dtype)) return tw_cpu_attention_bwd(context, args);
    return attention(context, args, true);
}

tw_status tw_cpu_typed_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                                   tw_mem out) {
    if (!is_half(in.dtype)) return tw_cpu_softmax_fwd(context, rows, cols, causal_t, in, out);
    /* Causal rows mask by row mod causal_t: chunks start at multiples of it. */
    FOR_CHUNKS(rows, 2 * (size_t)cols, causal_t > 0 ? (size_t)causal_t : 1) {
        tw_mem x = advance(in, r0 * (size_t)cols), y = advance(out, r0 * (size_t)cols);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &x, count * (size_t)cols, false);
        wide_add(&op, &y, count * (size_t)cols, true);
        TW_TRY(WIDE_RUN(&op, tw_cpu_softmax_fwd(context, (int)count, cols, causal_t, x, y)));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy,
                                   tw_mem dx) {
    if (!is_half(y.dtype)) return tw_cpu_softmax_bwd(context, rows, cols, y, dy, dx);
    FOR_CHUNKS(rows, 3 * (size_t)cols, 1) {
        const size_t move = r0 * (size_t)cols, n = count * (size_t)cols;
        tw_mem yc = advance(y, move), dyc = advance(dy, move), dxc = advance(dx, move);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &yc, n, false);
        wide_add(&op, &dyc, n, false);
        wide_add(&op, &dxc, n, true);
        TW_TRY(WIDE_RUN(&op, tw_cpu_softmax_bwd(context, (int)count, cols, yc, dyc, dxc)));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                                     tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean,
                                     tw_mem rstd) {
    if (!is_half(x.dtype))
        return tw_cpu_layernorm_fwd(context, rows, cols, eps, x, weight, bias, out, mean, rstd);
    FOR_CHUNKS(rows, 2 * (size_t)cols, 1) {
        const size_t move = r0 * (size_t)cols, n = count * (size_t)cols;
        tw_mem xc = advance(x, move), oc = advance(out, move), w = weight, b = bias;
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &xc, n, false);
        wide_add(&op, &w, (size_t)cols, false);
        wide_add(&op, &b, (size_t)cols, false);
        wide_add(&op, &oc, n, true);
        TW_TRY(WIDE_RUN(&op, tw_cpu_layernorm_fwd(context, (int)count, cols, eps, xc, w, b, oc,
                                                  advance(mean, r0), advance(rstd, r0))));
    }
    return TW_OK;
}

/* dweight and dbias sum over every row: widened once for the whole op, rounded once. */
tw_status tw_cpu_typed_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                                     tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx,
                                     tw_mem dweight, tw_mem dbias) {
    if (!is_half(x.dtype))
        return tw_cpu_layernorm_bwd(context, rows, cols, dout, x, weight, mean, rstd, dx, dweight,
                                    dbias);
    wide_op global;
    wide_init_global(&global, context);
    wide_add(&global, &dweight, (size_t)cols, true);
    wide_add(&global, &dbias, (size_t)cols, true);
    tw_status status = wide_begin(&global);
    if (status != TW_OK) return status;
    FOR_CHUNKS(rows, 3 * (size_t)cols, 1) {
        const size_t move = r0 * (size_t)cols, n = count * (size_t)cols;
        tw_mem doutc = advance(dout, move), xc = advance(x, move), dxc = advance(dx, move);
        tw_mem w = weight;
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &doutc, n, false);
        wide_add(&op, &xc, n, false);
        wide_add(&op, &w, (size_t)cols, false);
        wide_add(&op, &dxc, n, true);
        status = WIDE_RUN(&op, tw_cpu_layernorm_bwd(context, (int)count, cols, doutc, xc, w,
                                                    advance(mean, r0), advance(rstd, r0), dxc,
                                                    dweight, dbias));
        if (status != TW_OK) break;
    }
    return wide_end(&global, status);
}

/* Elementwise ops, fused: each thread takes blocks of FUSED_BLOCK elements, widens them into
 * buffers on its stack, runs the fp32 loop and rounds the results straight back, so nothing
 * goes through device scratch and the data stays in L1/L2 (an output aliasing an input is read
 * whole before it is written). The fp32 loops are cpu_ops.c's, so each element gets exactly
 * the value the fp32 kernel would give it, rounded once. */
enum { FUSED_BLOCK = 2048, FUSED_PARALLEL_MIN = 1 << 15 };

/* Blocks of the `n` elements (the variable must be called n: the pragma names it). */
#define FOR_FUSED_BLOCKS(n)                                                                      \
    _Pragma("omp parallel for schedule(static) if ((n) >= FUSED_PARALLEL_MIN)")                  \
    for (size_t block_ = 0; block_ < ((n) + FUSED_BLOCK - 1) / FUSED_BLOCK; block_++)

/* Host pointer of a 16-bit tensor's element `at`. */
static uint16_t *half_at(tw_mem mem, size_t at) {
    return (uint16_t *)mem.buffer->handle + mem.offset + at;
}

tw_status tw_cpu_typed_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    if (!is_half(x.dtype)) return tw_cpu_gelu_fwd(context, n, x, out);
    const tw_dtype t = x.dtype;
    FOR_FUSED_BLOCKS(n) {
        float in[FUSED_BLOCK], y[FUSED_BLOCK];
        const size_t begin = block_ * FUSED_BLOCK, count = min_size(FUSED_BLOCK, n - begin);
        widen_range(t, half_at(x, begin), (uint32_t *)(void *)in, count);
        tw_cpu_gelu_fwd_range(in, y, count);
        narrow_range(t, (const uint32_t *)(const void *)y, half_at(out, begin), count);
    }
    return TW_OK;
}

tw_status tw_cpu_typed_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    if (!is_half(x.dtype)) return tw_cpu_gelu_bwd(context, n, x, dout, dx);
    const tw_dtype t = x.dtype;
    FOR_FUSED_BLOCKS(n) {
        float in[FUSED_BLOCK], dy[FUSED_BLOCK], d[FUSED_BLOCK];
        const size_t begin = block_ * FUSED_BLOCK, count = min_size(FUSED_BLOCK, n - begin);
        widen_range(t, half_at(x, begin), (uint32_t *)(void *)in, count);
        widen_range(t, half_at(dout, begin), (uint32_t *)(void *)dy, count);
        widen_range(t, half_at(dx, begin), (uint32_t *)(void *)d, count);
        tw_cpu_gelu_bwd_range(in, dy, d, count);
        narrow_range(t, (const uint32_t *)(const void *)d, half_at(dx, begin), count);
    }
    return TW_OK;
}

/* out (B*T, C) = wte[token] + wpe[t], added in fp32 and rounded once, straight from the 16-bit
 * tables: widening wte (vocab, C) whole would cost more than the lookup. */
tw_status tw_cpu_typed_embedding_fwd(void *context, int batch, int seq_len, int channels,
                                     int vocab, tw_mem tokens, tw_mem wte, tw_mem wpe,
                                     tw_mem out) {
    if (!is_half(wte.dtype))
        return tw_cpu_embedding_fwd(context, batch, seq_len, channels, vocab, tokens, wte, wpe, out);
    const tw_dtype dtype = wte.dtype;
    const int32_t *tok = tw_cpu_i32(tokens);
    const uint16_t *te = (const uint16_t *)wte.buffer->handle + wte.offset;
    const uint16_t *pe = (const uint16_t *)wpe.buffer->handle + wpe.offset;
    uint16_t *y = (uint16_t *)out.buffer->handle + out.offset;
    const int rows = batch * seq_len;
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)channels >= CONVERT_PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const uint16_t *te_row = te + (size_t)tok[r] * (size_t)channels;
        const uint16_t *pe_row = pe + (size_t)(r % seq_len) * (size_t)channels;
        uint16_t *y_row = y + (size_t)r * (size_t)channels;
        for (int c = 0; c < channels; c++)
            y_row[c] = from_f32(dtype, to_f32(dtype, te_row[c]) + to_f32(dtype, pe_row[c]));
    }
    return TW_OK;
}

/* dwte and dwpe sum over every row: widened once for the whole op (the rows of dwte that tokens
 * touch are not known here), rounded once; dout in chunks. */
tw_status tw_cpu_typed_embedding_bwd(void *context, int batch, int seq_len, int channels,
                                     int vocab, tw_mem tokens, tw_mem dout, tw_mem dwte,
                                     tw_mem dwpe) {
    if (!is_half(dout.dtype))
        return tw_cpu_embedding_bwd(context, batch, seq_len, channels, vocab, tokens, dout, dwte,
                                    dwpe);
    wide_op global;
    wide_init_global(&global, context);
    wide_add(&global, &dwte, MATRIX(vocab, channels), true);
    wide_add(&global, &dwpe, MATRIX(seq_len, channels), true);
    tw_status status = wide_begin(&global);
    if (status != TW_OK) return status;
    /* Whole sequences per chunk: the kernel finds a row's position as row mod seq_len. */
    FOR_CHUNKS(batch, (size_t)seq_len * (size_t)channels, 1) {
        tw_mem dy = advance(dout, r0 * (size_t)seq_len * (size_t)channels);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &dy, count * (size_t)seq_len * (size_t)channels, false);
        status = WIDE_RUN(&op, tw_cpu_embedding_bwd(context, (int)count, seq_len, channels, vocab,
                                                    advance(tokens, r0 * (size_t)seq_len), dy,
                                                    dwte, dwpe));
        if (status != TW_OK) break;
    }
    return wide_end(&global, status);
}

tw_status tw_cpu_typed_softmax_xent_fwd(void *context, int rows, int vocab, int ld,
                                        tw_mem logits, tw_mem targets, tw_mem losses, tw_mem lse,
                                        tw_mem correct) {
    if (!is_half(logits.dtype))
        return tw_cpu_softmax_xent_fwd(context, rows, vocab, ld, logits, targets, losses, lse,
                                       correct);
    FOR_CHUNKS(rows, (size_t)ld, 1) {
        tw_mem z = advance(logits, r0 * (size_t)ld);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &z, (count - 1) * (size_t)ld + (size_t)vocab, false);
        TW_TRY(WIDE_RUN(&op, tw_cpu_softmax_xent_fwd(context, (int)count, vocab, ld, z,
                                                     advance(targets, r0), advance(losses, r0),
                                                     advance(lse, r0), advance(correct, r0))));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_softmax_xent_bwd(void *context, int rows, int vocab, int ld,
                                        float grad_scale, tw_mem logits, tw_mem targets,
                                        tw_mem lse, tw_mem dlogits) {
    if (!is_half(logits.dtype))
        return tw_cpu_softmax_xent_bwd(context, rows, vocab, ld, grad_scale, logits, targets, lse,
                                       dlogits);
    FOR_CHUNKS(rows, 2 * (size_t)ld, 1) {
        const size_t extent = (count - 1) * (size_t)ld + (size_t)vocab;
        tw_mem z = advance(logits, r0 * (size_t)ld), dz = advance(dlogits, r0 * (size_t)ld);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &z, extent, false);
        wide_add(&op, &dz, extent, true);
        TW_TRY(WIDE_RUN(&op, tw_cpu_softmax_xent_bwd(context, (int)count, vocab, ld, grad_scale,
                                                     z, advance(targets, r0), advance(lse, r0),
                                                     dz)));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    if (!is_half(out.dtype)) return tw_cpu_bias_add(context, rows, cols, bias, out);
    FOR_CHUNKS(rows, (size_t)cols, 1) {
        tw_mem b = bias, y = advance(out, r0 * (size_t)cols);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &b, (size_t)cols, false);
        wide_add(&op, &y, count * (size_t)cols, true);
        TW_TRY(WIDE_RUN(&op, tw_cpu_bias_add(context, (int)count, cols, b, y)));
    }
    return TW_OK;
}

tw_status tw_cpu_typed_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    if (!is_half(dout.dtype)) return tw_cpu_bias_bwd(context, rows, cols, dout, dbias);
    wide_op global;
    wide_init_global(&global, context);
    wide_add(&global, &dbias, (size_t)cols, true);
    tw_status status = wide_begin(&global);
    if (status != TW_OK) return status;
    FOR_CHUNKS(rows, (size_t)cols, 1) {
        tw_mem dy = advance(dout, r0 * (size_t)cols);
        wide_op op;
        wide_init(&op, context);
        wide_add(&op, &dy, count * (size_t)cols, false);
        status = WIDE_RUN(&op, tw_cpu_bias_bwd(context, (int)count, cols, dy, dbias));
        if (status != TW_OK) break;
    }
    return wide_end(&global, status);
}

HOT_LOOP static void add_range(const float *a, const float *b, float *out, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

HOT_LOOP static void scale_range(float alpha, float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = alpha * x[i];
}

tw_status tw_cpu_typed_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    if (!is_half(a.dtype)) return tw_cpu_add(context, n, a, b, out);
    const tw_dtype t = a.dtype;
    FOR_FUSED_BLOCKS(n) {
        float x[FUSED_BLOCK], y[FUSED_BLOCK], z[FUSED_BLOCK];
        const size_t begin = block_ * FUSED_BLOCK, count = min_size(FUSED_BLOCK, n - begin);
        widen_range(t, half_at(a, begin), (uint32_t *)(void *)x, count);
        widen_range(t, half_at(b, begin), (uint32_t *)(void *)y, count);
        add_range(x, y, z, count);
        narrow_range(t, (const uint32_t *)(const void *)z, half_at(out, begin), count);
    }
    return TW_OK;
}

tw_status tw_cpu_typed_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    if (!is_half(x.dtype)) return tw_cpu_scale(context, n, alpha, x, out);
    const tw_dtype t = x.dtype;
    FOR_FUSED_BLOCKS(n) {
        float y[FUSED_BLOCK];
        const size_t begin = block_ * FUSED_BLOCK, count = min_size(FUSED_BLOCK, n - begin);
        widen_range(t, half_at(x, begin), (uint32_t *)(void *)y, count);
        scale_range(alpha, y, count);
        narrow_range(t, (const uint32_t *)(const void *)y, half_at(out, begin), count);
    }
    return TW_OK;
}

/* Partial sums of SUM_CHUNK squares in double, added in chunk order (as cpu_ops.c's fp32
 * kernel), read straight from the 16-bit tensor. */
enum { SUM_CHUNK = 1 << 14 };

HOT_LOOP static double sum_sq_range16(tw_dtype dtype, const uint16_t *x, size_t n) {
    double sum = 0.0;
    if (dtype == TW_DTYPE_BF16) {
#pragma omp simd reduction(+ : sum)
        for (size_t i = 0; i < n; i++) {
            const double v = tw_f32_from_bits(widen_bits(TW_DTYPE_BF16, x[i]));
            sum += v * v;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (size_t i = 0; i < n; i++) {
            const double v = tw_f32_from_bits(widen_bits(TW_DTYPE_F16, x[i]));
            sum += v * v;
        }
    }
    return sum;
}

tw_status tw_cpu_typed_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    if (!is_half(x.dtype)) return tw_cpu_sum_sq(context, n, x, out);
    const uint16_t *in = (const uint16_t *)x.buffer->handle + x.offset;
    const size_t chunks = (n + SUM_CHUNK - 1) / SUM_CHUNK;
    double *partial = malloc((chunks ? chunks : 1) * sizeof *partial);
    if (!partial) return tw_error(TW_ERR_OUT_OF_MEMORY, "sum_sq: out of host memory");
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * SUM_CHUNK;
        partial[chunk] = sum_sq_range16(x.dtype, in + begin, min_size(SUM_CHUNK, n - begin));
    }
    double total = 0.0;
    for (size_t chunk = 0; chunk < chunks; chunk++) total += partial[chunk];
    free(partial);
    tw_cpu_f32(out)[0] = (float)total;
    return TW_OK;
}

/* AdamW: only grad is 16-bit (param, m and v are fp32), widened block by block. */
tw_status tw_cpu_typed_adamw_step(void *context, size_t n, const tw_adamw_args *args,
                                  tw_mem param, tw_mem grad, tw_mem m, tw_mem v) {
    if (!is_half(grad.dtype)) return tw_cpu_adamw_step(context, n, args, param, grad, m, v);
    const tw_dtype t = grad.dtype;
    float *p = tw_cpu_f32(param), *first = tw_cpu_f32(m), *second = tw_cpu_f32(v);
    /* As tw_cpu_adamw_step computes them. */
    const float correction1 = 1.0f - powf(args->beta1, (float)args->step);
    const float correction2 = 1.0f - powf(args->beta2, (float)args->step);
    FOR_FUSED_BLOCKS(n) {
        float g[FUSED_BLOCK];
        const size_t begin = block_ * FUSED_BLOCK, count = min_size(FUSED_BLOCK, n - begin);
        widen_range(t, half_at(grad, begin), (uint32_t *)(void *)g, count);
        tw_cpu_adamw_range(args, correction1, correction2, count, p + begin, g, first + begin,
                           second + begin);
    }
    return TW_OK;
}

/* Gathers and overwriting scatters copy 16-bit elements as they are (cpu_ops.c). */
tw_status tw_cpu_typed_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                                   tw_mem src, tw_mem dst) {
    return tw_cpu_gather_rows(context, src_rows, cols, count, idx, src, dst);
}

/* Accumulating scatters: the destination is written at indexed rows or columns anywhere, so it
 * is widened whole, with the source. */
tw_status tw_cpu_typed_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                                    tw_mem src, tw_mem dst, bool accumulate) {
    if (!accumulate || !is_half(src.dtype))
        return tw_cpu_scatter_rows(context, dst_rows, cols, count, idx, src, dst, accumulate);
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
    if (!accumulate || !is_half(src.dtype))
        return tw_cpu_scatter_cols(context, rows, dst_cols, count, idx, src, dst, accumulate);
    wide_op op;
    wide_init(&op, context);
    wide_add(&op, &src, MATRIX(rows, count), false);
    wide_add(&op, &dst, MATRIX(rows, dst_cols), true);
    return WIDE_RUN(&op, tw_cpu_scatter_cols(context, rows, dst_cols, count, idx, src, dst,
                                             accumulate));
}
