/* Model checkpoints: parameters, AdamW moments, config.json, state.json and tokenizer.json in
 * one checkpoint directory (twist/checkpoint.h does the files, checksums and atomic replace). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/train.h"

enum { NAME_CAPACITY = TW_GPT_NAME_MAX + 16 };

static void tensor_dims(const tw_gpt_tensor *t, int64_t dims[2]) {
    dims[0] = t->shape[0];
    dims[1] = t->shape[1];
}

/* Downloads a (P) device buffer into a new host array. */
static tw_status download_all(tw_buffer *buffer, size_t count, float **out) {
    *out = malloc(count * sizeof **out);
    if (!*out) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    tw_status status = tw_buffer_download(buffer, 0, *out, count * sizeof **out);
    if (status != TW_OK) {
        free(*out);
        *out = NULL;
    }
    return status;
}

/* Adds every tensor of the layout, from host (P), to `part` under name + suffix, as fp32 or
 * (bf16) as BF16. */
static tw_status add_tensors_as(tw_checkpoint_writer *writer, tw_ckpt_part part, tw_gpt *model,
                                const float *host, const char *suffix, bool bf16) {
    for (int i = 0; i < tw_gpt_tensor_count(model); i++) {
        const tw_gpt_tensor *t = tw_gpt_tensor_at(model, i);
        char name[NAME_CAPACITY];
        int64_t dims[2];
        snprintf(name, sizeof name, "%s%s", t->name, suffix);
        tensor_dims(t, dims);
        /* The writer copies the name and borrows the data until the save returns (a BF16
         * tensor is converted into a copy now). */
        tw_status status =
            bf16 ? tw_checkpoint_writer_add_bf16(writer, part, name, t->ndim, dims,
                                                 host + t->offset)
                 : tw_checkpoint_writer_add(writer, part, name, t->ndim, dims, host + t->offset);
        if (status != TW_OK) return status;
    }
    return TW_OK;
}

static tw_status add_tensors(tw_checkpoint_writer *writer, tw_ckpt_part part, tw_gpt *model,
                             const float *host, const char *suffix) {
    return add_tensors_as(writer, part, model, host, suffix, false);
}

static tw_status add_optimizer(tw_checkpoint_writer *writer, tw_gpt *model, tw_adamw *opt,
                               float **first, float **second) {
    const size_t P = tw_gpt_param_count(model);
    tw_status status = download_all(tw_adamw_first_moment(opt), P, first);
    if (status == TW_OK) status = download_all(tw_adamw_second_moment(opt), P, second);
    if (status == TW_OK) status = add_tensors(writer, TW_CKPT_OPTIMIZER, model, *first, ".exp_avg");
    if (status == TW_OK)
        status = add_tensors(writer, TW_CKPT_OPTIMIZER, model, *second, ".exp_avg_sq");
    char steps[32];
    snprintf(steps, sizeof steps, "%d", tw_adamw_steps(opt));
    if (status == TW_OK)
        status = tw_checkpoint_writer_set_metadata(writer, TW_CKPT_OPTIMIZER, "step", steps);
    return status;
}

static tw_status add_texts(tw_checkpoint_writer *writer, tw_gpt *model, const char *state_json,
                           const tw_tokenizer *tokenizer) {
    char *config = NULL, *tokens = NULL;
    size_t tokens_length = 0;
    tw_status status = tw_gpt_config_to_json(tw_gpt_get_config(model),
                                             tw_tokenizer_eot_id(tokenizer), &config);
    if (status == TW_OK) status = tw_checkpoint_writer_set_config(writer, config);
    if (status == TW_OK) status = tw_checkpoint_writer_set_state(writer, state_json ? state_json : "{}");
    if (status == TW_OK) status = tw_tokenizer_to_json(tokenizer, &tokens, &tokens_length);
    if (status == TW_OK)
        status = tw_checkpoint_writer_add_file(writer, "tokenizer.json", tokens, tokens_length);
    free(config);
    free(tokens);
    return status;
}

tw_status tw_train_save(const char *dir, tw_gpt *model, tw_adamw *opt, const char *state_json,
                        const tw_tokenizer *tokenizer) {
    return tw_train_save_as(dir, model, opt, state_json, tokenizer, TW_DTYPE_F32);
}

