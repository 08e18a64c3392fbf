/* Model growth operators on host masters (see twist/grow.h for what each one preserves). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/grow.h"

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static const tw_gpt_tensor *find_tensor(const tw_ist_master *m, const char *name) {
    for (int i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static const char LAYER_PREFIX[] = "transformer.h.";

/* "transformer.h.<l>.<rest>": *layer = l and the rest; false for tensors outside the layers. */
static bool split_layer_name(const char *name, int *layer, const char **rest) {
    const size_t n = sizeof LAYER_PREFIX - 1;
    if (strncmp(name, LAYER_PREFIX, n) != 0) return false;
    char *end = NULL;
    long l = strtol(name + n, &end, 10);
    if (!end || *end != '.') return false;
    *layer = (int)l;
    *rest = end + 1;
    return true;
}

static bool is_output_projection(const char *rest) {
    return strcmp(rest, "attn.c_proj.weight") == 0 || strcmp(rest, "attn.c_proj.bias") == 0 ||
           strcmp(rest, "mlp.c_proj.weight") == 0 || strcmp(rest, "mlp.c_proj.bias") == 0;
}

static tw_status check_source(const tw_ist_master *m, const char *what) {
    if (!m || !m->params || !m->exp_avg || !m->exp_avg_sq || !m->tensors)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow: %s is NULL or incomplete", what);
    return tw_gpt_config_validate(&m->config);
}

/* ------------------------------------------------------------------------------------------ */
/* Depth                                                                                      */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_grow_depth(const tw_ist_master *source, const tw_grow_depth_options *options,
                        tw_ist_master **out) {
    if (!options || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "grow depth: NULL argument");
    *out = NULL;
    TW_TRY(check_source(source, "the depth source"));
    const int L = source->config.n_layer, k = options->copies;
    if (k < 1 || (long long)k * L > TW_GPT_MAX_LAYERS)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "grow depth: %d copies of %d layers give %lld layers (need 1 copy or "
                        "more and at most %d layers)",
                        k, L, (long long)k * L, TW_GPT_MAX_LAYERS);
    if (options->mode != TW_GROW_STACK && options->mode != TW_GROW_INTERLEAVE)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow depth: unknown mode %d", (int)options->mode);
    const bool stack = options->mode == TW_GROW_STACK;
    int from[TW_GPT_MAX_LAYERS], copy[TW_GPT_MAX_LAYERS];
    tw_gpt_config c = source->config;
    c.n_layer = k * L;
    for (int i = 0; i < c.n_layer; i++) {
        from[i] = stack ? i % L : i / k;
        copy[i] = stack ? i / L : i % k;
        c.layers[i] = source->config.layers[from[i]];
    }
    tw_ist_master *m = NULL;
    TW_TRY(tw_ist_master_create(&c, &m));
    tw_status status = TW_OK;
    for (int t = 0; t < m->tensor_count && status == TW_OK; t++) {
        const tw_gpt_tensor *dst = &m->tensors[t];
        int layer = -1;
        const char *rest = NULL;
        char name[TW_GPT_NAME_MAX + 16];
        bool zero = false;
        if (split_layer_name(dst->name, &layer, &rest)) {
            snprintf(name, sizeof name, "%s%d.%s", LAYER_PREFIX, from[layer], rest);
            zero = options->identity && copy[layer] > 0 && is_output_projection(rest);
        } else {
            snprintf(name, sizeof name, "%s", dst->name);
        }
        const tw_gpt_tensor *src = find_tensor(source, name);
        if (!src || src->count != dst->count) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "grow depth: the source lacks %s", name);
            break;
        }
        if (zero) memset(m->params + dst->offset, 0, dst->count * sizeof(float));
        else memcpy(m->params + dst->offset, source->params + src->offset,
                    dst->count * sizeof(float));
    }
    if (status != TW_OK) {
        tw_ist_master_free(m);
        return status;
    }
    *out = m; /* moments 0 and step 0: the optimizer state is reset */
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Combine: IST's merge run backwards                                                         */
/* ------------------------------------------------------------------------------------------ */

