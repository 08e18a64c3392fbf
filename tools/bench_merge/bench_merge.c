/* twist_bench_merge: the IST merge of one round, old against new, in the same process.
 *
 *   twist_bench_merge [--preset NAME] [--vocab V] [--workers W] [--heads-per-worker M]
 *                     [--replicas] [--repeats N] [--threads T]
 *
 * A master of the preset (small: 27M parameters at V 4096) with random values, a partition of W
 * workers (IST: M heads per layer, disjoint unit shares; --replicas: every worker holds the
 * whole model, as in `twist dp`), each worker's packed subnet extracted and shifted so the
 * workers disagree. Then, best of N:
 *   old   the merge before the token-weighted one (copied below): 3 x P double sums and P counts
 *         calloc'ed per round, every worker added into them on one core, then divided
 *   new1  tw_ist_merge_* on 1 thread
 *   newT  tw_ist_merge_* on T threads (default: OpenMP's maximum, normally the cores)
 * and checks that all three give the same master bit for bit (equal tokens: the weighted merge
 * is the unweighted mean, exactly). Times are of begin + adds + finish, the round's merge phase.
 * Not a test: it asserts no time; it prints the ratios. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ist/ist_internal.h"
#include "twist/clock.h"
#include "twist/error.h"
#include "twist/ist.h"

/* ---- the old merge (src/ist/merge.c before the token-weighted merge), verbatim in substance */

typedef struct old_merge {
    const tw_ist_master *master;
    double *sums;     /* (3 * param_count): params, exp_avg, exp_avg_sq */
    uint16_t *counts; /* (param_count) */
} old_merge;

typedef struct old_add {
    old_merge *merge;
    const float *packed;
    size_t sub_count;
} old_add;

static void old_add_run(void *context, size_t sub, size_t master, size_t len) {
    const old_add *a = context;
    const size_t P = a->merge->master->param_count, S = a->sub_count;
    double *sums = a->merge->sums;
    for (size_t i = 0; i < len; i++) {
        sums[master + i] += a->packed[sub + i];
        sums[P + master + i] += a->packed[S + sub + i];
        sums[2 * P + master + i] += a->packed[2 * S + sub + i];
        a->merge->counts[master + i]++;
    }
}

static tw_status old_merge_round(tw_ist_master *master, const tw_ist_partition *p,
                                 float *const *packed) {
    const size_t P = master->param_count;
    old_merge merge = {master, calloc(3 * P, sizeof(double)), calloc(P, sizeof(uint16_t))};
    tw_status status = merge.sums && merge.counts ? TW_OK
                                                  : tw_error(TW_ERR_OUT_OF_MEMORY, "old merge");
    for (int w = 0; status == TW_OK && w < p->workers; w++) {
        ist_subnet_map map;
        status = ist_subnet_map_init(&map, &master->config, master->tensors,
                                     master->tensor_count, p, w);
        if (status != TW_OK) break;
        old_add add = {&merge, packed[w], map.param_count};
        status = ist_subnet_map_walk(&map, old_add_run, &add);
        ist_subnet_map_release(&map);
    }
    float *targets[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    for (size_t i = 0; status == TW_OK && i < P; i++) {
        if (merge.counts[i] == 0) continue;
        const double n = (double)merge.counts[i];
        for (int part = 0; part < 3; part++)
            targets[part][i] = (float)(merge.sums[(size_t)part * P + i] / n);
    }
    free(merge.sums);
    free(merge.counts);
    return status;
}

/* ---- the new merge, as rounds.c calls it ------------------------------------------------- */

static double g_adds_s; /* of the last new_merge_round: begin and adds (the rest: finish) */

static tw_status new_merge_round(tw_ist_master *master, const tw_ist_partition *p,
                                 float *const *packed, int threads, uint64_t tokens) {
    const double started = tw_now_seconds();
    tw_ist_merge *merge = NULL;
    TW_TRY(tw_ist_merge_begin(master, &merge));
    tw_ist_merge_set_threads(merge, threads);
    for (int w = 0; w < p->workers; w++) {
        tw_status status = tw_ist_merge_add_weighted(merge, p, w, packed[w], tokens);
        if (status != TW_OK) {
            tw_ist_merge_abort(merge);
            return status;
        }
    }
    g_adds_s = tw_now_seconds() - started;
    return tw_ist_merge_finish(merge, master);
}

/* ---- set-up ---------------------------------------------------------------------------- */

static tw_status replicas(const tw_gpt_config *c, int workers, tw_ist_partition **out) {
    tw_ist_partition *p = calloc(1, sizeof *p);
    if (!p || !(p->shares = calloc((size_t)workers * (size_t)c->n_layer, sizeof *p->shares)))
        return tw_error(TW_ERR_OUT_OF_MEMORY, "replicas");
    p->workers = workers;
    p->n_layer = c->n_layer;
    for (int w = 0; w < workers; w++)
        for (int l = 0; l < c->n_layer; l++) {
            tw_ist_layer_share *s = &p->shares[(size_t)w * (size_t)c->n_layer + l];
            s->head_count = c->layers[l].heads;
            s->unit_count = c->layers[l].mlp_hidden;
            s->heads = malloc(sizeof(int) * (size_t)s->head_count);
            s->units = malloc(sizeof(int) * (size_t)s->unit_count);
            if (!s->heads || !s->units) return tw_error(TW_ERR_OUT_OF_MEMORY, "replicas");
            for (int h = 0; h < s->head_count; h++) s->heads[h] = h;
            for (int u = 0; u < s->unit_count; u++) s->units[u] = u;
        }
    *out = p;
    return TW_OK;
}

static void fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0) - 0.5f;
    }
}

