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

cudaError_t tw_cuda_launch_fill(cudaStream_t stream, float *dst, size_t n, float value);
/* C_p (m, n) with row stride ldc, batch matrices stride_c apart: C = beta * C, or 0 when
 * beta == 0 (C not read). GEMM with k == 0 or alpha == 0. */
cudaError_t tw_cuda_launch_scale_matrix(cudaStream_t stream, float *c, int m, int n, int64_t ldc,
                                 int64_t stride_c, int batch, float beta);

cudaError_t tw_cuda_launch_softmax_fwd(cudaStream_t stream, int rows, int cols, int causal_t,
                                const float *in, float *out);
cudaError_t tw_cuda_launch_softmax_bwd(cudaStream_t stream, int rows, int cols, const float *y,
                                const float *dy, float *dx);
cudaError_t tw_cuda_launch_layernorm_fwd(cudaStream_t stream, int rows, int cols, float eps,
                                  const float *x, const float *weight, const float *bias,
                                  float *out, float *mean, float *rstd);
/* Doubles of scratch the column sums need (dweight and dbias partials). */
size_t tw_cuda_layernorm_bwd_scratch(int rows, int cols);
cudaError_t tw_cuda_launch_layernorm_bwd(cudaStream_t stream, int rows, int cols, const float *dout,
                                  const float *x, const float *weight, const float *mean,
                                  const float *rstd, float *dx, float *dweight, float *dbias,
                                  double *scratch);
cudaError_t tw_cuda_launch_gelu_fwd(cudaStream_t stream, size_t n, const float *x, float *out);
cudaError_t tw_cuda_launch_gelu_bwd(cudaStream_t stream, size_t n, const float *x, const float *dout,
                             float *dx);
cudaError_t tw_cuda_launch_embedding_fwd(cudaStream_t stream, int batch, int seq_len, int channels,
                                  const int32_t *tokens, const float *wte, const float *wpe,
                                  float *out);
cudaError_t tw_cuda_launch_embedding_bwd(cudaStream_t stream, int batch, int seq_len, int channels,
                                  const int32_t *tokens, const float *dout, float *dwte,
                                  float *dwpe);
cudaError_t tw_cuda_launch_xent_fwd(cudaStream_t stream, int rows, int vocab, int ld,
                             const float *logits, const int32_t *targets, float *losses,
                             float *lse, float *correct);
cudaError_t tw_cuda_launch_xent_bwd(cudaStream_t stream, int rows, int vocab, int ld, float grad_scale,
                             const float *logits, const int32_t *targets, const float *lse,
                             float *dlogits);
cudaError_t tw_cuda_launch_bias_add(cudaStream_t stream, int rows, int cols, const float *bias,
                             float *out);
/* Doubles of scratch bias_bwd needs. */
size_t tw_cuda_bias_bwd_scratch(int rows, int cols);
cudaError_t tw_cuda_launch_bias_bwd(cudaStream_t stream, int rows, int cols, const float *dout,
                             float *dbias, double *scratch);
cudaError_t tw_cuda_launch_add(cudaStream_t stream, size_t n, const float *a, const float *b,
                        float *out);
cudaError_t tw_cuda_launch_scale(cudaStream_t stream, size_t n, float alpha, const float *x,
                          float *out);
/* Doubles of scratch sum_sq needs. */
size_t tw_cuda_sum_sq_scratch(size_t n);
cudaError_t tw_cuda_launch_sum_sq(cudaStream_t stream, size_t n, const float *x, float *out,
                           double *scratch);
/* correction1 = 1 - beta1^step, correction2 = 1 - beta2^step (computed on the host). */
cudaError_t tw_cuda_launch_adamw(cudaStream_t stream, size_t n, float lr, float beta1, float beta2,
                          float eps, float weight_decay, float grad_scale, float correction1,
                          float correction2, float *param, const float *grad, float *m, float *v);
cudaError_t tw_cuda_launch_gather_rows(cudaStream_t stream, int cols, int count, const int32_t *idx,
                                const float *src, float *dst);
cudaError_t tw_cuda_launch_scatter_rows(cudaStream_t stream, int cols, int count, const int32_t *idx,
                                 const float *src, float *dst, int accumulate);
cudaError_t tw_cuda_launch_gather_cols(cudaStream_t stream, int rows, int src_cols, int count,
                                const int32_t *idx, const float *src, float *dst);
cudaError_t tw_cuda_launch_scatter_cols(cudaStream_t stream, int rows, int dst_cols, int count,
                                 const int32_t *idx, const float *src, float *dst,
                                 int accumulate);

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

#ifdef __cplusplus
}
#endif

#endif
