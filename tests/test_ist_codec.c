/* Exchange codecs of distributed runs (src/ist/codec.h):
 *   - bf16 round trip: relative error <= 2^-8 (half an ulp of an 8-bit significand) and above
 *     2^-9 (it does round to 8 bits) over twenty-four decades of magnitudes, ties to even, signed zero, inf, NaN, and
 *     values past the largest bf16 to inf;
 *   - error feedback: a long stream of deltas sent through bf16 with the residual kept sums to
 *     the true sum within one rounding (the residual), where plain bf16 loses the deltas;
 *   - the packed path of a link (master end -> worker end -> master end) over IST rounds whose
 *     shares change: every decoded element is its master element (the index map is right) within
 *     one rounding of the delta, both ends' references stay identical, and updates far below a
 *     bf16 ulp of the weights reach the master (the residual stays bounded); plain bf16 loses
 *     them;
 *   - malformed share lists are refused with a message. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ist/codec.h"
#include "twist/ist.h"

static float float_of(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

static void round_trip(void) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 11);
    double worst = 0.0;
    for (int i = 0; i < 200000; i++) {
        const float mantissa = tw_test_rng_uniform(&rng, 1.0f, 2.0f);
        const int exponent = tw_test_rng_int(&rng, 80) - 40; /* 2^-40 .. 2^39 */
        float x = ldexpf(mantissa, exponent);
        if (i & 1) x = -x;
        const float y = dist_bf16_to_float(dist_bf16_from_float(x));
        const double rel = fabs((double)y - (double)x) / fabs((double)x);
        if (rel > worst) worst = rel;
    }
    TW_CHECK(worst <= ldexp(1.0, -8), "bf16 round trip: relative error %.3g > 2^-8", worst);
    TW_CHECK(worst > ldexp(1.0, -9), "bf16 round trip: relative error %.3g: not rounding to 8 "
             "significant bits?", worst);
    /* Ties go to the even neighbour: 1 + 2^-8 is halfway between 1 and 1 + 2^-7. */
    TW_CHECK(dist_bf16_from_float(float_of(0x3f808000u)) == 0x3f80u, "tie 0x3f808000 not to even");
    TW_CHECK(dist_bf16_from_float(float_of(0x3f818000u)) == 0x3f82u, "tie 0x3f818000 not to even");
    TW_CHECK(dist_bf16_from_float(float_of(0x3f808001u)) == 0x3f81u, "above a tie not up");
    TW_CHECK(dist_bf16_from_float(-0.0f) == 0x8000u, "-0 lost its sign");
    TW_CHECK(dist_bf16_from_float(INFINITY) == 0x7f80u, "inf");
    TW_CHECK(dist_bf16_from_float(-INFINITY) == 0xff80u, "-inf");
    TW_CHECK(isnan(dist_bf16_to_float(dist_bf16_from_float(NAN))), "NaN not kept");
    TW_CHECK(isnan(dist_bf16_to_float(dist_bf16_from_float(float_of(0x7f800001u)))),
             "a NaN with only low payload bits became inf");
    TW_CHECK(dist_bf16_from_float(float_of(0x7f7fffffu)) == 0x7f80u,
             "the largest float did not round to inf");
    TW_CHECK(dist_codec_bytes(TW_CODEC_FP32, 10) == 40 && dist_codec_bytes(TW_CODEC_BF16, 10) == 20 &&
                 dist_codec_bytes(TW_CODEC_BF16_DELTA, 10) == 20,
             "wire bytes per value");
}

