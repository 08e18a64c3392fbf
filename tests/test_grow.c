/* Growth operators (twist/grow.h), run on the device given by --device (cpu, opencl:0,
 * vulkan:0, ...; a device this machine lacks skips):
 *   - depth, stack and interleave with identity copies: logits equal the source's; without
 *     identity, every grown layer's tensors are the source layer's, bit for bit;
 *   - combine: n = 3 copies of one model give its logits; two models that differ in their
 *     output projections give the logits of the one with the averaged projections (each block
 *     output is the average of the sources'); two different models: extracting
 *     worker i of the block partition (IST) from the grown model gives back source i's per-head
 *     and per-unit tensors bit for bit, shared tensors are the sources' average;
 *   - double: logits equal the source's; gradients of copied entries are half the source's
 *     (ln_f: equal), which is what the carried AdamW state (m / 2, v / 4) assumes; one AdamW
 *     step (clipping off) from the carried state moves every copied entry as the source's step
 *     moves its original, ln_f by the source's whole step, and the off-diagonal zeros off 0;
 *   - widen (Net2Net): 12 -> 24 with more heads and units, with and without noise: logits
 *     equal; 12 -> 20: the first LayerNorm's statistics within grow.h's bound, and the logit
 *     change within the bound stated below (and not exact, so the case means something);
 *   - concat: 3 copies give the source's logits; two different models sit side by side
 *     exactly at the embedding, and the logits' distance to the sources' average is reported;
 *   - bad inputs are refused with a message naming the field.
 * Tolerances are float rounding: |grown - source| <= 2e-5 * (1 + max |source|). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/grow.h"
#include "twist/optim.h"

enum { B = 2, T = 6, V = 24 };

static tw_device *device;

/* Two layers whose heads, MLP widths and block scales differ. */
static tw_gpt_config irregular_config(void) {
    tw_gpt_config c;
    TW_CHECK_OK(tw_gpt_config_uniform(V, T, 2, 12, 4, &c));
    c.head_dim = 3;
    c.layers[0] = (tw_gpt_layer){4, 20, 1.0f, 0.75f};
    c.layers[1] = (tw_gpt_layer){2, 9, 1.25f, 1.0f};
    return c;
}

static tw_ist_master *random_master(const tw_gpt_config *c, uint64_t seed) {
    tw_ist_master *m = NULL;
    TW_CHECK_OK(tw_ist_master_create(c, &m));
    if (!m) exit(1);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    tw_test_fill_uniform(&rng, m->params, m->param_count, -0.4f, 0.4f);
    /* LayerNorm weights near 1, so the model is not degenerate. */
    for (int t = 0; t < m->tensor_count; t++)
        if (strstr(m->tensors[t].name, "ln_") && strstr(m->tensors[t].name, ".weight"))
            for (size_t e = 0; e < m->tensors[t].count; e++) m->params[m->tensors[t].offset + e] += 1.0f;
    tw_test_fill_uniform(&rng, m->exp_avg, m->param_count, -0.1f, 0.1f);
    tw_test_fill_uniform(&rng, m->exp_avg_sq, m->param_count, 0.0f, 0.01f);
    m->step = 9;
    return m;
}

static void tokens_of(int32_t *tokens, int32_t *targets, uint64_t seed) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = tw_test_rng_int(&rng, V);
        targets[i] = tw_test_rng_int(&rng, V);
    }
}

/* The master as a model on the device, forward (and backward when grads != NULL) on fixed
 * tokens: logits (B * T * V) into a new array, gradients (param_count) into *grads. */
static float *run(const tw_ist_master *m, float **grads) {
    tw_gpt *model = NULL;
    int32_t tokens[B * T], targets[B * T];
    tokens_of(tokens, targets, 5);
    float *logits = calloc((size_t)B * T * V, sizeof(float));
    TW_CHECK_OK(tw_gpt_create(device, &m->config, &model));
    if (!model || !logits) exit(1);
    TW_CHECK_OK(tw_buffer_upload(tw_gpt_params(model), 0, m->params, m->param_count * 4));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) TW_CHECK_OK(tw_gpt_logits_read(model, b, t, logits + (b * T + t) * V));
    if (grads) {
        *grads = malloc(m->param_count * sizeof(float));
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
        TW_CHECK_OK(tw_buffer_download(tw_gpt_grads(model), 0, *grads, m->param_count * 4));
    }
    tw_gpt_destroy(model);
    return logits;
}