static tw_status check_compatible(const tw_gpt_config *a, const tw_gpt_config *b, int index) {
    const struct {
        const char *field;
        long long x, y;
    } fields[] = {{"vocab_size", a->vocab_size, b->vocab_size},
                  {"max_seq_len", a->max_seq_len, b->max_seq_len},
                  {"n_embd", a->n_embd, b->n_embd},
                  {"head_dim", a->head_dim, b->head_dim},
                  {"n_layer", a->n_layer, b->n_layer}};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        if (fields[f].x != fields[f].y)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "grow: source %d has %s %lld but source 0 has %lld", index,
                            fields[f].field, fields[f].y, fields[f].x);
    if (a->layernorm_eps != b->layernorm_eps)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "grow: source %d has layernorm_eps %g but source 0 has %g", index,
                        (double)b->layernorm_eps, (double)a->layernorm_eps);
    return TW_OK;
}

static void free_partition(tw_ist_partition *p) {
    if (!p) return;
    if (p->shares)
        for (int i = 0; i < p->workers * p->n_layer; i++) {
            free(p->shares[i].heads);
            free(p->shares[i].units);
        }
    free(p->shares);
}

/* Worker i holds source i's block: heads [sum_{j<i} H_j, + H_i), units likewise. */
static tw_status block_partition(const tw_ist_master *const *sources, int n,
                                 tw_ist_partition *p) {
    const int L = sources[0]->config.n_layer;
    p->workers = n;
    p->n_layer = L;
    p->shares = calloc((size_t)n * (size_t)L, sizeof *p->shares);
    if (!p->shares) return tw_error(TW_ERR_OUT_OF_MEMORY, "grow combine: out of host memory");
    for (int l = 0; l < L; l++) {
        int head0 = 0, unit0 = 0;
        for (int i = 0; i < n; i++) {
            tw_ist_layer_share *s = &p->shares[(size_t)i * (size_t)L + (size_t)l];
            const tw_gpt_layer *layer = &sources[i]->config.layers[l];
            s->head_count = layer->heads;
            s->unit_count = layer->mlp_hidden;
            s->heads = malloc(sizeof(int) * (size_t)layer->heads);
            s->units = malloc(sizeof(int) * (size_t)layer->mlp_hidden);
            if (!s->heads || !s->units)
                return tw_error(TW_ERR_OUT_OF_MEMORY, "grow combine: out of host memory");
            for (int h = 0; h < layer->heads; h++) s->heads[h] = head0 + h;
            for (int u = 0; u < layer->mlp_hidden; u++) s->units[u] = unit0 + u;
            head0 += layer->heads;
            unit0 += layer->mlp_hidden;
        }
    }
    return TW_OK;
}

/* Source i as worker i's packed subnet [params | 0 | 0], its block scales folded into its c_proj
 * weight rows (the grown block scale is 1/n). */
static tw_status pack_source(const tw_ist_master *source, const tw_gpt_config *sub,
                             float **out) {
    tw_gpt_tensor *tensors = NULL;
    int count = 0;
    size_t params = 0;
    TW_TRY(tw_gpt_layout(sub, &tensors, &count, &params, NULL));
    float *packed = calloc(3 * params + 1, sizeof(float));
    if (!packed) {
        free(tensors);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "grow combine: out of host memory");
    }
    tw_status status = TW_OK;
    for (int t = 0; t < count; t++) {
        const tw_gpt_tensor *src = find_tensor(source, tensors[t].name);
        if (!src || src->count != tensors[t].count) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "grow combine: a source lacks %s",
                              tensors[t].name);
            break;
        }
        float *dst = packed + tensors[t].offset;
        memcpy(dst, source->params + src->offset, src->count * sizeof(float));
        int layer = -1;
        const char *rest = NULL;
        if (split_layer_name(src->name, &layer, &rest)) {
            float scale = strcmp(rest, "attn.c_proj.weight") == 0 ? source->config.layers[layer].attn_scale
                        : strcmp(rest, "mlp.c_proj.weight") == 0  ? source->config.layers[layer].mlp_scale
                                                                  : 1.0f;
            if (scale != 1.0f)
                for (size_t e = 0; e < src->count; e++) dst[e] *= scale;
        }
    }
    free(tensors);
    if (status != TW_OK) free(packed);
    else *out = packed;
    return status;
}

