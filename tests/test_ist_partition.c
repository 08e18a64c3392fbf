/* The IST partitioner (twist/ist.h) over many (workers n, heads H, heads per worker m), with
 * per-layer head counts and MLP widths that differ, in equal and weighted mode:
 *   - every head of every layer is held by some worker, no worker holds a head twice, the quotas
 *     are exact (min(m, H) each when equal; summing to n * min(m, H), each in [1, H] and
 *     monotone in the weight when weighted);
 *   - MLP units are a disjoint, complete split (sizes within 1 of each other when equal);
 *   - indices ascend; the same (seed, round) gives the same partition, another round another;
 *     a layer's draw depends only on (seed, round, layer) and its own sizes;
 *   - bad arguments are refused with a message naming what is wrong. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/ist.h"

enum { MAX_TEST_LAYERS = 4 };

/* A small model whose layers have the given heads (of head_dim 2) and MLP widths. */
static tw_gpt_config make_config(int n_layer, const int *heads, const int *units) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(16, 8, n_layer, 8, 4, &c));
    c.head_dim = 2;
    for (int l = 0; l < n_layer; l++) {
        c.layers[l].heads = heads[l];
        c.layers[l].mlp_hidden = units[l];
    }
    return c;
}

static int min_int(int a, int b) { return a < b ? a : b; }

static bool ascending_in_range(const int *v, int count, int limit) {
    for (int i = 0; i < count; i++)
        if (v[i] < 0 || v[i] >= limit || (i > 0 && v[i] <= v[i - 1])) return false;
    return true;
}

/* Every property of one layer of a partition. */
static void check_layer(const tw_gpt_config *c, const tw_ist_partition_options *o,
                        const tw_ist_partition *p, int l) {
    const int n = o->workers, H = c->layers[l].heads, M = c->layers[l].mlp_hidden;
    const int per_worker = min_int(o->heads_per_worker, H);
    int *held = calloc((size_t)(H + M), sizeof(int)), *unit_held = held + H;
    int slots = 0, units = 0, smallest_units = M, largest_units = 0;
    for (int w = 0; w < n; w++) {
        const tw_ist_layer_share *s = tw_ist_share(p, w, l);
        TW_CHECK(ascending_in_range(s->heads, s->head_count, H),
                 "n=%d H=%d m=%d layer %d worker %d: heads not ascending distinct in [0, %d)", n,
                 H, o->heads_per_worker, l, w, H);
        TW_CHECK(ascending_in_range(s->units, s->unit_count, M),
                 "layer %d worker %d: units not ascending distinct in [0, %d)", l, w, M);
        TW_CHECK(s->head_count >= 1 && s->head_count <= H && s->unit_count >= 1,
                 "layer %d worker %d: %d heads, %d units", l, w, s->head_count, s->unit_count);
        if (!o->weights)
            TW_CHECK(s->head_count == per_worker, "n=%d H=%d m=%d layer %d worker %d: quota %d",
                     n, H, o->heads_per_worker, l, w, s->head_count);
        for (int i = 0; i < s->head_count; i++)
            if (s->heads[i] >= 0 && s->heads[i] < H) held[s->heads[i]]++;
        for (int i = 0; i < s->unit_count; i++)
            if (s->units[i] >= 0 && s->units[i] < M) unit_held[s->units[i]]++;
        slots += s->head_count;
        units += s->unit_count;
        smallest_units = min_int(smallest_units, s->unit_count);
        largest_units = s->unit_count > largest_units ? s->unit_count : largest_units;
    }
    TW_CHECK(slots == n * per_worker, "layer %d: %d head slots, expected %d", l, slots,
             n * per_worker);
    TW_CHECK(units == M, "layer %d: %d units dealt, expected %d", l, units, M);
    for (int h = 0; h < H; h++)
        TW_CHECK(held[h] >= 1, "n=%d H=%d m=%d layer %d: head %d held by nobody", n, H,
                 o->heads_per_worker, l, h);
    for (int u = 0; u < M; u++)
        TW_CHECK(unit_held[u] == 1, "layer %d: unit %d held %d times", l, u, unit_held[u]);
    if (!o->weights)
        TW_CHECK(largest_units - smallest_units <= 1, "layer %d: unit shares %d .. %d", l,
                 smallest_units, largest_units);
    free(held);
}

/* Weighted mode: quotas follow the weights (a heavier worker never gets less) and, when no
 * bound was hit, lie within 1 of the exact proportional share. */
