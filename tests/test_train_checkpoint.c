/* Model checkpoints (twist/train.h) on the CPU:
 *   - round trip: parameters, AdamW moments and step, config (per-layer settings included) and
 *     tokenizer come back bit for bit;
 *   - resume: a run stopped after 6 of 12 steps and resumed gives the same losses, bit for bit,
 *     and the same final weights as the uninterrupted run;
 *   - bad checkpoints are refused with a message naming the file and the problem: a truncated
 *     file, a flipped byte, a missing tensor, a tensor whose shape the config contradicts, a
 *     config without a field, a tokenizer that does not match the vocabulary, no checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "twist/train.h"

static char temp_root[256];

static void path_in(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", temp_root, name);
}

/* A small corpus: enough distinct text for a tokenizer and a few batches. */
static void write_corpus(const char *path) {
    TW_CHECK_OK(tw_synth_write(0, 5, 20000, path));
}

static tw_tokenizer *small_tokenizer(const char *corpus) {
    tw_tokenizer *tok = NULL;
    const char *paths[1] = {corpus};
    TW_CHECK_OK(tw_tokenizer_train(paths, 1, 300, &tok));
    return tok;
}

/* Two layers that differ in heads, MLP width and scales. */
static tw_gpt_config irregular_config(int vocab) {
    tw_gpt_config c;
    tw_gpt_config_uniform(vocab, 16, 2, 16, 2, &c);
    c.layers[0] = (tw_gpt_layer){.heads = 3, .mlp_hidden = 40, .attn_scale = 1.25f, .mlp_scale = 0.5f};
    c.layers[1] = (tw_gpt_layer){.heads = 1, .mlp_hidden = 24, .attn_scale = 2.0f, .mlp_scale = 1.0f};
    return c;
}

static bool buffers_equal(tw_buffer *a, tw_buffer *b, size_t count) {
    float *x = malloc(count * 4), *y = malloc(count * 4);
    bool equal = x && y && tw_buffer_download(a, 0, x, count * 4) == TW_OK &&
                 tw_buffer_download(b, 0, y, count * 4) == TW_OK && !memcmp(x, y, count * 4);
    free(x);
    free(y);
    return equal;
}

static void check_round_trip(tw_device *cpu, const char *corpus) {
    tw_tokenizer *tok = small_tokenizer(corpus);
    tw_gpt_config config = irregular_config(tw_tokenizer_vocab_size(tok));
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(cpu, &config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 3));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    /* Two optimizer steps so the moments and the step counter hold something. */
    int32_t tokens[2 * 16], targets[2 * 16];
    for (int i = 0; i < 32; i++) tokens[i] = targets[(i + 31) % 32] = (i * 7) % config.vocab_size;
    for (int s = 0; s < 2; s++) {
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, 2, 16));
        TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
        TW_CHECK_OK(tw_adamw_update(opt, 1e-2f, NULL));
    }
    char dir[300];
    path_in(dir, sizeof dir, "roundtrip");
    TW_CHECK_OK(tw_train_save(dir, model, opt, "{\"note\": 1}", tok));

    tw_loaded_model loaded;
    TW_CHECK_OK(tw_train_load(dir, cpu, &adam, &loaded));
    if (loaded.model) {
        const tw_gpt_config *back = tw_gpt_get_config(loaded.model);
        TW_CHECK(memcmp(back->layers, config.layers, sizeof(tw_gpt_layer) * 2) == 0 &&
                     back->head_dim == config.head_dim && back->n_embd == config.n_embd,
                 "per-layer config did not survive the round trip");
        const size_t P = tw_gpt_param_count(model);
        TW_CHECK(buffers_equal(tw_gpt_params(model), tw_gpt_params(loaded.model), P),
                 "parameters differ after the round trip");
        TW_CHECK(buffers_equal(tw_adamw_first_moment(opt), tw_adamw_first_moment(loaded.opt), P) &&
                     buffers_equal(tw_adamw_second_moment(opt),
                                   tw_adamw_second_moment(loaded.opt), P),
                 "AdamW moments differ after the round trip");
        TW_CHECK(tw_adamw_steps(loaded.opt) == 2, "AdamW step %d, expected 2",
                 tw_adamw_steps(loaded.opt));
        TW_CHECK(tw_tokenizer_hash(loaded.tokenizer) == tw_tokenizer_hash(tok),
                 "tokenizer differs after the round trip");
        TW_CHECK(strstr(tw_checkpoint_state_json(loaded.checkpoint), "\"note\"") != NULL,
                 "state.json lost");
    }
    printf("round trip: %zu parameters, moments, step, per-layer config, tokenizer: identical\n",
           tw_gpt_param_count(model));
    tw_loaded_model_free(&loaded);
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    tw_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------------------------ */
/* Resume                                                                                     */
/* ------------------------------------------------------------------------------------------ */

