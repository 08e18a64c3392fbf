/* Training runs: data and tokenizer set-up, the step loop (micro-batches, AdamW, schedule),
 * periodic evaluation and checkpoints, and --resume from a checkpoint's state.json. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "twist/error.h"
#include "core/paths.h"
#include "train/train_internal.h"
#include "twist/train.h"
#include "twist/clock.h"

tw_train_options tw_train_defaults(void) {
    tw_train_options o;
    memset(&o, 0, sizeof o);
    o.vocab_size = 4096;
    o.batch = 16;
    o.grad_accum = 1;
    o.steps = 1000;
    o.lr = 1e-3f;
    o.min_lr = 1e-4f;
    o.warmup = 100;
    o.adamw = tw_adamw_defaults();
    o.seed = 1337;
    o.log_every = 10;
    o.eval_every = 250;
    o.eval_batches = 20;
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* The default corpus                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* Writes both levels' text into path through a temporary file, so a crash leaves no torn
 * corpus that a later run would reuse. */
static tw_status write_default_corpus(size_t words, const char *path) {
    char *levels[2] = {NULL, NULL};
    size_t lengths[2] = {0, 0};
    tw_status status = TW_OK;
    for (int level = 0; level < 2 && status == TW_OK; level++)
        status = tw_synth_generate(level, 1 + (uint64_t)level, words / 2, &levels[level],
                                   &lengths[level]);
    char temp[PATH_MAX + 32];
    snprintf(temp, sizeof temp, "%s.tmp-%ld", path, (long)getpid());
    FILE *file = status == TW_OK ? fopen(temp, "wb") : NULL;
    if (status == TW_OK && !file)
        status = tw_error(TW_ERR_IO, "%s: cannot write the default corpus: %s", temp,
                          strerror(errno));
    if (file) {
        bool ok = fwrite(levels[0], 1, lengths[0], file) == lengths[0] &&
                  fputs("\n\n", file) >= 0 &&
                  fwrite(levels[1], 1, lengths[1], file) == lengths[1];
        ok = fclose(file) == 0 && ok;
        if (!ok || rename(temp, path) != 0) {
            unlink(temp);
            status = tw_error(TW_ERR_IO, "%s: cannot write the default corpus", path);
        }
    }
    free(levels[0]);
    free(levels[1]);
    return status;
}

tw_status tw_default_corpus(size_t words, char *path, size_t capacity) {
    char dir[PATH_MAX];
    if (!tw_user_cache_dir(dir, sizeof dir) || !tw_make_dirs(dir))
        return tw_error(TW_ERR_IO,
                        "no cache directory for the default corpus: set TWIST_CACHE_DIR or HOME, "
                        "or pass --data");
    int written = snprintf(path, capacity, "%s/synth-levels01-%zuw.txt", dir, words);
    if (written < 0 || (size_t)written >= capacity)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "default corpus path too long");
    struct stat info;
    /* The text is a pure function of (levels, seeds, words): an existing file is reused. */
    if (stat(path, &info) == 0 && info.st_size > 0) return TW_OK;
    return write_default_corpus(words, path);
}

/* ------------------------------------------------------------------------------------------ */
/* State of a run, as state.json                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct run_state {
    int step;
    tw_loader_state loader;
    uint64_t data_hash;   /* FNV-1a of the training token stream */
    char data_path[PATH_MAX];
    bool synthetic_data;
} run_state;

static uint64_t stream_hash(const int32_t *tokens, size_t count) {
    return tw_fnv1a64(TW_FNV1A_INIT, tokens, count * sizeof *tokens);
}

static void add_hex(cJSON *object, const char *key, uint64_t value) {
    char text[24];
    snprintf(text, sizeof text, "0x%016" PRIx64, value);
    cJSON_AddStringToObject(object, key, text);
}

