/* IST subnets (twist/ist.h): extraction and merging against the GPT parameter layout.
 *   - every element of every worker's packed subnet comes from the master element the header's
 *     index conventions name (checked with an independent index formula, params and moments);
 *   - partition then merge with no training gives back the master bit for bit, n = 1 .. 5 with
 *     heads held by several workers, equal and weighted;
 *   - one worker holding every head and unit: its config is the master's and its packed buffer
 *     is [params | exp_avg | exp_avg_sq] of the master, exactly;
 *   - a subnet run as a GPT on the CPU gives the logits of the master with the dropped heads'
 *     and units' output rows zeroed and the block scales multiplied by 1/p;
 *   - merging some workers: elements only absent workers held keep their values, an element two
 *     workers held becomes their average;
 *   - the token-weighted merge: each element the weighted mean of its holders' values (checked
 *     with the index formula), the same on 1 and 3 threads, equal tokens = the unweighted merge;
 *   - bad partitions, workers and masters are refused with a message. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/ist.h"

/* Three layers whose heads, MLP widths and block scales all differ. */
static tw_gpt_config irregular_config(void) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(24, 6, 3, 12, 4, &c));
    c.head_dim = 3;
    const int heads[3] = {4, 6, 2}, units[3] = {20, 13, 9};
    const float attn[3] = {1.0f, 0.75f, 1.25f}, mlp[3] = {1.0f, 1.5f, 0.5f};
    for (int l = 0; l < 3; l++) c.layers[l] = (tw_gpt_layer){heads[l], units[l], attn[l], mlp[l]};
    return c;
}

static tw_ist_master *random_master(const tw_gpt_config *c, uint64_t seed) {
    tw_ist_master *m = NULL;
    TW_CHECK_OK(tw_ist_master_create(c, &m));
    if (!m) return NULL;
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    tw_test_fill_uniform(&rng, m->params, m->param_count, -1.0f, 1.0f);
    tw_test_fill_uniform(&rng, m->exp_avg, m->param_count, -0.1f, 0.1f);
    tw_test_fill_uniform(&rng, m->exp_avg_sq, m->param_count, 0.0f, 0.01f);
    m->step = 17;
    return m;
}

static tw_ist_partition *make_partition(const tw_gpt_config *c, int workers, int m,
                                        const double *weights, int round) {
    tw_ist_partition_options o = {workers, m, weights, 2024, round};
    tw_ist_partition *p = NULL;
    TW_CHECK_OK(tw_ist_partition_make(c, &o, &p));
    return p;
}

/* Worker w's packed subnet (3 * its parameter count floats); *count gets its parameter count. */
static float *extract(const tw_ist_master *master, const tw_ist_partition *p, int w,
                      size_t *count) {
    tw_gpt_config sub;
    TW_CHECK_OK(tw_ist_subnet_config(&master->config, p, w, &sub));
    size_t floats = tw_ist_packed_floats(&sub);
    float *packed = malloc(sizeof(float) * (floats ? floats : 1));
    TW_CHECK_OK(tw_ist_extract(master, p, w, packed));
    if (count) *count = floats / 3;
    return packed;
}

