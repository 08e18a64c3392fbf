/* Model configurations: presets, validation, and the parameter layout (names, shapes, offsets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "twist/model.h"

/* Limits that keep every size product below 2^31 elements per dimension and catch typos. */
enum { MAX_VOCAB = 1 << 22, MAX_WIDTH = 1 << 16, MAX_SEQ = 1 << 20 };

tw_status tw_gpt_config_uniform(int vocab_size, int max_seq_len, int n_layer, int n_embd,
                                int n_head, tw_gpt_config *out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "model config: out is NULL");
    memset(out, 0, sizeof *out);
    if (n_head < 1 || n_embd < 1 || n_embd % n_head != 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "model config: n_embd %d must be a positive multiple of n_head %d", n_embd,
                        n_head);
    out->vocab_size = vocab_size;
    out->max_seq_len = max_seq_len;
    out->n_layer = n_layer;
    out->n_embd = n_embd;
    out->head_dim = n_embd / n_head;
    out->layernorm_eps = 1e-5f;
    for (int l = 0; l < n_layer && l < TW_GPT_MAX_LAYERS; l++)
        out->layers[l] = (tw_gpt_layer){n_head, 4 * n_embd, 1.0f, 1.0f};
    return tw_gpt_config_validate(out);
}

typedef struct preset {
    const char *name;
    int n_layer, n_embd, n_head, seq_len;
} preset;

/* nano: ~1M parameters with a 4k vocabulary, for tests and smoke runs.
 * tiny: d=256, 4 layers, 8 heads, T=128 (the reference model, ~4.2M with V=4096).
 * small: d=512, 8 layers, 8 heads, T=256 (~27M with V=4096). */
static const preset presets[] = {
    {"nano", 4, 128, 4, 64},
    {"tiny", 4, 256, 8, 128},
    {"small", 8, 512, 8, 256},
};
static const char *const preset_names[] = {"nano", "tiny", "small", NULL};

const char *const *tw_gpt_preset_names(void) { return preset_names; }

tw_status tw_gpt_config_preset(const char *name, int vocab_size, tw_gpt_config *out) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *p = &presets[i];
        if (name && strcmp(name, p->name) == 0)
            return tw_gpt_config_uniform(vocab_size, p->seq_len, p->n_layer, p->n_embd,
                                         p->n_head, out);
    }
    return tw_error(TW_ERR_NOT_FOUND, "unknown model preset '%s': expected nano, tiny or small",
                    name ? name : "(null)");
}

static tw_status check_range(const char *field, long long value, long long lo, long long hi) {
    if (value < lo || value > hi)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "model config: %s = %lld must lie in [%lld, %lld]",
                        field, value, lo, hi);
    return TW_OK;
}

tw_status tw_gpt_config_validate(const tw_gpt_config *c) {
    if (!c) return tw_error(TW_ERR_INVALID_ARGUMENT, "model config is NULL");
    tw_status status;
    if ((status = check_range("vocab_size", c->vocab_size, 2, MAX_VOCAB)) != TW_OK ||
        (status = check_range("max_seq_len", c->max_seq_len, 1, MAX_SEQ)) != TW_OK ||
        (status = check_range("n_layer", c->n_layer, 1, TW_GPT_MAX_LAYERS)) != TW_OK ||
        (status = check_range("n_embd", c->n_embd, 1, MAX_WIDTH)) != TW_OK ||
        (status = check_range("head_dim", c->head_dim, 1, MAX_WIDTH)) != TW_OK)
        return status;
    if (!(c->layernorm_eps > 0.0f) || c->layernorm_eps > 1.0f)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "model config: layernorm_eps %g must lie in (0, 1]",
                        (double)c->layernorm_eps);
    for (int l = 0; l < c->n_layer; l++) {
        const tw_gpt_layer *layer = &c->layers[l];
        if (layer->heads < 1 || (long long)layer->heads * c->head_dim > MAX_WIDTH)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "model config: layer %d has %d heads of %d (need 1 .. %d channels)", l,
                            layer->heads, c->head_dim, MAX_WIDTH);
        if (layer->mlp_hidden < 1 || layer->mlp_hidden > 4 * MAX_WIDTH)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "model config: layer %d has mlp_hidden %d (need 1 .. %d)", l,
                            layer->mlp_hidden, 4 * MAX_WIDTH);
        /* Written so that NaN fails too; an infinite scale gave NaN losses and NUL samples. */
        const float scales[2] = {layer->attn_scale, layer->mlp_scale};
        for (int s = 0; s < 2; s++)
            if (!(scales[s] >= 0.0f && scales[s] <= (float)TW_GPT_MAX_SCALE))
                return tw_error(TW_ERR_INVALID_ARGUMENT,
                                "model config: layer %d %s = %g must lie in [0, %d]", l,
                                s ? "mlp_scale" : "attn_scale", (double)scales[s],
                                TW_GPT_MAX_SCALE);
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Layout                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct layout_builder {
    tw_gpt_tensor *tensors;
    int count;
    size_t offset;
} layout_builder;

