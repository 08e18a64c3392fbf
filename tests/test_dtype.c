/* twist/dtype.h (host conversions) and tw_convert on a device.
 *
 *   test_dtype [--device SPEC]      (default cpu)
 *
 * 1. Every one of the 65536 bf16 and f16 bit patterns widens to fp32 (to the value the IEEE
 *    definition gives) and narrows back to itself; NaNs stay NaN with their sign.
 * 2. fp32 -> bf16 and fp32 -> f16 match a slow reference on edge values and ~1e6 random ones
 *    (random bit patterns, values near each format's rounding midpoints, overflow and subnormal
 *    ranges). The reference knows nothing of bit tricks: it decodes every finite 16-bit pattern
 *    to a double, sorts them, and picks the nearest to the input by binary search, ties to the
 *    pattern with an even mantissa; past the largest finite value plus half its ulp: infinity.
 * 3. tw_convert on the device: every pair of float types, over data with NaN, +-inf, overflow,
 *    f16 subnormals and values that round, at non-zero offsets, with guard elements that must not
 *    change. A pair the device does not convert is reported ("vulkan:0 convert f32 -> f16:
 *    unsupported") and does not fail. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/dtype.h"

/* ------------------------------------------------------------------------------------------ */
/* The slow reference                                                                         */
/* ------------------------------------------------------------------------------------------ */

typedef struct format {
    const char *name;
    int mantissa_bits; /* stored bits: bf16 7, f16 10 */
    int exponent_bits; /* bf16 8, f16 5 */
    double positive[1 << 15]; /* every finite positive-or-zero pattern's value, ascending */
    uint16_t bits[1 << 15];   /* its bit pattern */
    int count;
} format;

static format BF16 = {.name = "bf16", .mantissa_bits = 7, .exponent_bits = 8};
static format F16 = {.name = "f16", .mantissa_bits = 10, .exponent_bits = 5};

/* Value of a non-negative pattern from the IEEE definition, in double. */
static double decode(const format *f, uint16_t pattern) {
    const int bias = (1 << (f->exponent_bits - 1)) - 1;
    const int exponent = (pattern >> f->mantissa_bits) & ((1 << f->exponent_bits) - 1);
    const int mantissa = pattern & ((1 << f->mantissa_bits) - 1);
    if (exponent == 0) return ldexp((double)mantissa, 1 - bias - f->mantissa_bits);
    return ldexp(1.0 + ldexp((double)mantissa, -f->mantissa_bits), exponent - bias);
}

static void format_build(format *f) {
    const uint16_t inf = (uint16_t)(((1u << f->exponent_bits) - 1) << f->mantissa_bits);
    f->count = 0;
    /* Patterns below the infinity pattern are the finite non-negative ones, already ascending. */
    for (uint32_t p = 0; p < inf; p++) {
        f->positive[f->count] = decode(f, (uint16_t)p);
        f->bits[f->count++] = (uint16_t)p;
    }
}

static uint16_t reference_round(const format *f, float value) {
    const uint16_t sign_bit = 0x8000u;
    const uint16_t inf = (uint16_t)(((1u << f->exponent_bits) - 1) << f->mantissa_bits);
    const uint16_t sign = signbit(value) ? sign_bit : 0;
    if (isnan(value)) return 0xffffu; /* any NaN: compared by class below */
    const double x = fabs((double)value);
    const double largest = f->positive[f->count - 1];
    const double half_ulp = (largest - f->positive[f->count - 2]) / 2.0;
    if (x >= largest + half_ulp) return (uint16_t)(sign | inf);
    int lo = 0, hi = f->count - 1; /* positive[lo] <= x < positive[hi], or x is largest */
    if (x >= largest) return (uint16_t)(sign | f->bits[f->count - 1]);
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (f->positive[mid] <= x) lo = mid;
        else hi = mid;
    }
    const double below = x - f->positive[lo], above = f->positive[hi] - x;
    int pick;
    if (below < above) pick = lo;
    else if (above < below) pick = hi;
    else pick = (f->bits[lo] & 1u) == 0 ? lo : hi; /* a tie: the even mantissa */
    return (uint16_t)(sign | f->bits[pick]);
}