/* ------------------------------------------------------------------------------------------ */
/* Independent index formula                                                                  */
/* ------------------------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* For every element of worker w's subnet (in its layout order), the master element it is. */
static size_t *element_map(const tw_ist_master *master, const tw_ist_partition *p, int w,
                           size_t *count) {
    tw_gpt_config sub;
    tw_gpt_tensor *tensors = NULL;
    int tensor_count = 0;
    TW_CHECK_OK(tw_ist_subnet_config(&master->config, p, w, &sub));
    TW_CHECK_OK(tw_gpt_layout(&sub, &tensors, &tensor_count, count, NULL));
    size_t *map = malloc(sizeof(size_t) * (*count ? *count : 1));
    const int D = sub.head_dim;
    for (int t = 0; t < tensor_count; t++) {
        const tw_gpt_tensor *s = &tensors[t], *m = &master->tensors[t];
        TW_CHECK(strcmp(s->name, m->name) == 0, "tensor %d: %s vs %s", t, s->name, m->name);
        int layer = 0;
        sscanf(s->name, "transformer.h.%d.", &layer);
        const tw_ist_layer_share *share = tw_ist_share(p, w, layer);
        const int A_sub = share->head_count * D, A_master = master->config.layers[layer].heads * D;
        /* 1-D tensors are one row of count columns. */
        const size_t rows = s->ndim == 1 ? 1 : (size_t)s->shape[0];
        const size_t cols = s->ndim == 1 ? s->count : (size_t)s->shape[1];
        const size_t master_cols = m->ndim == 1 ? m->count : (size_t)m->shape[1];
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                size_t mr = r, mc = c;
                if (ends_with(s->name, "attn.c_attn.weight") ||
                    ends_with(s->name, "attn.c_attn.bias")) {
                    size_t block = c / (size_t)A_sub, within = c % (size_t)A_sub;
                    mc = block * (size_t)A_master +
                         (size_t)share->heads[within / (size_t)D] * (size_t)D + within % (size_t)D;
                } else if (ends_with(s->name, "attn.c_proj.weight")) {
                    mr = (size_t)share->heads[r / (size_t)D] * (size_t)D + r % (size_t)D;
                } else if (ends_with(s->name, "mlp.c_fc.weight") ||
                           ends_with(s->name, "mlp.c_fc.bias")) {
                    mc = (size_t)share->units[c];
                } else if (ends_with(s->name, "mlp.c_proj.weight")) {
                    mr = (size_t)share->units[r];
                }
                map[s->offset + r * cols + c] = m->offset + mr * master_cols + mc;
            }
    }
    free(tensors);
    return map;
}

/* Every packed element, params and both moments, is the master element the formula names. */
static void extraction_indices(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_master *master = NULL;
    TW_CHECK_OK(tw_ist_master_create(&c, &master));
    if (!master) return;
    TW_CHECK(master->param_count < (1u << 22), "indices must be exact in float");
    for (size_t i = 0; i < master->param_count; i++) {
        master->params[i] = (float)i;
        master->exp_avg[i] = -(float)i;
        master->exp_avg_sq[i] = 0.5f * (float)i;
    }
    const double weights[4] = {1.0, 3.0, 0.5, 2.0};
    for (int mode = 0; mode < 2; mode++) {
        tw_ist_partition *p = make_partition(&c, 4, 2, mode ? weights : NULL, 5);
        for (int w = 0; p && w < 4; w++) {
            size_t count = 0, sub_count = 0, wrong = 0;
            size_t *map = element_map(master, p, w, &count);
            float *packed = extract(master, p, w, &sub_count);
            TW_CHECK(count == sub_count, "worker %d: %zu vs %zu elements", w, count, sub_count);
            for (size_t j = 0; j < count && count == sub_count; j++)
                wrong += packed[j] != (float)map[j] || packed[count + j] != -(float)map[j] ||
                         packed[2 * count + j] != 0.5f * (float)map[j];
            TW_CHECK(wrong == 0, "mode %d worker %d: %zu of %zu elements from the wrong place",
                     mode, w, wrong, count);
            free(map);
            free(packed);
        }
        tw_ist_partition_free(p);
    }
    tw_ist_master_free(master);
}

/* ------------------------------------------------------------------------------------------ */
/* Exact identities                                                                           */
/* ------------------------------------------------------------------------------------------ */

