/* Op launches of the CUDA backend: tensor arguments to device pointers, an NVTX range named
 * after the op ("twist:<op>") around each launch, scratch through tw_buffer_alloc (so it counts
 * in the device's bytes), and launch errors turned into tw_status. The kernels are in the .cu
 * files (cuda_kernels.h).
 *
 * Data types (twist/backend.h "Data types"): every op runs in fp32, bf16 and f16. Each launcher
 * takes the op's type (TYPE of its principal tensor) and the typed tensors as PTR; the tensors
 * that are fp32 whatever the type (statistics, losses, lse, AdamW's param/m/v) stay F32. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_kernels.h"

#define F32(mem) tw_cuda_f32(mem)
#define I32(mem) tw_cuda_i32(mem)
#define PTR(mem) tw_cuda_ptr(mem)
#define TYPE(mem) cuda_type((mem).dtype)

_Static_assert(TW_CUDA_F32 == (int)TW_DTYPE_F32 && TW_CUDA_F16 == (int)TW_DTYPE_F16 &&
                   TW_CUDA_BF16 == (int)TW_DTYPE_BF16,
               "tw_cuda_type mirrors tw_dtype");

static tw_cuda_type cuda_type(tw_dtype dtype) { return (tw_cuda_type)dtype; }

/* Runs `launch` (an expression giving a cudaError_t) for op `name` on context `cu`. */
#define CUDA_OP(cu, name, launch)                                                  \
    do {                                                                           \
        TW_TRY(tw_cuda_activate(cu));                                              \
        tw_cuda_range_push("twist:" name);                                         \
        cudaError_t op_err_ = (launch);                                            \
        tw_cuda_range_pop();                                                       \
        return op_err_ == cudaSuccess ? TW_OK : tw_cuda_fail(op_err_, name);       \
    } while (0)

/* Device scratch of `count` elements of `size` bytes, counted in the device's bytes; the caller
 * frees it after enqueueing (the block is reused only by work enqueued later on the stream). */
static tw_status scratch_alloc(tw_cuda_context *cu, size_t count, size_t size, tw_buffer **out) {
    return tw_buffer_alloc(cu->device, (count ? count : 1) * size, out);
}

static void *scratch_ptr(tw_buffer *buffer) { return ((tw_cuda_block *)buffer->handle)->ptr; }

/* ------------------------------------------------------------------------------------------ */

tw_status tw_cuda_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                                 tw_mem out) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "softmax_fwd",
            tw_cuda_launch_softmax_fwd(cu->stream, TYPE(in), rows, cols, causal_t, PTR(in),
                                       PTR(out)));
}

tw_status tw_cuda_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy,
                                 tw_mem dx) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "softmax_bwd", tw_cuda_launch_softmax_bwd(cu->stream, TYPE(y), rows, cols, PTR(y), PTR(dy),
                                       PTR(dx)));
}

tw_status tw_cuda_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                                   tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean,
                                   tw_mem rstd) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "layernorm_fwd",
            tw_cuda_launch_layernorm_fwd(cu->stream, TYPE(x), rows, cols, eps, PTR(x), PTR(weight),
                                         PTR(bias), PTR(out), F32(mean), F32(rstd)));
}

tw_status tw_cuda_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                                   tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx,
                                   tw_mem dweight, tw_mem dbias) {
    tw_cuda_context *cu = context;
    tw_buffer *scratch = NULL;
    TW_TRY(scratch_alloc(cu, tw_cuda_layernorm_bwd_scratch(rows, cols), sizeof(double), &scratch));
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:layernorm_bwd");
        cudaError_t err = tw_cuda_launch_layernorm_bwd(
            cu->stream, TYPE(x), rows, cols, PTR(dout), PTR(x), PTR(weight), F32(mean), F32(rstd),
            PTR(dx), PTR(dweight), PTR(dbias), scratch_ptr(scratch));
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "layernorm_bwd");
    }
    tw_buffer_free(scratch);
    return status;
}

tw_status tw_cuda_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "gelu_fwd", tw_cuda_launch_gelu_fwd(cu->stream, TYPE(x), n, PTR(x), PTR(out)));
}