tw_status tw_grow_combine(const tw_ist_master *const *sources, int n, tw_ist_master **out) {
    if (!sources || !out || n < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow combine: need 1 or more sources");
    *out = NULL;
    for (int i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "combine source %d", i);
        TW_TRY(check_source(sources[i], what));
        TW_TRY(check_compatible(&sources[0]->config, &sources[i]->config, i));
    }
    tw_gpt_config c = sources[0]->config;
    for (int l = 0; l < c.n_layer; l++) {
        long long heads = 0, units = 0;
        for (int i = 0; i < n; i++) {
            heads += sources[i]->config.layers[l].heads;
            units += sources[i]->config.layers[l].mlp_hidden;
        }
        if (heads > 1 << 20 || units > 1 << 24)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "grow combine: layer %d would be too wide", l);
        c.layers[l] = (tw_gpt_layer){(int)heads, (int)units, 1.0f / (float)n, 1.0f / (float)n};
    }
    tw_ist_master *m = NULL;
    tw_ist_partition partition = {0};
    tw_ist_merge *merge = NULL;
    tw_status status = tw_ist_master_create(&c, &m);
    if (status == TW_OK) status = block_partition(sources, n, &partition);
    if (status == TW_OK) status = tw_ist_merge_begin(m, &merge);
    /* The merge reads the packed sources at finish: they are kept until then. */
    float **packed = calloc((size_t)n, sizeof *packed);
    if (status == TW_OK && !packed)
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "grow combine: out of host memory");
    for (int i = 0; i < n && status == TW_OK; i++) {
        tw_gpt_config sub;
        status = tw_ist_subnet_config(&c, &partition, i, &sub);
        if (status == TW_OK) status = pack_source(sources[i], &sub, &packed[i]);
        if (status == TW_OK) status = tw_ist_merge_add(merge, &partition, i, packed[i]);
    }
    if (status == TW_OK) {
        status = tw_ist_merge_finish(merge, m); /* frees merge */
        merge = NULL;
    }
    tw_ist_merge_abort(merge);
    for (int i = 0; packed && i < n; i++) free(packed[i]);
    free(packed);
    free_partition(&partition);
    if (status != TW_OK) {
        tw_ist_master_free(m);
        return status;
    }
    m->step = 0; /* optimizer state reset */
    *out = m;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Exact width doubling                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Copy c of n (c in [0, n)), from source c, of a (rows, cols) tensor goes into the grown tensor:
 * vectors and embeddings side by side, matrices block diagonal, Q, K and V each holding the n
 * copies' heads in copy order. */
typedef enum { KIND_ROWS_DUP, KIND_BLOCK, KIND_QKV_WEIGHT, KIND_QKV_BIAS } map_kind;

typedef struct concat_copy {
    const tw_ist_master *src; /* source of this copy */
    tw_ist_master *dst;
    const tw_gpt_tensor *s, *d;
    size_t n, c; /* copies, this copy */
    float param_factor, first_factor, second_factor;
} concat_copy;

static void concat_tensor(const concat_copy *x, map_kind kind, int A) {
    const size_t R = (size_t)x->s->shape[0], K = (size_t)x->s->shape[1];
    const size_t DK = (size_t)x->d->shape[1], n = x->n, c = x->c, a = (size_t)A;
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < K; j++) {
            size_t from = r * K + j, to = 0;
            switch (kind) {
            case KIND_ROWS_DUP: /* (R, C) -> (R, nC) or a vector (C) -> (nC): side by side */
                to = x->s->ndim == 1 ? c * R + r : r * DK + c * K + j;
                break;
            case KIND_BLOCK: /* (R, K) -> (nR, nK) block diagonal */
                to = (c * R + r) * DK + c * K + j;
                break;
            case KIND_QKV_WEIGHT: { /* (C, 3A) -> (nC, 3nA): copy c is heads [cH, cH + H) */
                size_t p = j / a, i = j % a;
                to = (c * R + r) * DK + p * n * a + c * a + i;
                break;
            }
            case KIND_QKV_BIAS: { /* (3A) -> (3nA) */
                size_t p = r / a, i = r % a;
                to = p * n * a + c * a + i;
                break;
            }
            }
            const size_t so = x->s->offset + from, dO = x->d->offset + to;
            x->dst->params[dO] = x->src->params[so] * x->param_factor;
            x->dst->exp_avg[dO] = x->src->exp_avg[so] * x->first_factor;
            x->dst->exp_avg_sq[dO] = x->src->exp_avg_sq[so] * x->second_factor;
        }
}