/* Gradient-style error feedback: 20000 rounds of one value each, summed. */
static void error_feedback(void) {
    enum { ROUNDS = 20000, N = 64 };
    dist_codec_link feedback = {0}, plain = {0};
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 5);
    double truth[N] = {0}, fed[N] = {0}, lost[N] = {0}, largest = 0.0;
    float data[N], copy[N];
    for (int t = 0; t < ROUNDS; t++) {
        for (int i = 0; i < N; i++) {
            /* a steady drift with noise: what rounding each value alone gets wrong each time */
            data[i] = 1.0f + 0.001f * (float)i + tw_test_rng_uniform(&rng, -1e-3f, 1e-3f);
            copy[i] = data[i];
            truth[i] += data[i];
        }
        TW_CHECK_OK(dist_codec_quantize(&feedback, TW_CODEC_BF16_DELTA, data, N));
        TW_CHECK_OK(dist_codec_quantize(&plain, TW_CODEC_BF16, copy, N));
        for (int i = 0; i < N; i++) {
            fed[i] += data[i];
            lost[i] += copy[i];
            const double r = fabs((double)feedback.grad_resid[i]);
            if (r > largest) largest = r;
        }
    }
    double worst_fed = 0.0, worst_plain = 0.0;
    for (int i = 0; i < N; i++) {
        const double a = fabs(fed[i] - truth[i]), b = fabs(lost[i] - truth[i]);
        if (a > worst_fed) worst_fed = a;
        if (b > worst_plain) worst_plain = b;
    }
    /* The residual is at most half an ulp of values near 1 (2^-8 / 2), plus float sums. */
    TW_CHECK(largest <= ldexp(1.0, -8), "error feedback: a residual of %.3g", largest);
    TW_CHECK(worst_fed <= 0.01, "error feedback: sums off by %.3g after %d rounds", worst_fed,
             ROUNDS);
    TW_CHECK(worst_plain > 10.0 * worst_fed,
             "plain bf16 sums off by %.3g, error feedback by %.3g: feedback did not help",
             worst_plain, worst_fed);
    printf("error feedback: |sum of decoded - true sum| after %d rounds: %.2e with feedback, "
           "%.2e plain bf16 (largest residual %.2e)\n", ROUNDS, worst_fed, worst_plain, largest);
    dist_codec_link_free(&feedback);
    dist_codec_link_free(&plain);
}

/* Two layers, 4 heads of 3, MLP 10, C 12, vocab 20, T 5. */
static tw_gpt_config small_config(void) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(20, 5, 2, 12, 4, &c));
    c.layers[0].mlp_hidden = 10;
    c.layers[1].mlp_hidden = 10;
    return c;
}

/* IST rounds of 2 workers over one master, under bf16-delta (or bf16): down through each link,
 * a "training" update of u = 1e-5 per element (far below a bf16 ulp of values near 0.5), up,
 * merge by hand: *drift gets the largest |master - true| over the master's params. */