tw_status tw_cuda_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "gelu_bwd", tw_cuda_launch_gelu_bwd(cu->stream, TYPE(x), n, PTR(x), PTR(dout), PTR(dx)));
}

tw_status tw_cuda_embedding_fwd(void *context, int batch, int seq_len, int channels,
                                   int vocab, tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out) {
    tw_cuda_context *cu = context;
    (void)vocab;
    CUDA_OP(cu, "embedding_fwd",
            tw_cuda_launch_embedding_fwd(cu->stream, TYPE(wte), batch, seq_len, channels,
                                         I32(tokens), PTR(wte), PTR(wpe), PTR(out)));
}

tw_status tw_cuda_embedding_bwd(void *context, int batch, int seq_len, int channels,
                                   int vocab, tw_mem tokens, tw_mem dout, tw_mem dwte,
                                   tw_mem dwpe) {
    tw_cuda_context *cu = context;
    /* bf16/f16: an fp32 block of dwte's columns (none in fp32). */
    const size_t floats = tw_cuda_embedding_bwd_scratch(TYPE(dout), vocab, channels);
    tw_buffer *scratch = NULL;
    if (floats) TW_TRY(scratch_alloc(cu, floats, sizeof(float), &scratch));
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:embedding_bwd");
        cudaError_t err = tw_cuda_launch_embedding_bwd(
            cu->stream, TYPE(dout), batch, seq_len, vocab, channels, I32(tokens), PTR(dout),
            PTR(dwte), PTR(dwpe), scratch ? scratch_ptr(scratch) : NULL);
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "embedding_bwd");
    }
    tw_buffer_free(scratch);
    return status;
}

tw_status tw_cuda_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                              tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "softmax_xent_fwd",
            tw_cuda_launch_xent_fwd(cu->stream, TYPE(logits), rows, vocab, ld, PTR(logits),
                                    I32(targets), F32(losses), F32(lse), F32(correct)));
}

tw_status tw_cuda_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                              tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "softmax_xent_bwd",
            tw_cuda_launch_xent_bwd(cu->stream, TYPE(logits), rows, vocab, ld, grad_scale,
                                    PTR(logits), I32(targets), F32(lse), PTR(dlogits)));
}

tw_status tw_cuda_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "bias_add", tw_cuda_launch_bias_add(cu->stream, TYPE(out), rows, cols, PTR(bias), PTR(out)));
}

tw_status tw_cuda_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    tw_cuda_context *cu = context;
    tw_buffer *scratch = NULL;
    TW_TRY(scratch_alloc(cu, tw_cuda_bias_bwd_scratch(rows, cols), sizeof(double), &scratch));
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:bias_bwd");
        cudaError_t err = tw_cuda_launch_bias_bwd(cu->stream, TYPE(dout), rows, cols, PTR(dout),
                                                  PTR(dbias), scratch_ptr(scratch));
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "bias_bwd");
    }
    tw_buffer_free(scratch);
    return status;
}

tw_status tw_cuda_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "add", tw_cuda_launch_add(cu->stream, TYPE(a), n, PTR(a), PTR(b), PTR(out)));
}

tw_status tw_cuda_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "scale", tw_cuda_launch_scale(cu->stream, TYPE(x), n, alpha, PTR(x), PTR(out)));
}

tw_status tw_cuda_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    tw_cuda_context *cu = context;
    tw_buffer *scratch = NULL;
    TW_TRY(scratch_alloc(cu, tw_cuda_sum_sq_scratch(n), sizeof(double), &scratch));
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:sum_sq");
        cudaError_t err = tw_cuda_launch_sum_sq(cu->stream, TYPE(x), n, PTR(x), F32(out),
                                                scratch_ptr(scratch));
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "sum_sq");
    }
    tw_buffer_free(scratch);
    return status;
}

tw_status tw_cuda_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                           tw_mem grad, tw_mem m, tw_mem v) {
    tw_cuda_context *cu = context;
    /* As the CPU reference computes them: in float, on the host. */
    const float correction1 = 1.0f - powf(args->beta1, (float)args->step);
    const float correction2 = 1.0f - powf(args->beta2, (float)args->step);
    CUDA_OP(cu, "adamw_step",
            tw_cuda_launch_adamw(cu->stream, TYPE(grad), n, args->lr, args->beta1, args->beta2,
                                 args->eps, args->weight_decay, args->grad_scale, correction1,
                                 correction2, F32(param), PTR(grad), F32(m), F32(v)));
}