static void add_tensor(layout_builder *b, bool decay, int rows, int cols, const char *format,
                       int layer) {
    tw_gpt_tensor *t = &b->tensors[b->count++];
    snprintf(t->name, sizeof t->name, format, layer);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 1;
    t->count = (size_t)rows * (size_t)t->shape[1];
    t->offset = b->offset;
    t->decay = decay;
    b->offset += t->count;
}

/* Matrices and embeddings (decayed) first, then biases and LayerNorm parameters, so that each
 * group is one contiguous range for the optimizer. Conv1D weights are (in, out). */
static void add_decayed(layout_builder *b, const tw_gpt_config *c) {
    const int C = c->n_embd;
    add_tensor(b, true, c->vocab_size, C, "transformer.wte.weight", 0);
    add_tensor(b, true, c->max_seq_len, C, "transformer.wpe.weight", 0);
    for (int l = 0; l < c->n_layer; l++) {
        const int A = c->layers[l].heads * c->head_dim, M = c->layers[l].mlp_hidden;
        add_tensor(b, true, C, 3 * A, "transformer.h.%d.attn.c_attn.weight", l);
        add_tensor(b, true, A, C, "transformer.h.%d.attn.c_proj.weight", l);
        add_tensor(b, true, C, M, "transformer.h.%d.mlp.c_fc.weight", l);
        add_tensor(b, true, M, C, "transformer.h.%d.mlp.c_proj.weight", l);
    }
}

static void add_undecayed(layout_builder *b, const tw_gpt_config *c) {
    const int C = c->n_embd;
    for (int l = 0; l < c->n_layer; l++) {
        const int A = c->layers[l].heads * c->head_dim, M = c->layers[l].mlp_hidden;
        add_tensor(b, false, C, 0, "transformer.h.%d.ln_1.weight", l);
        add_tensor(b, false, C, 0, "transformer.h.%d.ln_1.bias", l);
        add_tensor(b, false, 3 * A, 0, "transformer.h.%d.attn.c_attn.bias", l);
        add_tensor(b, false, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
        add_tensor(b, false, C, 0, "transformer.h.%d.ln_2.weight", l);
        add_tensor(b, false, C, 0, "transformer.h.%d.ln_2.bias", l);
        add_tensor(b, false, M, 0, "transformer.h.%d.mlp.c_fc.bias", l);
        add_tensor(b, false, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
    }
    add_tensor(b, false, C, 0, "transformer.ln_f.weight", 0);
    add_tensor(b, false, C, 0, "transformer.ln_f.bias", 0);
}

tw_status tw_gpt_layout(const tw_gpt_config *config, tw_gpt_tensor **tensors, int *count,
                        size_t *param_count, size_t *decay_count) {
    tw_status status = tw_gpt_config_validate(config);
    if (status != TW_OK) return status;
    int capacity = 2 + 4 * config->n_layer + 8 * config->n_layer + 2;
    layout_builder b = {calloc((size_t)capacity, sizeof(tw_gpt_tensor)), 0, 0};
    if (!b.tensors) return tw_error(TW_ERR_OUT_OF_MEMORY, "model layout: out of host memory");
    add_decayed(&b, config);
    size_t decayed = b.offset;
    add_undecayed(&b, config);
    *tensors = b.tensors;
    *count = b.count;
    *param_count = b.offset;
    if (decay_count) *decay_count = decayed;
    return TW_OK;
}
