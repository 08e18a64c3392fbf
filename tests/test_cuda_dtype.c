/* The CUDA kernels' element conversions (backends/cuda/cuda_dtype.h, compiled for the device by
 * nvcc and here for the host) give the same bits as twist/dtype.h, the host conversions the CPU
 * backend and the conformance references use. Runs without a GPU: it is how the conversion code
 * of every bf16/f16 CUDA kernel is checked on a machine that cannot run them.
 *
 * Widening (bf16 -> f32, f16 -> f32): all 65536 patterns of each. Narrowing (f32 -> bf16,
 * f32 -> f16): every value of the top 16 bits of an fp32 combined with low halves around the
 * rounding points of both targets (ties, one below, one above, zero, all ones), plus 2^20
 * seeded random fp32 patterns: ~2 million inputs, NaNs, infinities, f16 subnormals and the
 * overflow boundary among them. */
#include "../backends/cuda/cuda_dtype.h"

#include "harness.h"
#include "twist/dtype.h"

static int mismatches;

static void check_narrow(uint32_t bits) {
    const float value = tw_f32_from_bits(bits);
    const uint16_t want_bf16 = tw_f32_to_bf16(value), got_bf16 = tw_cuda_f32_to_bf16(value);
    const uint16_t want_f16 = tw_f32_to_f16(value), got_f16 = tw_cuda_f32_to_f16(value);
    if (want_bf16 != got_bf16 && mismatches++ < 10)
        tw_test_fail(__FILE__, __LINE__, "f32 0x%08x -> bf16: cuda 0x%04x, host 0x%04x", bits,
                     got_bf16, want_bf16);
    if (want_f16 != got_f16 && mismatches++ < 10)
        tw_test_fail(__FILE__, __LINE__, "f32 0x%08x -> f16: cuda 0x%04x, host 0x%04x", bits,
                     got_f16, want_f16);
}

int main(void) {
    for (uint32_t v = 0; v <= 0xffffu; v++) {
        const uint32_t want_b = tw_f32_bits(tw_bf16_to_f32((uint16_t)v));
        const uint32_t got_b = tw_cuda_f32_bits(tw_cuda_bf16_to_f32((uint16_t)v));
        const uint32_t want_h = tw_f32_bits(tw_f16_to_f32((uint16_t)v));
        const uint32_t got_h = tw_cuda_f32_bits(tw_cuda_f16_to_f32((uint16_t)v));
        TW_CHECK(want_b == got_b, "bf16 0x%04x -> f32: cuda 0x%08x, host 0x%08x", v, got_b, want_b);
        TW_CHECK(want_h == got_h, "f16 0x%04x -> f32: cuda 0x%08x, host 0x%08x", v, got_h, want_h);
    }

    /* bf16 rounds at bit 16 (tie 0x8000), f16 normals at bit 13 (tie 0x1000 within the low 13
     * bits); f16 subnormals round higher still, which the random inputs and the top-half sweep
     * (every exponent) reach. */
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff,
                                    0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000,
                                    0xefff, 0xf000, 0xf001, 0x9000};
    for (uint32_t high = 0; high <= 0xffffu; high++)
        for (size_t i = 0; i < sizeof lows / sizeof *lows; i++) check_narrow(high << 16 | lows[i]);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 14);
    for (int i = 0; i < 1 << 20; i++) check_narrow((uint32_t)tw_test_rng_next(&rng));

    /* The named cases, spelled out. */
    TW_CHECK(tw_cuda_f32_to_bf16(65504.0f) == 0x4780, "65504 -> bf16 0x4780");
    TW_CHECK(tw_cuda_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds past f16's 65504: inf");
    TW_CHECK(tw_cuda_f32_to_f16(5.9604644775390625e-8f) == 0x0001, "2^-24: smallest subnormal");
    TW_CHECK(tw_cuda_f32_to_f16(2.98023223876953125e-8f) == 0x0000, "2^-25 ties to even: 0");
    TW_CHECK((tw_cuda_f32_to_bf16(tw_f32_from_bits(0x7fc00001u)) & 0x7fc0u) == 0x7fc0u,
             "NaN stays a quiet NaN in bf16");
    TW_CHECK(tw_cuda_f32_to_f16(tw_f32_from_bits(0xff800001u)) == 0xfe00u,
             "a negative signalling NaN becomes the negative quiet f16 NaN");
    printf("compared %d widenings and %d narrowings (bf16 and f16 each)\n", 2 * 65536,
           65536 * (int)(sizeof lows / sizeof *lows) + (1 << 20));
    return tw_test_finish("cuda_dtype");
}