static uint16_t to_format(const format *f, float value) {
    return f == &BF16 ? tw_f32_to_bf16(value) : tw_f32_to_f16(value);
}

static float from_format(const format *f, uint16_t value) {
    return f == &BF16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
}

static bool is_nan_pattern(const format *f, uint16_t p) {
    const uint16_t inf = (uint16_t)(((1u << f->exponent_bits) - 1) << f->mantissa_bits);
    return (p & 0x7fffu) > inf;
}

/* ------------------------------------------------------------------------------------------ */
/* 1. Round trips                                                                             */
/* ------------------------------------------------------------------------------------------ */

static void test_round_trip(const format *f) {
    int failures = 0;
    const uint16_t inf = (uint16_t)(((1u << f->exponent_bits) - 1) << f->mantissa_bits);
    for (uint32_t p = 0; p < 65536; p++) {
        const uint16_t pattern = (uint16_t)p;
        const float wide = from_format(f, pattern);
        const uint16_t back = to_format(f, wide);
        if (is_nan_pattern(f, pattern)) {
            /* NaN stays NaN with its sign (bf16 keeps the payload and sets the quiet bit; f16
             * gives the canonical quiet NaN). */
            if (!isnan(wide) || !is_nan_pattern(f, back) || (back & 0x8000u) != (pattern & 0x8000u))
                if (failures++ < 5)
                    tw_test_fail(__FILE__, __LINE__, "%s NaN 0x%04x -> %g -> 0x%04x", f->name,
                                 pattern, (double)wide, back);
            continue;
        }
        const uint16_t magnitude = pattern & 0x7fffu;
        const double value = magnitude == inf ? INFINITY : decode(f, magnitude);
        if (back != pattern || (double)wide != (pattern & 0x8000u ? -value : value))
            if (failures++ < 5)
                tw_test_fail(__FILE__, __LINE__, "%s 0x%04x -> %.9g -> 0x%04x (want %.9g)",
                             f->name, pattern, (double)wide, back, value);
    }
    printf("%-5s round trip of all 65536 patterns: %s\n", f->name, failures ? "FAIL" : "ok");
}

/* ------------------------------------------------------------------------------------------ */
/* 2. Rounding against the reference                                                          */
/* ------------------------------------------------------------------------------------------ */

static int check_rounding(const format *f, float value, int *failures) {
    const uint16_t got = to_format(f, value), want = reference_round(f, value);
    bool ok = isnan(value) ? is_nan_pattern(f, got) : got == want;
    if (!ok && (*failures)++ < 8)
        tw_test_fail(__FILE__, __LINE__, "%s(%.9g = 0x%08x): got 0x%04x, want 0x%04x", f->name,
                     (double)value, tw_f32_bits(value), got, want);
    return 1;
}

