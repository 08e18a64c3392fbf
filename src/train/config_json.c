/* config.json: a Hugging Face GPT2Config that `transformers` can read for uniform models, with a
 * "twist" section that carries what GPT2Config cannot express (per-layer heads, MLP widths and
 * block scales, as IST subnets and grown models have). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_keys.h"
#include "twist/error.h"
#include "twist/train.h"

static bool layers_uniform(const tw_gpt_config *c) {
    for (int l = 1; l < c->n_layer; l++)
        if (c->layers[l].heads != c->layers[0].heads ||
            c->layers[l].mlp_hidden != c->layers[0].mlp_hidden)
            return false;
    return true;
}

static cJSON *twist_section(const tw_gpt_config *c) {
    cJSON *twist = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    cJSON_AddNumberToObject(twist, "format_version", 1);
    cJSON_AddNumberToObject(twist, "head_dim", c->head_dim);
    for (int l = 0; l < c->n_layer; l++) {
        cJSON *layer = cJSON_CreateObject();
        cJSON_AddNumberToObject(layer, "heads", c->layers[l].heads);
        cJSON_AddNumberToObject(layer, "mlp_hidden", c->layers[l].mlp_hidden);
        cJSON_AddNumberToObject(layer, "attn_scale", c->layers[l].attn_scale);
        cJSON_AddNumberToObject(layer, "mlp_scale", c->layers[l].mlp_scale);
        cJSON_AddItemToArray(layers, layer);
    }
    cJSON_AddItemToObject(twist, "layers", layers);
    return twist;
}

tw_status tw_gpt_config_to_json(const tw_gpt_config *c, int eot_id, char **json) {
    tw_status status = tw_gpt_config_validate(c);
    if (status != TW_OK) return status;
    cJSON *root = cJSON_CreateObject();
    cJSON *architectures = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(architectures, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(root, "model_type", "gpt2");
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "n_positions", c->max_seq_len);
    cJSON_AddNumberToObject(root, "n_ctx", c->max_seq_len);
    cJSON_AddNumberToObject(root, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(root, "n_layer", c->n_layer);
    /* GPT2Config's view of layer 0; exact for uniform models with heads * head_dim == n_embd. */
    cJSON_AddNumberToObject(root, "n_head", c->layers[0].heads);
    if (layers_uniform(c))
        cJSON_AddNumberToObject(root, "n_inner", c->layers[0].mlp_hidden);
    else
        cJSON_AddNullToObject(root, "n_inner");
    cJSON_AddStringToObject(root, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(root, "layer_norm_epsilon", c->layernorm_eps);
    cJSON_AddBoolToObject(root, "tie_word_embeddings", true);
    cJSON_AddNumberToObject(root, "resid_pdrop", 0);
    cJSON_AddNumberToObject(root, "embd_pdrop", 0);
    cJSON_AddNumberToObject(root, "attn_pdrop", 0);
    cJSON_AddNumberToObject(root, "bos_token_id", eot_id);
    cJSON_AddNumberToObject(root, "eos_token_id", eot_id);
    cJSON_AddItemToObject(root, "twist", twist_section(c));
    *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!*json) return tw_error(TW_ERR_OUT_OF_MEMORY, "config.json: out of host memory");
    return TW_OK;
}

/* An integer field; on failure the message names the source and the field. */
static tw_status read_int(const cJSON *object, const char *field, const char *source, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, field);
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
        fabs(item->valuedouble) > 2147483647.0)
        return tw_error(TW_ERR_FORMAT, "%s: field '%s' is missing or not an integer", source,
                        field);
    *out = (int)item->valuedouble;
    return TW_OK;
}

/* A number field in [lo, hi], or in (lo, hi] when lo_open. Checked as the double cJSON read,
 * before the cast to float: 1e308 does not fit a float, and the cast would be undefined. */
static tw_status read_float(const cJSON *object, const char *field, const char *source,
                            double lo, double hi, bool lo_open, float *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, field);
    if (!cJSON_IsNumber(item))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s' is missing or not a number", source, field);
    double value = item->valuedouble;
    if (!(lo_open ? value > lo : value >= lo) || !(value <= hi))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s' = %g must lie in %c%g, %g]", source, field,
                        value, lo_open ? '(' : '[', lo, hi);
    *out = (float)value;
    return TW_OK;
}