tw_status tw_cuda_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                                 tw_mem src, tw_mem dst) {
    tw_cuda_context *cu = context;
    (void)src_rows;
    CUDA_OP(cu, "gather_rows",
            tw_cuda_launch_gather_rows(cu->stream, TYPE(src), cols, count, I32(idx), PTR(src),
                                       PTR(dst)));
}

tw_status tw_cuda_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                                  tw_mem src, tw_mem dst, bool accumulate) {
    tw_cuda_context *cu = context;
    (void)dst_rows;
    CUDA_OP(cu, "scatter_rows",
            tw_cuda_launch_scatter_rows(cu->stream, TYPE(src), cols, count, I32(idx), PTR(src),
                                        PTR(dst), accumulate ? 1 : 0));
}

tw_status tw_cuda_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                                 tw_mem src, tw_mem dst) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "gather_cols",
            tw_cuda_launch_gather_cols(cu->stream, TYPE(src), rows, src_cols, count, I32(idx),
                                       PTR(src), PTR(dst)));
}

tw_status tw_cuda_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                                  tw_mem src, tw_mem dst, bool accumulate) {
    tw_cuda_context *cu = context;
    CUDA_OP(cu, "scatter_cols",
            tw_cuda_launch_scatter_cols(cu->stream, TYPE(src), rows, dst_cols, count, I32(idx),
                                        PTR(src), PTR(dst), accumulate ? 1 : 0));
}

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static tw_status attention_view(const tw_attention_args *args, bool backward,
                                tw_cuda_attention *a) {
    if (args->head_dim > TW_CUDA_ATTENTION_MAX_D)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "cuda: fused attention supports head_dim up to %d, got %d",
                        TW_CUDA_ATTENTION_MAX_D, args->head_dim);
    tw_cuda_attention view = {
        .batch = args->batch, .heads = args->heads, .seq_len = args->seq_len,
        .head_dim = args->head_dim, .scale = args->scale,
        .qkv_b = args->qkv_stride.b, .qkv_h = args->qkv_stride.h, .qkv_t = args->qkv_stride.t,
        .out_b = args->out_stride.b, .out_h = args->out_stride.h, .out_t = args->out_stride.t,
        .q = F32(args->q), .k = F32(args->k), .v = F32(args->v), .out = F32(args->out),
        .lse = F32(args->lse)};
    if (backward) {
        view.dout = F32(args->dout);
        view.dq = F32(args->dq);
        view.dk = F32(args->dk);
        view.dv = F32(args->dv);
    }
    *a = view;
    return TW_OK;
}

/* Variants: "warp" (the first kernels: a warp per few rows, lanes over keys) and "tiled"
 * (flash-attention blocks of 32 or 16 rows in shared memory, the work split of the Vulkan and
 * OpenCL "tiled" kernels, which are tested on lavapipe and PoCL; this one has not yet run on a
 * GPU). Unless forced, the first forward call of a shape class (tw_attention_class_key) measures
 * both in place with tw_attention_measure, which also compares tiled's results with warp's and
 * skips it if they disagree, and caches the faster in tw_tune_cache for the class's forward and
 * backward (a backward before any forward of its class takes warp). TWIST_TUNE=off: warp. */
enum { VARIANT_WARP = 0, VARIANT_TILED = 1, VARIANT_COUNT = 2 };
static const char *const VARIANT_NAMES[VARIANT_COUNT] = {"warp", "tiled"};

static tw_status fwd_variant(tw_cuda_context *cu, const tw_attention_args *args, int variant) {
    tw_cuda_attention a;
    TW_TRY(attention_view(args, false, &a));
    if (variant == VARIANT_TILED)
        CUDA_OP(cu, "attention_fwd", tw_cuda_launch_attention_fwd_tiled(cu->stream, &a));
    CUDA_OP(cu, "attention_fwd", tw_cuda_launch_attention_fwd(cu->stream, &a));
}

