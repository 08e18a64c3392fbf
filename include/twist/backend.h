/* twist: the backend interface.
 *
 * Everything above this header (model, optimizer, IST, growth) is written once against it; every
 * backend (cpu, opencl, vulkan, cuda) implements it. The CPU backend is the reference: every op on
 * every other backend is tested against it (tests/test_conformance.c).
 *
 * Conventions that hold for every op below:
 *   - Tensors are row-major. A tensor argument is a tw_mem: a buffer, an offset counted in
 *     elements of the tensor's type, and that type (tw_dtype: f32, f16, bf16, i32; see "Data
 *     types" above the ops). The library checks that
 *     every element an op touches lies inside its buffer before anything is enqueued.
 *   - Ops are enqueued on the device's single in-order queue and may return before they finish.
 *     tw_buffer_download() and tw_device_sync() wait. On the CPU backend ops run at once.
 *   - Backward ops ADD into every gradient they produce (dx += ..., dw += ...), the way a residual
 *     stream and gradient accumulation need; callers zero a gradient buffer when they want "=".
 *   - Reductions are deterministic on every backend: the same inputs give the same bits, run
 *     after run, on a given device (no floating-point atomics).
 *   - Shapes are given in comments as (rows, cols) or (B, T, C). Sizes are int (each dimension
 *     below 2^31); element counts and offsets are size_t / int64_t.
 *   - Shapes, offsets and extents are checked; index DATA held in device buffers (tokens, targets,
 *     gather/scatter indices) is not, since that would need a device round trip per op. The code
 *     that makes indices (data loader, tokenizer, IST partitioner) guarantees their range.
 */
#ifndef TWIST_BACKEND_H
#define TWIST_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * Registry and device info
 * ---------------------------------------------------------------------------------------------- */

typedef enum tw_backend_kind {
    TW_BACKEND_CPU = 0,
    TW_BACKEND_OPENCL,
    TW_BACKEND_VULKAN,
    TW_BACKEND_CUDA,
    TW_BACKEND_COUNT
} tw_backend_kind;

typedef enum tw_device_type {
    TW_DEVICE_TYPE_CPU = 0,
    TW_DEVICE_TYPE_GPU,
    TW_DEVICE_TYPE_INTEGRATED_GPU,
    TW_DEVICE_TYPE_ACCELERATOR,
    TW_DEVICE_TYPE_OTHER
} tw_device_type;

/* Element types. Every tensor argument (tw_mem) carries one; sizes come from tw_dtype_size().
 * F32 is the zero value, so a tw_mem built with tw_at() or left zero is fp32. I32 is for index
 * data (tokens, targets, gather/scatter indices). */
typedef enum tw_dtype {
    TW_DTYPE_F32 = 0,
    TW_DTYPE_F16,  /* IEEE binary16 */
    TW_DTYPE_BF16, /* bfloat16: the top 16 bits of an fp32 */
    TW_DTYPE_I32,
    TW_DTYPE_COUNT
} tw_dtype;

/* Bytes per element: 4, 2, 2, 4 (0 for a value out of range). */
size_t tw_dtype_size(tw_dtype dtype);
/* "f32", "f16", "bf16", "i32" ("?" out of range). */
const char *tw_dtype_name(tw_dtype dtype);
/* Parses a name above (also "fp32", "fp16", "float32", "float16", "bfloat16", "int32");
 * false when it names none. */
bool tw_dtype_parse(const char *name, tw_dtype *out);

typedef struct tw_device_info {
    char spec[32];        /* "cpu", "opencl:0", "vulkan:1", "cuda:0" */
    char name[256];       /* as the driver reports it */
    char vendor[128];
    char driver[128];     /* driver or runtime version, or "" */
    tw_backend_kind backend;
    tw_device_type type;
    int compute_units;    /* cores, CUs or SMs; 0 if unknown */
    uint64_t memory_bytes; /* global memory; 0 if unknown */
    double peak_gflops_f32; /* theoretical peak FP32 GFLOP/s; 0 where it cannot be known */
    double peak_gbps;       /* theoretical memory bandwidth, GB/s; 0 where unknown (twist/peak.h
                             * measures and caches what the driver does not give) */
} tw_device_info;

/* "cpu", "opencl", "vulkan", "cuda". */
const char *tw_backend_name(tw_backend_kind kind);
/* Whether this build of the library contains the backend (it may still list no devices). */
bool tw_backend_compiled(tw_backend_kind kind);
/* Devices the backend listed (0 if not built, not loadable, or no runtime). */
int tw_backend_device_count(tw_backend_kind kind);
/* Why a built backend lists no devices, as the backend or its loader reports it (for example
 * "cudaGetDeviceCount: no CUDA-capable device is detected", or why its module could not be
 * loaded); "" when it listed devices, is not built, or cannot say. */