static void check_weighted_layer(const tw_gpt_config *c, const tw_ist_partition_options *o,
                                 const tw_ist_partition *p, int l) {
    const int n = o->workers, H = c->layers[l].heads, M = c->layers[l].mlp_hidden;
    const int slots = n * min_int(o->heads_per_worker, H);
    double total = 0.0;
    for (int w = 0; w < n; w++) total += o->weights[w];
    bool unclamped_heads = true, unclamped_units = true;
    for (int w = 0; w < n; w++) {
        double head_ideal = slots * o->weights[w] / total, unit_ideal = M * o->weights[w] / total;
        if (head_ideal < 1.0 || head_ideal > H) unclamped_heads = false;
        if (unit_ideal < 1.0) unclamped_units = false;
    }
    for (int i = 0; i < n; i++) {
        const tw_ist_layer_share *a = tw_ist_share(p, i, l);
        for (int j = 0; j < n; j++) {
            const tw_ist_layer_share *b = tw_ist_share(p, j, l);
            if (o->weights[i] > o->weights[j])
                TW_CHECK(a->head_count >= b->head_count && a->unit_count >= b->unit_count,
                         "layer %d: worker %d (weight %g) has %d heads %d units, worker %d "
                         "(weight %g) %d heads %d units",
                         l, i, o->weights[i], a->head_count, a->unit_count, j, o->weights[j],
                         b->head_count, b->unit_count);
        }
        double head_ideal = slots * o->weights[i] / total, unit_ideal = M * o->weights[i] / total;
        if (unclamped_heads)
            TW_CHECK(fabs(a->head_count - head_ideal) < 1.0 + 1e-9,
                     "layer %d worker %d: %d heads for an ideal %.3f", l, i, a->head_count,
                     head_ideal);
        if (unclamped_units)
            TW_CHECK(fabs(a->unit_count - unit_ideal) < 1.0 + 1e-9,
                     "layer %d worker %d: %d units for an ideal %.3f", l, i, a->unit_count,
                     unit_ideal);
    }
}

static bool same_share(const tw_ist_layer_share *a, const tw_ist_layer_share *b) {
    return a->head_count == b->head_count && a->unit_count == b->unit_count &&
           memcmp(a->heads, b->heads, sizeof(int) * (size_t)a->head_count) == 0 &&
           memcmp(a->units, b->units, sizeof(int) * (size_t)a->unit_count) == 0;
}

static bool same_layer(const tw_ist_partition *a, const tw_ist_partition *b, int la, int lb) {
    for (int w = 0; w < a->workers; w++)
        if (!same_share(tw_ist_share(a, w, la), tw_ist_share(b, w, lb))) return false;
    return true;
}

static bool same_partition(const tw_ist_partition *a, const tw_ist_partition *b) {
    if (a->workers != b->workers || a->n_layer != b->n_layer) return false;
    for (int l = 0; l < a->n_layer; l++)
        if (!same_layer(a, b, l, l)) return false;
    return true;
}

/* Whether this (n, m) fits every layer; the partitioner must refuse it otherwise. */
static bool fits(const tw_gpt_config *c, int n, int m) {
    for (int l = 0; l < c->n_layer; l++)
        if (n * min_int(m, c->layers[l].heads) < c->layers[l].heads || n > c->layers[l].mlp_hidden)
            return false;
    return true;
}

typedef struct sweep_counts {
    int cases, refusals, rounds_compared, rounds_differing;
} sweep_counts;

static void check_case(const tw_gpt_config *c, tw_ist_partition_options o, sweep_counts *counts) {
    tw_ist_partition *p = NULL, *again = NULL, *next = NULL;
    if (!fits(c, o.workers, o.heads_per_worker)) {
        TW_CHECK_ERROR(tw_ist_partition_make(c, &o, &p), TW_ERR_INVALID_ARGUMENT, "layer");
        TW_CHECK(p == NULL, "a refused partition must leave *out NULL");
        counts->refusals++;
        return;
    }
    TW_CHECK_OK(tw_ist_partition_make(c, &o, &p));
    TW_CHECK_OK(tw_ist_partition_make(c, &o, &again));
    o.round++;
    TW_CHECK_OK(tw_ist_partition_make(c, &o, &next));
    o.round--;
    if (!p || !again || !next) goto done;
    TW_CHECK(p->workers == o.workers && p->n_layer == c->n_layer, "partition sizes");
    for (int l = 0; l < c->n_layer; l++) {
        check_layer(c, &o, p, l);
        if (o.weights) check_weighted_layer(c, &o, p, l);
    }
    TW_CHECK(same_partition(p, again), "n=%d m=%d round %d: the same seed and round differ",
             o.workers, o.heads_per_worker, o.round);
    if (o.workers > 1) {
        counts->rounds_compared++;
        counts->rounds_differing += !same_partition(p, next);
    }
    counts->cases++;
done:
    tw_ist_partition_free(p);
    tw_ist_partition_free(again);
    tw_ist_partition_free(next);
}

/* Every (n, H, m) with n in 1..7, H in 1..9, m in 1..H+1, on three layers of H, H + 3 and
 * ceil(H / 2) heads with MLP widths that differ (one of them barely above n). */
