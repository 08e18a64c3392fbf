/* IST partition: per layer, attention heads dealt by "hats and balls" and MLP units split at
 * random, from one independent RNG stream per (seed, round, layer). See twist/ist.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/ist.h"

/* ------------------------------------------------------------------------------------------ */
/* RNG: splitmix64, seeded from a hash of (seed, round, layer)                                */
/* ------------------------------------------------------------------------------------------ */

typedef struct ist_rng {
    uint64_t state;
} ist_rng;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_next(ist_rng *rng) {
    rng->state += 0x9e3779b97f4a7c15ULL;
    return mix64(rng->state);
}

/* Each field goes through the finaliser in turn, so nearby (round, layer) pairs give unrelated
 * streams, and a round's draw depends on nothing but these three numbers. */
static ist_rng rng_for_layer(uint64_t seed, int round, int layer) {
    uint64_t h = mix64(seed ^ 0x6a09e667f3bcc909ULL);
    h = mix64(h ^ ((uint64_t)(uint32_t)round + 0x3c6ef372fe94f82bULL));
    h = mix64(h ^ ((uint64_t)(uint32_t)layer + 0xa54ff53a5f1d36f1ULL));
    return (ist_rng){h};
}

/* Uniform in [0, n) without modulo bias (rejection of the short last bucket). */
static int rng_below(ist_rng *rng, int n) {
    const uint64_t range = (uint64_t)n, limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do x = rng_next(rng);
    while (x >= limit);
    return (int)(x % range);
}

/* Fisher-Yates shuffle of values[0, n). */
static void shuffle(ist_rng *rng, int *values, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = rng_below(rng, i + 1), t = values[i];
        values[i] = values[j];
        values[j] = t;
    }
}

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------------------------------ */
/* Quotas                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Splits total into workers shares in proportion to weights, each in [lo, hi] (the caller
 * guarantees workers * lo <= total <= workers * hi). Largest remainder: start from the floors
 * clamped to [lo, hi], then hand the missing units one by one to the worker furthest below its
 * ideal share (or take the excess from the one furthest above it), which keeps shares monotone
 * in the weights. */
static void apportion(int total, const double *weights, int workers, int lo, int hi, int *out) {
    /* Relative to the largest weight, so that huge finite weights cannot overflow the sum. */
    double largest = 0.0, weight_sum = 0.0;
    for (int w = 0; w < workers; w++) largest = weights[w] > largest ? weights[w] : largest;
    for (int w = 0; w < workers; w++) weight_sum += weights[w] / largest;
    int assigned = 0;
    for (int w = 0; w < workers; w++) {
        double ideal = (double)total * (weights[w] / largest) / weight_sum;
        int share = (int)floor(ideal);
        out[w] = share < lo ? lo : share > hi ? hi : share;
        assigned += out[w];
    }
    for (; assigned != total; assigned += assigned < total ? 1 : -1) {
        int best = -1;
        double best_gap = 0.0;
        for (int w = 0; w < workers; w++) {
            if (assigned < total ? out[w] >= hi : out[w] <= lo) continue;
            double gap = (double)total * (weights[w] / largest) / weight_sum - out[w];
            if (best < 0 || (assigned < total ? gap > best_gap : gap < best_gap)) {
                best = w;
                best_gap = gap;
            }
        }
        out[best] += assigned < total ? 1 : -1;
    }
}