static char *state_to_json(const run_state *s, const tw_train_options *o) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "step", s->step);
    cJSON *loader = cJSON_AddObjectToObject(root, "train_loader");
    add_hex(loader, "rng", s->loader.rng);
    add_hex(loader, "batches", s->loader.batches);
    add_hex(loader, "cursor", s->loader.cursor);
    cJSON *data = cJSON_AddObjectToObject(root, "data");
    cJSON_AddStringToObject(data, "path", s->synthetic_data ? "" : s->data_path);
    cJSON_AddBoolToObject(data, "synthetic", s->synthetic_data);
    add_hex(data, "train_stream_hash", s->data_hash);
    cJSON *opts = cJSON_AddObjectToObject(root, "options");
    cJSON_AddNumberToObject(opts, "batch", o->batch);
    cJSON_AddNumberToObject(opts, "grad_accum", o->grad_accum);
    cJSON_AddNumberToObject(opts, "steps", o->steps);
    cJSON_AddNumberToObject(opts, "lr", o->lr);
    cJSON_AddNumberToObject(opts, "min_lr", o->min_lr);
    cJSON_AddNumberToObject(opts, "warmup", o->warmup);
    cJSON_AddNumberToObject(opts, "beta1", o->adamw.beta1);
    cJSON_AddNumberToObject(opts, "beta2", o->adamw.beta2);
    cJSON_AddNumberToObject(opts, "eps", o->adamw.eps);
    cJSON_AddNumberToObject(opts, "weight_decay", o->adamw.weight_decay);
    cJSON_AddNumberToObject(opts, "grad_clip", o->adamw.grad_clip);
    add_hex(opts, "seed", o->seed);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static tw_status json_number(const cJSON *object, const char *key, const char *source,
                             double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsNumber(item))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s' is missing or not a number", source, key);
    *out = item->valuedouble;
    return TW_OK;
}

static tw_status json_hex(const cJSON *object, const char *key, const char *source,
                          uint64_t *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    char *end = NULL;
    if (cJSON_IsString(item)) {
        errno = 0;
        *out = strtoull(item->valuestring, &end, 16);
        if (!errno && end && *end == '\0' && end != item->valuestring) return TW_OK;
    }
    return tw_error(TW_ERR_FORMAT, "%s: field '%s' is missing or not a hex number", source, key);
}

/* The training options of the checkpoint's run (so a resumed run continues the same run). */
static tw_status read_options(const cJSON *opts, const char *source, tw_train_options *o) {
    double v[11];
    static const char *const keys[] = {"batch", "grad_accum", "steps", "lr", "min_lr", "warmup",
                                       "beta1", "beta2", "eps", "weight_decay", "grad_clip"};
    for (int i = 0; i < 11; i++) {
        tw_status status = json_number(opts, keys[i], source, &v[i]);
        if (status != TW_OK) return status;
    }
    o->batch = (int)v[0];
    o->grad_accum = (int)v[1];
    o->lr = (float)v[3];
    o->min_lr = (float)v[4];
    o->warmup = (int)v[5];
    o->adamw = (tw_adamw_config){(float)v[6], (float)v[7], (float)v[8], (float)v[9], (float)v[10]};
    /* steps: the caller's --steps may extend a run; the checkpoint's total is the default. */
    if (o->steps <= 0) o->steps = (int)v[2];
    return json_hex(opts, "seed", source, &o->seed);
}

static tw_status state_from_json(const char *json, const char *source, run_state *s,
                                 tw_train_options *o) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_Parse(json);
    const cJSON *loader = cJSON_GetObjectItemCaseSensitive(root, "train_loader");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    tw_status status = TW_OK;
    double step = 0;
    if (!cJSON_IsObject(loader) || !cJSON_IsObject(data) || !cJSON_IsObject(opts))
        status = tw_error(TW_ERR_FORMAT,
                          "%s: not a twist training state (needs train_loader, data, options); "
                          "was this checkpoint saved by a training run?",
                          source);
    if (status == TW_OK) status = json_number(root, "step", source, &step);
    if (status == TW_OK) status = json_hex(loader, "rng", source, &s->loader.rng);
    if (status == TW_OK) status = json_hex(loader, "batches", source, &s->loader.batches);
    if (status == TW_OK) status = json_hex(loader, "cursor", source, &s->loader.cursor);
    if (status == TW_OK) status = json_hex(data, "train_stream_hash", source, &s->data_hash);
    if (status == TW_OK) status = read_options(opts, source, o);
    if (status == TW_OK) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(data, "path");
        s->synthetic_data = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "synthetic"));
        snprintf(s->data_path, sizeof s->data_path, "%s",
                 cJSON_IsString(path) ? path->valuestring : "");
        s->step = (int)step;
    }
    cJSON_Delete(root);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* A run                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct run {
    tw_train_options options;
    tw_train_report_fn report;
    void *report_context;
    tw_device *device;
    tw_gpt *model;
    tw_adamw *opt;
    tw_tokenizer *tokenizer;
    tw_dataset *dataset;
    tw_loader train_loader;
    run_state state;
    char corpus[PATH_MAX];
    double started, tokens_done;
} run;