enum { RESUME_STEPS = 12 };

typedef struct loss_log {
    double losses[RESUME_STEPS + 1];
} loss_log;

static void record_loss(void *context, const tw_train_report *report) {
    loss_log *log = context;
    if (report->kind == TW_REPORT_STEP && report->step <= RESUME_STEPS)
        log->losses[report->step] = report->loss;
}

static tw_train_options resume_options(const char *corpus, const char *out) {
    tw_train_options o = tw_train_defaults();
    tw_gpt_config_uniform(2, 16, 2, 16, 2, &o.model);
    o.device = "cpu";
    o.data_path = corpus;
    o.vocab_size = 300;
    o.batch = 4;
    o.steps = RESUME_STEPS;
    o.warmup = 3;
    o.log_every = 1;
    o.eval_every = 0;
    o.eval_batches = 2;
    o.out_dir = out;
    return o;
}

static void check_resume(const char *corpus) {
    char whole[300], split[300], a[400], b[400];
    path_in(whole, sizeof whole, "whole");
    path_in(split, sizeof split, "split");
    loss_log straight = {{0}}, resumed = {{0}};
    tw_train_options o = resume_options(corpus, whole);
    TW_CHECK_OK(tw_train_run(&o, record_loss, &straight));
    o = resume_options(corpus, split);
    o.stop_after = RESUME_STEPS / 2;
    TW_CHECK_OK(tw_train_run(&o, record_loss, &resumed));
    o = resume_options(corpus, split);
    o.resume = true;
    o.steps = 0; /* the checkpoint's */
    TW_CHECK_OK(tw_train_run(&o, record_loss, &resumed));
    TW_CHECK(memcmp(straight.losses, resumed.losses, sizeof straight.losses) == 0,
             "resumed losses differ: step %d %.9g vs %.9g", RESUME_STEPS,
             straight.losses[RESUME_STEPS], resumed.losses[RESUME_STEPS]);
    /* The weights file holds the same bytes. */
    snprintf(a, sizeof a, "%s/model.safetensors", whole);
    snprintf(b, sizeof b, "%s/model.safetensors", split);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF; ) {
        ca = fgetc(fa);
        cb = fgetc(fb);
        same = ca == cb;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    TW_CHECK(same, "final weights differ between the resumed and the uninterrupted run");
    printf("resume: %d steps as 6 + 6 give losses %.6f -> %.6f, bit for bit as one run\n",
           RESUME_STEPS, resumed.losses[1], resumed.losses[RESUME_STEPS]);
}

/* ------------------------------------------------------------------------------------------ */
/* Bad checkpoints                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Overwrites `bytes` bytes at `offset` (negative: from the end) of DIR/name, or truncates it to
 * half when bytes == 0. */
static void damage(const char *dir, const char *name, long offset, int bytes) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "r+b");
    if (!file) return;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    if (bytes == 0) {
        fclose(file);
        TW_CHECK(truncate(path, size / 2) == 0, "cannot truncate %s", path);
        return;
    }
    fseek(file, offset >= 0 ? offset : size + offset, SEEK_SET);
    for (int i = 0; i < bytes; i++) fputc(0x5a, file);
    fclose(file);
}

/* A checkpoint whose files agree with their checksums but not with each other: the weights of
 * `weights` under the config JSON `config_json`, and the tokenizer `tok`. */
static void write_inconsistent(const char *dir, tw_device *cpu, const tw_gpt_config *weights,
                               const char *config_json, const tw_tokenizer *tok) {
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_gpt_create(cpu, weights, &model));
    if (!model) return;
    TW_CHECK_OK(tw_gpt_init_params(model, 1));
    const size_t P = tw_gpt_param_count(model);
    float *host = malloc(P * 4);
    TW_CHECK_OK(tw_buffer_download(tw_gpt_params(model), 0, host, P * 4));
    tw_checkpoint_writer *writer = NULL;
    TW_CHECK_OK(tw_checkpoint_writer_create(&writer));
    for (int i = 0; i < tw_gpt_tensor_count(model); i++) {
        const tw_gpt_tensor *t = tw_gpt_tensor_at(model, i);
        int64_t dims[2] = {t->shape[0], t->shape[1]};
        TW_CHECK_OK(tw_checkpoint_writer_add(writer, TW_CKPT_MODEL, t->name, t->ndim, dims,
                                             host + t->offset));
    }
    char *tokens = NULL;
    size_t length = 0;
    TW_CHECK_OK(tw_tokenizer_to_json(tok, &tokens, &length));
    TW_CHECK_OK(tw_checkpoint_writer_add_file(writer, "tokenizer.json", tokens, length));
    TW_CHECK_OK(tw_checkpoint_writer_set_config(writer, config_json));
    TW_CHECK_OK(tw_checkpoint_save(writer, dir));
    tw_checkpoint_writer_destroy(writer);
    free(tokens);
    free(host);
    tw_gpt_destroy(model);
}

