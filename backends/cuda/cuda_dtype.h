/* Element conversions for the CUDA kernels: fp32 <-> bf16 and fp32 <-> f16 on raw 16-bit
 * patterns, written once for device and host. The algorithms are those of twist/dtype.h (the
 * CPU backend's and the conformance references'), so a value converted on the GPU has the same
 * bits as on the host: round to nearest, ties to even; a NaN stays a quiet NaN with its sign
 * (bf16: the fp32 payload's top bits kept; f16: the canonical 0x7e00); values past the largest
 * finite value become infinities; f16 subnormals are kept. (CUDA's __float2bfloat16_rn and
 * __float2half_rn round the same way but return another NaN pattern.)
 *
 * Plain C as well as CUDA C++: tests/test_cuda_dtype.c compiles this header on the host and
 * compares it with twist/dtype.h bit for bit, which is how these device functions are tested
 * on a machine without a GPU. */
#ifndef TW_CUDA_DTYPE_H
#define TW_CUDA_DTYPE_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define TW_CUDA_HD __host__ __device__ __forceinline__
#else
#define TW_CUDA_HD static inline
#endif

TW_CUDA_HD uint32_t tw_cuda_f32_bits(float value) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(value);
#else
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
#endif
}

TW_CUDA_HD float tw_cuda_f32_from_bits(uint32_t bits) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
#endif
}

/* bf16 is the top half of an fp32: widening is exact. */
TW_CUDA_HD float tw_cuda_bf16_to_f32(uint16_t value) {
    return tw_cuda_f32_from_bits((uint32_t)value << 16);
}

TW_CUDA_HD uint16_t tw_cuda_f32_to_bf16(float value) {
    uint32_t bits = tw_cuda_f32_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u); /* NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u); /* to nearest even; the largest finite carries to inf */
    return (uint16_t)(bits >> 16);
}

/* Exact: every f16 is an fp32. */
TW_CUDA_HD float tw_cuda_f16_to_f32(uint16_t value) {
    const uint32_t sign = (uint32_t)(value & 0x8000u) << 16;
    const uint32_t exponent = (value >> 10) & 0x1fu, mantissa = value & 0x3ffu;
    if (exponent == 0x1f) return tw_cuda_f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24, exact in fp32 */
        const float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    return tw_cuda_f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

TW_CUDA_HD uint16_t tw_cuda_f32_to_f16(float value) {
    const uint32_t bits = tw_cuda_f32_bits(value);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (magnitude < 0x38800000u) {                                    /* below 2^-14: subnormal */
        /* Adding 0.5 puts the f16 subnormal's bits (units of 2^-24) at the bottom of the fp32
         * mantissa, rounded to nearest even by the adder itself. Needs IEEE addition without
         * flush-to-zero: the kernels are built without --use_fast_math / -ftz=true. */
        const float shifted = tw_cuda_f32_from_bits(magnitude) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(tw_cuda_f32_bits(shifted) - 0x3f000000u));
    }
    const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (uint16_t)(rounded >> 13));
}

#endif
