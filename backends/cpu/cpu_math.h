/* Vectorisable math for the CPU backend's hot loops, and the macros that build those loops for
 * several instruction sets.
 *
 * twist is built for baseline x86-64 so one binary runs anywhere; HOT_LOOP functions are also
 * compiled for AVX-512 and AVX2 (GCC target_clones) and the best is chosen when the library
 * loads. Their helpers must be INLINE (always inlined) to be compiled for each clone's
 * instruction set. libm's expf and tanhf do not vectorise without -ffast-math, which twist does
 * not use (it would change NaN and infinity semantics everywhere), hence the polynomial versions
 * here; these loops need the -O3 and -fno-trapping-math the CMake build gives backends/cpu. */
#ifndef TWIST_BACKENDS_CPU_MATH_H
#define TWIST_BACKENDS_CPU_MATH_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define HOT_LOOP __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT_LOOP
#endif
#define INLINE static inline __attribute__((always_inline))

/* exp(x) for finite x <= 88, relative error about 1 ulp. GCC if-converts the selects below
 * (with -fno-trapping-math) but not a clamp of x itself inside AVX clones. Cody-Waite reduction
 * x = n ln2 + r with n rounded by truncating t +- 0.5, then Cephes' degree-6 polynomial for e^r
 * and 2^n put together in the exponent bits. Below x = -87.7, n is held at -127, which makes 2^n
 * exactly 0 (expf underflows there too), and r is held at -1 so the polynomial stays finite. */
INLINE float tw_cpu_exp(float x) {
    const float t = x * 1.44269504088896341f;
    int32_t n = (int32_t)(t + (t >= 0.0f ? 0.5f : -0.5f));
    n = n < -127 ? -127 : n;
    float r = x - (float)n * 0.693359375f + (float)n * 2.12194440e-4f;
    r = r < -1.0f ? -1.0f : r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    union {
        int32_t bits;
        float value;
    } two_to_n = {.bits = (n + 127) << 23};
    return y * two_to_n.value;
}

/* tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2|u|) in (0, 1]: absolute error about
 * 1e-7 everywhere (relative error grows for |u| < 1e-3, where tanh(u) ~ u is itself tiny). */
INLINE float tw_cpu_tanh(float u) {
    const float magnitude = u < 0.0f ? -u : u;
    const float e = tw_cpu_exp(-2.0f * magnitude);
    const float value = (1.0f - e) / (1.0f + e);
    return u < 0.0f ? -value : value;
}

#endif