static void copy_master(tw_ist_master *to, const tw_ist_master *from) {
    const size_t bytes = from->param_count * sizeof(float);
    memcpy(to->params, from->params, bytes);
    memcpy(to->exp_avg, from->exp_avg, bytes);
    memcpy(to->exp_avg_sq, from->exp_avg_sq, bytes);
}

static int same(const tw_ist_master *a, const tw_ist_master *b) {
    const size_t bytes = a->param_count * sizeof(float);
    return memcmp(a->params, b->params, bytes) == 0 &&
           memcmp(a->exp_avg, b->exp_avg, bytes) == 0 &&
           memcmp(a->exp_avg_sq, b->exp_avg_sq, bytes) == 0;
}

static int usage(const char *message) {
    fprintf(stderr, "twist_bench_merge: %s\nusage: twist_bench_merge [--preset NAME] [--vocab V] "
            "[--workers W] [--heads-per-worker M] [--replicas] [--repeats N] [--threads T]\n",
            message);
    return 2;
}

int main(int argc, char **argv) {
    const char *preset = "small";
    int vocab = 4096, workers = 4, quota = 2, repeats = 3, threads = omp_get_max_threads();
    int whole = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dest = strcmp(a, "--vocab") == 0              ? &vocab
                    : strcmp(a, "--workers") == 0          ? &workers
                    : strcmp(a, "--heads-per-worker") == 0 ? &quota
                    : strcmp(a, "--repeats") == 0          ? &repeats
                    : strcmp(a, "--threads") == 0          ? &threads
                                                           : NULL;
        if (strcmp(a, "--replicas") == 0) {
            whole = 1;
        } else if (strcmp(a, "--preset") == 0 && v) {
            preset = v;
            i++;
        } else if (dest && v) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 1 << 20) return usage("a count must be a positive integer");
            *dest = (int)n;
            i++;
        } else {
            return usage("unknown or incomplete option");
        }
    }
    if (workers > 256) return usage("--workers: at most 256");
    tw_gpt_config c;
    tw_ist_master *base = NULL, *a = NULL, *b = NULL, *d = NULL;
    tw_ist_partition *p = NULL;
    tw_status status = tw_gpt_config_preset(preset, vocab, &c);
    if (status == TW_OK) status = tw_ist_master_create(&c, &base);
    if (status == TW_OK) status = tw_ist_master_create(&c, &a);
    if (status == TW_OK) status = tw_ist_master_create(&c, &b);
    if (status == TW_OK) status = tw_ist_master_create(&c, &d);
    if (status == TW_OK) {
        if (whole) {
            status = replicas(&c, workers, &p);
        } else {
            tw_ist_partition_options o = {.workers = workers, .heads_per_worker = quota,
                                          .seed = 7, .round = 0};
            status = tw_ist_partition_make(&c, &o, &p);
        }
    }
    float *packed[256] = {NULL};
    size_t held = 0;
    if (status == TW_OK) {
        fill(base->params, base->param_count, 1);
        fill(base->exp_avg, base->param_count, 2);
        fill(base->exp_avg_sq, base->param_count, 3);
        for (int w = 0; status == TW_OK && w < workers; w++) {
            tw_gpt_config sub;
            status = tw_ist_subnet_config(&c, p, w, &sub);
            const size_t floats = status == TW_OK ? tw_ist_packed_floats(&sub) : 0;
            packed[w] = status == TW_OK ? malloc(floats * sizeof(float)) : NULL;
            if (status == TW_OK && !packed[w]) status = tw_error(TW_ERR_OUT_OF_MEMORY, "packed");
            if (status == TW_OK) status = tw_ist_extract(base, p, w, packed[w]);
            for (size_t j = 0; status == TW_OK && j < floats; j++)
                packed[w][j] += 0.001f * (float)(w + 1);
            held += floats / 3;
        }
    }
    if (status != TW_OK) {
        fprintf(stderr, "twist_bench_merge: %s\n", tw_last_error());
        return 1;
    }
    printf("merge of %d %s of preset %s (V %d): %zu master parameters, %.2f held per parameter; "
           "best of %d\n", workers, whole ? "replicas" : "IST subnets", preset, vocab,
           base->param_count, (double)held / (double)base->param_count, repeats);
    double best[3] = {1e30, 1e30, 1e30}, adds[3] = {0};
    for (int r = 0; status == TW_OK && r < repeats; r++) {
        tw_ist_master *into[3] = {a, b, d};
        for (int k = 0; status == TW_OK && k < 3; k++) {
            copy_master(into[k], base);
            const double t = tw_now_seconds();
            status = k == 0   ? old_merge_round(a, p, packed)
                     : k == 1 ? new_merge_round(b, p, packed, 1, 81920)
                              : new_merge_round(d, p, packed, threads, 81920);
            const double s = tw_now_seconds() - t;
            if (s < best[k]) {
                best[k] = s;
                adds[k] = g_adds_s;
            }
        }
    }
    if (status != TW_OK) {
        fprintf(stderr, "twist_bench_merge: %s\n", tw_last_error());
        return 1;
    }
    const int identical = same(a, b) && same(a, d);
    printf("%-28s %10s %10s %10s\n", "merge", "s/round", "old/this", "of it adds");
    printf("%-28s %10.4f %10.2f %10s\n", "old (double sums, 1 core)", best[0], 1.0, "-");
    printf("%-28s %10.4f %10.2f %10.4f\n", "new, 1 thread", best[1], best[0] / best[1],
           adds[1]);
    char name[64];
    snprintf(name, sizeof name, "new, %d threads", threads);
    printf("%-28s %10.4f %10.2f %10.4f\n", name, best[2], best[0] / best[2], adds[2]);
    printf("results: %s\n", identical ? "identical bit for bit (old, new on 1 and on N threads)"
                                      : "DIFFER");
    for (int w = 0; w < workers; w++) free(packed[w]);
    tw_ist_master_free(base);
    tw_ist_master_free(a);
    tw_ist_master_free(b);
    tw_ist_master_free(d);
    if (whole) {
        for (int i = 0; i < p->workers * p->n_layer; i++) {
            free(p->shares[i].heads);
            free(p->shares[i].units);
        }
        free(p->shares);
        free(p);
    } else {
        tw_ist_partition_free(p);
    }
    return identical ? 0 : 1;
}
