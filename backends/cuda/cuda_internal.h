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

#include "twist/backend_support.h"

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
    int cc_major, cc_minor; /* compute capability: which data types run (supports_dtype) */
    /* Caching allocator: freed blocks wait here for a request of the same size class. The
     * front end counts the bytes asked for (tw_device_bytes_in_use / peak); these count what is
     * held from the driver, cached blocks included. */
    tw_cuda_block *cache;
    size_t reserved_bytes, cached_bytes;
    /* Attention variants (cuda_ops.c): forced per op (0 fwd, 1 bwd; -1: the choice; valid once
     * attention_forced_set), and the tuning cache of measured choices (opened on first need). */
    int attention_forced[2];
    bool attention_forced_set;
    tw_tune_cache *attention_cache;
    bool attention_cache_opened;
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
/* The device pointer of a tensor of any type: offset counted in elements of mem.dtype. */
static inline void *tw_cuda_ptr(tw_mem mem) {
    const size_t size = mem.dtype == TW_DTYPE_F16 || mem.dtype == TW_DTYPE_BF16 ? 2 : 4;
    return (char *)((tw_cuda_block *)mem.buffer->handle)->ptr + mem.offset * size;
}

/* Ops (cuda_ops.c, cuda_gemm.c): tw_cuda_gemm, tw_cuda_attention_fwd, ...; the kernels they
 * launch are tw_cuda_launch_<op> (cuda_kernels.h). */
TW_BACKEND_OP_PROTOTYPES(tw_cuda)
tw_status tw_cuda_set_gemm_impl(void *context, tw_gemm_impl impl);
/* Kernel variants (cuda_ops.c): "warp" and "tiled" of "attention_fwd" / "attention_bwd". */
int tw_cuda_variants(void *context, const char *op, const char **names, int capacity);
tw_status tw_cuda_force_variant(void *context, const char *op, const char *name);
/* Data types (cuda_ops.c): the vtable's supports_dtype and convert entries. */
bool tw_cuda_supports_dtype(void *context, tw_op_id op, tw_dtype dtype);
tw_status tw_cuda_convert(void *context, size_t n, tw_mem src, tw_mem dst);

/* NVTX range named after the op around each launch: "twist:<op>". */
void tw_cuda_range_push(const char *op);
void tw_cuda_range_pop(void);

#endif