static void say(run *r, tw_report_kind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void say(run *r, tw_report_kind kind, const char *format, ...) {
    if (!r->report) return;
    char message[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    tw_train_report report = {.kind = kind, .step = r->state.step,
                              .total_steps = r->options.steps, .message = message};
    r->report(r->report_context, &report);
}

static tw_status encode_callback(void *context, const char *text, size_t length, int32_t **ids,
                                 size_t *count) {
    return tw_tokenizer_encode(context, text, length, ids, count);
}

/* Shared set-up pieces (train_internal.h) report through this. */
static void say_line(void *context, const char *message) {
    say(context, TW_REPORT_INFO, "%s", message);
}

tw_status tw_train_choose_corpus(const char *data_path, char *corpus, size_t capacity,
                                 bool *synthetic, tw_train_say_fn say_fn, void *context) {
    char line[PATH_MAX + 64];
    if (data_path) {
        snprintf(corpus, capacity, "%s", data_path);
        *synthetic = false;
        return TW_OK;
    }
    TW_TRY(tw_default_corpus(2000000, corpus, capacity));
    *synthetic = true;
    snprintf(line, sizeof line, "data: built-in graded synthetic English (%s)", corpus);
    if (say_fn) say_fn(context, line);
    return TW_OK;
}

tw_status tw_train_prepare_tokenizer(const char *corpus_path, const char *tokenizer_path,
                                     int vocab_size, tw_tokenizer **out, tw_train_say_fn say_fn,
                                     void *context) {
    /* The corpus is checked (readable, text, no NUL bytes) before a tokenizer is trained on it. */
    tw_corpus *corpus = NULL;
    TW_TRY(tw_corpus_load(corpus_path, &corpus));
    tw_corpus_free(corpus);
    if (tokenizer_path) return tw_tokenizer_load(tokenizer_path, out);
    const char *paths[1] = {corpus_path};
    TW_TRY(tw_tokenizer_train(paths, 1, vocab_size, out));
    char line[128];
    snprintf(line, sizeof line, "tokenizer: byte-level BPE with %d tokens trained on the data",
             tw_tokenizer_vocab_size(*out));
    if (say_fn) say_fn(context, line);
    return TW_OK;
}

tw_status tw_train_load_dataset(const char *corpus, const tw_tokenizer *tokenizer,
                                tw_dataset **out, tw_train_say_fn say_fn, void *context) {
    tw_encoder encoder = {encode_callback, (void *)tokenizer, tw_tokenizer_hash(tokenizer),
                          tw_tokenizer_eot_id(tokenizer)};
    TW_TRY(tw_dataset_load(corpus, &encoder, NULL, out));
    const tw_dataset *d = *out;
    char line[PATH_MAX + 256];
    snprintf(line, sizeof line, "data: %s: %zu training tokens (%zu documents), %zu validation "
             "tokens (%zu documents)%s", corpus, d->train_tokens, d->train_docs, d->val_tokens,
             d->val_docs, d->cache == TW_CACHE_HIT ? ", from cache" : "");
    if (say_fn) say_fn(context, line);
    return TW_OK;
}

/* The corpus path: --data, the checkpoint's, or the built-in synthetic corpus. */
static tw_status choose_corpus(run *r) {
    const tw_train_options *o = &r->options;
    if (!o->data_path && r->state.data_path[0] && !r->state.synthetic_data)
        snprintf(r->corpus, sizeof r->corpus, "%s", r->state.data_path);
    else
        TW_TRY(tw_train_choose_corpus(o->data_path, r->corpus, sizeof r->corpus,
                                      &r->state.synthetic_data, say_line, r));
    snprintf(r->state.data_path, sizeof r->state.data_path, "%s", r->corpus);
    return TW_OK;
}

static tw_status load_data(run *r) {
    TW_TRY(tw_train_load_dataset(r->corpus, r->tokenizer, &r->dataset, say_line, r));
    const tw_dataset *d = r->dataset;
    char name[PATH_MAX + 16];
    snprintf(name, sizeof name, "%s (training)", r->corpus);
    return tw_loader_init(&r->train_loader, d->train, d->train_tokens, r->options.batch,
                          r->options.model.max_seq_len, r->options.seed, 0, 1, name);
}

static tw_status fresh_start(run *r) {
    tw_train_options *o = &r->options;
    TW_TRY(choose_corpus(r));
    TW_TRY(tw_train_prepare_tokenizer(r->corpus, o->tokenizer_path, o->vocab_size, &r->tokenizer,
                                      say_line, r));
    o->model.vocab_size = tw_tokenizer_vocab_size(r->tokenizer);
    TW_TRY(tw_gpt_create(r->device, &o->model, &r->model));
    TW_TRY(tw_gpt_init_params(r->model, o->seed));
    TW_TRY(tw_adamw_create(r->model, &o->adamw, &r->opt));
    TW_TRY(load_data(r));
    r->state.data_hash = stream_hash(r->dataset->train, r->dataset->train_tokens);
    return TW_OK;
}

static tw_status resume(run *r) {
    tw_train_options *o = &r->options;
    tw_loaded_model loaded;
    char source[PATH_MAX + 16];
    snprintf(source, sizeof source, "%s/state.json", o->out_dir);
    /* The checkpoint's own run settings first: they give the AdamW settings to load with. */
    tw_checkpoint *ckpt = NULL;
    TW_TRY(tw_checkpoint_open(o->out_dir, &ckpt));
    tw_status status = state_from_json(tw_checkpoint_state_json(ckpt), source, &r->state, o);
    tw_checkpoint_close(ckpt);
    if (status != TW_OK) return status;
    if (r->state.step >= o->steps)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--resume: the checkpoint in %s has done %d of %d steps; pass a larger "
                        "--steps to train further",
                        o->out_dir, r->state.step, o->steps);
    TW_TRY(tw_train_load(o->out_dir, r->device, &o->adamw, &loaded));
    r->model = loaded.model;
    r->opt = loaded.opt;
    r->tokenizer = loaded.tokenizer;
    tw_checkpoint_close(loaded.checkpoint);
    o->model = *tw_gpt_get_config(r->model);
    TW_TRY(choose_corpus(r));
    TW_TRY(load_data(r));
    if (stream_hash(r->dataset->train, r->dataset->train_tokens) != r->state.data_hash)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--resume: the training data of %s differ from those the checkpoint in "
                        "%s was trained on",
                        r->corpus, o->out_dir);
    TW_TRY(tw_loader_set_state(&r->train_loader, r->state.loader));
    say(r, TW_REPORT_INFO, "resumed %s at step %d of %d", o->out_dir, r->state.step, o->steps);
    return TW_OK;
}