static void check_bad_checkpoints(tw_device *cpu, const char *corpus) {
    tw_tokenizer *tok = small_tokenizer(corpus);
    const int V = tw_tokenizer_vocab_size(tok);
    tw_gpt_config config;
    tw_gpt_config_uniform(V, 16, 2, 16, 2, &config);
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_gpt_create(cpu, &config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 2));
    char good[300], dir[300];
    tw_loaded_model loaded;
    path_in(good, sizeof good, "good");
    TW_CHECK_OK(tw_train_save(good, model, NULL, NULL, tok));

    /* Damaged files: the checksums catch them first. */
    const struct { const char *file; long offset; int bytes; const char *what; } damages[] = {
        {"model.safetensors", 0, 0, "truncated"},
        {"model.safetensors", -9, 4, "flipped"},
        {"config.json", 5, 2, "flipped"},
        {"tokenizer.json", -40, 3, "flipped"},
    };
    for (size_t i = 0; i < sizeof damages / sizeof damages[0]; i++) {
        snprintf(dir, sizeof dir, "%s/damaged%zu", temp_root, i);
        TW_CHECK_OK(tw_train_save(dir, model, NULL, NULL, tok));
        damage(dir, damages[i].file, damages[i].offset, damages[i].bytes);
        TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_FORMAT, damages[i].file);
    }

    /* Consistent checksums, inconsistent content. */
    char *json = NULL;
    tw_gpt_config wider = config;
    wider.n_embd = 24; /* the weights stay 16 wide */
    wider.head_dim = 12;
    TW_CHECK_OK(tw_gpt_config_to_json(&wider, 0, &json));
    path_in(dir, sizeof dir, "wrong_shape");
    write_inconsistent(dir, cpu, &config, json, tok);
    TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_FORMAT, "has shape");
    free(json);

    tw_gpt_config deeper = config;
    deeper.n_layer = 3;
    deeper.layers[2] = deeper.layers[0];
    TW_CHECK_OK(tw_gpt_config_to_json(&deeper, 0, &json));
    path_in(dir, sizeof dir, "missing_tensor");
    write_inconsistent(dir, cpu, &config, json, tok);
    TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_FORMAT,
                   "missing tensor 'transformer.h.2.");
    free(json);

    path_in(dir, sizeof dir, "no_field");
    write_inconsistent(dir, cpu, &config, "{\"vocab_size\": 300, \"n_embd\": 16}", tok);
    TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_FORMAT, "n_positions");

    tw_gpt_config other_vocab = config;
    other_vocab.vocab_size = V + 1;
    TW_CHECK_OK(tw_gpt_config_to_json(&other_vocab, 0, &json));
    path_in(dir, sizeof dir, "vocab");
    write_inconsistent(dir, cpu, &other_vocab, json, tok);
    TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_FORMAT, "tokenizer.json");
    free(json);

    path_in(dir, sizeof dir, "absent");
    TW_CHECK_ERROR(tw_train_load(dir, cpu, NULL, &loaded), TW_ERR_NOT_FOUND, "absent");
    /* Loading for --resume needs optimizer state: a weights-only checkpoint has none. */
    TW_CHECK_ERROR(tw_train_load(good, cpu, &(tw_adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, 1.0f},
                                 &loaded),
                   TW_ERR_FORMAT, "optimizer");
    printf("bad checkpoints: truncated, flipped bytes, wrong shape, missing tensor, missing "
           "field, vocabulary mismatch, absent, no optimizer state: all refused\n");
    tw_gpt_destroy(model);
    tw_tokenizer_free(tok);
}

int main(void) {
    tw_test_temp_dir("ckpt", temp_root, sizeof temp_root);
    char corpus[300];
    path_in(corpus, sizeof corpus, "corpus.txt");
    write_corpus(corpus);
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    check_round_trip(cpu, corpus);
    check_resume(corpus);
    check_bad_checkpoints(cpu, corpus);
    tw_device_close(cpu);
    tw_test_remove_temp_dir(temp_root);
    return tw_test_finish("train_checkpoint");
}