/* n sources of one config side by side; carry: the moments of identical copies (double). */
static tw_status concat(const tw_ist_master *const *sources, int n, bool carry,
                        tw_ist_master **out) {
    const tw_ist_master *source = sources[0];
    tw_gpt_config c = source->config;
    if ((long long)c.n_embd * n > (1 << 20))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow: %d x n_embd %d is too wide", n, c.n_embd);
    c.n_embd *= n;
    for (int l = 0; l < c.n_layer; l++) {
        c.layers[l].heads *= n;
        c.layers[l].mlp_hidden *= n;
    }
    tw_ist_master *m = NULL;
    TW_TRY(tw_ist_master_create(&c, &m)); /* validates the grown sizes */
    for (int t = 0; t < m->tensor_count; t++) {
        const tw_gpt_tensor *d = &m->tensors[t];
        int layer = -1;
        const char *rest = "";
        bool in_layer = split_layer_name(d->name, &layer, &rest);
        bool ln_f = !in_layer && strncmp(d->name, "transformer.ln_f.", 17) == 0;
        map_kind kind = KIND_ROWS_DUP;
        int A = 0;
        if (in_layer) {
            A = source->config.layers[layer].heads * source->config.head_dim;
            if (strcmp(rest, "attn.c_attn.weight") == 0) kind = KIND_QKV_WEIGHT;
            else if (strcmp(rest, "attn.c_attn.bias") == 0) kind = KIND_QKV_BIAS;
            else if (d->ndim == 2) kind = KIND_BLOCK; /* c_proj, c_fc, mlp.c_proj weights */
        }
        for (int i = 0; i < n; i++) {
            const tw_gpt_tensor *s = find_tensor(sources[i], d->name);
            if (!s) {
                tw_ist_master_free(m);
                return tw_error(TW_ERR_INVALID_ARGUMENT, "grow: source %d lacks %s", i, d->name);
            }
            /* ln_f is divided by n: the tied unembedding sums the n blocks. With carry, copies
             * get 1/n of the source's gradient (m / n, v / n^2); ln_f gets the source's. */
            const float inv = 1.0f / (float)n;
            concat_copy x = {sources[i], m, s, d, (size_t)n, (size_t)i, ln_f ? inv : 1.0f,
                             !carry ? 0.0f : ln_f ? 1.0f : inv,
                             !carry ? 0.0f : ln_f ? 1.0f : inv * inv};
            concat_tensor(&x, kind, A); /* entries not written stay 0: off-diagonal blocks */
        }
    }
    m->step = carry ? source->step : 0;
    *out = m;
    return TW_OK;
}

tw_status tw_grow_double(const tw_ist_master *source, tw_ist_master **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "grow double: NULL argument");
    *out = NULL;
    TW_TRY(check_source(source, "the double source"));
    const tw_ist_master *pair[2] = {source, source};
    return concat(pair, 2, true, out);
}

