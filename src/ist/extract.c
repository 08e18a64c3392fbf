/* A smaller dense model cut from a trained one: importance scores, a one-worker partition of the
 * most important heads and units, and IST's own subnet extraction. See twist/extract.h. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/extract.h"

/* The master tensor "transformer.h.<layer>.<suffix>". */
static const tw_gpt_tensor *find_tensor(const tw_ist_master *m, int layer, const char *suffix) {
    char name[TW_GPT_NAME_MAX];
    snprintf(name, sizeof name, "transformer.h.%d.%s", layer, suffix);
    for (int i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* Sum of squares of rows [r0, r1) x columns [c0, c1) of a (rows, cols) row-major tensor. */
static double block_sq(const float *t, int cols, int r0, int r1, int c0, int c1) {
    double s = 0.0;
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) {
            const double v = t[(size_t)r * cols + c];
            s += v * v;
        }
    return s;
}

tw_status tw_extract_importance(const tw_ist_master *master, int layer, double *head_scores,
                                double *unit_scores) {
    if (!master || !head_scores || !unit_scores)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "extract: NULL argument");
    const tw_gpt_config *c = &master->config;
    if (layer < 0 || layer >= c->n_layer)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "extract: layer %d is not in [0, %d)", layer,
                        c->n_layer);
    const tw_gpt_tensor *qkv_w = find_tensor(master, layer, "attn.c_attn.weight");
    const tw_gpt_tensor *qkv_b = find_tensor(master, layer, "attn.c_attn.bias");
    const tw_gpt_tensor *proj = find_tensor(master, layer, "attn.c_proj.weight");
    const tw_gpt_tensor *fc_w = find_tensor(master, layer, "mlp.c_fc.weight");
    const tw_gpt_tensor *fc_b = find_tensor(master, layer, "mlp.c_fc.bias");
    const tw_gpt_tensor *mproj = find_tensor(master, layer, "mlp.c_proj.weight");
    if (!qkv_w || !qkv_b || !proj || !fc_w || !fc_b || !mproj)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "extract: layer %d lacks a GPT block tensor",
                        layer);
    const int C = c->n_embd, D = c->head_dim, H = c->layers[layer].heads;
    const int A = H * D, M = c->layers[layer].mlp_hidden;
    const float *p = master->params;
    for (int h = 0; h < H; h++) {
        /* values: c_attn.weight (C, 3A) columns [2A + hD, 2A + (h+1)D), bias the same entries */
        double in = block_sq(p + qkv_w->offset, 3 * A, 0, C, 2 * A + h * D, 2 * A + (h + 1) * D);
        in += block_sq(p + qkv_b->offset, 3 * A, 0, 1, 2 * A + h * D, 2 * A + (h + 1) * D);
        /* output: c_proj.weight (A, C) rows [hD, (h+1)D) */
        const double out = block_sq(p + proj->offset, C, h * D, (h + 1) * D, 0, C);
        head_scores[h] = sqrt(in) * sqrt(out);
    }
    for (int u = 0; u < M; u++) {
        /* input: c_fc.weight (C, M) column u and c_fc.bias (M) entry u; output: c_proj (M, C)
         * row u */
        double in = block_sq(p + fc_w->offset, M, 0, C, u, u + 1);
        in += block_sq(p + fc_b->offset, M, 0, 1, u, u + 1);
        const double out = block_sq(p + mproj->offset, C, u, u + 1, 0, C);
        unit_scores[u] = sqrt(in) * sqrt(out);
    }
    return TW_OK;
}

/* Picks the `keep` indices of highest score among n (ties: the lower index) into out,
 * ascending. order: n ints of scratch. */
static void top_indices(const double *score, int n, int keep, int *order, int *out) {
    for (int i = 0; i < n; i++) order[i] = i;
    /* insertion sort by (score descending, index ascending): n is at most a few thousand units */
    for (int i = 1; i < n; i++) {
        const int v = order[i];
        int j = i - 1;
        while (j >= 0 && (score[order[j]] < score[v] ||
                          (score[order[j]] == score[v] && order[j] > v))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    /* the first `keep` of that order, ascending */
    for (int i = 0; i < keep; i++) {
        const int v = order[i];
        int j = i - 1;
        while (j >= 0 && out[j] > v) {
            out[j + 1] = out[j];
            j--;
        }
        out[j + 1] = v;
    }
}

/* splitmix64: the random scores of tw_extract_plan_random. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Scores of layer l: importance, or (random) uniform draws in [0, 1) from (seed, l). */
static tw_status layer_scores(const tw_ist_master *master, int l, bool random, uint64_t seed,
                              double *hs, double *us) {
    if (!random) return tw_extract_importance(master, l, hs, us);
    uint64_t state = seed ^ (0x7f4a7c159e3779b9ULL * (uint64_t)(l + 1));
    for (int h = 0; h < master->config.layers[l].heads; h++)
        hs[h] = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
    for (int u = 0; u < master->config.layers[l].mlp_hidden; u++)
        us[u] = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
    return TW_OK;
}

static tw_status plan(const tw_ist_master *master, int heads, int units, bool random,
                      uint64_t seed, tw_ist_partition **out) {
    if (!master || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "extract: NULL argument");
    *out = NULL;
    const tw_gpt_config *c = &master->config;
    for (int l = 0; l < c->n_layer; l++) {
        if (heads < 1 || heads > c->layers[l].heads)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "extract: cannot keep %d heads: layer %d has %d (keep 1 .. %d)",
                            heads, l, c->layers[l].heads, c->layers[l].heads);
        if (units < 1 || units > c->layers[l].mlp_hidden)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "extract: cannot keep %d MLP units: layer %d has %d (keep 1 .. %d)",
                            units, l, c->layers[l].mlp_hidden, c->layers[l].mlp_hidden);
    }
    tw_ist_partition *p = calloc(1, sizeof *p);
    if (p) p->shares = calloc((size_t)c->n_layer, sizeof *p->shares);
    if (!p || !p->shares) {
        free(p);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "extract: out of host memory");
    }
    p->workers = 1;
    p->n_layer = c->n_layer;
    tw_status status = TW_OK;
    for (int l = 0; l < c->n_layer && status == TW_OK; l++) {
        const int H = c->layers[l].heads, M = c->layers[l].mlp_hidden;
        tw_ist_layer_share *s = &p->shares[l];
        double *hs = malloc((size_t)H * sizeof *hs);
        double *us = malloc((size_t)M * sizeof *us);
        int *order = malloc((size_t)(H > M ? H : M) * sizeof *order);
        s->heads = malloc((size_t)heads * sizeof *s->heads);
        s->units = malloc((size_t)units * sizeof *s->units);
        if (!hs || !us || !order || !s->heads || !s->units) {
            status = tw_error(TW_ERR_OUT_OF_MEMORY, "extract: out of host memory");
        } else {
            status = layer_scores(master, l, random, seed, hs, us);
            if (status == TW_OK) {
                top_indices(hs, H, heads, order, s->heads);
                top_indices(us, M, units, order, s->units);
                s->head_count = heads;
                s->unit_count = units;
            }
        }
        free(hs);
        free(us);
        free(order);
    }
    if (status != TW_OK) {
        tw_ist_partition_free(p);
        return status;
    }
    *out = p;
    return TW_OK;
}