/* Head quotas (sum workers * min(m, H)) and unit counts (sum M) of one layer. */
static void layer_quotas(const tw_ist_partition_options *o, int heads, int units, int *head_quota,
                         int *unit_quota) {
    const int n = o->workers;
    const int per_worker = o->heads_per_worker < heads ? o->heads_per_worker : heads;
    if (o->weights) {
        apportion(n * per_worker, o->weights, n, 1, heads, head_quota);
        apportion(units, o->weights, n, 1, units, unit_quota);
        return;
    }
    for (int w = 0; w < n; w++) {
        head_quota[w] = per_worker;
        unit_quota[w] = units / n + (w < units % n ? 1 : 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Dealing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Hats and balls for one layer: the heads in a random order go round the circle of workers from
 * a random start, one to each visited worker with room; then each worker fills its remaining
 * slots uniformly from the heads it lacks. scratch holds 2 * heads ints. */
static void deal_heads(ist_rng *rng, int workers, int heads, const int *quota,
                       tw_ist_partition *p, int layer, int *scratch) {
    int *order = scratch, *lacking = scratch + heads;
    for (int h = 0; h < heads; h++) order[h] = h;
    shuffle(rng, order, heads);
    for (int w = 0; w < workers; w++) p->shares[(size_t)w * p->n_layer + layer].head_count = 0;

    int worker = rng_below(rng, workers);
    for (int i = 0; i < heads; i++) {
        tw_ist_layer_share *s;
        /* Terminates: the quotas sum to at least heads, so some worker still has room. */
        while ((s = &p->shares[(size_t)worker * p->n_layer + layer])->head_count >= quota[worker])
            worker = (worker + 1) % workers;
        s->heads[s->head_count++] = order[i];
        worker = (worker + 1) % workers;
    }

    for (int w = 0; w < workers; w++) {
        tw_ist_layer_share *s = &p->shares[(size_t)w * p->n_layer + layer];
        memset(lacking, 0, sizeof(int) * (size_t)heads);
        for (int i = 0; i < s->head_count; i++) lacking[s->heads[i]] = 1;
        int count = 0;
        for (int h = 0; h < heads; h++)
            if (!lacking[h]) lacking[count++] = h;
        /* Partial Fisher-Yates: the first (quota - held) of a shuffled list of the lacking. */
        for (int i = 0; s->head_count < quota[w]; i++) {
            int j = i + rng_below(rng, count - i), t = lacking[i];
            lacking[i] = lacking[j];
            lacking[j] = t;
            s->heads[s->head_count++] = lacking[i];
        }
        qsort(s->heads, (size_t)s->head_count, sizeof(int), compare_ints);
    }
}

/* A random permutation of [0, units) cut into consecutive pieces of the workers' sizes. */
static void split_units(ist_rng *rng, int workers, int units, tw_ist_partition *p, int layer,
                        int *scratch) {
    for (int u = 0; u < units; u++) scratch[u] = u;
    shuffle(rng, scratch, units);
    int next = 0;
    for (int w = 0; w < workers; w++) {
        tw_ist_layer_share *s = &p->shares[(size_t)w * p->n_layer + layer];
        memcpy(s->units, scratch + next, sizeof(int) * (size_t)s->unit_count);
        next += s->unit_count;
        qsort(s->units, (size_t)s->unit_count, sizeof(int), compare_ints);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Public                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static tw_status check_options(const tw_gpt_config *master, const tw_ist_partition_options *o) {
    if (!master || !o) return tw_error(TW_ERR_INVALID_ARGUMENT, "IST partition: NULL argument");
    TW_TRY(tw_gpt_config_validate(master));
    if (o->workers < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST partition: workers = %d must be at least 1",
                        o->workers);
    if (o->heads_per_worker < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST partition: heads per worker = %d must be at least 1",
                        o->heads_per_worker);
    for (int w = 0; o->weights && w < o->workers; w++)
        if (!isfinite(o->weights[w]) || !(o->weights[w] > 0.0))
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST partition: weight of worker %d is %g; weights must be finite "
                            "and positive",
                            w, o->weights[w]);
    for (int l = 0; l < master->n_layer; l++) {
        const int heads = master->layers[l].heads, units = master->layers[l].mlp_hidden;
        const int per_worker = o->heads_per_worker < heads ? o->heads_per_worker : heads;
        if ((long long)o->workers * per_worker < heads)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST partition: layer %d has %d heads but %d workers x %d heads per "
                            "worker cover only %lld; raise the heads per worker or the workers",
                            l, heads, o->workers, per_worker, (long long)o->workers * per_worker);
        if (o->workers > units)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST partition: layer %d has %d MLP units, fewer than the %d workers "
                            "(each needs at least one)",
                            l, units, o->workers);
    }
    return TW_OK;
}

/* Allocates the shares of every worker and layer with their quotas set (heads not yet dealt). */
static tw_status allocate_shares(const tw_gpt_config *master, const tw_ist_partition_options *o,
                                 tw_ist_partition *p, int *head_quota, int *unit_quota) {
    for (int l = 0; l < master->n_layer; l++) {
        layer_quotas(o, master->layers[l].heads, master->layers[l].mlp_hidden, head_quota,
                     unit_quota);
        for (int w = 0; w < o->workers; w++) {
            tw_ist_layer_share *s = &p->shares[(size_t)w * p->n_layer + l];
            s->head_count = head_quota[w];
            s->unit_count = unit_quota[w];
            s->heads = malloc(sizeof(int) * (size_t)head_quota[w]);
            s->units = malloc(sizeof(int) * (size_t)unit_quota[w]);
            if (!s->heads || !s->units)
                return tw_error(TW_ERR_OUT_OF_MEMORY, "IST partition: out of host memory");
        }
    }
    return TW_OK;
}

static tw_status deal_layers(const tw_gpt_config *master, const tw_ist_partition_options *o,
                             tw_ist_partition *p, int *head_quota) {
    int widest = 0;
    for (int l = 0; l < master->n_layer; l++) {
        const tw_gpt_layer *layer = &master->layers[l];
        if (2 * layer->heads > widest) widest = 2 * layer->heads;
        if (layer->mlp_hidden > widest) widest = layer->mlp_hidden;
    }
    int *scratch = malloc(sizeof(int) * (size_t)widest);
    if (!scratch) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST partition: out of host memory");
    for (int l = 0; l < master->n_layer; l++) {
        ist_rng rng = rng_for_layer(o->seed, o->round, l);
        for (int w = 0; w < o->workers; w++)
            head_quota[w] = p->shares[(size_t)w * p->n_layer + l].head_count;
        deal_heads(&rng, o->workers, master->layers[l].heads, head_quota, p, l, scratch);
        split_units(&rng, o->workers, master->layers[l].mlp_hidden, p, l, scratch);
    }
    free(scratch);
    return TW_OK;
}

tw_status tw_ist_partition_make(const tw_gpt_config *master,
                                const tw_ist_partition_options *options,
                                tw_ist_partition **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "IST partition: out is NULL");
    *out = NULL;
    TW_TRY(check_options(master, options));
    const int n = options->workers;
    tw_ist_partition *p = calloc(1, sizeof *p);
    int *quotas = malloc(sizeof(int) * 2 * (size_t)n);
    if (p) p->shares = calloc((size_t)n * (size_t)master->n_layer, sizeof *p->shares);
    if (!p || !quotas || !p->shares) {
        free(quotas);
        tw_ist_partition_free(p);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "IST partition: out of host memory");
    }
    p->workers = n;
    p->n_layer = master->n_layer;
    tw_status status = allocate_shares(master, options, p, quotas, quotas + n);
    if (status == TW_OK) status = deal_layers(master, options, p, quotas);
    free(quotas);
    if (status != TW_OK) {
        tw_ist_partition_free(p);
        return status;
    }
    *out = p;
    return TW_OK;
}

void tw_ist_partition_free(tw_ist_partition *partition) {
    if (!partition) return;
    if (partition->shares)
        for (size_t i = 0; i < (size_t)partition->workers * (size_t)partition->n_layer; i++) {
            free(partition->shares[i].heads);
            free(partition->shares[i].units);
        }
    free(partition->shares);
    free(partition);
}