tw_status tw_train_save_as(const char *dir, tw_gpt *model, tw_adamw *opt, const char *state_json,
                           const tw_tokenizer *tokenizer, tw_dtype model_dtype) {
    if (!dir || !model || !tokenizer)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_train_save: NULL argument");
    if (model_dtype != TW_DTYPE_F32 && model_dtype != TW_DTYPE_BF16)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "checkpoint: model.safetensors can be saved as f32 or bf16, not %s",
                        tw_dtype_name(model_dtype));
    const bool bf16 = model_dtype == TW_DTYPE_BF16;
    tw_checkpoint_writer *writer = NULL;
    float *params = NULL, *first = NULL, *second = NULL;
    tw_status status = tw_checkpoint_writer_create(&writer);
    if (status == TW_OK)
        status = download_all(tw_gpt_params(model), tw_gpt_param_count(model), &params);
    if (status == TW_OK) status = add_tensors_as(writer, TW_CKPT_MODEL, model, params, "", bf16);
    if (status == TW_OK) status = tw_checkpoint_writer_set_metadata(writer, TW_CKPT_MODEL, "format", "pt");
    if (status == TW_OK && opt) status = add_optimizer(writer, model, opt, &first, &second);
    /* A BF16 model file rounds the weights: the fp32 master weights go beside the moments
     * ("<name>.master"), so a resumed run continues exactly. */
    if (status == TW_OK && opt && bf16)
        status = add_tensors(writer, TW_CKPT_OPTIMIZER, model, params, ".master");
    if (status == TW_OK) status = add_texts(writer, model, state_json, tokenizer);
    if (status == TW_OK) status = tw_checkpoint_save(writer, dir);
    tw_checkpoint_writer_destroy(writer);
    free(params);
    free(first);
    free(second);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Refuses a tensor holding NaN or an infinity (and, for AdamW's second moments, a negative
 * value, whose square root is NaN): checksums only prove the file is what was written, and such
 * weights made eval print "loss nan" and exit 0. The message names the tensor and the first bad
 * element, flat and as (row, column) for matrices. */
static tw_status check_finite(const tw_checkpoint *ckpt, tw_ckpt_part part, const char *name,
                              const tw_gpt_tensor *t, const float *data, bool non_negative) {
    for (size_t i = 0; i < t->count; i++) {
        if (isfinite(data[i]) && (!non_negative || data[i] >= 0.0f)) continue;
        char where[64] = "";
        if (t->ndim == 2)
            snprintf(where, sizeof where, " (row %zu, column %zu)", i / (size_t)t->shape[1],
                     i % (size_t)t->shape[1]);
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s' holds %g at index %zu%s: the checkpoint is damaged "
                        "(or was saved by a run that diverged)",
                        tw_safetensors_path(tw_checkpoint_safetensors(ckpt, part)), name,
                        (double)data[i], i, where);
    }
    return TW_OK;
}

/* Fills host (P) from `part`'s tensors name + suffix, each checked against the layout's shape
 * and for non-finite values, then uploads it into buffer. */
static tw_status read_tensors(const tw_checkpoint *ckpt, tw_ckpt_part part, tw_gpt *model,
                              const char *suffix, tw_buffer *buffer) {
    const size_t P = tw_gpt_param_count(model);
    float *host = malloc(P * sizeof *host);
    if (!host) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    tw_status status = TW_OK;
    for (int i = 0; status == TW_OK && i < tw_gpt_tensor_count(model); i++) {
        const tw_gpt_tensor *t = tw_gpt_tensor_at(model, i);
        char name[NAME_CAPACITY];
        int64_t dims[2];
        const float *data = NULL;
        snprintf(name, sizeof name, "%s%s", t->name, suffix);
        tensor_dims(t, dims);
        status = tw_checkpoint_expect(ckpt, part, name, t->ndim, dims, &data);
        if (status == TW_OK)
            status = check_finite(ckpt, part, name, t, data, strcmp(suffix, ".exp_avg_sq") == 0);
        if (status == TW_OK) memcpy(host + t->offset, data, t->count * sizeof *host);
    }
    if (status == TW_OK) status = tw_buffer_upload(buffer, 0, host, P * sizeof *host);
    free(host);
    return status;
}