const char *tw_backend_no_device_reason(tw_backend_kind kind);
/* "cpu", "gpu", "integrated-gpu", "accelerator", "other". */
const char *tw_device_type_name(tw_device_type type);

/* Every device of every compiled-in backend, in backend order (cpu first). Enumerating a backend
 * whose runtime or driver is absent yields no devices, never an error. Thread-safe; the list is
 * built once per process. */
int tw_device_count(void);
tw_status tw_device_info_at(int index, tw_device_info *out);

typedef struct tw_device tw_device;

/* The device "auto" stands for: the first GPU of CUDA, then Vulkan, then OpenCL; else any other
 * non-CPU accelerator in that backend order; else the cpu (an OpenCL or Vulkan device of CPU
 * type, such as PoCL or lavapipe, runs on the same cores as the cpu backend, more slowly). */
tw_status tw_best_device(tw_device_info *out);

/* Opens a device by spec ("cpu", "opencl:0", ..., or "auto": tw_best_device). Unknown backends, backends not built, and
 * indices past the last device fail with TW_ERR_NOT_FOUND / TW_ERR_UNSUPPORTED and a message.
 * Opening the same spec twice gives two independent contexts on the same hardware. */
tw_status tw_device_open(const char *spec, tw_device **out);
void tw_device_close(tw_device *device);
const tw_device_info *tw_device_get_info(const tw_device *device);

/* Waits until everything enqueued on the device has finished. */
tw_status tw_device_sync(tw_device *device);

/* Bytes currently allocated through tw_buffer_alloc on this device (including backend scratch),
 * and the high-water mark since open or the last tw_device_reset_peak(). */
size_t tw_device_bytes_in_use(const tw_device *device);
size_t tw_device_peak_bytes(const tw_device *device);
void tw_device_reset_peak(tw_device *device);

/* ------------------------------------------------------------------------------------------------
 * Buffers
 * ---------------------------------------------------------------------------------------------- */

typedef struct tw_buffer tw_buffer;

tw_status tw_buffer_alloc(tw_device *device, size_t bytes, tw_buffer **out);
void tw_buffer_free(tw_buffer *buffer);
size_t tw_buffer_size(const tw_buffer *buffer);
tw_device *tw_buffer_device(const tw_buffer *buffer);

/* Byte offsets. Upload may return before the copy finishes only if the backend copied `src`
 * already; the caller may reuse `src` as soon as it returns. Download waits for the data. */
tw_status tw_buffer_upload(tw_buffer *dst, size_t dst_offset, const void *src, size_t bytes);
tw_status tw_buffer_download(const tw_buffer *src, size_t src_offset, void *dst, size_t bytes);
/* Same-device copy; regions must not overlap. */
tw_status tw_buffer_copy(tw_buffer *dst, size_t dst_offset, const tw_buffer *src,
                         size_t src_offset, size_t bytes);
/* Sets `count` floats starting at element `offset` to `value`. */
tw_status tw_buffer_fill_f32(tw_buffer *dst, size_t offset, size_t count, float value);

/* A tensor argument: buffer, offset in elements of the tensor's dtype, and that dtype. */
typedef struct tw_mem {
    tw_buffer *buffer;
    size_t offset;
    tw_dtype dtype;
} tw_mem;

/* An fp32 (or, for index arguments, int32) tensor at element `offset`. */
static inline tw_mem tw_at(tw_buffer *buffer, size_t offset) {
    tw_mem mem = {buffer, offset, TW_DTYPE_F32};
    return mem;
}

/* A tensor of type `dtype` at element `offset` (counted in elements of that type). */
static inline tw_mem tw_at_typed(tw_buffer *buffer, size_t offset, tw_dtype dtype) {
    tw_mem mem = {buffer, offset, dtype};
    return mem;
}

/* ------------------------------------------------------------------------------------------------
 * Events: timestamps on the device queue, for the profiler and for `twist bench`.
 * ---------------------------------------------------------------------------------------------- */

typedef struct tw_event tw_event;

tw_status tw_event_create(tw_device *device, tw_event **out);
void tw_event_destroy(tw_event *event);
/* Records a timestamp taken when everything enqueued before it has finished. */
tw_status tw_event_record(tw_event *event);
/* Milliseconds between two recorded events of the same device; waits for both. */
tw_status tw_event_elapsed_ms(tw_event *start, tw_event *end, double *ms);