static tw_status read_twist_layers(const cJSON *twist, const char *source, tw_gpt_config *c) {
    /* A later format may mean other things by the same fields: refuse it rather than guess. */
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(twist, "format_version");
    if (version && !(cJSON_IsNumber(version) && version->valuedouble == 1.0)) {
        char text[32] = "that is not a number";
        if (cJSON_IsNumber(version)) snprintf(text, sizeof text, "%g", version->valuedouble);
        return tw_error(TW_ERR_FORMAT,
                        "%s: twist.format_version %s is not one this twist reads (1)", source,
                        text);
    }
    tw_status status = read_int(twist, "head_dim", source, &c->head_dim);
    if (status != TW_OK) return status;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(twist, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != c->n_layer)
        return tw_error(TW_ERR_FORMAT, "%s: twist.layers must be an array of n_layer = %d entries",
                        source, c->n_layer);
    int l = 0;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers) {
        char what[4352]; /* the source path (up to 4200 in tw_train_load) and the layer */
        snprintf(what, sizeof what, "%s (twist.layers[%d])", source, l);
        tw_gpt_layer *out = &c->layers[l++];
        if ((status = read_int(layer, "heads", what, &out->heads)) != TW_OK ||
            (status = read_int(layer, "mlp_hidden", what, &out->mlp_hidden)) != TW_OK ||
            (status = read_float(layer, "attn_scale", what, 0.0, TW_GPT_MAX_SCALE, false,
                                 &out->attn_scale)) != TW_OK ||
            (status = read_float(layer, "mlp_scale", what, 0.0, TW_GPT_MAX_SCALE, false,
                                 &out->mlp_scale)) != TW_OK)
            return status;
    }
    return TW_OK;
}

static tw_status read_uniform_layers(const cJSON *root, const char *source, tw_gpt_config *c) {
    int n_head = 0, n_inner = 4 * c->n_embd;
    tw_status status = read_int(root, "n_head", source, &n_head);
    if (status != TW_OK) return status;
    if (n_head < 1 || c->n_embd % n_head != 0)
        return tw_error(TW_ERR_FORMAT, "%s: n_embd %d is not a multiple of n_head %d", source,
                        c->n_embd, n_head);
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(root, "n_inner");
    if (inner && !cJSON_IsNull(inner) && (status = read_int(root, "n_inner", source, &n_inner)))
        return status;
    c->head_dim = c->n_embd / n_head;
    for (int l = 0; l < c->n_layer && l < TW_GPT_MAX_LAYERS; l++)
        c->layers[l] = (tw_gpt_layer){n_head, n_inner, 1.0f, 1.0f};
    return TW_OK;
}

tw_status tw_gpt_config_from_json(const char *json, const char *source, tw_gpt_config *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tw_error(TW_ERR_FORMAT, "%s: not a JSON object", source);
    }
    /* {"n_layer": 2, "n_layer": 4} is 2 layers to cJSON and 4 to transformers: refused. */
    tw_status status = tw_json_refuse_duplicate(root, source);
    if (status != TW_OK) goto done;
    out->layernorm_eps = 1e-5f;
    if ((status = read_int(root, "vocab_size", source, &out->vocab_size)) != TW_OK ||
        (status = read_int(root, "n_positions", source, &out->max_seq_len)) != TW_OK ||
        (status = read_int(root, "n_embd", source, &out->n_embd)) != TW_OK ||
        (status = read_int(root, "n_layer", source, &out->n_layer)) != TW_OK)
        goto done;
    if (out->n_layer < 1 || out->n_layer > TW_GPT_MAX_LAYERS) {
        status = tw_error(TW_ERR_FORMAT, "%s: n_layer %d must lie in [1, %d]", source,
                          out->n_layer, TW_GPT_MAX_LAYERS);
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon") &&
        (status = read_float(root, "layer_norm_epsilon", source, 0.0, 1.0, true,
                             &out->layernorm_eps)) != TW_OK)
        goto done;
    const cJSON *twist = cJSON_GetObjectItemCaseSensitive(root, "twist");
    status = twist ? read_twist_layers(twist, source, out) : read_uniform_layers(root, source, out);
    if (status == TW_OK && tw_gpt_config_validate(out) != TW_OK)
        status = tw_error(TW_ERR_FORMAT, "%s: %s", source, tw_last_error());
done:
    cJSON_Delete(root);
    return status;
}