static void test_rounding(const format *f, tw_test_rng *rng) {
    int failures = 0, count = 0;
    /* Edges: zeros, infinities, NaNs, extremes of fp32, and for every finite 16-bit value its
     * neighbours in fp32, the midpoints to the next value and one fp32 ulp either side of them. */
    const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f, -1e-45f,
                           1.17549435e-38f, 3.40282347e38f, -3.40282347e38f, 65504.0f, 65520.0f,
                           65519.996f, 65536.0f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
                           8.9406967e-8f, 6.1035156e-5f, 6.1035152e-5f, 3.3895314e38f,
                           3.3961775e38f, 3.3961778e38f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) count += check_rounding(f, edges[i], &failures);
    for (int i = 0; i + 1 < f->count; i++) {
        const float a = (float)f->positive[i], b = (float)f->positive[i + 1];
        const float mid = (float)((f->positive[i] + f->positive[i + 1]) / 2.0); /* exact in fp32 */
        const float probes[] = {a, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY),
                                nextafterf(a, INFINITY), nextafterf(b, 0.0f)};
        for (size_t k = 0; k < sizeof probes / sizeof *probes; k++) {
            count += check_rounding(f, probes[k], &failures);
            count += check_rounding(f, -probes[k], &failures);
        }
    }
    /* Random fp32 bit patterns (every exponent equally likely), and uniform values inside the
     * format's own range. */
    for (int i = 0; i < 400000; i++)
        count += check_rounding(f, tw_f32_from_bits((uint32_t)tw_test_rng_next(rng)), &failures);
    const float range = f == &F16 ? 70000.0f : 1e4f;
    for (int i = 0; i < 200000; i++)
        count += check_rounding(f, tw_test_rng_uniform(rng, -range, range), &failures);
    for (int i = 0; i < 100000; i++) /* f16 subnormals and the bottom of the normal range */
        count += check_rounding(f, tw_test_rng_uniform(rng, -1.3e-4f, 1.3e-4f), &failures);
    printf("%-5s fp32 -> %s rounding, %d values against the reference: %s\n", f->name, f->name,
           count, failures ? "FAIL" : "ok");
}

/* ------------------------------------------------------------------------------------------ */
/* 3. tw_convert on a device                                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { CONVERT_N = 4099, OFFSET = 5, GUARD = 3 };

/* Host model of a tensor of `dtype` holding fp32 values (what the device should have). */
static uint16_t narrow(tw_dtype dtype, float value) {
    return dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(value) : tw_f32_to_f16(value);
}

static float widen(tw_dtype dtype, uint16_t value) {
    return dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
}

/* Buffer bytes of n elements of dtype, written from fp32 values (rounded when 16-bit). */
static void encode(tw_dtype dtype, const float *values, size_t n, void *out) {
    for (size_t i = 0; i < n; i++) {
        if (dtype == TW_DTYPE_F32) ((float *)out)[i] = values[i];
        else ((uint16_t *)out)[i] = narrow(dtype, values[i]);
    }
}

/* Source data: specials, overflow for f16 and bf16, f16 subnormals, values that round. */
static void convert_source(tw_test_rng *rng, float *x, size_t n) {
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e5f, -1e5f, 65504.0f,
                              65520.0f, 3.4e38f, 3e-6f, -3e-6f, 5.9604645e-8f, 2.9802322e-8f,
                              1e-40f, 1.00390625f, 1.01171875f, 1.0009766f};
    const size_t specials_n = sizeof specials / sizeof *specials;
    for (size_t i = 0; i < n; i++) {
        if (i < specials_n) x[i] = specials[i];
        else if (i % 3 == 0) x[i] = tw_test_rng_uniform(rng, -2e-4f, 2e-4f);
        else x[i] = tw_test_rng_uniform(rng, -100.0f, 100.0f);
    }
}

static bool same_value(float a, float b) {
    return (isnan(a) && isnan(b)) || tw_f32_bits(a) == tw_f32_bits(b);
}

