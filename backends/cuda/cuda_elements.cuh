// Element types of the CUDA kernels (CUDA C++ only; included by the .cu files). A kernel that
// runs in fp32, bf16 and f16 is a template over its storage type T (float, __nv_bfloat16,
// __half): it reads an element with to_f32(x[i]), does all arithmetic in fp32 and writes with
// from_f32<T>(value). For T = float both are the identity, so the fp32 instance compiles to the
// code the kernel had before it was a template.
#ifndef TW_CUDA_ELEMENTS_CUH
#define TW_CUDA_ELEMENTS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_dtype.h"
#include "cuda_kernels.h"

namespace tw_cuda {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
    return tw_cuda_bf16_to_f32(__bfloat16_as_ushort(v));
}
__device__ __forceinline__ float to_f32(__half v) { return tw_cuda_f16_to_f32(__half_as_ushort(v)); }

// Rounds as twist/dtype.h does (cuda_dtype.h): nearest even, NaN kept, overflow to infinity.
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __ushort_as_bfloat16(tw_cuda_f32_to_bf16(v));
}
template <> __device__ __forceinline__ __half from_f32<__half>(float v) {
    return __ushort_as_half(tw_cuda_f32_to_f16(v));
}

} // namespace tw_cuda

// Runs the statements `...` with T bound to the storage type of `type` (a tw_cuda_type); an
// unknown type returns cudaErrorInvalidValue from the enclosing launcher. Variadic so that the
// statements may hold commas (kernel<<<grid, block, 0, stream>>>(...)).
#define TW_CUDA_DISPATCH(type, ...)                                                              \
    switch (type) {                                                                              \
    case TW_CUDA_F32: {                                                                          \
        using T = float;                                                                         \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
    }                                                                                            \
    case TW_CUDA_BF16: {                                                                         \
        using T = __nv_bfloat16;                                                                 \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
    }                                                                                            \
    case TW_CUDA_F16: {                                                                          \
        using T = __half;                                                                        \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
    }                                                                                            \
    default: return cudaErrorInvalidValue;                                                       \
    }

#endif