static tw_status save(run *r) {
    r->state.loader = tw_loader_get_state(&r->train_loader);
    char *state = state_to_json(&r->state, &r->options);
    if (!state) return tw_error(TW_ERR_OUT_OF_MEMORY, "state.json: out of host memory");
    tw_status status = tw_train_save(r->options.out_dir, r->model, r->opt, state, r->tokenizer);
    free(state);
    if (status == TW_OK) say(r, TW_REPORT_SAVE, "%s", r->options.out_dir);
    return status;
}

static tw_status evaluate(run *r) {
    tw_train_report report = {.kind = TW_REPORT_EVAL, .step = r->state.step,
                              .total_steps = r->options.steps};
    TW_TRY(tw_evaluate(r->model, r->dataset->val, r->dataset->val_tokens, r->options.batch,
                        r->options.model.max_seq_len, r->options.eval_batches, &report.eval));
    report.elapsed_s = tw_now_seconds() - r->started;
    if (r->report) r->report(r->report_context, &report);
    return TW_OK;
}

tw_status tw_train_compute_grads(tw_gpt *model, tw_loader *loader, int batch, int seq_len,
                                 int grad_accum, int32_t *inputs, int32_t *targets,
                                 double *loss, double *accuracy) {
    double loss_sum = 0.0, accuracy_sum = 0.0;
    TW_TRY(tw_gpt_zero_grad(model));
    for (int micro = 0; micro < grad_accum; micro++) {
        tw_gpt_metrics metrics;
        TW_TRY(tw_loader_next(loader, inputs, targets));
        TW_TRY(tw_gpt_forward(model, inputs, targets, batch, seq_len));
        TW_TRY(tw_gpt_backward(model, 1.0f / (float)grad_accum));
        TW_TRY(tw_gpt_metrics_read(model, &metrics));
        loss_sum += metrics.loss / grad_accum;
        accuracy_sum += metrics.accuracy / grad_accum;
    }
    if (loss) *loss = loss_sum;
    if (accuracy) *accuracy = accuracy_sum;
    return TW_OK;
}