/* ------------------------------------------------------------------------------------------------
 * Ops.
 *
 * Data types. Each op has one data type: the dtype of its principal tensor (GEMM and attention:
 * args->dtype; LayerNorm: x; GELU, scale, sum_sq: x; add: a; bias ops: out / dout; embedding:
 * wte / dout; cross-entropy: logits; AdamW: grad; gather/scatter: src). Its other float tensors
 * share that type, except those that are always fp32 whatever it is:
 *   attention lse; LayerNorm mean and rstd; cross-entropy losses, lse and correct; sum_sq's out;
 *   AdamW's param (the fp32 master weights), m and v.
 * GEMM's C may be the data type or fp32 (low-precision inputs, fp32 output); GEMM and attention
 * accumulate in fp32 whatever the type; so do the row statistics of LayerNorm, softmax and
 * cross-entropy. Index tensors (tokens, targets, idx) are I32 (the default F32 tag is read as
 * int32 too, both being 4 bytes). Every device runs every op in fp32; other types where
 * tw_device_supports_dtype() says so, and elsewhere the op fails with TW_ERR_UNSUPPORTED naming
 * the op, the type and the device. A tensor of the wrong type is TW_ERR_INVALID_ARGUMENT.
 * ---------------------------------------------------------------------------------------------- */

/* Whether `op` (an op name of this header without "tw_": "gemm", "layernorm_fwd", ...) runs in
 * data type `dtype` on the device. False for unknown op names. */
bool tw_device_supports_dtype(tw_device *device, const char *op, tw_dtype dtype);

/* dst (n) = src (n) converted between float types (f32, f16, bf16 in any direction; equal types
 * copy), rounding to nearest even; NaN stays NaN, values past the target's range become +-inf.
 * Regions must not overlap. Where the device has no conversion kernel for the pair,
 * TW_ERR_UNSUPPORTED (f32 -> f32 always works). */
tw_status tw_convert(tw_device *device, size_t n, tw_mem src, tw_mem dst);

/* GEMM, strided-batched, row-major (the CBLAS RowMajor convention):
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p
 * op(A_p) is (m, k): A_p is stored (m, k) with row stride lda >= k, or (k, m) with lda >= m when
 * trans_a. op(B_p) is (k, n): B_p stored (k, n), ldb >= n, or (n, k), ldb >= k when trans_b.
 * C_p stored (m, n), ldc >= n. A_p starts at a.offset + p * stride_a (likewise B, C).
 * beta == 0 means C is not read (NaNs in C do not propagate). k == 0 gives C = beta * C. */
typedef struct tw_gemm_args {
    tw_dtype dtype;
    bool trans_a, trans_b;
    int m, n, k;
    int batch;
    float alpha, beta;
    tw_mem a;
    int64_t lda, stride_a;
    tw_mem b;
    int64_t ldb, stride_b;
    tw_mem c;
    int64_t ldc, stride_c;
} tw_gemm_args;

tw_status tw_gemm(tw_device *device, const tw_gemm_args *args);

/* Fused causal multi-head attention (flash-attention style: online softmax, the (T, T) score
 * matrix never exists in global memory).
 *
 * q, k, v, dq, dk, dv share one layout, `qkv_stride`; out and dout share `out_stride`. Element
 * (b, h, t, d) of q is at q.offset + b*stride.b + h*stride.h + t*stride.t + d (d is contiguous).
 * This lets the model pass its packed (B, T, 3C) QKV projection directly: stride {T*3C, D, 3C}
 * with k and v at offsets C and 2C; and out as (B, T, C): stride {T*C, D, C}.
 *
 *   S = scale * Q K^T with S[i][j] = -inf for j > i;  P = softmax_rows(S);  O = P V
 *   lse (B, H, T) contiguous = log(sum_j exp(S[i][j])) per row, saved for the backward pass.
 * Backward adds dQ, dK, dV into dq, dk, dv given dout, recomputing P from q, k and lse; the
 * row terms delta_i = sum_d dO[i][d] * O[i][d] are computed inside (scratch of B*H*T floats). */
typedef struct tw_bhtd_stride {
    int64_t b, h, t;
} tw_bhtd_stride;

typedef struct tw_attention_args {
    tw_dtype dtype;
    int batch, heads, seq_len, head_dim; /* B, H, T, D */
    float scale;                         /* usually 1/sqrt(D) */
    tw_bhtd_stride qkv_stride, out_stride;
    tw_mem q, k, v;
    tw_mem out;  /* forward: written; backward: read (the forward output O) */
    tw_mem lse;  /* forward: written; backward: read */
    tw_mem dout; /* backward only */
    tw_mem dq, dk, dv; /* backward only; added into */
} tw_attention_args;