tw_status tw_grow_concat(const tw_ist_master *const *sources, int n, tw_ist_master **out) {
    if (!sources || !out || n < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow concat: need 1 or more sources");
    *out = NULL;
    for (int i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "concat source %d", i);
        TW_TRY(check_source(sources[i], what));
        const tw_gpt_config *a = &sources[0]->config, *b = &sources[i]->config;
        TW_TRY(check_compatible(a, b, i));
        for (int l = 0; l < a->n_layer; l++)
            if (a->layers[l].heads != b->layers[l].heads ||
                a->layers[l].mlp_hidden != b->layers[l].mlp_hidden ||
                a->layers[l].attn_scale != b->layers[l].attn_scale ||
                a->layers[l].mlp_scale != b->layers[l].mlp_scale)
                return tw_error(TW_ERR_INVALID_ARGUMENT,
                                "grow concat: source %d's layer %d (%d heads, %d MLP units) "
                                "differs from source 0's (%d, %d): concat needs one shape",
                                i, l, b->layers[l].heads, b->layers[l].mlp_hidden,
                                a->layers[l].heads, a->layers[l].mlp_hidden);
    }
    return concat(sources, n, false, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Net2Net / bert2BERT widening                                                               */
/* ------------------------------------------------------------------------------------------ */

/* An index space of `old` entries grown to `grown`: entry i copies entry i mod old, which has
 * count(j) copies (the counts differ by at most 1 across j). */
typedef struct space {
    int old, grown;
} space;

static int src_of(space s, int i) { return i % s.old; }
static int copies_of(space s, int j) { return s.grown / s.old + (j < s.grown % s.old); }

/* splitmix64: the noise stream, the same for a seed on every host. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1): symmetric noise of known bound. */
static double noise_unit(uint64_t *state) {
    return (double)(next_u64(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* A (rows, cols) source tensor grown to (rs.grown, cs.grown): element (r, c) = source
 * (src_of(rs, r), src_of(cs, c)), divided by the copy count of its row when split_rows (the rows
 * are the inputs that copies of one entry feed together: their sum must stay the source's).
 * With noise > 0, split rows get a zero-sum perturbation across the copies of each source row
 * (eps_k - mean_k eps, eps uniform in [-noise, noise] * rms of the tensor): the sum over copies
 * is unchanged, so the function is too, but the copies' gradients differ. Vectors are
 * (rows, 1) with cs = {1, 1}. */
static tw_status widen_tensor(const float *src, space rs, space cs, bool split_rows, double noise,
                              uint64_t *rng, float *dst) {
    const size_t R1 = (size_t)rs.grown, C1 = (size_t)cs.grown, C0 = (size_t)cs.old;
    for (size_t r = 0; r < R1; r++) {
        const int sr = src_of(rs, (int)r);
        const float div = split_rows ? (float)copies_of(rs, sr) : 1.0f;
        for (size_t c = 0; c < C1; c++)
            dst[r * C1 + c] = src[(size_t)sr * C0 + (size_t)src_of(cs, (int)c)] / div;
    }
    if (!(noise > 0.0) || !split_rows || rs.grown == rs.old) return TW_OK;
    double sum_sq = 0.0;
    const size_t count0 = (size_t)rs.old * C0;
    for (size_t e = 0; e < count0; e++) sum_sq += (double)src[e] * src[e];
    const double amplitude = noise * sqrt(sum_sq / (double)(count0 ? count0 : 1));
    double *eps = malloc(sizeof(double) * R1 * C1), *mean = calloc((size_t)rs.old * C1, sizeof(double));
    if (!eps || !mean) {
        free(eps);
        free(mean);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "grow widen: out of host memory");
    }
    for (size_t r = 0; r < R1; r++)
        for (size_t c = 0; c < C1; c++) {
            eps[r * C1 + c] = amplitude * noise_unit(rng);
            mean[(size_t)src_of(rs, (int)r) * C1 + c] += eps[r * C1 + c];
        }
    for (size_t r = 0; r < R1; r++) {
        const int sr = src_of(rs, (int)r);
        const double k = copies_of(rs, sr);
        if (k < 2) continue; /* a single copy keeps its exact value */
        for (size_t c = 0; c < C1; c++)
            dst[r * C1 + c] += (float)(eps[r * C1 + c] - mean[(size_t)sr * C1 + c] / k);
    }
    free(eps);
    free(mean);
    return TW_OK;
}

tw_status tw_grow_widen(const tw_ist_master *source, const tw_grow_widen_options *options,
                        tw_ist_master **out) {
    if (!options || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "grow widen: NULL argument");
    *out = NULL;
    TW_TRY(check_source(source, "the widen source"));
    const tw_gpt_config *c0 = &source->config;
    if (options->n_embd < c0->n_embd)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "grow widen: n_embd %d is smaller than the source's %d (growth only adds "
                        "width)", options->n_embd, c0->n_embd);
    if (!(options->noise >= 0.0) || options->noise > 1.0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "grow widen: noise %g must lie in [0, 1]",
                        options->noise);
    tw_gpt_config c = *c0;
    c.n_embd = options->n_embd;
    for (int l = 0; l < c.n_layer; l++) {
        const tw_gpt_layer *s = &c0->layers[l];
        if (options->heads && options->heads < s->heads)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "grow widen: heads %d is fewer than layer %d's %d", options->heads, l,
                            s->heads);
        if (options->mlp_hidden && options->mlp_hidden < s->mlp_hidden)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "grow widen: mlp_hidden %d is fewer than layer %d's %d",
                            options->mlp_hidden, l, s->mlp_hidden);
        if (options->heads) c.layers[l].heads = options->heads;
        if (options->mlp_hidden) c.layers[l].mlp_hidden = options->mlp_hidden;
    }
    tw_ist_master *m = NULL;
    TW_TRY(tw_ist_master_create(&c, &m)); /* validates the grown sizes */
    uint64_t rng = options->seed;
    const space C = {c0->n_embd, c.n_embd}, one = {1, 1};
    tw_status status = TW_OK;
    for (int t = 0; t < m->tensor_count && status == TW_OK; t++) {
        const tw_gpt_tensor *d = &m->tensors[t];
        const tw_gpt_tensor *s = find_tensor(source, d->name);
        if (!s) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "grow widen: the source lacks %s", d->name);
            break;
        }
        const float *from = source->params + s->offset;
        float *to = m->params + d->offset;
        int layer = -1;
        const char *rest = "";
        if (!split_layer_name(d->name, &layer, &rest)) {
            if (strstr(d->name, "wte") || strstr(d->name, "wpe")) /* (V or T, C): copy columns */
                status = widen_tensor(from, (space){s->shape[0], d->shape[0]}, C, false, 0.0,
                                      &rng, to);
            else if (strstr(d->name, "ln_f.weight")) /* read by the tied unembedding: split */
                status = widen_tensor(from, C, one, true, options->noise, &rng, to);
            else /* ln_f.bias: split, without noise */
                status = widen_tensor(from, C, one, true, 0.0, &rng, to);
            continue;
        }
        const tw_gpt_layer *sl = &c0->layers[layer], *gl = &c.layers[layer];
        const int D = c0->head_dim;
        const space H = {sl->heads, gl->heads}, M = {sl->mlp_hidden, gl->mlp_hidden};
        if (strcmp(rest, "attn.c_attn.weight") == 0 || strcmp(rest, "attn.c_attn.bias") == 0) {
            /* Columns: part p, head h, dim k <- source column p A0 + (h mod H0) D + k (copies).
             * Rows (weight): residual inputs, split. Built column block by column block. */
            const bool weight = d->ndim == 2;
            const space rows = weight ? C : one;
            const int A0 = sl->heads * D, A1 = gl->heads * D;
            const size_t R1 = (size_t)rows.grown;
            float *block = malloc(sizeof(float) * R1 * (size_t)D + 1);
            float *col = malloc(sizeof(float) * (size_t)rows.old * (size_t)D + 1);
            if (!block || !col) status = tw_error(TW_ERR_OUT_OF_MEMORY, "grow widen: out of memory");
            for (int p = 0; p < 3 && status == TW_OK; p++)
                for (int h = 0; h < gl->heads && status == TW_OK; h++) {
                    const int sh = src_of(H, h);
                    for (int r = 0; r < rows.old; r++)
                        for (int k = 0; k < D; k++)
                            col[(size_t)r * D + k] = from[(size_t)r * (size_t)(3 * A0) +
                                                          (size_t)(p * A0 + sh * D + k)];
                    status = widen_tensor(col, rows, (space){D, D}, weight, options->noise, &rng,
                                          block);
                    for (size_t r = 0; r < R1; r++)
                        for (int k = 0; k < D; k++)
                            to[r * (size_t)(3 * A1) + (size_t)(p * A1 + h * D + k)] =
                                block[r * (size_t)D + (size_t)k];
                }
            free(block);
            free(col);
        } else if (strcmp(rest, "attn.c_proj.weight") == 0) {
            /* (A, C): rows are (head, dim); copies of a head split its rows. */
            const space A = {sl->heads * D, gl->heads * D};
            /* Row h D + k copies row (h mod H0) D + k, which is (h D + k) mod A0: the same map. */
            status = widen_tensor(from, A, C, true, options->noise, &rng, to);
        } else if (strcmp(rest, "mlp.c_fc.weight") == 0) {
            status = widen_tensor(from, C, M, true, options->noise, &rng, to);
        } else if (strcmp(rest, "mlp.c_proj.weight") == 0) {
            status = widen_tensor(from, M, C, true, options->noise, &rng, to);
        } else if (strcmp(rest, "mlp.c_fc.bias") == 0) {
            status = widen_tensor(from, M, one, false, 0.0, &rng, to);
        } else { /* LayerNorms and the c_proj biases: residual vectors, copied */
            status = widen_tensor(from, C, one, false, 0.0, &rng, to);
        }
    }
    if (status != TW_OK) {
        tw_ist_master_free(m);
        return status;
    }
    *out = m; /* optimizer state reset */
    return TW_OK;
}