static tw_status bwd_variant(tw_cuda_context *cu, const tw_attention_args *args, int variant) {
    tw_cuda_attention a;
    TW_TRY(attention_view(args, true, &a));
    /* delta (B, H, T): rowwise dO . O, the only scratch. */
    const size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_buffer *delta = NULL;
    TW_TRY(scratch_alloc(cu, rows, sizeof(float), &delta));
    a.delta = scratch_ptr(delta);
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:attention_bwd");
        cudaError_t err = variant == VARIANT_TILED
                              ? tw_cuda_launch_attention_bwd_tiled(cu->stream, &a)
                              : tw_cuda_launch_attention_bwd(cu->stream, &a);
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "attention_bwd");
    }
    tw_buffer_free(delta);
    return status;
}

static tw_status run_fwd(void *context, const tw_attention_args *args, int variant) {
    return fwd_variant(context, args, variant);
}

static tw_status choose_variant(tw_cuda_context *cu, const tw_attention_args *args,
                                bool backward, int *variant) {
    *variant = VARIANT_WARP;
    if (cu->attention_forced_set && cu->attention_forced[backward] >= 0) {
        *variant = cu->attention_forced[backward];
        return TW_OK;
    }
    const tw_tune_mode mode = tw_tune_mode_from_env();
    if (mode == TW_TUNE_MODE_OFF) return TW_OK;
    if (!cu->attention_cache_opened) {
        cu->attention_cache_opened = true;
        const tw_device_info *info = tw_device_get_info(cu->device);
        char identity[600];
        snprintf(identity, sizeof identity, "%s|%s|attention", info->name, info->vendor);
        cu->attention_cache = tw_tune_cache_open("cuda", identity, info->driver);
    }
    const tw_attention_tuning tuning = {
        .device = cu->device, .cache = cu->attention_cache, .backend = "cuda",
        .names = VARIANT_NAMES, .count = VARIANT_COUNT, .fwd = run_fwd, .context = cu,
        .reference = VARIANT_WARP, .margin = 1.0};
    return tw_attention_tuned_variant(&tuning, args, backward, variant);
}

static tw_status attention16_fwd(tw_cuda_context *cu, const tw_attention_args *args);
static tw_status attention16_bwd(tw_cuda_context *cu, const tw_attention_args *args);

/* fp32 through the variants above; bf16 / f16 through kernels_attention16.cu (below). */
tw_status tw_cuda_attention_fwd(void *context, const tw_attention_args *args) {
    if (args->dtype != TW_DTYPE_F32) return attention16_fwd(context, args);
    int variant = VARIANT_WARP;
    TW_TRY(choose_variant(context, args, false, &variant));
    return fwd_variant(context, args, variant);
}

tw_status tw_cuda_attention_bwd(void *context, const tw_attention_args *args) {
    if (args->dtype != TW_DTYPE_F32) return attention16_bwd(context, args);
    int variant = VARIANT_WARP;
    TW_TRY(choose_variant(context, args, true, &variant));
    return bwd_variant(context, args, variant);
}

int tw_cuda_variants(void *context, const char *op, const char **names, int capacity) {
    (void)context;
    if (tw_attention_op_index(op) < 0) return 0;
    for (int i = 0; i < VARIANT_COUNT && i < capacity; i++) names[i] = VARIANT_NAMES[i];
    return VARIANT_COUNT;
}

tw_status tw_cuda_force_variant(void *context, const char *op, const char *name) {
    tw_cuda_context *cu = context;
    if (tw_attention_op_index(op) < 0) {
        if (!name) return TW_OK;
        return tw_error(TW_ERR_NOT_FOUND, "cuda: %s has a single kernel here: no variant \"%s\"",
                        op, name);
    }
    if (!cu->attention_forced_set) {
        cu->attention_forced[0] = cu->attention_forced[1] = -1;
        cu->attention_forced_set = true;
    }
    return tw_attention_force(cu->attention_forced, "cuda", op, name, VARIANT_NAMES,
                              VARIANT_COUNT);
}

/* ------------------------------------------------------------------------------------------ */
/* Attention in bf16 / f16 (kernels_attention16.cu)                                            */
/* ------------------------------------------------------------------------------------------ */

