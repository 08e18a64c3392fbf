/* twist: element conversions on the host, one definition for the library, its backends, the
 * checkpoint code and the tests (the CPU backend's kernels and every conformance reference
 * round through these).
 *
 * fp32 -> bf16 and fp32 -> f16 round to nearest, ties to even; NaN stays a (quiet) NaN; values
 * past the target's largest finite value become infinities; f16 subnormals are kept. */
#ifndef TWIST_DTYPE_H
#define TWIST_DTYPE_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline uint32_t tw_f32_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static inline float tw_f32_from_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline float tw_bf16_to_f32(uint16_t value) { return tw_f32_from_bits((uint32_t)value << 16); }

static inline uint16_t tw_f32_to_bf16(float value) {
    uint32_t bits = tw_f32_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u); /* NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u); /* round to nearest even; overflow carries to inf */
    return (uint16_t)(bits >> 16);
}

static inline float tw_f16_to_f32(uint16_t value) {
    uint32_t sign = (uint32_t)(value & 0x8000u) << 16;
    uint32_t exponent = (value >> 10) & 0x1fu, mantissa = value & 0x3ffu;
    if (exponent == 0x1f) return tw_f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24 */
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    return tw_f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

static inline uint16_t tw_f32_to_f16(float value) {
    uint32_t bits = tw_f32_bits(value);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (magnitude < 0x38800000u) {                                    /* below 2^-14: subnormal */
        /* Adding 0.5 (2^-1) in fp32 puts the f16 subnormal's bits (units of 2^-24) at the bottom
         * of the mantissa, rounded to nearest even by the FPU itself. */
        float shifted = tw_f32_from_bits(magnitude) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(tw_f32_bits(shifted) - 0x3f000000u));
    }
    uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (uint16_t)(rounded >> 13));
}

#ifdef __cplusplus
}
#endif

#endif