static void check_close(const char *what, const float *got, const float *want, size_t n) {
    double top = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) top = fmax(top, fabs(want[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    printf("  %-44s max |diff| %.3g (max |value| %.3g)\n", what, worst, top);
    TW_CHECK(worst <= 2e-5 * (1.0 + top), "%s: max |diff| %g exceeds %g", what, worst,
             2e-5 * (1.0 + top));
}

static void check_logits(const char *what, const tw_ist_master *grown, const float *want) {
    float *got = run(grown, NULL);
    check_close(what, got, want, (size_t)B * T * V);
    free(got);
}

static const tw_gpt_tensor *find(const tw_ist_master *m, const char *name) {
    for (int i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static void test_depth(const tw_ist_master *src, const float *want) {
    const tw_grow_depth_mode modes[2] = {TW_GROW_STACK, TW_GROW_INTERLEAVE};
    for (int mode = 0; mode < 2; mode++) {
        tw_ist_master *g = NULL;
        tw_grow_depth_options o = {3, modes[mode], true};
        TW_CHECK_OK(tw_grow_depth(src, &o, &g));
        if (!g) continue;
        TW_CHECK(g->config.n_layer == 6, "depth: %d layers", g->config.n_layer);
        check_logits(mode ? "depth interleave x3, identity: logits" : "depth stack x3, identity: logits",
                     g, want);
        tw_ist_master_free(g);
        /* Plain copies: layer i is source layer i % 2 (stack) or i / 3 (interleave). */
        o.identity = false;
        TW_CHECK_OK(tw_grow_depth(src, &o, &g));
        if (!g) continue;
        for (int t = 0; t < g->tensor_count; t++) {
            const tw_gpt_tensor *d = &g->tensors[t];
            int l = -1, at = 0;
            char name[96];
            if (sscanf(d->name, "transformer.h.%d.%n", &l, &at) == 1 && at > 0)
                snprintf(name, sizeof name, "transformer.h.%d.%s", mode ? l / 3 : l % 2, d->name + at);
            else
                snprintf(name, sizeof name, "%s", d->name);
            const tw_gpt_tensor *s = find(src, name);
            TW_CHECK(s && s->count == d->count &&
                         memcmp(src->params + s->offset, g->params + d->offset, d->count * 4) == 0,
                     "depth: %s is not a copy of %s", d->name, name);
        }
        TW_CHECK(g->step == 0, "depth: optimizer step %d, expected reset to 0", g->step);
        tw_ist_master_free(g);
    }
}

static void test_combine(const tw_ist_master *src, const float *want) {
    const tw_ist_master *copies[3] = {src, src, src};
    tw_ist_master *g = NULL;
    TW_CHECK_OK(tw_grow_combine(copies, 3, &g));
    if (!g) return;
    TW_CHECK(g->config.layers[0].heads == 12 && g->config.layers[1].mlp_hidden == 27,
             "combine: heads %d units %d", g->config.layers[0].heads, g->config.layers[1].mlp_hidden);
    check_logits("combine 3 copies: logits", g, want);
    tw_ist_master_free(g);

    /* Block outputs are averaged: B = the source with other output projections (c_proj weights
     * and biases of both blocks), so each grown block computes (o W_A + o W_B) / 2 + mean bias,
     * which is the source with the averaged projections (C). */
    {
        tw_ist_master *b = random_master(&src->config, 5), *avg = random_master(&src->config, 5);
        memcpy(b->params, src->params, src->param_count * 4);
        memcpy(avg->params, src->params, src->param_count * 4);
        tw_test_rng rng;
        tw_test_rng_seed(&rng, 8);
        for (int t = 0; t < src->tensor_count; t++) {
            const tw_gpt_tensor *d = &src->tensors[t];
            if (!strstr(d->name, "c_proj")) continue;
            tw_test_fill_uniform(&rng, b->params + d->offset, d->count, -0.4f, 0.4f);
            for (size_t e = 0; e < d->count; e++)
                avg->params[d->offset + e] =
                    (float)(((double)src->params[d->offset + e] + b->params[d->offset + e]) / 2.0);
        }
        const tw_ist_master *ab[2] = {src, b};
        TW_CHECK_OK(tw_grow_combine(ab, 2, &g));
        float *average = run(avg, NULL);
        if (g) check_logits("combine: block outputs averaged", g, average);
        free(average);
        tw_ist_master_free(g);
        tw_ist_master_free(b);
        tw_ist_master_free(avg);
    }

    /* Two different models (same sizes here; sizes may differ per source): the inverse of IST. */
    tw_gpt_config c2 = src->config;
    c2.layers[0].heads = 2;
    c2.layers[1].mlp_hidden = 5;
    tw_ist_master *other = random_master(&c2, 77);
    const tw_ist_master *two[2] = {src, other};
    TW_CHECK_OK(tw_grow_combine(two, 2, &g));
    if (!g) {
        tw_ist_master_free(other);
        return;
    }
    for (int i = 0; i < 2; i++) {
        const tw_ist_master *s = two[i];
        /* Block partition: worker i holds block i. */
        tw_ist_layer_share shares[4];
        int ids[2][2][64];
        tw_ist_partition p = {2, 2, shares};
        for (int w = 0; w < 2; w++)
            for (int l = 0; l < 2; l++) {
                int h0 = w ? src->config.layers[l].heads : 0, u0 = w ? src->config.layers[l].mlp_hidden : 0;
                tw_ist_layer_share *sh = &shares[w * 2 + l];
                sh->head_count = two[w]->config.layers[l].heads;
                sh->unit_count = two[w]->config.layers[l].mlp_hidden;
                sh->heads = ids[w][l];
                sh->units = ids[w][l] + 32;
                for (int h = 0; h < sh->head_count; h++) sh->heads[h] = h0 + h;
                for (int u = 0; u < sh->unit_count; u++) sh->units[u] = u0 + u;
            }
        tw_gpt_config sub;
        TW_CHECK_OK(tw_ist_subnet_config(&g->config, &p, i, &sub));
        float *packed = malloc(tw_ist_packed_floats(&sub) * sizeof(float));
        TW_CHECK_OK(tw_ist_extract(g, &p, i, packed));
        tw_gpt_tensor *tensors = NULL;
        int count = 0;
        size_t params = 0;
        TW_CHECK_OK(tw_gpt_layout(&sub, &tensors, &count, &params, NULL));
        int checked = 0;
        for (int t = 0; t < count; t++) {
            const tw_gpt_tensor *st = find(s, tensors[t].name), *ot = find(two[1 - i], tensors[t].name);
            int l = 0;
            sscanf(tensors[t].name, "transformer.h.%d.", &l);
            bool shared = !strstr(tensors[t].name, "c_attn") && !strstr(tensors[t].name, "c_fc") &&
                          !strstr(tensors[t].name, "c_proj.weight");
            float fold = strstr(tensors[t].name, "attn.c_proj.weight") ? s->config.layers[l].attn_scale
                       : strstr(tensors[t].name, "mlp.c_proj.weight")  ? s->config.layers[l].mlp_scale
                                                                       : 1.0f;
            for (size_t e = 0; e < tensors[t].count; e++) {
                float got = packed[tensors[t].offset + e];
                float want_e = shared ? (float)(((double)s->params[st->offset + e] +
                                                 (double)two[1 - i]->params[ot->offset + e]) / 2.0)
                                      : s->params[st->offset + e] * fold;
                if (got != want_e && checked < 5) {
                    checked++;
                    TW_CHECK(false, "combine: source %d %s[%zu] = %g, expected %g", i,
                             tensors[t].name, e, got, want_e);
                }
            }
        }
        TW_CHECK(checked == 0, "combine: source %d is not block %d of the grown model", i, i);
        free(tensors);
        free(packed);
    }
    TW_CHECK(g->config.layers[1].attn_scale == 0.5f, "combine: block scale %g, expected 1/2",
             (double)g->config.layers[1].attn_scale);
    printf("  combine 2 different models: blocks are the sources (IST extract), shared averaged\n");
    tw_ist_master_free(g);
    tw_ist_master_free(other);
}

/* One AdamW step (clipping off, weight decay on) of the master on the device, from its own
 * moments and step count, on the fixed tokens: the parameters after it (param_count floats). */
static float *adamw_step(const tw_ist_master *m) {
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    adam.grad_clip = 0.0f; /* the global norm is not preserved by growth: see grow.h */
    int32_t tokens[B * T], targets[B * T];
    tokens_of(tokens, targets, 5);
    const size_t bytes = m->param_count * 4;
    float *after = malloc(bytes);
    TW_CHECK_OK(tw_gpt_create(device, &m->config, &model));
    if (!model || !after) exit(1);
    TW_CHECK_OK(tw_buffer_upload(tw_gpt_params(model), 0, m->params, bytes));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    if (!opt) exit(1);
    TW_CHECK_OK(tw_buffer_upload(tw_adamw_first_moment(opt), 0, m->exp_avg, bytes));
    TW_CHECK_OK(tw_buffer_upload(tw_adamw_second_moment(opt), 0, m->exp_avg_sq, bytes));
    tw_adamw_set_steps(opt, m->step);
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
    TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
    TW_CHECK_OK(tw_adamw_update(opt, 1e-2f, NULL));
    TW_CHECK_OK(tw_buffer_download(tw_gpt_params(model), 0, after, bytes));
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    return after;
}

/* The next AdamW step from double's carried state: on every copied entry it is the source's
 * step (the grown model after one step = the doubling of the source after one step), ln_f
 * (stored halved) moves by the source's full step, and the off-diagonal entries leave 0. */
static void test_double_step(const tw_ist_master *src, const tw_ist_master *g,
                             const tw_ist_master *ones_doubled) {
    float *small_after = adamw_step(src), *grown_after = adamw_step(g);
    tw_ist_master *moved = random_master(&src->config, 1), *moved_doubled = NULL;
    memcpy(moved->params, small_after, src->param_count * 4);
    TW_CHECK_OK(tw_grow_double(moved, &moved_doubled));
    const tw_gpt_tensor *f = find(g, "transformer.ln_f.weight"), *sf = find(src, f->name);
    size_t n = 0, off = 0;
    float *a = calloc(g->param_count, 4), *b = calloc(g->param_count, 4);
    for (int t = 0; moved_doubled && t < g->tensor_count; t++) {
        const tw_gpt_tensor *d = &g->tensors[t];
        if (strncmp(d->name, "transformer.ln_f.", 17) == 0) continue;
        for (size_t e = 0; e < d->count; e++) {
            if (ones_doubled->params[d->offset + e] == 0.0f) {
                off += grown_after[d->offset + e] != 0.0f;
                continue;
            }
            a[n] = grown_after[d->offset + e];
            b[n++] = moved_doubled->params[d->offset + e];
        }
    }
    check_close("double: next AdamW step of copies = source's", a, b, n);
    TW_CHECK(off > 0, "double: the off-diagonal entries did not move");
    /* ln_f: halved value + the source's whole step. */
    n = 0;
    for (int c = 0; c < 2; c++)
        for (int e = 0; e < 12; e++) {
            size_t se = sf->offset + (size_t)e;
            a[n] = grown_after[f->offset + (size_t)(c * 12 + e)];
            b[n++] = 0.5f * src->params[se] + (small_after[se] - src->params[se]);
        }
    check_close("double: ln_f steps by the source's full step", a, b, n);
    free(a);
    free(b);
    free(small_after);
    free(grown_after);
    tw_ist_master_free(moved);
    tw_ist_master_free(moved_doubled);
}

static void test_double(const tw_ist_master *src) {
    tw_ist_master *g = NULL;
    TW_CHECK_OK(tw_grow_double(src, &g));
    if (!g) return;
    TW_CHECK(g->config.n_embd == 24 && g->config.layers[0].heads == 8 && g->step == src->step,
             "double: n_embd %d heads %d step %d", g->config.n_embd, g->config.layers[0].heads, g->step);
    float *grads = NULL, *ggrads = NULL;
    float *want = run(src, &grads);
    float *got = run(g, &ggrads);
    check_close("double: logits", got, want, (size_t)B * T * V);
    /* Expected gradients: the doubling of the source's gradient (as a master) gives, on copied
     * entries, g (ln_f: g / 2); the grown gradient must be half of it (ln_f: g itself). Marker:
     * doubling an all-ones master shows which entries are copies (non-zero). */
    tw_ist_master *gm = random_master(&src->config, 1), *ones = random_master(&src->config, 1);
    memcpy(gm->params, grads, src->param_count * 4);
    for (size_t e = 0; e < src->param_count; e++) ones->params[e] = 1.0f;
    tw_ist_master *gd = NULL, *od = NULL;
    TW_CHECK_OK(tw_grow_double(gm, &gd));
    TW_CHECK_OK(tw_grow_double(ones, &od));
    size_t n = 0;
    float *a = calloc(g->param_count, 4), *b = calloc(g->param_count, 4);
    for (int t = 0; gd && od && t < g->tensor_count; t++) {
        const tw_gpt_tensor *d = &g->tensors[t];
        bool ln_f = strncmp(d->name, "transformer.ln_f.", 17) == 0;
        for (size_t e = 0; e < d->count; e++) {
            if (od->params[d->offset + e] == 0.0f) continue; /* an off-diagonal new entry */
            a[n] = ggrads[d->offset + e];
            b[n++] = gd->params[d->offset + e] * (ln_f ? 2.0f : 0.5f);
        }
    }
    check_close("double: gradients of copies = source / 2", a, b, n);
    /* The carried moments: m / 2 and v / 4 on copies, ln_f unchanged. */
    const tw_gpt_tensor *w = find(g, "transformer.h.1.mlp.c_fc.weight"), *sw = find(src, w->name);
    const tw_gpt_tensor *f = find(g, "transformer.ln_f.weight"), *sf = find(src, f->name);
    TW_CHECK(g->exp_avg[w->offset] == src->exp_avg[sw->offset] * 0.5f &&
                 g->exp_avg_sq[w->offset] == src->exp_avg_sq[sw->offset] * 0.25f &&
                 g->exp_avg[f->offset + 12] == src->exp_avg[sf->offset] &&
                 g->params[f->offset + 12] == src->params[sf->offset] * 0.5f,
             "double: moments or ln_f not transformed as documented");
    if (od) test_double_step(src, g, od);
    free(a);
    free(b);
    free(want);
    free(got);
    free(grads);
    free(ggrads);
    tw_ist_master_free(gm);
    tw_ist_master_free(ones);
    tw_ist_master_free(gd);
    tw_ist_master_free(od);
    tw_ist_master_free(g);
}

/* Embedding row of token v at position t: (C) = wte[v] + wpe[t]. */
static void embed(const tw_ist_master *m, int v, int t, double *x) {
    const tw_gpt_tensor *wte = find(m, "transformer.wte.weight"), *wpe = find(m, "transformer.wpe.weight");
    const int C = m->config.n_embd;
    for (int c = 0; c < C; c++)
        x[c] = (double)m->params[wte->offset + (size_t)v * C + c] +
               m->params[wpe->offset + (size_t)t * C + c];
}

static void test_widen(const tw_ist_master *src, const float *want) {
    /* C0 = 12 divides C1 = 24; heads 4, 2 -> 6; units 20, 9 -> 25: exact, with and without noise. */
    const double noises[2] = {0.0, 0.1};
    for (int i = 0; i < 2; i++) {
        tw_grow_widen_options o = {24, 6, 25, noises[i], 7};
        tw_ist_master *g = NULL;
        TW_CHECK_OK(tw_grow_widen(src, &o, &g));
        if (!g) continue;
        TW_CHECK(g->config.n_embd == 24 && g->config.layers[1].heads == 6 &&
                     g->config.layers[0].mlp_hidden == 25, "widen: sizes");
        check_logits(i ? "widen 12->24, heads, units, noise 0.1: logits"
                       : "widen 12->24, heads, units: logits", g, want);
        if (i) { /* the noise really changed the copies apart */
            const tw_gpt_tensor *w = find(g, "transformer.h.0.mlp.c_proj.weight");
            const size_t C1 = 24;
            TW_CHECK(g->params[w->offset + 0 * C1] != g->params[w->offset + 20 * C1],
                     "widen: noise left unit 20 equal to unit 0's split row");
        }
        tw_ist_master_free(g);
    }
    /* C1 = 20: approximate. The bound of grow.h on the first LayerNorm's statistics, checked on
     * every (token, position) input, then the logit change measured against its stated bound. */
    tw_grow_widen_options o = {20, 0, 0, 0.0, 7};
    tw_ist_master *g = NULL;
    TW_CHECK_OK(tw_grow_widen(src, &o, &g));
    if (!g) return;
    const double delta = 12.0 / 20.0;
    double worst_mean = 0.0, worst_sq = 0.0;
    for (int v = 0; v < V; v++)
        for (int t = 0; t < T; t++) {
            double x[12], y[20], mean = 0, mean_abs = 0, sq = 0, mean1 = 0, sq1 = 0;
            embed(src, v, t, x);
            embed(g, v, t, y);
            for (int c = 0; c < 12; c++) mean += x[c] / 12, mean_abs += fabs(x[c]) / 12, sq += x[c] * x[c] / 12;
            for (int c = 0; c < 20; c++) mean1 += y[c] / 20, sq1 += y[c] * y[c] / 20;
            worst_mean = fmax(worst_mean, fabs(mean1 - mean) / (delta * mean_abs));
            worst_sq = fmax(worst_sq, fabs(sq1 - sq) / (delta * sq));
        }
    printf("  widen 12->20: LayerNorm statistics use %.2f and %.2f of their bound\n", worst_mean, worst_sq);
    TW_CHECK(worst_mean <= 1.0 && worst_sq <= 1.0, "widen: LayerNorm statistics exceed the bound");
    float *got = run(g, NULL);
    double top = 0.0, worst = 0.0, spread = 0.0;
    for (size_t e = 0; e < (size_t)B * T * V; e++) {
        top = fmax(top, fabs(want[e]));
        worst = fmax(worst, fabs((double)got[e] - want[e]));
        spread += (double)want[e] * want[e] / (B * T * V);
    }
    /* Stated bound (measured, not a theorem): the logits move by less than delta times their
     * RMS; exact widening moves them by ~1e-7 of it. */
    printf("  widen 12->20 (approximate): max |logit change| %.3g, bound %.3g\n", worst,
           delta * sqrt(spread));
    TW_CHECK(worst > 1e-4 * top, "widen 12->20 was expected to be approximate, changed %g", worst);
    TW_CHECK(worst <= delta * sqrt(spread), "widen 12->20: logits moved %g > bound %g", worst,
             delta * sqrt(spread));
    free(got);
    tw_ist_master_free(g);
}

static void test_concat(const tw_ist_master *src, const float *want) {
    const tw_ist_master *copies[3] = {src, src, src};
    tw_ist_master *g = NULL;
    TW_CHECK_OK(tw_grow_concat(copies, 3, &g));
    if (!g) return;
    TW_CHECK(g->config.n_embd == 36 && g->config.layers[0].heads == 12 && g->step == 0,
             "concat: n_embd %d heads %d step %d", g->config.n_embd, g->config.layers[0].heads, g->step);
    check_logits("concat 3 copies: logits", g, want);
    tw_ist_master_free(g);
    /* Two different models: exact side by side at the embedding; logits measured against the
     * average of the sources' (approximate: one LayerNorm over both blocks). */
    tw_ist_master *other = random_master(&src->config, 99);
    const tw_ist_master *two[2] = {src, other};
    TW_CHECK_OK(tw_grow_concat(two, 2, &g));
    if (!g) {
        tw_ist_master_free(other);
        return;
    }
    for (int v = 0; v < V; v++)
        for (int t = 0; t < T; t++) {
            double x[24], a[12], b[12];
            embed(g, v, t, x);
            embed(src, v, t, a);
            embed(other, v, t, b);
            for (int c = 0; c < 12; c++)
                TW_CHECK(x[c] == a[c] && x[12 + c] == b[c], "concat: embedding (%d, %d) not [x_1, x_2]", v, t);
        }
    float *other_logits = run(other, NULL), *got = run(g, NULL);
    double worst = 0.0, apart = 0.0;
    for (size_t e = 0; e < (size_t)B * T * V; e++) {
        worst = fmax(worst, fabs(got[e] - 0.5 * ((double)want[e] + other_logits[e])));
        apart = fmax(apart, fabs((double)want[e] - other_logits[e]));
    }
    printf("  concat 2 different models: max |logits - average| %.3g (sources differ by %.3g)\n",
           worst, apart);
    TW_CHECK(isfinite(worst) && worst > 0.0, "concat of different models: %g", worst);
    free(other_logits);
    free(got);
    tw_ist_master_free(g);
    tw_ist_master_free(other);
}

static void test_bad_input(const tw_ist_master *src) {
    tw_ist_master *g = NULL;
    tw_gpt_config c = src->config;
    c.vocab_size = V + 1;
    tw_ist_master *other = random_master(&c, 3);
    const tw_ist_master *two[2] = {src, other};
    TW_CHECK_ERROR(tw_grow_combine(two, 2, &g), TW_ERR_INVALID_ARGUMENT, "vocab_size");
    tw_ist_master_free(other);
    c = src->config;
    c.n_embd = 8;
    other = random_master(&c, 3);
    two[1] = other;
    TW_CHECK_ERROR(tw_grow_combine(two, 2, &g), TW_ERR_INVALID_ARGUMENT, "source 1 has n_embd 8");
    tw_ist_master_free(other);
    tw_grow_depth_options o = {100, TW_GROW_STACK, true};
    TW_CHECK_ERROR(tw_grow_depth(src, &o, &g), TW_ERR_INVALID_ARGUMENT, "layers");
    tw_grow_widen_options w = {8, 0, 0, 0.0, 1};
    TW_CHECK_ERROR(tw_grow_widen(src, &w, &g), TW_ERR_INVALID_ARGUMENT, "n_embd 8 is smaller");
    w = (tw_grow_widen_options){24, 3, 0, 0.0, 1};
    TW_CHECK_ERROR(tw_grow_widen(src, &w, &g), TW_ERR_INVALID_ARGUMENT, "heads 3 is fewer than layer 0's 4");
    c = src->config;
    c.layers[1].heads = 3;
    other = random_master(&c, 3);
    two[1] = other;
    TW_CHECK_ERROR(tw_grow_concat(two, 2, &g), TW_ERR_INVALID_ARGUMENT, "source 1's layer 1 (3 heads");
    tw_ist_master_free(other);
    TW_CHECK(g == NULL, "a refused operator returned a model");
}

int main(int argc, char **argv) {
    const char *spec = "cpu";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--device") == 0) spec = argv[i + 1];
    tw_status status = tw_device_open(spec, &device);
    if (status == TW_ERR_UNSUPPORTED || status == TW_ERR_NOT_FOUND) tw_test_skip("%s", tw_last_error());
    if (status != TW_OK) {
        fprintf(stderr, "FAIL: cannot open device '%s': %s\n", spec, tw_last_error());
        return 1;
    }
    printf("device %s\n", spec);
    tw_gpt_config c = irregular_config();
    tw_ist_master *src = random_master(&c, 42);
    float *want = run(src, NULL);
    test_depth(src, want);
    test_combine(src, want);
    test_double(src);
    test_widen(src, want);
    test_concat(src, want);
    test_bad_input(src);
    free(want);
    tw_ist_master_free(src);
    tw_device_close(device);
    return tw_test_finish("grow");
}