static tw_status attention16_view(const tw_attention_args *args, bool backward,
                                  tw_cuda_attention16 *a) {
    if (args->head_dim > TW_CUDA_ATTENTION_MAX_D)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "cuda: fused attention supports head_dim up to %d, got %d",
                        TW_CUDA_ATTENTION_MAX_D, args->head_dim);
    tw_cuda_attention16 view = {
        .type = cuda_type(args->dtype),
        .batch = args->batch, .heads = args->heads, .seq_len = args->seq_len,
        .head_dim = args->head_dim, .scale = args->scale,
        .qkv_b = args->qkv_stride.b, .qkv_h = args->qkv_stride.h, .qkv_t = args->qkv_stride.t,
        .out_b = args->out_stride.b, .out_h = args->out_stride.h, .out_t = args->out_stride.t,
        .q = PTR(args->q), .k = PTR(args->k), .v = PTR(args->v), .out = PTR(args->out),
        .lse = F32(args->lse)};
    if (backward) {
        view.dout = PTR(args->dout);
        view.dq = PTR(args->dq);
        view.dk = PTR(args->dk);
        view.dv = PTR(args->dv);
    }
    *a = view;
    return TW_OK;
}

static tw_status attention16_fwd(tw_cuda_context *cu, const tw_attention_args *args) {
    tw_cuda_attention16 a;
    TW_TRY(attention16_view(args, false, &a));
    CUDA_OP(cu, "attention_fwd", tw_cuda_launch_attention16_fwd(cu->stream, &a));
}

static tw_status attention16_bwd(tw_cuda_context *cu, const tw_attention_args *args) {
    tw_cuda_attention16 a;
    TW_TRY(attention16_view(args, true, &a));
    /* delta (B, H, T) fp32: rowwise dO . O, the only scratch. */
    const size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_buffer *delta = NULL;
    TW_TRY(scratch_alloc(cu, rows, sizeof(float), &delta));
    a.delta = scratch_ptr(delta);
    tw_status status = tw_cuda_activate(cu);
    if (status == TW_OK) {
        tw_cuda_range_push("twist:attention_bwd");
        cudaError_t err = tw_cuda_launch_attention16_bwd(cu->stream, &a);
        tw_cuda_range_pop();
        if (err != cudaSuccess) status = tw_cuda_fail(err, "attention_bwd");
    }
    tw_buffer_free(delta);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Data types: which run here, and conversions                                                */
/* ------------------------------------------------------------------------------------------ */

/* Every op runs in bf16 and f16 (the kernels are templates over the storage type; GEMM is
 * cublasGemmStridedBatchedEx on tensor cores). Offered where the GPU has the type natively:
 * bf16 from sm_80 (Ampere: bf16 tensor cores and conversions), f16 from sm_60 (Pascal: native
 * half arithmetic; cuBLAS f16 GEMM). The module is built for TWIST_CUDA_ARCHITECTURES (sm_80 and
 * sm_90 by default), so in practice a device that runs it at all has both. */
bool tw_cuda_supports_dtype(void *context, tw_op_id op, tw_dtype dtype) {
    const tw_cuda_context *cu = context;
    if ((unsigned)op >= TW_OP_COUNT) return false;
    switch (dtype) {
    case TW_DTYPE_BF16: return cu->cc_major >= 8;
    case TW_DTYPE_F16: return cu->cc_major >= 6;
    default: return false;
    }
}

/* No NVTX range: convert is not an op of the profiler's list (TW_BACKEND_OPS). */
tw_status tw_cuda_convert(void *context, size_t n, tw_mem src, tw_mem dst) {
    tw_cuda_context *cu = context;
    const tw_dtype types[2] = {src.dtype, dst.dtype};
    for (int i = 0; i < 2; i++)
        if (types[i] != TW_DTYPE_F32 && !tw_cuda_supports_dtype(cu, TW_OP_gemm, types[i]))
            return tw_error(TW_ERR_UNSUPPORTED,
                            "cuda: convert: %s needs a newer GPU (cuda:%d is sm_%d%d)",
                            tw_dtype_name(types[i]), cu->index, cu->cc_major, cu->cc_minor);
    TW_TRY(tw_cuda_activate(cu));
    cudaError_t err = tw_cuda_launch_convert(cu->stream, n, cuda_type(src.dtype), PTR(src),
                                             cuda_type(dst.dtype), PTR(dst));
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "convert");
}