static void sweep(void) {
    sweep_counts counts = {0};
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 11);
    for (int n = 1; n <= 7; n++)
        for (int H = 1; H <= 9; H++)
            for (int m = 1; m <= H + 1; m++) {
                const int heads[3] = {H, H + 3, (H + 1) / 2};
                const int units[3] = {4 * H + 7, n + 9, 3 * n + 13};
                tw_gpt_config c = make_config(3, heads, units);
                double weights[8];
                for (int w = 0; w < n; w++)
                    weights[w] = w == 1 ? weights[0] : tw_test_rng_uniform(&rng, 0.2f, 5.0f);
                for (int round = 0; round < 4; round++) {
                    tw_ist_partition_options o = {n, m, NULL, 1234 + (uint64_t)H, round};
                    check_case(&c, o, &counts);
                    o.weights = weights;
                    check_case(&c, o, &counts);
                }
            }
    printf("sweep: %d partitions checked, %d refused as expected, %d of %d next rounds differ\n",
           counts.cases, counts.refusals, counts.rounds_differing, counts.rounds_compared);
    TW_CHECK(counts.cases > 1800 && counts.refusals > 100, "the sweep covered too little");
    TW_CHECK(counts.rounds_differing >= counts.rounds_compared * 95 / 100,
             "only %d of %d next rounds differ", counts.rounds_differing, counts.rounds_compared);
}

/* Hats and balls with n * m == H deals every head exactly once: a disjoint cover. And with one
 * worker holding everything, the partition is the identity. */
static void exact_covers(void) {
    const int heads[2] = {12, 6}, units[2] = {40, 30};
    tw_gpt_config c = make_config(2, heads, units);
    tw_ist_partition_options o = {6, 2, NULL, 99, 3};
    tw_ist_partition *p = NULL;
    TW_CHECK_OK(tw_ist_partition_make(&c, &o, &p));
    if (p) {
        int held[12] = {0};
        for (int w = 0; w < 6; w++)
            for (int i = 0; i < 2; i++) held[tw_ist_share(p, w, 0)->heads[i]]++;
        for (int h = 0; h < 12; h++) TW_CHECK(held[h] == 1, "head %d held %d times", h, held[h]);
        /* Layer 1: 6 heads in 12 slots: each dealt once, the other 6 slots filled at random. */
        int total = 0, seen[6] = {0};
        for (int w = 0; w < 6; w++)
            for (int i = 0; i < 2; i++) seen[tw_ist_share(p, w, 1)->heads[i]]++, total++;
        for (int h = 0; h < 6; h++) TW_CHECK(seen[h] >= 1, "head %d held by nobody", h);
        TW_CHECK(total == 12, "%d slots in layer 1", total);
    }
    tw_ist_partition_free(p);

    o = (tw_ist_partition_options){1, 100, NULL, 5, 0};
    TW_CHECK_OK(tw_ist_partition_make(&c, &o, &p));
    for (int l = 0; p && l < 2; l++) {
        const tw_ist_layer_share *s = tw_ist_share(p, 0, l);
        TW_CHECK(s->head_count == heads[l] && s->unit_count == units[l], "layer %d not whole", l);
        for (int i = 0; i < s->head_count; i++) TW_CHECK(s->heads[i] == i, "head %d", i);
        for (int i = 0; i < s->unit_count; i++) TW_CHECK(s->units[i] == i, "unit %d", i);
    }
    tw_ist_partition_free(p);
}

/* A layer's draw depends only on (seed, round, layer) and its own sizes: changing another layer
 * or the rounds before leaves it as it was; changing the seed changes it. */
static void independent_streams(void) {
    const int heads_a[3] = {8, 8, 5}, heads_b[3] = {8, 3, 5};
    const int units_a[3] = {64, 64, 20}, units_b[3] = {64, 17, 20};
    tw_gpt_config a = make_config(3, heads_a, units_a), b = make_config(3, heads_b, units_b);
    tw_ist_partition_options o = {4, 3, NULL, 42, 7};
    tw_ist_partition *pa = NULL, *pb = NULL, *pc = NULL;
    TW_CHECK_OK(tw_ist_partition_make(&a, &o, &pa));
    TW_CHECK_OK(tw_ist_partition_make(&b, &o, &pb));
    o.seed = 43;
    TW_CHECK_OK(tw_ist_partition_make(&a, &o, &pc));
    if (pa && pb && pc) {
        TW_CHECK(same_layer(pa, pb, 0, 0) && same_layer(pa, pb, 2, 2),
                 "layers 0 and 2 changed when only layer 1's sizes did");
        TW_CHECK(!same_layer(pa, pb, 1, 1), "layer 1 did not change with its sizes");
        TW_CHECK(!same_layer(pa, pa, 0, 1) || !same_layer(pa, pa, 1, 0),
                 "layers 0 and 1 drew the same");
        TW_CHECK(!same_partition(pa, pc), "another seed gave the same partition");
    }
    tw_ist_partition_free(pa);
    tw_ist_partition_free(pb);
    tw_ist_partition_free(pc);
}