static void test_convert_pair(tw_device *device, tw_dtype from, tw_dtype to, tw_test_rng *rng) {
    const char *spec = tw_device_get_info(device)->spec;
    const size_t total = OFFSET + CONVERT_N + GUARD;
    float *values = malloc(total * sizeof *values), *guard = malloc(total * sizeof *guard);
    convert_source(rng, values, total);
    for (size_t i = 0; i < total; i++) guard[i] = (float)i + 0.5f; /* exact in every type */
    void *src_bytes = malloc(total * 4), *dst_bytes = malloc(total * 4), *got = malloc(total * 4);
    encode(from, values, total, src_bytes);
    encode(to, guard, total, dst_bytes);
    tw_buffer *src = NULL, *dst = NULL;
    TW_CHECK_OK(tw_buffer_alloc(device, total * tw_dtype_size(from), &src));
    TW_CHECK_OK(tw_buffer_alloc(device, total * tw_dtype_size(to), &dst));
    if (src && dst) {
        TW_CHECK_OK(tw_buffer_upload(src, 0, src_bytes, total * tw_dtype_size(from)));
        TW_CHECK_OK(tw_buffer_upload(dst, 0, dst_bytes, total * tw_dtype_size(to)));
        /* Source at OFFSET, destination at OFFSET - 2: offsets count elements of each type. */
        tw_clear_error();
        tw_status status = tw_convert(device, CONVERT_N, tw_at_typed(src, OFFSET, from),
                                      tw_at_typed(dst, OFFSET - 2, to));
        if (status == TW_ERR_UNSUPPORTED &&
            tw_device_get_info(device)->backend != TW_BACKEND_CPU) { /* the cpu converts all */
            printf("%s convert %s -> %s: unsupported (%s)\n", spec, tw_dtype_name(from),
                   tw_dtype_name(to), tw_last_error());
        } else {
            TW_CHECK(status == TW_OK, "%s convert %s -> %s: %s", spec, tw_dtype_name(from),
                     tw_dtype_name(to), tw_last_error());
            TW_CHECK_OK(tw_buffer_download(dst, 0, got, total * tw_dtype_size(to)));
            int failures = 0;
            for (size_t i = 0; i < total; i++) {
                float want_value, got_value;
                /* Element i of dst holds source element i + 2 when inside the converted range. */
                bool inside = i >= OFFSET - 2 && i < OFFSET - 2 + CONVERT_N;
                float source = values[i + 2 < total ? i + 2 : 0];
                if (from != TW_DTYPE_F32) source = widen(from, narrow(from, source));
                want_value = inside ? source : guard[i];
                if (to != TW_DTYPE_F32) want_value = widen(to, narrow(to, want_value));
                got_value = to == TW_DTYPE_F32 ? ((float *)got)[i] : widen(to, ((uint16_t *)got)[i]);
                if (!same_value(got_value, want_value) && failures++ < 5)
                    tw_test_fail(__FILE__, __LINE__,
                                 "%s convert %s -> %s: element %zu%s is %.9g, want %.9g (source %.9g)",
                                 spec, tw_dtype_name(from), tw_dtype_name(to), i,
                                 inside ? "" : " (outside the range)", (double)got_value,
                                 (double)want_value, (double)source);
            }
            printf("%s convert %s -> %s: %s\n", spec, tw_dtype_name(from), tw_dtype_name(to),
                   failures ? "FAIL" : "ok");
        }
    }
    tw_buffer_free(src);
    tw_buffer_free(dst);
    free(values);
    free(guard);
    free(src_bytes);
    free(dst_bytes);
    free(got);
}

int main(int argc, char **argv) {
    const char *spec = "cpu";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else {
            fprintf(stderr, "usage: test_dtype [--device SPEC]\n");
            return 2;
        }
    }
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 14);
    format_build(&BF16);
    format_build(&F16);
    test_round_trip(&BF16);
    test_round_trip(&F16);
    test_rounding(&BF16, &rng);
    test_rounding(&F16, &rng);

    tw_device *device = NULL;
    tw_status status = tw_device_open(spec, &device);
    if (status != TW_OK) {
        if (strcmp(spec, "cpu") != 0 && (status == TW_ERR_NOT_FOUND || status == TW_ERR_UNSUPPORTED))
            tw_test_skip("%s: %s", spec, tw_last_error());
        tw_test_fail(__FILE__, __LINE__, "opening %s: %s", spec, tw_last_error());
        return tw_test_finish("dtype");
    }
    const tw_dtype types[] = {TW_DTYPE_F32, TW_DTYPE_F16, TW_DTYPE_BF16};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) test_convert_pair(device, types[a], types[b], &rng);
    tw_device_close(device);
    return tw_test_finish("dtype");
}
