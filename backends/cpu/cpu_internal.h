/* The CPU backend, shared between its files: the device context and the op entry points.
 *
 * This backend is the reference every other backend is tested against, so its code favours
 * plain loops whose meaning is obvious over cleverness. GEMM goes to OpenBLAS; everything else is
 * C with OpenMP. Every reduction has a fixed order that does not depend on the number of threads,
 * so results are the same bits run after run and on machines with other core counts. */
#ifndef TWIST_BACKENDS_CPU_INTERNAL_H
#define TWIST_BACKENDS_CPU_INTERNAL_H

#include "twist/backend_support.h"

/* bf16 GEMM paths (the "gemm" kernel variants of the cpu device). */
typedef enum tw_cpu_gemm_variant {
    TW_CPU_GEMM_AUTO = 0,    /* avx512-bf16 where the CPU has it, else openblas */
    TW_CPU_GEMM_OPENBLAS,    /* 16-bit A, B (and C) widened to fp32, cblas_sgemm */
    TW_CPU_GEMM_AVX512_BF16  /* cpu_gemm_bf16.c: VDPBF16PS dot products (bf16 only) */
} tw_cpu_gemm_variant;

typedef struct tw_cpu_context {
    tw_device *device; /* the front-end device, for scratch buffers counted in its bytes */
    bool avx512_bf16;  /* the CPU has AVX512-BF16 (VDPBF16PS) */
    tw_cpu_gemm_variant gemm_variant; /* forced with tw_device_force_kernel_variant */
} tw_cpu_context;

/* The ops (cpu_ops.c; attention in cpu_attention.c): tw_cpu_gemm, tw_cpu_attention_fwd, ... */
TW_BACKEND_OP_PROTOTYPES(tw_cpu)

/* The same ops in every data type (cpu_dtype.c): fp32 goes straight to the kernels above, bf16
 * and f16 tensors are widened to fp32 scratch around them. These fill the vtable. */
TW_BACKEND_OP_PROTOTYPES(tw_cpu_typed)
/* GEMM in a 16-bit type through fp32 scratch and OpenBLAS (cpu_dtype.c). */
tw_status tw_cpu_gemm_widened(void *context, const tw_gemm_args *args);
/* bf16 GEMM with AVX512-BF16 dot products (cpu_gemm_bf16.c); needs tw_cpu_has_avx512_bf16(). */
tw_status tw_cpu_gemm_bf16(void *context, const tw_gemm_args *args);
bool tw_cpu_has_avx512_bf16(void);
/* The vtable's supports_dtype and convert entries (cpu_dtype.c). */
bool tw_cpu_supports_dtype(void *context, tw_op_id op, tw_dtype dtype);
/* The vtable's variants and force_variant entries: "gemm" has openblas and avx512-bf16. */
int tw_cpu_variants(void *context, const char *op, const char **names, int capacity);
tw_status tw_cpu_force_variant(void *context, const char *op, const char *name);
tw_status tw_cpu_convert(void *context, size_t n, tw_mem src, tw_mem dst);
/* dst (n) fp32 = src (n) bf16 or f16, exactly; and back, rounding to nearest even. */
void tw_cpu_widen(tw_dtype dtype, const uint16_t *src, float *dst, size_t n);
void tw_cpu_narrow(tw_dtype dtype, const float *src, uint16_t *dst, size_t n);

/* Host pointer of a tw_mem (the handle of a cpu buffer is its host allocation). */
static inline float *tw_cpu_f32(tw_mem mem) {
    return (float *)mem.buffer->handle + mem.offset;
}
static inline int32_t *tw_cpu_i32(tw_mem mem) {
    return (int32_t *)mem.buffer->handle + mem.offset;
}

/* cpu_addr_limit.c: OpenBLAS under an address-space limit (ulimit -v); see that file. */
/* The OPENBLAS_NUM_THREADS value whose buffers fit the limit, or NULL (no limit, or it fits). */
const char *tw_cpu_blas_threads_for_limit(void);
/* Under a limit: checks that OpenBLAS's buffer for this thread fits and maps it now. */
tw_status tw_cpu_blas_reserve(void);
/* Around each BLAS call: under a limit, one at a time; enter returns what leave takes. */
bool tw_cpu_blas_enter(void);
void tw_cpu_blas_leave(bool entered);

#endif