static tw_status load_optimizer(const tw_checkpoint *ckpt, tw_gpt *model,
                                const tw_adamw_config *adam, tw_adamw **out) {
    const tw_safetensors *file = tw_checkpoint_safetensors(ckpt, TW_CKPT_OPTIMIZER);
    const char *steps = tw_safetensors_metadata(file, "step");
    char *end = NULL;
    long value = steps ? strtol(steps, &end, 10) : -1;
    if (!steps || *end || value < 0 || value > 1000000000)
        return tw_error(TW_ERR_FORMAT, "%s/optimizer.safetensors: metadata 'step' is missing or "
                        "not a step count (the checkpoint holds no optimizer state to resume)",
                        tw_checkpoint_dir(ckpt));
    tw_status status = tw_adamw_create(model, adam, out);
    if (status == TW_OK)
        status = read_tensors(ckpt, TW_CKPT_OPTIMIZER, model, ".exp_avg",
                              tw_adamw_first_moment(*out));
    if (status == TW_OK)
        status = read_tensors(ckpt, TW_CKPT_OPTIMIZER, model, ".exp_avg_sq",
                              tw_adamw_second_moment(*out));
    if (status == TW_OK) tw_adamw_set_steps(*out, (int)value);
    return status;
}

static tw_status load_tokenizer(const tw_checkpoint *ckpt, const tw_gpt_config *config,
                                tw_tokenizer **out) {
    const void *bytes = NULL;
    size_t size = 0;
    char source[4200];
    snprintf(source, sizeof source, "%s/tokenizer.json", tw_checkpoint_dir(ckpt));
    tw_status status = tw_checkpoint_file(ckpt, "tokenizer.json", &bytes, &size);
    if (status != TW_OK)
        return tw_error(TW_ERR_FORMAT, "%s: missing (a twist checkpoint carries its tokenizer)",
                        source);
    status = tw_tokenizer_from_json(bytes, size, source, out);
    if (status == TW_OK && tw_tokenizer_vocab_size(*out) != config->vocab_size)
        return tw_error(TW_ERR_FORMAT, "%s: %d tokens, but config.json says vocab_size %d", source,
                        tw_tokenizer_vocab_size(*out), config->vocab_size);
    return status;
}

static bool has_masters(const tw_checkpoint *ckpt, tw_gpt *model) {
    char name[NAME_CAPACITY];
    tw_tensor_view view;
    snprintf(name, sizeof name, "%s.master", tw_gpt_tensor_at(model, 0)->name);
    return tw_checkpoint_tensor(ckpt, TW_CKPT_OPTIMIZER, name, &view) == TW_OK;
}

tw_status tw_train_load(const char *dir, tw_device *device, const tw_adamw_config *adam,
                        tw_loaded_model *out) {
    if (!dir || !device || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_train_load: NULL argument");
    memset(out, 0, sizeof *out);
    tw_gpt_config config;
    char source[4200];
    snprintf(source, sizeof source, "%s/config.json", dir);
    tw_status status = tw_checkpoint_open(dir, &out->checkpoint);
    if (status == TW_OK)
        status = tw_gpt_config_from_json(tw_checkpoint_config_json(out->checkpoint), source,
                                         &config);
    if (status == TW_OK) status = load_tokenizer(out->checkpoint, &config, &out->tokenizer);
    if (status == TW_OK) status = tw_gpt_create(device, &config, &out->model);
    if (status == TW_OK)
        status = read_tensors(out->checkpoint, TW_CKPT_MODEL, out->model, "",
                              tw_gpt_params(out->model));
    if (status == TW_OK && adam) status = load_optimizer(out->checkpoint, out->model, adam, &out->opt);
    /* A model file saved as BF16 beside fp32 master weights: the run continues from these. */
    if (status == TW_OK && adam && has_masters(out->checkpoint, out->model))
        status = read_tensors(out->checkpoint, TW_CKPT_OPTIMIZER, out->model, ".master",
                              tw_gpt_params(out->model));
    if (status != TW_OK) tw_loaded_model_free(out);
    return status;
}

void tw_loaded_model_free(tw_loaded_model *loaded) {
    if (!loaded) return;
    tw_adamw_destroy(loaded->opt);
    tw_gpt_destroy(loaded->model);
    tw_tokenizer_free(loaded->tokenizer);
    tw_checkpoint_close(loaded->checkpoint);
    memset(loaded, 0, sizeof *loaded);
}