static bool same_floats(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Extract every worker, merge them all back (in reverse order): the master is unchanged. */
static void merge_identity(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_master *master = random_master(&c, 1), *original = random_master(&c, 1);
    if (!master || !original) return;
    const double weights[5] = {2.0, 0.7, 1.0, 1.0, 3.5};
    int checked = 0;
    for (int n = 1; n <= 5; n++)
        for (int mode = 0; mode < 2; mode++) {
            /* m just above ceil(6 / n), so the 6-head layer has heads held twice. */
            const int m = (6 + n - 1) / n + 1;
            tw_ist_partition *p = make_partition(&c, n, m, mode ? weights : NULL, n);
            if (!p) continue;
            float *packed[5] = {NULL};
            for (int w = 0; w < n; w++) packed[w] = extract(master, p, w, NULL);
            tw_ist_merge *merge = NULL;
            TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
            for (int w = n - 1; merge && w >= 0; w--)
                TW_CHECK_OK(tw_ist_merge_add(merge, p, w, packed[w]));
            if (merge) TW_CHECK_OK(tw_ist_merge_finish(merge, master));
            const size_t P = master->param_count;
            TW_CHECK(same_floats(master->params, original->params, P) &&
                         same_floats(master->exp_avg, original->exp_avg, P) &&
                         same_floats(master->exp_avg_sq, original->exp_avg_sq, P) &&
                         master->step == original->step,
                     "n=%d mode %d: partition then merge changed the master", n, mode);
            for (int w = 0; w < n; w++) free(packed[w]);
            tw_ist_partition_free(p);
            checked++;
        }
    TW_CHECK(checked == 10, "only %d of 10 merges ran", checked);
    tw_ist_master_free(master);
    tw_ist_master_free(original);
}

/* One worker with every head and unit is the master itself. */
static void whole_worker(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_master *master = random_master(&c, 2);
    tw_ist_partition *p = make_partition(&c, 1, 6, NULL, 0);
    if (!master || !p) return;
    tw_gpt_config sub;
    TW_CHECK_OK(tw_ist_subnet_config(&c, p, 0, &sub));
    TW_CHECK(sub.vocab_size == c.vocab_size && sub.max_seq_len == c.max_seq_len &&
                 sub.n_layer == c.n_layer && sub.n_embd == c.n_embd &&
                 sub.head_dim == c.head_dim && sub.layernorm_eps == c.layernorm_eps,
             "whole subnet: sizes differ from the master");
    for (int l = 0; l < c.n_layer; l++)
        TW_CHECK(sub.layers[l].heads == c.layers[l].heads &&
                     sub.layers[l].mlp_hidden == c.layers[l].mlp_hidden &&
                     sub.layers[l].attn_scale == c.layers[l].attn_scale &&
                     sub.layers[l].mlp_scale == c.layers[l].mlp_scale,
                 "whole subnet: layer %d differs from the master", l);
    const size_t P = master->param_count;
    TW_CHECK(tw_ist_packed_floats(&sub) == 3 * P, "packed floats %zu, expected %zu",
             tw_ist_packed_floats(&sub), 3 * P);
    float *packed = extract(master, p, 0, NULL);
    TW_CHECK(same_floats(packed, master->params, P) &&
                 same_floats(packed + P, master->exp_avg, P) &&
                 same_floats(packed + 2 * P, master->exp_avg_sq, P),
             "whole subnet: packed buffer is not [params | exp_avg | exp_avg_sq]");
    free(packed);
    tw_ist_partition_free(p);
    tw_ist_master_free(master);
}

/* Subnet scales are the master's times H / heads and M / units. */
static void subnet_scales(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_partition *p = make_partition(&c, 3, 2, NULL, 1);
    for (int w = 0; p && w < 3; w++) {
        tw_gpt_config sub;
        TW_CHECK_OK(tw_ist_subnet_config(&c, p, w, &sub));
        for (int l = 0; l < c.n_layer; l++) {
            const tw_ist_layer_share *s = tw_ist_share(p, w, l);
            const tw_gpt_layer *full = &c.layers[l], *got = &sub.layers[l];
            TW_CHECK(got->heads == s->head_count && got->mlp_hidden == s->unit_count,
                     "worker %d layer %d: sizes", w, l);
            double attn = (double)full->attn_scale * full->heads / s->head_count;
            double mlp = (double)full->mlp_scale * full->mlp_hidden / s->unit_count;
            TW_CHECK(fabs(got->attn_scale - attn) <= 1e-6 * attn &&
                         fabs(got->mlp_scale - mlp) <= 1e-6 * mlp,
                     "worker %d layer %d: scales %g %g, expected %g %g", w, l,
                     (double)got->attn_scale, (double)got->mlp_scale, attn, mlp);
        }
    }
    tw_ist_partition_free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Numerical meaning                                                                          */
/* ------------------------------------------------------------------------------------------ */

enum { LOGIT_BATCH = 2, LOGIT_T = 8 };

/* Runs a model of config with params on the CPU over tokens; logits (B, T, V) into out. */
static void cpu_logits(tw_device *cpu, const tw_gpt_config *c, const float *params,
                       const int32_t *tokens, float *out) {
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_gpt_create(cpu, c, &model));
    if (!model) return;
    TW_CHECK_OK(tw_buffer_upload(tw_gpt_params(model), 0, params,
                                 tw_gpt_param_count(model) * sizeof(float)));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, NULL, LOGIT_BATCH, LOGIT_T));
    for (int b = 0; b < LOGIT_BATCH; b++)
        for (int t = 0; t < LOGIT_T; t++)
            TW_CHECK_OK(tw_gpt_logits_read(model, b, t,
                                           out + ((size_t)b * LOGIT_T + t) * c->vocab_size));
    tw_gpt_destroy(model);
}

