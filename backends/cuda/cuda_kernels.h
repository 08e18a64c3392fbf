/* Kernel launchers of the CUDA backend: implemented in the .cu files (compiled by nvcc), called
 * from the C host code (cuda_ops.c, cuda_gemm.c). Plain device pointers and sizes only, so this
 * header needs nothing of twist; each launcher enqueues on `stream` and returns
 * cudaGetLastError() (a bad launch configuration, or an earlier asynchronous failure).
 *
 * Semantics are those of the ops in include/twist/backend.h. Every reduction has a fixed order
 * (a thread's own loop, then a shared-memory tree of fixed shape, or per-column sums over rows in
 * order): results are bitwise reproducible run to run on one GPU. No floating-point atomics. */
#ifndef TW_CUDA_KERNELS_H
#define TW_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest head dimension the fused attention kernels take (tiles live in 48 KB of static
 * shared memory). */
#define TW_CUDA_ATTENTION_MAX_D 128

/* Storage type of a kernel's typed tensors: the values of tw_dtype (twist/backend.h) for
 * F32, F16 and BF16 (cuda_ops.c checks that they agree). Each launcher below with a `type`
 * runs in that type: its `void *` tensors hold elements of it, its `float *` tensors are fp32
 * whatever the type (statistics, losses, lse, AdamW's param/m/v), and arithmetic is fp32. An
 * unknown type returns cudaErrorInvalidValue. */
typedef enum tw_cuda_type { TW_CUDA_F32 = 0, TW_CUDA_F16 = 1, TW_CUDA_BF16 = 2 } tw_cuda_type;

cudaError_t tw_cuda_launch_fill(cudaStream_t stream, float *dst, size_t n, float value);
/* C_p (m, n) with row stride ldc, batch matrices stride_c apart: C = beta * C, or 0 when
 * beta == 0 (C not read). GEMM with k == 0 or alpha == 0. `type` is C's. */
cudaError_t tw_cuda_launch_scale_matrix(cudaStream_t stream, tw_cuda_type type, void *c, int m,
                                        int n, int64_t ldc, int64_t stride_c, int batch,
                                        float beta);

cudaError_t tw_cuda_launch_softmax_fwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                       int causal_t, const void *in, void *out);
cudaError_t tw_cuda_launch_softmax_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                       const void *y, const void *dy, void *dx);
cudaError_t tw_cuda_launch_layernorm_fwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, float eps, const void *x, const void *weight,
                                         const void *bias, void *out, float *mean, float *rstd);
/* Doubles of scratch the column sums need (dweight and dbias partials). */
size_t tw_cuda_layernorm_bwd_scratch(int rows, int cols);
cudaError_t tw_cuda_launch_layernorm_bwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, const void *dout, const void *x,
                                         const void *weight, const float *mean,
                                         const float *rstd, void *dx, void *dweight, void *dbias,
                                         double *scratch);
cudaError_t tw_cuda_launch_gelu_fwd(cudaStream_t stream, tw_cuda_type type, size_t n,
                                    const void *x, void *out);
cudaError_t tw_cuda_launch_gelu_bwd(cudaStream_t stream, tw_cuda_type type, size_t n,
                                    const void *x, const void *dout, void *dx);
cudaError_t tw_cuda_launch_embedding_fwd(cudaStream_t stream, tw_cuda_type type, int batch,
                                         int seq_len, int channels, const int32_t *tokens,
                                         const void *wte, const void *wpe, void *out);
/* Floats of scratch embedding_bwd needs: 0 in fp32; in bf16/f16 an fp32 block of dwte's
 * columns (vocab x a width chosen to keep it within 256 MiB), so that repeated tokens are summed in
 * fp32 and dwte rounded once. */
size_t tw_cuda_embedding_bwd_scratch(tw_cuda_type type, int vocab, int channels);
cudaError_t tw_cuda_launch_embedding_bwd(cudaStream_t stream, tw_cuda_type type, int batch,
                                         int seq_len, int vocab, int channels,
                                         const int32_t *tokens, const void *dout, void *dwte,
                                         void *dwpe, float *scratch);
cudaError_t tw_cuda_launch_xent_fwd(cudaStream_t stream, tw_cuda_type type, int rows, int vocab,
                                    int ld, const void *logits, const int32_t *targets,
                                    float *losses, float *lse, float *correct);
cudaError_t tw_cuda_launch_xent_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int vocab,
                                    int ld, float grad_scale, const void *logits,
                                    const int32_t *targets, const float *lse, void *dlogits);
cudaError_t tw_cuda_launch_bias_add(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                    const void *bias, void *out);
/* Doubles of scratch bias_bwd needs. */
size_t tw_cuda_bias_bwd_scratch(int rows, int cols);
cudaError_t tw_cuda_launch_bias_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                    const void *dout, void *dbias, double *scratch);
cudaError_t tw_cuda_launch_add(cudaStream_t stream, tw_cuda_type type, size_t n, const void *a,
                               const void *b, void *out);