/* One optimizer step over grad_accum micro-batches. */
static tw_status train_step(run *r, int32_t *inputs, int32_t *targets) {
    const tw_train_options *o = &r->options;
    const int T = o->model.max_seq_len;
    tw_train_report report = {.kind = TW_REPORT_STEP, .total_steps = o->steps};
    TW_TRY(tw_train_compute_grads(r->model, &r->train_loader, o->batch, T, o->grad_accum, inputs,
                                  targets, &report.loss, &report.accuracy));
    tw_lr_schedule schedule = {o->lr, o->min_lr, o->warmup, o->steps};
    float norm = 0.0f;
    report.lr = tw_lr_at(&schedule, r->state.step);
    TW_TRY(tw_adamw_update(r->opt, (float)report.lr, &norm));
    r->state.step++;
    r->tokens_done += (double)o->grad_accum * o->batch * T;
    report.step = r->state.step;
    report.grad_norm = norm;
    report.elapsed_s = tw_now_seconds() - r->started;
    report.tokens_per_s = r->tokens_done / report.elapsed_s;
    bool last = r->state.step == o->steps;
    if (r->report && (last || (o->log_every > 0 && r->state.step % o->log_every == 0)))
        r->report(r->report_context, &report);
    return TW_OK;
}

static tw_status train_loop(run *r) {
    const tw_train_options *o = &r->options;
    const size_t N = (size_t)o->batch * (size_t)o->model.max_seq_len;
    int32_t *inputs = malloc(N * sizeof *inputs), *targets = malloc(N * sizeof *targets);
    if (!inputs || !targets) {
        free(inputs);
        free(targets);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "train: out of host memory");
    }
    const int stop = o->stop_after > 0 && r->state.step + o->stop_after < o->steps
                         ? r->state.step + o->stop_after : o->steps;
    tw_status status = TW_OK;
    r->started = tw_now_seconds();
    while (status == TW_OK && r->state.step < stop) {
        status = train_step(r, inputs, targets);
        const int step = r->state.step;
        if (status == TW_OK && o->eval_every > 0 && step % o->eval_every == 0 && step < stop)
            status = evaluate(r);
        if (status == TW_OK && o->save_every > 0 && step % o->save_every == 0 && step < stop)
            status = save(r);
    }
    free(inputs);
    free(targets);
    if (status == TW_OK) status = evaluate(r);
    if (status == TW_OK) status = save(r);
    return status;
}

/* A fresh run may write to an absent or empty directory or over a twist checkpoint; the save at
 * the end would refuse anything else, so it is refused before any training. */
static tw_status check_output_dir(const char *dir) {
    DIR *handle = opendir(dir);
    if (!handle) return TW_OK; /* absent: created by the first save */
    bool empty = true;
    for (struct dirent *entry; (entry = readdir(handle)) != NULL;)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) empty = false;
    closedir(handle);
    char checksums[PATH_MAX + 32];
    snprintf(checksums, sizeof checksums, "%s/checksums.json", dir);
    if (empty || access(checksums, F_OK) == 0) return TW_OK;
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "--out %s: the directory holds files but no twist checkpoint; choose another "
                    "directory (twist replaces only its own checkpoints)",
                    dir);
}

static tw_status check_options(const tw_train_options *o) {
    if (!o->device || !o->out_dir)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "train: a device and an output directory are needed");
    if (o->batch < 1 || o->grad_accum < 1 || o->steps < 1 || o->warmup < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "train: batch, grad_accum and steps must be >= 1 and warmup >= 0");
    if (!(o->lr > 0.0f) || o->min_lr < 0.0f || o->min_lr > o->lr)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "train: need lr > 0 and 0 <= min_lr <= lr");
    return TW_OK;
}

tw_status tw_train_run(const tw_train_options *options, tw_train_report_fn report,
                       void *context) {
    if (!options) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_train_run: options is NULL");
    run r;
    memset(&r, 0, sizeof r);
    r.options = *options;
    r.report = report;
    r.report_context = context;
    if (options->resume) r.options.steps = options->steps; /* 0: the checkpoint's */
    tw_status status = options->resume ? TW_OK : check_options(&r.options);
    if (status == TW_OK && !options->resume) status = check_output_dir(options->out_dir);
    if (status == TW_OK) status = tw_device_open(options->device, &r.device);
    if (status == TW_OK) status = options->resume ? resume(&r) : fresh_start(&r);
    if (status == TW_OK) status = check_options(&r.options);
    if (status == TW_OK) {
        const tw_device_info *info = tw_device_get_info(r.device);
        say(&r, TW_REPORT_INFO, "model: %zu parameters on %s (%s); %d steps of %d x %d tokens",
            tw_gpt_param_count(r.model), info->spec, info->name, r.options.steps,
            r.options.batch * r.options.grad_accum, r.options.model.max_seq_len);
        status = train_loop(&r);
    }
    tw_dataset_free(r.dataset);
    tw_adamw_destroy(r.opt);
    tw_gpt_destroy(r.model);
    tw_tokenizer_free(r.tokenizer);
    tw_device_close(r.device);
    return status;
}