/* Zeroes the attn.c_proj rows of heads worker w lacks and the mlp.c_proj rows of its missing
 * units: the master then computes exactly what the subnet computes, up to the 1/p scales. */
static void mask_dropped(const tw_ist_master *master, const tw_ist_partition *p, int w,
                         float *params) {
    const int D = master->config.head_dim, C = master->config.n_embd;
    for (int t = 0; t < master->tensor_count; t++) {
        const tw_gpt_tensor *tensor = &master->tensors[t];
        int layer = 0;
        sscanf(tensor->name, "transformer.h.%d.", &layer);
        const tw_ist_layer_share *s = tw_ist_share(p, w, layer);
        const bool heads = ends_with(tensor->name, "attn.c_proj.weight");
        if (!heads && !ends_with(tensor->name, "mlp.c_proj.weight")) continue;
        const int count = heads ? master->config.layers[layer].heads
                                : master->config.layers[layer].mlp_hidden;
        const int *kept = heads ? s->heads : s->units, kept_count = heads ? s->head_count
                                                                          : s->unit_count;
        const int rows_each = heads ? D : 1;
        for (int i = 0, k = 0; i < count; i++) {
            if (k < kept_count && kept[k] == i) {
                k++;
                continue;
            }
            memset(params + tensor->offset + (size_t)i * rows_each * C, 0,
                   sizeof(float) * (size_t)rows_each * C);
        }
    }
}

/* A subnet built as a GPT from its extracted parameters gives the masked master's logits. */
static void subnet_logits(void) {
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (!cpu) return;
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(32, LOGIT_T, 2, 16, 4, &c));
    c.layers[0] = (tw_gpt_layer){4, 24, 1.0f, 1.0f};
    c.layers[1] = (tw_gpt_layer){6, 40, 0.8f, 1.2f};

    /* GPT-2 initialisation, then every element moved a little so biases and LayerNorms matter. */
    tw_ist_master *master = NULL;
    tw_gpt *init = NULL;
    TW_CHECK_OK(tw_ist_master_create(&c, &master));
    TW_CHECK_OK(tw_gpt_create(cpu, &c, &init));
    if (!master || !init) goto done;
    TW_CHECK_OK(tw_gpt_init_params(init, 8));
    TW_CHECK_OK(tw_buffer_download(tw_gpt_params(init), 0, master->params,
                                   master->param_count * sizeof(float)));
    tw_gpt_destroy(init);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 9);
    for (size_t i = 0; i < master->param_count; i++)
        master->params[i] += tw_test_rng_uniform(&rng, -0.1f, 0.1f);
    int32_t tokens[LOGIT_BATCH * LOGIT_T];
    for (int i = 0; i < LOGIT_BATCH * LOGIT_T; i++) tokens[i] = tw_test_rng_int(&rng, 32);

    const size_t logits = (size_t)LOGIT_BATCH * LOGIT_T * c.vocab_size;
    float *sub_logits = malloc(logits * sizeof(float));
    float *ref_logits = malloc(logits * sizeof(float));
    float *full_logits = malloc(logits * sizeof(float));
    float *masked = malloc(master->param_count * sizeof(float));
    cpu_logits(cpu, &c, master->params, tokens, full_logits);
    tw_ist_partition *p = make_partition(&c, 3, 2, NULL, 4);
    for (int w = 0; p && w < 3; w++) {
        tw_gpt_config sub, scaled = c;
        TW_CHECK_OK(tw_ist_subnet_config(&c, p, w, &sub));
        float *packed = extract(master, p, w, NULL);
        cpu_logits(cpu, &sub, packed, tokens, sub_logits);
        free(packed);

        memcpy(masked, master->params, master->param_count * sizeof(float));
        mask_dropped(master, p, w, masked);
        for (int l = 0; l < c.n_layer; l++) {
            const tw_ist_layer_share *s = tw_ist_share(p, w, l);
            scaled.layers[l].attn_scale = c.layers[l].attn_scale * (float)c.layers[l].heads /
                                          (float)s->head_count;
            scaled.layers[l].mlp_scale = c.layers[l].mlp_scale * (float)c.layers[l].mlp_hidden /
                                         (float)s->unit_count;
        }
        cpu_logits(cpu, &scaled, masked, tokens, ref_logits);
        double worst = 0.0, moved = 0.0;
        for (size_t i = 0; i < logits; i++) {
            double err = fabs((double)sub_logits[i] - ref_logits[i]) /
                         fmax(1.0, fabs((double)ref_logits[i]));
            worst = fmax(worst, err);
            moved = fmax(moved, fabs((double)sub_logits[i] - full_logits[i]));
        }
        printf("subnet logits, worker %d: max relative error %.2e against the masked master "
               "(%.3f from the full model's)\n",
               w, worst, moved);
        TW_CHECK(worst <= 1e-5, "worker %d: subnet logits differ from the masked master by %.2e",
                 w, worst);
        TW_CHECK(moved > 1e-2, "worker %d: the subnet's logits hardly differ from the full "
                 "model's (%.2e): the test proves nothing", w, moved);
    }
    tw_ist_partition_free(p);
    free(sub_logits);
    free(ref_logits);
    free(full_logits);
    free(masked);