tw_status tw_attention_fwd(tw_device *device, const tw_attention_args *args);
tw_status tw_attention_bwd(tw_device *device, const tw_attention_args *args);

/* Row softmax over (rows, cols), used by the unfused attention path and tests. With causal_t > 0,
 * row r masks columns c > (r mod causal_t) to probability 0 (rows are (batch, T) query rows and
 * cols == T). out may alias in.
 * Backward: dx += y * (dy - sum_c(dy * y)) per row, with y the forward output. */
tw_status tw_softmax_fwd(tw_device *device, int rows, int cols, int causal_t, tw_mem in,
                         tw_mem out);
tw_status tw_softmax_bwd(tw_device *device, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx);

/* LayerNorm over the last dimension: x (N, C), weight and bias (C), out (N, C),
 * mean and rstd (N) saved for the backward pass; rstd = 1 / sqrt(var + eps), var biased.
 * Backward adds into dx (N, C), dweight (C) and dbias (C). */
tw_status tw_layernorm_fwd(tw_device *device, int rows, int cols, float eps, tw_mem x,
                           tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd);
tw_status tw_layernorm_bwd(tw_device *device, int rows, int cols, tw_mem dout, tw_mem x,
                           tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                           tw_mem dbias);

/* GELU, tanh approximation (GPT-2):
 *   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * out may alias x in the forward. Backward: dx += gelu'(x) * dout. */
tw_status tw_gelu_fwd(tw_device *device, size_t n, tw_mem x, tw_mem out);
tw_status tw_gelu_bwd(tw_device *device, size_t n, tw_mem x, tw_mem dout, tw_mem dx);

/* Token + position embedding: tokens (B, T) int32 in [0, vocab), wte (vocab, C),
 * wpe (>= T, C), out (B, T, C) = wte[tokens[b][t]] + wpe[t].
 * Backward adds dout into dwte rows (tokens repeat: summed in a fixed order) and dwpe. */
tw_status tw_embedding_fwd(tw_device *device, int batch, int seq_len, int channels, int vocab,
                           tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out);
tw_status tw_embedding_bwd(tw_device *device, int batch, int seq_len, int channels, int vocab,
                           tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe);

/* Fused softmax + cross-entropy: logits (N, ld), of which the first V columns are classes
 * (ld >= V lets the vocabulary be padded). targets (N) int32; a target < 0 marks a row that is
 * ignored (loss 0, correct 0, no gradient).
 * Forward writes losses (N) = lse - logit[target], lse (N), and correct (N) = 1.0f where the
 * target is the argmax (first maximum on ties), else 0.0f.
 * Backward: dlogits (N, ld) += grad_scale * (softmax(logits) - onehot(target)) on the V class
 * columns of rows with a valid target; pass grad_scale = 1/N for a mean loss. */
tw_status tw_softmax_xent_fwd(tw_device *device, int rows, int vocab, int ld, tw_mem logits,
                              tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct);
tw_status tw_softmax_xent_bwd(tw_device *device, int rows, int vocab, int ld, float grad_scale,
                              tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits);

/* Linear-layer bias: out (rows, cols) += bias (cols) broadcast over rows.
 * Backward: dbias (cols) += column sums of dout (rows, cols). */
tw_status tw_bias_add(tw_device *device, int rows, int cols, tw_mem bias, tw_mem out);
tw_status tw_bias_bwd(tw_device *device, int rows, int cols, tw_mem dout, tw_mem dbias);

/* Elementwise over n elements of the op's type: out = a + b;  out = alpha * x. out may alias
 * any input. */
tw_status tw_add(tw_device *device, size_t n, tw_mem a, tw_mem b, tw_mem out);
tw_status tw_scale(tw_device *device, size_t n, float alpha, tw_mem x, tw_mem out);

/* out[0] (fp32) = sum_i x[i]^2 over the n elements of x (accumulated in at least fp32 with a
 * fixed reduction tree; the CPU reference accumulates in double). Used for global-norm gradient
 * clipping. */
tw_status tw_sum_sq(tw_device *device, size_t n, tw_mem x, tw_mem out);

/* AdamW with decoupled weight decay, over n parameters, in place on param, m and v:
 *   g = grad_scale * grad
 *   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
 *   m_hat = m / (1 - beta1^step);  v_hat = v / (1 - beta2^step)
 *   param -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * param)
 * step counts from 1. grad_scale carries gradient clipping (and 1/accumulation steps). */
