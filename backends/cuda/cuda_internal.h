/* twist CUDA backend: state shared by its C files (cuda.c: devices, caching allocator, buffers,
 * events, vtable; cuda_gemm.c: cuBLAS; cuda_ops.c: op launches with NVTX ranges). The kernels are
 * in the .cu files behind cuda_kernels.h.
 *
 * cuda:N is CUDA runtime device N (cudaGetDeviceCount order, which CUDA_VISIBLE_DEVICES and
 * CUDA_DEVICE_ORDER govern). Each opened device gets one non-blocking stream, every op and copy
 * is enqueued on it in order, and one cuBLAS handle bound to it. */
#ifndef TW_CUDA_INTERNAL_H
#define TW_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/backend_impl.h"

/* A device allocation: the handle of a tw_buffer. `bytes` is the rounded size actually held. */
typedef struct tw_cuda_block {
    void *ptr;
    size_t bytes;
    struct tw_cuda_block *next; /* in the free cache */
} tw_cuda_block;

typedef struct tw_cuda_context {
    tw_device *device; /* front end: scratch goes through tw_buffer_alloc on it */
    int index;         /* CUDA runtime device ordinal */
    cudaStream_t stream;
    cublasHandle_t cublas;
    bool tf32;         /* TWIST_CUDA_TF32=1: cuBLAS may use TF32 tensor cores */
    /* Caching allocator: freed blocks wait here for a request of the same size class. The
     * front end counts the bytes asked for (tw_device_bytes_in_use / peak); these count what is
     * held from the driver, cached blocks included. */
    tw_cuda_block *cache;
    size_t reserved_bytes, cached_bytes;
} tw_cuda_context;

/* tw_error(TW_ERR_OUT_OF_MEMORY or TW_ERR_BACKEND, "cuda: <what> failed: <CUDA error text>"). */
tw_status tw_cuda_fail(cudaError_t err, const char *what);
tw_status tw_cublas_fail(cublasStatus_t status, const char *what);
/* Makes the context's device current for the calling thread. */
tw_status tw_cuda_activate(tw_cuda_context *cu);

/* The device pointer of a tensor argument (offset in 4-byte elements). */
static inline float *tw_cuda_f32(tw_mem mem) {
    return (float *)((tw_cuda_block *)mem.buffer->handle)->ptr + mem.offset;
}
static inline int32_t *tw_cuda_i32(tw_mem mem) {
    return (int32_t *)((tw_cuda_block *)mem.buffer->handle)->ptr + mem.offset;
}

/* Ops (cuda_ops.c, cuda_gemm.c), vtable signatures. */
tw_status tw_cuda_gemm(void *context, const tw_gemm_args *args);
tw_status tw_cuda_set_gemm_impl(void *context, tw_gemm_impl impl);
tw_status tw_cuda_attention_fwd_op(void *context, const tw_attention_args *args);
tw_status tw_cuda_attention_bwd_op(void *context, const tw_attention_args *args);
tw_status tw_cuda_softmax_fwd_op(void *context, int rows, int cols, int causal_t, tw_mem in,
                                 tw_mem out);
tw_status tw_cuda_softmax_bwd_op(void *context, int rows, int cols, tw_mem y, tw_mem dy,
                                 tw_mem dx);
tw_status tw_cuda_layernorm_fwd_op(void *context, int rows, int cols, float eps, tw_mem x,
                                   tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean,
                                   tw_mem rstd);
tw_status tw_cuda_layernorm_bwd_op(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                                   tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx,
                                   tw_mem dweight, tw_mem dbias);
tw_status tw_cuda_gelu_fwd_op(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_cuda_gelu_bwd_op(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx);
tw_status tw_cuda_embedding_fwd_op(void *context, int batch, int seq_len, int channels,
                                   int vocab, tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out);
tw_status tw_cuda_embedding_bwd_op(void *context, int batch, int seq_len, int channels,
                                   int vocab, tw_mem tokens, tw_mem dout, tw_mem dwte,
                                   tw_mem dwpe);
tw_status tw_cuda_xent_fwd_op(void *context, int rows, int vocab, int ld, tw_mem logits,
                              tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct);
tw_status tw_cuda_xent_bwd_op(void *context, int rows, int vocab, int ld, float grad_scale,
                              tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits);
tw_status tw_cuda_bias_add_op(void *context, int rows, int cols, tw_mem bias, tw_mem out);
tw_status tw_cuda_bias_bwd_op(void *context, int rows, int cols, tw_mem dout, tw_mem dbias);
tw_status tw_cuda_add_op(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out);
tw_status tw_cuda_scale_op(void *context, size_t n, float alpha, tw_mem x, tw_mem out);
tw_status tw_cuda_sum_sq_op(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_cuda_adamw_op(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                           tw_mem grad, tw_mem m, tw_mem v);
tw_status tw_cuda_gather_rows_op(void *context, int src_rows, int cols, int count, tw_mem idx,
                                 tw_mem src, tw_mem dst);
tw_status tw_cuda_scatter_rows_op(void *context, int dst_rows, int cols, int count, tw_mem idx,
                                  tw_mem src, tw_mem dst, bool accumulate);
tw_status tw_cuda_gather_cols_op(void *context, int rows, int src_cols, int count, tw_mem idx,
                                 tw_mem src, tw_mem dst);
tw_status tw_cuda_scatter_cols_op(void *context, int rows, int dst_cols, int count, tw_mem idx,
                                  tw_mem src, tw_mem dst, bool accumulate);

/* NVTX range named after the op around each launch: "twist:<op>". */
void tw_cuda_range_push(const char *op);
void tw_cuda_range_pop(void);

#endif