done:
    tw_ist_master_free(master);
    tw_device_close(cpu);
}

/* ------------------------------------------------------------------------------------------ */
/* Partial merges                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Workers 0 and 1 return their slices moved by +1 and +3; worker 2 is never added. */
static void partial_merge(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_master *master = random_master(&c, 3), *original = random_master(&c, 3);
    tw_ist_partition *p = make_partition(&c, 3, 3, NULL, 9);
    if (!master || !original || !p) return;
    const size_t P = master->param_count;
    unsigned char *holders = calloc(P, 1); /* bit w: worker w holds the element */
    float *packed[2];
    size_t counts[2];
    for (int w = 0; w < 3; w++) {
        size_t count = 0;
        size_t *map = element_map(master, p, w, &count);
        for (size_t j = 0; j < count; j++) holders[map[j]] |= (unsigned char)(1u << w);
        free(map);
    }
    const float shift[2] = {1.0f, 3.0f};
    for (int w = 0; w < 2; w++) {
        packed[w] = extract(master, p, w, &counts[w]);
        for (size_t j = 0; j < 3 * counts[w]; j++) packed[w][j] += shift[w];
    }
    tw_ist_merge *merge = NULL;
    TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
    TW_CHECK_OK(tw_ist_merge_add(merge, p, 1, packed[1]));
    TW_CHECK_OK(tw_ist_merge_add(merge, p, 0, packed[0]));
    TW_CHECK_OK(tw_ist_merge_finish(merge, master));

    size_t seen[4] = {0}, wrong = 0;
    const float *before[3] = {original->params, original->exp_avg, original->exp_avg_sq};
    const float *after[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    for (size_t i = 0; i < P; i++) {
        const int held = holders[i] & 3;
        seen[held]++;
        for (int part = 0; part < 3; part++) {
            const float a = before[part][i] + shift[0], b = before[part][i] + shift[1];
            const float expected = held == 0   ? before[part][i]
                                   : held == 1 ? a
                                   : held == 2 ? b
                                               : (float)(((double)a + (double)b) / 2.0);
            wrong += after[part][i] != expected;
        }
    }
    printf("partial merge: %zu elements held by neither added worker, %zu by worker 0 only, %zu "
           "by worker 1 only, %zu by both\n",
           seen[0], seen[1], seen[2], seen[3]);
    TW_CHECK(wrong == 0, "partial merge: %zu elements wrong", wrong);
    TW_CHECK(seen[0] > 0 && seen[1] > 0 && seen[2] > 0 && seen[3] > 0,
             "partial merge: a case was never exercised");
    free(holders);
    free(packed[0]);
    free(packed[1]);
    tw_ist_partition_free(p);
    tw_ist_master_free(master);
    tw_ist_master_free(original);
}

/* ------------------------------------------------------------------------------------------ */
/* Token-weighted merge                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Merges workers 0..2 of p (packed[w]) with the given tokens (0: tw_ist_merge_add) on `threads`
 * threads into a copy of `from`. */
static tw_ist_master *merged(const tw_ist_master *from, const tw_ist_partition *p,
                             float *const *packed, const uint64_t *tokens, int threads) {
    tw_ist_master *m = NULL;
    TW_CHECK_OK(tw_ist_master_create(&from->config, &m));
    if (!m) return NULL;
    const size_t bytes = from->param_count * sizeof(float);
    memcpy(m->params, from->params, bytes);
    memcpy(m->exp_avg, from->exp_avg, bytes);
    memcpy(m->exp_avg_sq, from->exp_avg_sq, bytes);
    tw_ist_merge *merge = NULL;
    TW_CHECK_OK(tw_ist_merge_begin(m, &merge));
    tw_ist_merge_set_threads(merge, threads);
    for (int w = 0; merge && w < 3; w++)
        TW_CHECK_OK(tokens ? tw_ist_merge_add_weighted(merge, p, w, packed[w], tokens[w])
                           : tw_ist_merge_add(merge, p, w, packed[w]));
    if (merge) TW_CHECK_OK(tw_ist_merge_finish(merge, m));
    return m;
}

static bool same_master(const tw_ist_master *a, const tw_ist_master *b) {
    if (!a || !b) return false;
    const size_t P = a->param_count;
    return same_floats(a->params, b->params, P) &&
           same_floats(a->exp_avg, b->exp_avg, P) && same_floats(a->exp_avg_sq, b->exp_avg_sq, P);
}

/* Three workers with different token counts on a model of many merge chunks (4096 elements):
 * every element is sum_w(t_w x_w) / sum_w(t_w) over its holders, computed here from the
 * independent index formula (double, in add order, weights t_w / gcd = 5, 2, 3); the result does
 * not depend on the thread count; equal tokens give the unweighted merge bit for bit; 0 tokens
 * are refused. */
static void weighted_merge(void) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(300, 16, 2, 48, 4, &c));
    tw_ist_master *master = random_master(&c, 11);
    tw_ist_partition *p = make_partition(&c, 3, 2, NULL, 4);
    if (!master || !p) return;
    const size_t P = master->param_count;
    TW_CHECK(P > 8 * 4096, "the model must span several merge chunks (%zu parameters)", P);
    float *packed[3];
    size_t *maps[3], counts[3];
    for (int w = 0; w < 3; w++) {
        packed[w] = extract(master, p, w, &counts[w]);
        maps[w] = element_map(master, p, w, &counts[w]);
        /* distinct values per worker: the master's plus a worker-dependent shift */
        for (size_t j = 0; j < 3 * counts[w]; j++) packed[w][j] += 0.25f * (float)(w + 1);
    }
    const uint64_t tokens[3] = {5 * 4096, 2 * 4096, 3 * 4096}, weight[3] = {5, 2, 3};

    double *sums = calloc(3 * P, sizeof(double)), *total = calloc(P, sizeof(double));
    unsigned char *held = calloc(P, 1);
    for (int w = 0; w < 3; w++)
        for (size_t j = 0; j < counts[w]; j++) {
            const size_t i = maps[w][j];
            for (int part = 0; part < 3; part++)
                sums[(size_t)part * P + i] += (double)weight[w] * packed[w][part * counts[w] + j];
            total[i] += (double)weight[w];
            held[i]++;
        }
    const float *before[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    size_t by_holders[4] = {0};
    for (int threads = 1; threads <= 3; threads += 2) {
        tw_ist_master *m = merged(master, p, packed, tokens, threads);
        if (!m) break;
        const float *after[3] = {m->params, m->exp_avg, m->exp_avg_sq};
        size_t wrong = 0;
        for (size_t i = 0; i < P; i++) {
            if (threads == 1) by_holders[held[i]]++;
            for (int part = 0; part < 3; part++) {
                const float expected = held[i] ? (float)(sums[(size_t)part * P + i] / total[i])
                                               : before[part][i];
                wrong += after[part][i] != expected;
            }
        }
        TW_CHECK(wrong == 0, "weighted merge on %d threads: %zu of %zu values are not the "
                 "token-weighted mean", threads, wrong, 3 * P);
        tw_ist_master_free(m);
    }
    printf("weighted merge: %zu elements held by no worker, %zu by one, %zu by two, %zu by "
           "three\n", by_holders[0], by_holders[1], by_holders[2], by_holders[3]);
    TW_CHECK(by_holders[1] > 0 && by_holders[2] > 0 && by_holders[3] > 0,
             "weighted merge: a case was never exercised");

    /* Equal tokens: the unweighted merge, bit for bit (at any thread count). */
    const uint64_t equal[3] = {81920, 81920, 81920};
    tw_ist_master *plain = merged(master, p, packed, NULL, 1);
    tw_ist_master *weighted = merged(master, p, packed, equal, 3);
    TW_CHECK(same_master(plain, weighted), "equal tokens differ from the unweighted merge");
    tw_ist_master_free(plain);
    tw_ist_master_free(weighted);

    tw_ist_merge *merge = NULL;
    TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
    TW_CHECK_ERROR(tw_ist_merge_add_weighted(merge, p, 0, packed[0], 0), TW_ERR_INVALID_ARGUMENT,
                   "0 tokens");
    tw_ist_merge_abort(merge);
    for (int w = 0; w < 3; w++) {
        free(packed[w]);
        free(maps[w]);
    }
    free(sums);
    free(total);
    free(held);
    tw_ist_partition_free(p);
    tw_ist_master_free(master);
}