static void run_links(tw_dist_codec codec, int rounds, double *drift, double *worst_down) {
    const tw_gpt_config c = small_config();
    tw_ist_master *master = NULL;
    TW_CHECK_OK(tw_ist_master_create(&c, &master));
    if (!master) return;
    const size_t P = master->param_count;
    double *truth = malloc(P * sizeof *truth);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 3);
    for (size_t i = 0; i < P; i++) {
        master->params[i] = tw_test_rng_uniform(&rng, 0.25f, 0.75f);
        master->exp_avg[i] = tw_test_rng_uniform(&rng, -0.01f, 0.01f);
        master->exp_avg_sq[i] = tw_test_rng_uniform(&rng, 0.0f, 1e-4f);
        truth[i] = master->params[i];
    }
    dist_codec_link ends[2] = {{0}}, workers[2] = {{0}};
    *worst_down = 0.0;
    for (int round = 0; round < rounds; round++) {
        tw_ist_partition *partition = NULL;
        tw_ist_partition_options po = {.workers = 2, .heads_per_worker = 2, .seed = 9,
                                       .round = round};
        TW_CHECK_OK(tw_ist_partition_make(&c, &po, &partition));
        if (!partition) break;
        /* Every worker moves each element it holds by u; shared elements (embeddings,
         * LayerNorms) are averaged: the truth moves by u everywhere. */
        tw_ist_merge *merge = NULL;
        TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
        float *kept[2] = {NULL, NULL};
        for (int w = 0; w < 2; w++) {
            tw_gpt_config sub;
            TW_CHECK_OK(tw_ist_subnet_config(&c, partition, w, &sub));
            const size_t n = tw_ist_packed_floats(&sub), S = n / 3;
            float *packed = malloc(n * sizeof *packed), *want = malloc(n * sizeof *want);
            float *got = malloc(n * sizeof *got);
            TW_CHECK_OK(tw_ist_extract(master, partition, w, want));
            memcpy(packed, want, n * sizeof *packed);
            if (codec == TW_CODEC_BF16_DELTA) {
                TW_CHECK_OK(dist_codec_set_shares(&ends[w], partition, w));
                TW_CHECK_OK(dist_codec_map(&ends[w], &c, false));
                TW_CHECK_OK(dist_codec_reserve_shares(&workers[w], ends[w].share_count));
                memcpy(workers[w].shares, ends[w].shares,
                       ends[w].share_count * sizeof *workers[w].shares);
                TW_CHECK_OK(dist_codec_map(&workers[w], &c, true));
                TW_CHECK(workers[w].sub == S, "round %d worker %d: map of %zu, subnet %zu", round,
                         w, workers[w].sub, S);
            }
            TW_CHECK_OK(dist_codec_reserve_wire(&ends[w], n));
            TW_CHECK_OK(dist_codec_reserve_wire(&workers[w], n));
            /* down: the master's end encodes, the worker's end decodes */
            dist_codec_encode(&ends[w], codec, false, packed, n);
            memcpy(workers[w].wire, ends[w].wire, n * sizeof *ends[w].wire);
            dist_codec_decode(&workers[w], codec, true, got, n);
            for (size_t i = 0; i < n; i++) {
                const double err = fabs((double)got[i] - (double)want[i]);
                const double bound = ldexp(fabs((double)want[i]), -8) + 1e-30;
                if (err / bound > *worst_down) *worst_down = err / bound;
            }
            if (codec == TW_CODEC_BF16_DELTA)
                TW_CHECK(memcmp(ends[w].ref, workers[w].ref, 3 * P * sizeof(float)) == 0,
                         "round %d worker %d: the two ends' references differ", round, w);
            /* local "training": the params move by u */
            for (size_t i = 0; i < S; i++) got[i] += 1e-5f;
            /* up: the worker's end encodes, the master's end decodes */
            dist_codec_encode(&workers[w], codec, true, got, n);
            memcpy(ends[w].wire, workers[w].wire, n * sizeof *ends[w].wire);
            dist_codec_decode(&ends[w], codec, false, packed, n);
            TW_CHECK_OK(tw_ist_merge_add(merge, partition, w, packed));
            kept[w] = packed;
            free(want);
            free(got);
        }
        TW_CHECK_OK(tw_ist_merge_finish(merge, master));
        free(kept[0]);
        free(kept[1]);
        for (size_t i = 0; i < P; i++) truth[i] += 1e-5;
        tw_ist_partition_free(partition);
    }
    *drift = 0.0;
    for (size_t i = 0; i < P; i++) {
        const double d = fabs((double)master->params[i] - truth[i]);
        if (d > *drift) *drift = d;
    }
    for (int w = 0; w < 2; w++) {
        dist_codec_link_free(&ends[w]);
        dist_codec_link_free(&workers[w]);
    }
    free(truth);
    tw_ist_master_free(master);
}

static void links(void) {
    enum { ROUNDS = 200 };
    double drift_delta = 0, drift_plain = 0, down_delta = 0, down_plain = 0;
    run_links(TW_CODEC_BF16_DELTA, ROUNDS, &drift_delta, &down_delta);
    run_links(TW_CODEC_BF16, ROUNDS, &drift_plain, &down_plain);
    /* Total true movement: 200 x 1e-5 = 2e-3, eight times a bf16 half-ulp near 0.5 (2^-9):
     * plain bf16 rounds every update away; bf16-delta keeps all but the residual. */
    TW_CHECK(down_delta <= 1.0 && down_plain <= 1.0,
             "a decoded value off by more than 2^-8 of its value (%.3g, %.3g of the bound)",
             down_delta, down_plain);
    TW_CHECK(drift_delta <= 2e-5, "bf16-delta: the master drifted %.3g from the truth", drift_delta);
    TW_CHECK(drift_plain >= 1e-3, "plain bf16 kept the updates (drift %.3g)? the test is not "
             "testing", drift_plain);
    printf("links: %d IST rounds of updates of 1e-5 on weights near 0.5: master off the truth by "
           "%.2e (bf16-delta), %.2e (bf16)\n", ROUNDS, drift_delta, drift_plain);
}

static void malformed(void) {
    const tw_gpt_config c = small_config();
    dist_codec_link link = {0};
    TW_CHECK_OK(dist_codec_reserve_shares(&link, 3));
    link.shares[0] = 5; /* 5 heads, but 2 ints follow */
    link.shares[1] = 0;
    link.shares[2] = 1;
    TW_CHECK_ERROR(dist_codec_map(&link, &c, true), TW_ERR_INVALID_ARGUMENT, "malformed share");
    dist_codec_link_free(&link);
}

int main(void) {
    round_trip();
    error_feedback();
    links();
    malformed();
    return tw_test_finish("ist_codec");
}