cudaError_t tw_cuda_launch_scale(cudaStream_t stream, tw_cuda_type type, size_t n, float alpha,
                                 const void *x, void *out);
/* Doubles of scratch sum_sq needs. */
size_t tw_cuda_sum_sq_scratch(size_t n);
cudaError_t tw_cuda_launch_sum_sq(cudaStream_t stream, tw_cuda_type type, size_t n,
                                  const void *x, float *out, double *scratch);
/* correction1 = 1 - beta1^step, correction2 = 1 - beta2^step (computed on the host). `type` is
 * grad's; param (the fp32 master weights), m and v are fp32. */
cudaError_t tw_cuda_launch_adamw(cudaStream_t stream, tw_cuda_type type, size_t n, float lr,
                                 float beta1, float beta2, float eps, float weight_decay,
                                 float grad_scale, float correction1, float correction2,
                                 float *param, const void *grad, float *m, float *v);
cudaError_t tw_cuda_launch_gather_rows(cudaStream_t stream, tw_cuda_type type, int cols,
                                       int count, const int32_t *idx, const void *src, void *dst);
cudaError_t tw_cuda_launch_scatter_rows(cudaStream_t stream, tw_cuda_type type, int cols,
                                        int count, const int32_t *idx, const void *src,
                                        void *dst, int accumulate);
cudaError_t tw_cuda_launch_gather_cols(cudaStream_t stream, tw_cuda_type type, int rows,
                                       int src_cols, int count, const int32_t *idx,
                                       const void *src, void *dst);
cudaError_t tw_cuda_launch_scatter_cols(cudaStream_t stream, tw_cuda_type type, int rows,
                                        int dst_cols, int count, const int32_t *idx,
                                        const void *src, void *dst, int accumulate);
/* dst (n, dst_type) = src (n, src_type), rounding as twist/dtype.h does (cuda_dtype.h). Any
 * pair of the three types; equal types copy. */
cudaError_t tw_cuda_launch_convert(cudaStream_t stream, size_t n, tw_cuda_type src_type,
                                   const void *src, tw_cuda_type dst_type, void *dst);

/* Fused causal attention. Element (b, h, t, d) of q/k/v/dq/dk/dv is at
 * b*qkv_b + h*qkv_h + t*qkv_t + d from its pointer; of out/dout likewise with out_*. lse and
 * delta are (B, H, T) contiguous. */
typedef struct tw_cuda_attention {
    int batch, heads, seq_len, head_dim;
    float scale;
    int64_t qkv_b, qkv_h, qkv_t, out_b, out_h, out_t;
    const float *q, *k, *v;
    float *out;       /* forward: written; backward: read */
    float *lse;       /* forward: written; backward: read */
    const float *dout;
    float *dq, *dk, *dv;
    float *delta;     /* backward scratch (B, H, T) */
} tw_cuda_attention;

cudaError_t tw_cuda_launch_attention_fwd(cudaStream_t stream, const tw_cuda_attention *a);
cudaError_t tw_cuda_launch_attention_bwd(cudaStream_t stream, const tw_cuda_attention *a);
/* The tiled variant (kernels_attention.cu): flash-attention blocks of 32 or 16 rows in shared
 * memory, the work split of the Vulkan and OpenCL "tiled" kernels. */
cudaError_t tw_cuda_launch_attention_fwd_tiled(cudaStream_t stream, const tw_cuda_attention *a);
cudaError_t tw_cuda_launch_attention_bwd_tiled(cudaStream_t stream, const tw_cuda_attention *a);

/* Fused causal attention in bf16 or f16 (kernels_attention16.cu): the layout and the work split
 * of the fp32 kernels above, with q, k, v, out, dout, dq, dk, dv of `type` and lse, delta fp32;
 * tiles are converted to fp32 in shared memory and every sum is fp32. */
typedef struct tw_cuda_attention16 {
    tw_cuda_type type; /* TW_CUDA_BF16 or TW_CUDA_F16 */
    int batch, heads, seq_len, head_dim;
    float scale;
    int64_t qkv_b, qkv_h, qkv_t, out_b, out_h, out_t;
    const void *q, *k, *v;
    void *out;        /* forward: written; backward: read */
    float *lse;       /* forward: written; backward: read */
    const void *dout;
    void *dq, *dk, *dv;
    float *delta;     /* backward scratch (B, H, T) */
} tw_cuda_attention16;

cudaError_t tw_cuda_launch_attention16_fwd(cudaStream_t stream, const tw_cuda_attention16 *a);
cudaError_t tw_cuda_launch_attention16_bwd(cudaStream_t stream, const tw_cuda_attention16 *a);

#ifdef __cplusplus
}
#endif

#endif