tw_status tw_extract_plan(const tw_ist_master *master, int heads, int units,
                          tw_ist_partition **out) {
    return plan(master, heads, units, false, 0, out);
}

tw_status tw_extract_plan_random(const tw_ist_master *master, int heads, int units,
                                 uint64_t seed, tw_ist_partition **out) {
    return plan(master, heads, units, true, seed, out);
}

/* Sum of score[i] over the ascending indices kept[0 .. count), and over all n (same order of
 * addition, so keeping all gives the same double). */
static double kept_share(const double *score, int n, const int *kept, int count) {
    double all = 0.0, part = 0.0;
    for (int i = 0, k = 0; i < n; i++) {
        all += score[i];
        if (k < count && kept[k] == i) {
            part += score[i];
            k++;
        }
    }
    return all > 0.0 && part > 0.0 ? all / part : 1.0;
}

/* TW_EXTRACT_SCALE_MASS: the master's scales times all / kept importance, per layer. */
static tw_status mass_scales(const tw_ist_master *master, const tw_ist_partition *keep,
                             tw_gpt_config *config) {
    for (int l = 0; l < config->n_layer; l++) {
        const int H = master->config.layers[l].heads, M = master->config.layers[l].mlp_hidden;
        double *hs = malloc((size_t)H * sizeof *hs), *us = malloc((size_t)M * sizeof *us);
        tw_status status = hs && us ? tw_extract_importance(master, l, hs, us)
                                    : tw_error(TW_ERR_OUT_OF_MEMORY, "extract: out of host memory");
        if (status == TW_OK) {
            const tw_ist_layer_share *s = tw_ist_share(keep, 0, l);
            config->layers[l].attn_scale = (float)((double)master->config.layers[l].attn_scale *
                                                   kept_share(hs, H, s->heads, s->head_count));
            config->layers[l].mlp_scale = (float)((double)master->config.layers[l].mlp_scale *
                                                  kept_share(us, M, s->units, s->unit_count));
        }
        free(hs);
        free(us);
        TW_TRY(status);
    }
    return TW_OK;
}

tw_status tw_extract_model(const tw_ist_master *master, const tw_ist_partition *keep,
                           tw_extract_scale scale, tw_ist_master **out) {
    if (!master || !keep || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "extract: NULL argument");
    *out = NULL;
    if (keep->workers != 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "extract: the kept set is a partition of %d workers (want 1)",
                        keep->workers);
    tw_gpt_config config;
    TW_TRY(tw_ist_subnet_config(&master->config, keep, 0, &config));
    if (scale == TW_EXTRACT_SCALE_KEEP)
        for (int l = 0; l < config.n_layer; l++) {
            config.layers[l].attn_scale = master->config.layers[l].attn_scale;
            config.layers[l].mlp_scale = master->config.layers[l].mlp_scale;
        }
    else if (scale == TW_EXTRACT_SCALE_MASS)
        TW_TRY(mass_scales(master, keep, &config));
    tw_ist_master *m = NULL;
    TW_TRY(tw_ist_master_create(&config, &m));
    /* IST's extraction writes [params | exp_avg | exp_avg_sq] of the subnet; only the
     * parameters are kept. */
    float *packed = malloc(tw_ist_packed_floats(&config) * sizeof *packed);
    if (!packed) {
        tw_ist_master_free(m);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "extract: out of host memory for %zu parameters",
                        3 * m->param_count);
    }
    tw_status status = tw_ist_extract(master, keep, 0, packed);
    if (status == TW_OK) {
        memcpy(m->params, packed, m->param_count * sizeof *packed);
        *out = m;
    } else {
        tw_ist_master_free(m);
    }
    free(packed);
    return status;
}