typedef struct tw_adamw_args {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    int step;
} tw_adamw_args;

tw_status tw_adamw_step(tw_device *device, size_t n, const tw_adamw_args *args, tw_mem param,
                        tw_mem grad, tw_mem m, tw_mem v);

/* Gather and scatter of rows and columns: how IST packs a subnetwork's slices of a parameter
 * matrix and puts them back. src/dst are (rows, cols) row-major matrices; idx (count) int32
 * indices, each in range and (for scatters) distinct.
 *   gather_rows:  dst (count, cols)[i][c] = src (src_rows, cols)[idx[i]][c]
 *   scatter_rows: dst (dst_rows, cols)[idx[i]][c] (+)= src (count, cols)[i][c]
 *   gather_cols:  dst (rows, count)[r][i] = src (rows, src_cols)[r][idx[i]]
 *   scatter_cols: dst (rows, dst_cols)[r][idx[i]] (+)= src (rows, count)[r][i]
 * Scatters overwrite, or add when accumulate is true. */
tw_status tw_gather_rows(tw_device *device, int src_rows, int cols, int count, tw_mem idx,
                         tw_mem src, tw_mem dst);
tw_status tw_scatter_rows(tw_device *device, int dst_rows, int cols, int count, tw_mem idx,
                          tw_mem src, tw_mem dst, bool accumulate);
tw_status tw_gather_cols(tw_device *device, int rows, int src_cols, int count, tw_mem idx,
                         tw_mem src, tw_mem dst);
tw_status tw_scatter_cols(tw_device *device, int rows, int dst_cols, int count, tw_mem idx,
                          tw_mem src, tw_mem dst, bool accumulate);

/* ------------------------------------------------------------------------------------------------
 * Backend-specific knobs used by `twist bench` and tests.
 * ---------------------------------------------------------------------------------------------- */

/* Which GEMM implementation the device uses. Backends with more than one (OpenCL: CLBlast and
 * twist's own tiled kernel) choose per shape class by measuring once and caching the choice;
 * forcing one is for benchmarks and tests. */
typedef enum tw_gemm_impl {
    TW_GEMM_AUTO = 0, /* the backend's choice */
    TW_GEMM_VENDOR,   /* the vendor library: OpenBLAS, CLBlast, cuBLAS */
    TW_GEMM_OWN       /* twist's own kernel */
} tw_gemm_impl;

/* TW_ERR_UNSUPPORTED if the device has no such implementation. */
tw_status tw_device_set_gemm_impl(tw_device *device, tw_gemm_impl impl);

/* ------------------------------------------------------------------------------------------------
 * Tuning: kernel variants chosen per (device, driver version, shape class).
 *
 * A backend with several variants of an op ("gemm", "attention_fwd", ...) times the candidates
 * that suit a shape class the first time it meets it, keeps the fastest that also gave correct
 * results, and caches the choice on disk beside its program/pipeline cache (see
 * twist/backend_support.h: tw_tune_cache), so later processes start with it. A candidate that
 * fails to build or gives wrong results is skipped. TWIST_TUNE=off|verbose changes this.
 * ---------------------------------------------------------------------------------------------- */

/* Progress of tw_device_tune: `done` of `total` shape classes finished; `label` names the one
 * just timed ("gemm NN-m12-n12-k12-single: v3 412.0 GFLOP/s") . */
typedef void (*tw_tune_progress)(int done, int total, const char *label, void *user);

typedef struct tw_tune_request {
    bool retune;               /* forget cached choices first and time everything again */
    tw_tune_progress progress; /* may be NULL */
    void *user;
} tw_tune_request;

/* Tunes every shape class of every tunable op of the device now (`twist tune`). TW_OK with no
 * work on a device with nothing to tune. */
tw_status tw_device_tune(tw_device *device, const tw_tune_request *request);

/* Names of op `op`'s kernel variants on this device (up to `capacity` written to names; the
 * strings are static). Returns how many exist; 0 when the op has a single kernel here. */
int tw_device_kernel_variants(tw_device *device, const char *op, const char **names,
                              int capacity);

/* Makes every later call of `op` on this device use variant `name` (tests run every variant
 * through the conformance suite this way; benchmarks compare them). NULL returns to the tuner's
 * choice. TW_ERR_NOT_FOUND names the variants when `name` is not one of them. */
tw_status tw_device_force_kernel_variant(tw_device *device, const char *op, const char *name);

#ifdef __cplusplus
}
#endif

#endif