/* Heads are dealt uniformly: over many rounds each worker holds each head about equally often. */
static void uniform_dealing(void) {
    const int heads[1] = {6}, units[1] = {12};
    tw_gpt_config c = make_config(1, heads, units);
    enum { ROUNDS = 3000, N = 4, Q = 2 };
    int held[N][6] = {{0}}, unit_held[N][12] = {{0}};
    for (int r = 0; r < ROUNDS; r++) {
        tw_ist_partition_options o = {N, Q, NULL, 8, r};
        tw_ist_partition *p = NULL;
        TW_CHECK_OK(tw_ist_partition_make(&c, &o, &p));
        for (int w = 0; p && w < N; w++) {
            const tw_ist_layer_share *s = tw_ist_share(p, w, 0);
            for (int i = 0; i < s->head_count; i++) held[w][s->heads[i]]++;
            for (int i = 0; i < s->unit_count; i++) unit_held[w][s->units[i]]++;
        }
        tw_ist_partition_free(p);
    }
    /* Expected ROUNDS * Q / H = 1000 per (worker, head), standard deviation about 26. */
    for (int w = 0; w < N; w++) {
        for (int h = 0; h < 6; h++)
            TW_CHECK(abs(held[w][h] - ROUNDS * Q / 6) < 130, "worker %d held head %d %d times",
                     w, h, held[w][h]);
        for (int u = 0; u < 12; u++)
            TW_CHECK(abs(unit_held[w][u] - ROUNDS * 3 / 12) < 130,
                     "worker %d held unit %d %d times", w, u, unit_held[w][u]);
    }
}

static void bad_arguments(void) {
    const int heads[2] = {4, 6}, units[2] = {16, 5};
    tw_gpt_config c = make_config(2, heads, units);
    tw_ist_partition *p = NULL;
    tw_ist_partition_options o = {0, 2, NULL, 1, 0};
    TW_CHECK_ERROR(tw_ist_partition_make(&c, &o, &p), TW_ERR_INVALID_ARGUMENT, "workers = 0");
    o = (tw_ist_partition_options){2, 0, NULL, 1, 0};
    TW_CHECK_ERROR(tw_ist_partition_make(&c, &o, &p), TW_ERR_INVALID_ARGUMENT,
                   "heads per worker = 0");
    o = (tw_ist_partition_options){2, 2, NULL, 1, 0};
    TW_CHECK_ERROR(tw_ist_partition_make(&c, &o, &p), TW_ERR_INVALID_ARGUMENT, "layer 1 has 6");
    o = (tw_ist_partition_options){6, 2, NULL, 1, 0};
    TW_CHECK_ERROR(tw_ist_partition_make(&c, &o, &p), TW_ERR_INVALID_ARGUMENT,
                   "layer 1 has 5 MLP units");
    const double bad[4] = {0.0, -1.0, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        double weights[3] = {1.0, 2.0, 1.0};
        weights[2] = bad[i];
        o = (tw_ist_partition_options){3, 2, weights, 1, 0};
        TW_CHECK_ERROR(tw_ist_partition_make(&c, &o, &p), TW_ERR_INVALID_ARGUMENT,
                       "weight of worker 2");
    }
    TW_CHECK_ERROR(tw_ist_partition_make(NULL, &o, &p), TW_ERR_INVALID_ARGUMENT, "NULL");
    TW_CHECK_ERROR(tw_ist_partition_make(&c, NULL, &p), TW_ERR_INVALID_ARGUMENT, "NULL");
    TW_CHECK(p == NULL, "refused partitions leave *out NULL");
    tw_ist_partition_free(NULL);

    /* Huge but finite weights still split by proportion. */
    const double huge[3] = {1e308, 1e308, 5e307};
    o = (tw_ist_partition_options){3, 2, huge, 1, 0};
    TW_CHECK_OK(tw_ist_partition_make(&c, &o, &p));
    if (p)
        TW_CHECK(tw_ist_share(p, 0, 0)->unit_count == 7 && tw_ist_share(p, 1, 0)->unit_count == 6 &&
                     tw_ist_share(p, 2, 0)->unit_count == 3,
                 "huge weights: units %d %d %d", tw_ist_share(p, 0, 0)->unit_count,
                 tw_ist_share(p, 1, 0)->unit_count, tw_ist_share(p, 2, 0)->unit_count);
    tw_ist_partition_free(p);
}

int main(void) {
    sweep();
    exact_covers();
    independent_streams();
    uniform_dealing();
    bad_arguments();
    return tw_test_finish("ist_partition");
}