/* ------------------------------------------------------------------------------------------ */
/* Bad arguments                                                                              */
/* ------------------------------------------------------------------------------------------ */

static void bad_arguments(void) {
    tw_gpt_config c = irregular_config();
    tw_ist_master *master = random_master(&c, 4);
    tw_ist_partition *p = make_partition(&c, 3, 2, NULL, 0);
    if (!master || !p) return;
    float *packed = extract(master, p, 0, NULL);
    tw_gpt_config sub;
    TW_CHECK_ERROR(tw_ist_subnet_config(&c, p, 3, &sub), TW_ERR_INVALID_ARGUMENT, "worker 3");
    TW_CHECK_ERROR(tw_ist_extract(master, p, -1, packed), TW_ERR_INVALID_ARGUMENT, "worker -1");

    tw_ist_merge *merge = NULL;
    TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
    TW_CHECK_OK(tw_ist_merge_add(merge, p, 0, packed));
    TW_CHECK_ERROR(tw_ist_merge_add(merge, p, 0, packed), TW_ERR_INVALID_ARGUMENT,
                   "already added");
    TW_CHECK_ERROR(tw_ist_merge_add(merge, p, 7, packed), TW_ERR_INVALID_ARGUMENT, "worker 7");

    /* A partition of another model (2 layers) does not fit this one. */
    tw_gpt_config two = c;
    two.n_layer = 2;
    tw_ist_partition *other = make_partition(&two, 3, 2, NULL, 0);
    TW_CHECK_ERROR(tw_ist_merge_add(merge, other, 1, packed), TW_ERR_INVALID_ARGUMENT,
                   "2 layers");
    TW_CHECK_ERROR(tw_ist_extract(master, other, 1, packed), TW_ERR_INVALID_ARGUMENT, "2 layers");
    tw_ist_partition_free(other);

    /* A hand-made share out of order or out of range. */
    tw_ist_layer_share *s = &p->shares[1 * p->n_layer + 1];
    int saved = s->heads[0];
    s->heads[0] = s->heads[1];
    TW_CHECK_ERROR(tw_ist_extract(master, p, 1, packed), TW_ERR_INVALID_ARGUMENT, "ascending");
    s->heads[0] = saved;
    saved = s->units[s->unit_count - 1];
    s->units[s->unit_count - 1] = c.layers[1].mlp_hidden;
    TW_CHECK_ERROR(tw_ist_merge_add(merge, p, 1, packed), TW_ERR_INVALID_ARGUMENT,
                   "MLP units of layer 1");
    s->units[s->unit_count - 1] = saved;

    /* Finishing into a master of another size fails (and still frees the merge). */
    tw_ist_master *small = NULL;
    TW_CHECK_OK(tw_ist_master_create(&two, &small));
    TW_CHECK_ERROR(tw_ist_merge_finish(merge, small), TW_ERR_INVALID_ARGUMENT, "parameters");
    tw_ist_master_free(small);

    TW_CHECK_OK(tw_ist_merge_begin(master, &merge));
    tw_ist_merge_abort(merge);
    tw_ist_merge_abort(NULL);
    tw_ist_master_free(NULL);
    TW_CHECK(tw_ist_packed_floats(NULL) == 0, "packed floats of NULL");
    tw_gpt_config broken = c;
    broken.layers[0].heads = 0;
    TW_CHECK_ERROR(tw_ist_master_create(&broken, &small), TW_ERR_INVALID_ARGUMENT, "layer 0");
    TW_CHECK(small == NULL, "a refused master leaves *out NULL");
    free(packed);
    tw_ist_partition_free(p);
    tw_ist_master_free(master);
}

int main(void) {
    extraction_indices();
    merge_identity();
    whole_worker();
    subnet_scales();
    subnet_logits();
    partial_merge();
    weighted_merge();
    bad_arguments();
    return tw_test_finish("ist_subnet");
}
