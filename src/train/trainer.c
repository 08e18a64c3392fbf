/* Training runs: data and tokenizer set-up, the step loop (micro-batches, AdamW, schedule),
 * periodic evaluation and checkpoints, and --resume from a checkpoint's state.json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
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

int tw_train_default_warmup(int steps) {
    return steps / 10 < TW_TRAIN_DEFAULT_WARMUP_MAX ? steps / 10 : TW_TRAIN_DEFAULT_WARMUP_MAX;
}

tw_train_options tw_train_defaults(void) {
    tw_train_options o;
    memset(&o, 0, sizeof o);
    o.vocab_size = TW_TRAIN_DEFAULT_VOCAB;
    o.batch = TW_TRAIN_DEFAULT_BATCH;
    o.grad_accum = TW_TRAIN_DEFAULT_ACCUM;
    o.steps = TW_TRAIN_DEFAULT_STEPS;
    o.lr = (float)TW_TRAIN_DEFAULT_LR;
    o.min_lr = (float)TW_TRAIN_DEFAULT_LR / TW_TRAIN_DEFAULT_MIN_LR_DIVISOR;
    o.warmup = tw_train_default_warmup(TW_TRAIN_DEFAULT_STEPS);
    o.adamw = tw_adamw_defaults();
    o.seed = TW_TRAIN_DEFAULT_SEED;
    o.log_every = TW_TRAIN_DEFAULT_LOG_EVERY;
    o.eval_every = TW_TRAIN_DEFAULT_EVAL_EVERY;
    o.eval_batches = TW_TRAIN_DEFAULT_EVAL_BATCHES;
    o.save_every = TW_TRAIN_DEFAULT_SAVE_EVERY;
    o.keep = TW_TRAIN_DEFAULT_KEEP;
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
    bool has_precision;  /* state.json had a "precision" section (checkpoints of earlier
                            versions are fp32) */
    tw_dtype precision;
    tw_loss_scaler scaler;
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
    cJSON_AddNumberToObject(opts, "keep", o->keep);
    /* The precision and fp16's loss scaler, so that a resumed run goes on exactly. */
    cJSON *precision = cJSON_AddObjectToObject(root, "precision");
    cJSON_AddStringToObject(precision, "dtype", tw_dtype_name(s->precision));
    cJSON_AddNumberToObject(precision, "loss_scale", s->scaler.scale);
    cJSON_AddNumberToObject(precision, "good_steps", s->scaler.good_steps);
    cJSON_AddNumberToObject(precision, "skipped_steps", (double)s->scaler.skipped);
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

/* A number field that must lie in [low, high] (and be whole when `whole`): state.json is read
 * back into ints and floats, and a value out of range must be refused before any cast. */
static tw_status json_ranged(const cJSON *object, const char *key, const char *source,
                             double low, double high, bool whole, double *out) {
    TW_TRY(json_number(object, key, source, out));
    if (!(*out >= low && *out <= high) || (whole && *out != (double)(long long)*out))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s' is %.15g, expected %s in [%.15g, %.15g]",
                        source, key, *out, whole ? "a whole number" : "a number", low, high);
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

/* The training options of the checkpoint's run, each range-checked (the ranges of the CLI's
 * flags) before it is converted. */
static tw_status read_options(const cJSON *opts, const char *source, tw_train_options *o) {
    static const struct {
        const char *key;
        double low, high;
        bool whole;
    } fields[11] = {{"batch", 1, 1 << 20, true},        {"grad_accum", 1, 1 << 16, true},
                    {"steps", 1, 1 << 30, true},        {"lr", 1e-12, 10, false},
                    {"min_lr", 0, 10, false},           {"warmup", 0, 1 << 30, true},
                    {"beta1", 0, 0.999999, false},      {"beta2", 0, 0.999999999, false},
                    {"eps", 1e-30, 1, false},           {"weight_decay", 0, 10, false},
                    {"grad_clip", 0, 1e6, false}};
    double v[11];
    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "%s: options", source);
    for (int i = 0; i < 11; i++)
        TW_TRY(json_ranged(opts, fields[i].key, where, fields[i].low, fields[i].high,
                           fields[i].whole, &v[i]));
    if (v[4] > v[3])
        return tw_error(TW_ERR_FORMAT, "%s: field 'min_lr' %g exceeds 'lr' %g", where, v[4], v[3]);
    o->batch = (int)v[0];
    o->grad_accum = (int)v[1];
    o->steps = (int)v[2];
    o->lr = (float)v[3];
    o->min_lr = (float)v[4];
    o->warmup = (int)v[5];
    o->adamw = (tw_adamw_config){(float)v[6], (float)v[7], (float)v[8], (float)v[9], (float)v[10]};
    double keep = TW_TRAIN_DEFAULT_KEEP; /* absent in checkpoints of earlier versions */
    if (cJSON_GetObjectItemCaseSensitive(opts, "keep"))
        TW_TRY(json_ranged(opts, "keep", where, 1, 1000000, true, &keep));
    o->keep = (int)keep;
    return json_hex(opts, "seed", where, &o->seed);
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
    if (status == TW_OK) status = json_ranged(root, "step", source, 0, 1 << 30, true, &step);
    if (status == TW_OK) status = json_hex(loader, "rng", source, &s->loader.rng);
    if (status == TW_OK) status = json_hex(loader, "batches", source, &s->loader.batches);
    if (status == TW_OK) status = json_hex(loader, "cursor", source, &s->loader.cursor);
    if (status == TW_OK) status = json_hex(data, "train_stream_hash", source, &s->data_hash);
    if (status == TW_OK) status = read_options(opts, source, o);
    const cJSON *precision = cJSON_GetObjectItemCaseSensitive(root, "precision");
    if (status == TW_OK && precision) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(precision, "dtype");
        double scale = 1, good = 0, skipped = 0;
        if (!cJSON_IsString(name) || !tw_dtype_parse(name->valuestring, &s->precision) ||
            (s->precision != TW_DTYPE_F32 && s->precision != TW_DTYPE_BF16 &&
             s->precision != TW_DTYPE_F16))
            status = tw_error(TW_ERR_FORMAT, "%s: field 'precision.dtype' is missing or not "
                              "f32, bf16 or f16", source);
        if (status == TW_OK)
            status = json_ranged(precision, "loss_scale", source, 1.0 / 16777216.0,
                                 TW_LOSS_SCALE_MAX, false, &scale);
        if (status == TW_OK)
            status = json_ranged(precision, "good_steps", source, 0, 1 << 30, true, &good);
        if (status == TW_OK)
            status = json_ranged(precision, "skipped_steps", source, 0, 1 << 30, true, &skipped);
        if (status == TW_OK) {
            s->has_precision = true;
            s->scaler = tw_loss_scaler_for(s->precision);
            s->scaler.scale = (float)scale;
            s->scaler.good_steps = (int)good;
            s->scaler.skipped = (long)skipped;
        }
    }
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
    tw_checkpoint_lock *lock;
    int saved_step; /* step of the last save of this invocation, -1 before the first */
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

/* The corpus path: --data, the checkpoint's, or the built-in synthetic corpus. state.json gets
 * it as an absolute path, so a resume from another working directory finds it. */
static tw_status choose_corpus(run *r) {
    const tw_train_options *o = &r->options;
    if (!o->data_path && r->state.data_path[0] && !r->state.synthetic_data) {
        if (access(r->state.data_path, R_OK) != 0)
            return tw_error(TW_ERR_NOT_FOUND,
                            "--resume: the checkpoint in %s was trained on %s, which cannot be "
                            "read (%s); pass --data FILE naming the same text (it is checked "
                            "against the checkpoint's hash of the token stream)",
                            o->out_dir, r->state.data_path, strerror(errno));
        snprintf(r->corpus, sizeof r->corpus, "%s", r->state.data_path);
    } else {
        TW_TRY(tw_train_choose_corpus(o->data_path, r->corpus, sizeof r->corpus,
                                      &r->state.synthetic_data, say_line, r));
    }
    char cwd[PATH_MAX], absolute[2 * PATH_MAX + 2];
    if (r->corpus[0] != '/' && getcwd(cwd, sizeof cwd)) {
        int n = snprintf(absolute, sizeof absolute, "%s/%s", cwd, r->corpus);
        if (n > 0 && (size_t)n < sizeof r->corpus) memcpy(r->corpus, absolute, (size_t)n + 1);
    }
    snprintf(r->state.data_path, sizeof r->state.data_path, "%s", r->corpus);
    return TW_OK;
}

/* The validation split must hold one sequence of T + 1 tokens, or every validation pass (and
 * the one at the end, before the last save) would fail after the training time is spent. */
tw_status tw_train_check_validation(const tw_dataset *d, const char *corpus, int seq_len) {
    if (d->val_tokens >= (size_t)seq_len + 1) return TW_OK;
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "data: %s: the validation split has %zu tokens (%zu documents), fewer than "
                    "one sequence of --seq-len %d + 1 = %d tokens; twist holds out about 5%% of "
                    "the documents (blank-line separated) for validation: give more documents "
                    "or a shorter --seq-len",
                    corpus, d->val_tokens, d->val_docs, seq_len, seq_len + 1);
}

static tw_status load_data(run *r) {
    TW_TRY(tw_train_load_dataset(r->corpus, r->tokenizer, &r->dataset, say_line, r));
    const tw_dataset *d = r->dataset;
    TW_TRY(tw_train_check_validation(d, r->corpus, r->options.model.max_seq_len));
    char name[PATH_MAX + 16];
    snprintf(name, sizeof name, "%s (training)", r->corpus);
    return tw_loader_init(&r->train_loader, d->train, d->train_tokens, r->options.batch,
                          r->options.model.max_seq_len, r->options.seed, 0, 1, name);
}

/* --device-memory, or the device's free memory: the training state must fit before any step.
 * Bytes the device already holds for this run (a loaded checkpoint) count as available. */
static tw_status check_memory(run *r) {
    const tw_train_options *o = &r->options;
    tw_training_memory need;
    /* before apply_precision (a fresh model is checked before it exists): the asked type */
    tw_training_memory_typed(&o->model, o->batch, o->model.max_seq_len,
                             r->model ? tw_gpt_dtype(r->model)
                                      : o->precision_set ? o->precision : TW_DTYPE_F32,
                             &need);
    uint64_t free_bytes = 0;
    bool capped = false;
    TW_TRY(tw_device_free_memory(r->device, &free_bytes, &capped));
    const uint64_t have = free_bytes + tw_device_bytes_in_use(r->device);
    if ((!free_bytes && !capped) || need.total <= have) return TW_OK; /* 0 uncapped: unknown */
    const char *spec = tw_device_get_info(r->device)->spec;
    char total[32], limit[32], p[32], g[32], m[32], a[32];
    char why[128];
    if (capped)
        snprintf(why, sizeof why, "--device-memory caps %s at %s", spec,
                 tw_format_bytes(tw_device_memory_cap(r->device), limit, sizeof limit));
    else
        snprintf(why, sizeof why, "%s has %s free", spec,
                 tw_format_bytes(have, limit, sizeof limit));
    return tw_error(TW_ERR_OUT_OF_MEMORY,
                    "the model does not fit: training it at batch %d x %d tokens needs %s "
                    "(parameters %s, gradients %s, AdamW moments %s, activations and scratch %s) "
                    "but %s; "
                    "%sa smaller model, or `twist ist` over several workers needs less per "
                    "device",
                    o->batch, o->model.max_seq_len,
                    tw_format_bytes(need.total, total, sizeof total),
                    tw_format_bytes(need.params, p, sizeof p),
                    tw_format_bytes(need.grads, g, sizeof g),
                    tw_format_bytes(need.moments, m, sizeof m),
                    tw_format_bytes(need.activations + need.scratch, a, sizeof a), why,
                    o->batch > 1 ? "a smaller --batch (with --accum for the same tokens per "
                                   "step), " : "");
}

static tw_status fresh_start(run *r) {
    tw_train_options *o = &r->options;
    TW_TRY(choose_corpus(r));
    if (o->init_dir) {
        /* Weights, config and tokenizer from the checkpoint; the run takes them over. */
        tw_loaded_model loaded;
        TW_TRY(tw_train_load(o->init_dir, r->device, o->init_optimizer ? &o->adamw : NULL,
                             &loaded));
        r->model = loaded.model;
        r->tokenizer = loaded.tokenizer;
        r->opt = loaded.opt;
        loaded.model = NULL;
        loaded.tokenizer = NULL;
        loaded.opt = NULL;
        tw_loaded_model_free(&loaded);
        o->model = *tw_gpt_get_config(r->model);
        o->vocab_size = o->model.vocab_size;
        say(r, TW_REPORT_INFO, "init: weights%s from %s", r->opt ? " and AdamW state" : "",
            o->init_dir);
    } else {
        TW_TRY(tw_train_prepare_tokenizer(r->corpus, o->tokenizer_path, o->vocab_size,
                                          &r->tokenizer, say_line, r));
        o->model.vocab_size = tw_tokenizer_vocab_size(r->tokenizer);
        TW_TRY(check_memory(r));
        TW_TRY(tw_gpt_create(r->device, &o->model, &r->model));
        TW_TRY(tw_gpt_init_params(r->model, o->seed));
    }
    if (!r->opt) TW_TRY(tw_adamw_create(r->model, &o->adamw, &r->opt));
    TW_TRY(load_data(r));
    r->state.data_hash = stream_hash(r->dataset->train, r->dataset->train_tokens);
    return TW_OK;
}

/* --resume with an option the caller gave explicitly: it must agree with the checkpoint. */
static tw_status conflict(const run *r, const char *flag, const char *given, const char *field,
                          const char *have) {
    char bare[32]; /* "--preset" of "--preset tiny" */
    snprintf(bare, sizeof bare, "%.*s", (int)strcspn(flag, " "), flag);
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "--resume: %s %s conflicts with the checkpoint in %s (%s %s); a resumed run "
                    "keeps its checkpoint's options: drop %s to continue it, or start a new run "
                    "(another --out, or --overwrite to replace this one)",
                    flag, given, r->options.out_dir, field, have, bare);
}

static tw_status check_int(const run *r, uint32_t bit, const char *flag, const char *field,
                           long given, long have) {
    if (!(r->options.given & bit) || given == have) return TW_OK;
    char a[32], b[32];
    snprintf(a, sizeof a, "%ld", given);
    snprintf(b, sizeof b, "%ld", have);
    return conflict(r, flag, a, field, b);
}

static tw_status check_real(const run *r, uint32_t bit, const char *flag, const char *field,
                            float given, float have) {
    if (!(r->options.given & bit) || given == have) return TW_OK;
    char a[32], b[32];
    snprintf(a, sizeof a, "%g", (double)given);
    snprintf(b, sizeof b, "%g", (double)have);
    return conflict(r, flag, a, field, b);
}

/* The given training options against the checkpoint's (ck). */
static tw_status check_resume_options(const run *r, const tw_train_options *ck) {
    const tw_train_options *o = &r->options;
    TW_TRY(check_int(r, TW_TRAIN_GIVEN_BATCH, "--batch", "batch", o->batch, ck->batch));
    TW_TRY(check_int(r, TW_TRAIN_GIVEN_ACCUM, "--accum", "grad_accum", o->grad_accum,
                     ck->grad_accum));
    TW_TRY(check_real(r, TW_TRAIN_GIVEN_LR, "--lr", "lr", o->lr, ck->lr));
    TW_TRY(check_real(r, TW_TRAIN_GIVEN_MIN_LR, "--min-lr", "min_lr", o->min_lr, ck->min_lr));
    TW_TRY(check_int(r, TW_TRAIN_GIVEN_WARMUP, "--warmup", "warmup", o->warmup, ck->warmup));
    TW_TRY(check_real(r, TW_TRAIN_GIVEN_WEIGHT_DECAY, "--weight-decay", "weight_decay",
                      o->adamw.weight_decay, ck->adamw.weight_decay));
    TW_TRY(check_real(r, TW_TRAIN_GIVEN_CLIP, "--clip", "grad_clip", o->adamw.grad_clip,
                      ck->adamw.grad_clip));
    if ((o->given & TW_TRAIN_GIVEN_SEED) && o->seed != ck->seed) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%" PRIu64, o->seed);
        snprintf(b, sizeof b, "%" PRIu64, ck->seed);
        return conflict(r, "--seed", a, "seed", b);
    }
    if (o->given & TW_TRAIN_GIVEN_TOKENIZER)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--resume: --tokenizer cannot be given: a resumed run uses the tokenizer "
                        "saved in the checkpoint in %s (%s/tokenizer.json); drop --tokenizer",
                        o->out_dir, o->out_dir);
    return TW_OK;
}

/* The given model shape (flags, or the preset's values for those not given one by one) against
 * the checkpoint's model. */
static tw_status check_resume_model(const run *r, const tw_gpt_config *have) {
    const tw_train_options *o = &r->options;
    const tw_gpt_config *want = &o->model;
    char preset[80];
    snprintf(preset, sizeof preset, "--preset %s", o->preset_name ? o->preset_name : "");
    const bool by_preset = (o->given & TW_TRAIN_GIVEN_PRESET) != 0;
    const struct {
        uint32_t bit;
        const char *flag, *field;
        long want, have;
    } checks[] = {
        {TW_TRAIN_GIVEN_LAYERS, "--layers", "n_layer", want->n_layer, have->n_layer},
        {TW_TRAIN_GIVEN_EMBD, "--embd", "n_embd", want->n_embd, have->n_embd},
        {TW_TRAIN_GIVEN_HEADS, "--heads", "n_head", want->layers[0].heads, have->layers[0].heads},
        {TW_TRAIN_GIVEN_MLP, "--mlp", "n_inner", want->layers[0].mlp_hidden,
         have->layers[0].mlp_hidden},
        {TW_TRAIN_GIVEN_SEQ_LEN, "--seq-len", "n_positions", want->max_seq_len,
         have->max_seq_len},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const bool own = (o->given & checks[i].bit) != 0;
        if (!own && !by_preset) continue;
        if (checks[i].want == checks[i].have) continue;
        char a[128], b[32];
        if (own) snprintf(a, sizeof a, "%ld", checks[i].want);
        else snprintf(a, sizeof a, "(%s %ld)", checks[i].field, checks[i].want);
        snprintf(b, sizeof b, "%ld", checks[i].have);
        return conflict(r, own ? checks[i].flag : preset, a, checks[i].field, b);
    }
    if ((o->given & TW_TRAIN_GIVEN_VOCAB) && o->vocab_size != have->vocab_size) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%d", o->vocab_size);
        snprintf(b, sizeof b, "%d", have->vocab_size);
        return conflict(r, "--vocab", a, "vocab_size", b);
    }
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
    tw_train_options ck = *o;
    tw_status status = state_from_json(tw_checkpoint_state_json(ckpt), source, &r->state, &ck);
    tw_checkpoint_close(ckpt);
    if (status != TW_OK) return status;
    TW_TRY(check_resume_options(r, &ck));
    /* Continue the checkpoint's run: its options, except the total and the kept count when
     * given. */
    const int steps = (o->given & TW_TRAIN_GIVEN_STEPS) ? o->steps : ck.steps;
    const int keep = (o->given & TW_TRAIN_GIVEN_KEEP) ? o->keep : ck.keep;
    o->batch = ck.batch;
    o->grad_accum = ck.grad_accum;
    o->lr = ck.lr;
    o->min_lr = ck.min_lr;
    o->warmup = ck.warmup;
    o->adamw = ck.adamw;
    o->seed = ck.seed;
    o->steps = steps;
    o->keep = keep;
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
    TW_TRY(check_resume_model(r, tw_gpt_get_config(r->model)));
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
    if (steps != ck.steps) {
        /* The schedule rule: warmup + cosine over the new total, from the step reached on. */
        tw_lr_schedule before = {o->lr, o->min_lr, o->warmup, ck.steps};
        tw_lr_schedule after = {o->lr, o->min_lr, o->warmup, steps};
        say(r, TW_REPORT_INFO,
            "--steps %d (the checkpoint's run had %d): the cosine schedule is recomputed for %d "
            "steps; the learning rate at step %d goes from %.3e to %.3e",
            steps, ck.steps, steps, r->state.step, (double)tw_lr_at(&before, r->state.step),
            (double)tw_lr_at(&after, r->state.step));
    }
    if (keep != ck.keep)
        say(r, TW_REPORT_INFO, "--keep %d (the checkpoint's run had %d)", keep, ck.keep);
    return TW_OK;
}

static tw_status save(run *r) {
    r->state.loader = tw_loader_get_state(&r->train_loader);
    char *state = state_to_json(&r->state, &r->options);
    if (!state) return tw_error(TW_ERR_OUT_OF_MEMORY, "state.json: out of host memory");
    tw_status status = tw_train_save_as(r->options.out_dir, r->model, r->opt, state,
                                        r->tokenizer, r->options.save_dtype);
    free(state);
    /* The first save of a run that replaces another (--overwrite) drops that run's kept
     * checkpoints; then this save is kept per --keep. */
    if (status == TW_OK && r->saved_step < 0 && r->options.overwrite && !r->options.resume)
        status = tw_checkpoint_snapshot(r->options.out_dir, 0, 1);
    if (status == TW_OK)
        status = tw_checkpoint_snapshot(r->options.out_dir, r->state.step, r->options.keep);
    if (status == TW_OK) {
        r->saved_step = r->state.step;
        say(r, TW_REPORT_SAVE, "%s", r->options.out_dir);
    }
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
    return tw_train_compute_grads_scaled(model, loader, batch, seq_len, grad_accum, 1.0f, inputs,
                                         targets, loss, accuracy);
}

tw_status tw_train_choose_precision(tw_device *device, bool set, tw_dtype asked, tw_dtype *out,
                                    const char **why) {
    if (set) {
        TW_TRY(tw_gpt_check_dtype(device, asked));
        *out = asked;
        if (why) *why = "asked for";
        return TW_OK;
    }
    *out = tw_gpt_default_dtype(device, why);
    return TW_OK;
}

tw_status tw_train_compute_grads_scaled(tw_gpt *model, tw_loader *loader, int batch,
                                        int seq_len, int grad_accum, float loss_scale,
                                        int32_t *inputs, int32_t *targets, double *loss,
                                        double *accuracy) {
    double loss_sum = 0.0, accuracy_sum = 0.0;
    TW_TRY(tw_gpt_zero_grad(model));
    for (int micro = 0; micro < grad_accum; micro++) {
        tw_gpt_metrics metrics;
        TW_TRY(tw_loader_next(loader, inputs, targets));
        TW_TRY(tw_gpt_forward(model, inputs, targets, batch, seq_len));
        TW_TRY(tw_gpt_backward(model, 1.0f / (float)grad_accum * loss_scale));
        TW_TRY(tw_gpt_metrics_read(model, &metrics));
        loss_sum += metrics.loss / grad_accum;
        accuracy_sum += metrics.accuracy / grad_accum;
    }
    if (loss) *loss = loss_sum;
    if (accuracy) *accuracy = accuracy_sum;
    return TW_OK;
}

/* A non-finite training loss: the weights (or their updates) have blown up. Training on would
 * only write nan into every parameter and then into the next checkpoint, so the run stops before
 * this step's update and keeps the last checkpoint it saved (if any) as it is. */
static tw_status diverged(const run *r, double loss) {
    char kept[1200];
    if (r->saved_step >= 0)
        snprintf(kept, sizeof kept, "the checkpoint of step %d in %s is kept", r->saved_step,
                 r->options.out_dir);
    else if (r->options.resume)
        snprintf(kept, sizeof kept, "the checkpoint in %s is kept as it was", r->options.out_dir);
    else
        snprintf(kept, sizeof kept, "nothing was saved by this run");
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "step %d: the training loss is %s: the run diverged (try a lower --lr, a "
                    "longer --warmup or --clip); stopped before updating the weights; %s",
                    r->state.step + 1, isnan(loss) ? "nan" : "inf", kept);
}

/* One optimizer step over grad_accum micro-batches. */
static tw_status train_step(run *r, int32_t *inputs, int32_t *targets) {
    const tw_train_options *o = &r->options;
    const int T = o->model.max_seq_len;
    tw_train_report report = {.kind = TW_REPORT_STEP, .total_steps = o->steps};
    tw_loss_scaler *scaler = &r->state.scaler;
    TW_TRY(tw_train_compute_grads_scaled(r->model, &r->train_loader, o->batch, T, o->grad_accum,
                                         scaler->scale, inputs, targets, &report.loss,
                                         &report.accuracy));
    if (!isfinite(report.loss)) return diverged(r, report.loss);
    tw_lr_schedule schedule = {o->lr, o->min_lr, o->warmup, o->steps};
    float norm = 0.0f;
    const float scale_before = scaler->scale;
    report.lr = tw_lr_at(&schedule, r->state.step);
    TW_TRY(tw_adamw_update_scaled(r->opt, (float)report.lr, scaler, &norm, &report.skipped));
    /* A skipped step still takes its batch and its place in the schedule (as PyTorch's
     * GradScaler does); AdamW's own step counter does not move. */
    if (report.skipped)
        say(r, TW_REPORT_INFO,
            "step %d: the fp16 gradients overflowed at loss scale %g: update skipped, loss "
            "scale now %g (%ld skipped so far)",
            r->state.step + 1, (double)scale_before, (double)scaler->scale, scaler->skipped);
    report.precision = r->state.precision;
    report.loss_scale = scaler->scale;
    report.skipped_steps = scaler->skipped;
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
    const int first = r->state.step;
    bool stopped = o->stop && *o->stop;
    while (status == TW_OK && !stopped && r->state.step < stop) {
        status = train_step(r, inputs, targets);
        const int step = r->state.step;
        stopped = o->stop && *o->stop;
        if (status == TW_OK && !stopped && o->eval_every > 0 && step % o->eval_every == 0 &&
            step < stop)
            status = evaluate(r);
        if (status == TW_OK && !stopped && o->save_every > 0 && step % o->save_every == 0 &&
            step < stop)
            status = save(r);
        stopped = stopped || (o->stop && *o->stop);
    }
    free(inputs);
    free(targets);
    if (status != TW_OK) return status;
    if (stopped) {
        /* Asked to stop (a signal): save what was done, skip the closing validation pass. */
        if (r->state.step == first) {
            say(r, TW_REPORT_INFO, "stopped before step %d; nothing new to save",
                r->state.step + 1);
            return TW_OK;
        }
        say(r, TW_REPORT_INFO, "stopped on request after step %d of %d", r->state.step,
            o->steps);
        return r->saved_step == r->state.step ? TW_OK : save(r);
    }
    status = evaluate(r);
    if (status == TW_OK) status = save(r);
    return status;
}

/* Takes out_dir's lock, which checks it by the save's rules and proves it writable, and
 * applies the run's rule: a fresh run writes into an empty directory, or over a checkpoint only
 * with overwrite; a resumed run needs one. */
static tw_status take_output_dir(run *r) {
    const tw_train_options *o = &r->options;
    tw_ckpt_target kind = TW_CKPT_TARGET_EMPTY;
    TW_TRY(tw_checkpoint_lock_take(o->out_dir, &kind, &r->lock));
    if (o->resume && kind != TW_CKPT_TARGET_CHECKPOINT)
        return tw_error(TW_ERR_NOT_FOUND,
                        "--resume: %s holds no checkpoint to continue (drop --resume to start "
                        "a new run there)", o->out_dir);
    if (!o->resume && !o->overwrite && kind == TW_CKPT_TARGET_CHECKPOINT)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--out %s already holds a twist checkpoint; pass --resume to continue "
                        "it, or --overwrite to replace it with this run (only twist's files are "
                        "replaced; other files in %s stay), or choose another directory",
                        o->out_dir, o->out_dir);
    return TW_OK;
}

static tw_status check_options(const tw_train_options *o) {
    if (!o->device || !o->out_dir)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "train: a device and an output directory are needed");
    if (o->batch < 1 || o->grad_accum < 1 || o->steps < 1 || o->warmup < 0 || o->keep < 1 ||
        o->save_every < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "train: batch, grad_accum, steps and keep must be >= 1, warmup and "
                        "save_every >= 0");
    if (!(o->lr > 0.0f) || o->min_lr < 0.0f || o->min_lr > o->lr)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "train: need lr > 0 and 0 <= min_lr <= lr");
    return TW_OK;
}

/* The run's precision: asked for, the checkpoint's on --resume (another one asked is a
 * conflict), or the device's default; fp16 starts its loss scaler (a resumed run keeps the
 * checkpoint's). */
/* The --precision spelling of a type: fp32, fp16, bf16. */
static const char *precision_name(tw_dtype dtype) {
    return dtype == TW_DTYPE_F16 ? "fp16" : dtype == TW_DTYPE_BF16 ? "bf16" : "fp32";
}

static tw_status apply_precision(run *r) {
    const tw_train_options *o = &r->options;
    tw_dtype dtype = TW_DTYPE_F32;
    const char *why = "";
    if (o->resume) {
        const tw_dtype had = r->state.has_precision ? r->state.precision : TW_DTYPE_F32;
        if (o->precision_set && o->precision != had)
            return conflict(r, "--precision", precision_name(o->precision), "precision",
                            precision_name(had));
        TW_TRY(tw_gpt_check_dtype(r->device, had));
        dtype = had;
        why = "the checkpoint's";
        if (!r->state.has_precision) r->state.scaler = tw_loss_scaler_for(dtype);
    } else {
        TW_TRY(tw_train_choose_precision(r->device, o->precision_set, o->precision, &dtype,
                                         &why));
        r->state.scaler = tw_loss_scaler_for(dtype);
    }
    r->state.precision = dtype;
    TW_TRY(tw_gpt_set_dtype(r->model, dtype));
    if (dtype == TW_DTYPE_F32)
        say(r, TW_REPORT_INFO, "precision: fp32 (%s)", why);
    else
        say(r, TW_REPORT_INFO,
            "precision: %s activations, gradients and working weights (%s); fp32 master "
            "weights, AdamW moments, statistics and loss%s",
            precision_name(dtype), why, dtype == TW_DTYPE_F16 ? "; dynamic loss scaling" : "");
    return TW_OK;
}

/* --device-memory: the cap of the training device; a cap naming another device is refused. */
static tw_status apply_memory_cap(run *r) {
    const tw_memory_caps *caps = &r->options.device_memory;
    const char *spec = tw_device_get_info(r->device)->spec;
    for (int i = 0; i < caps->count; i++)
        if (strcmp(caps->caps[i].spec, spec) != 0)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--device-memory %s=%llu: training runs on %s only (--device %s)",
                            caps->caps[i].spec, (unsigned long long)caps->caps[i].bytes, spec,
                            r->options.device);
    return tw_device_set_memory_cap(r->device, tw_memory_caps_find(caps, spec));
}

tw_status tw_train_run(const tw_train_options *options, tw_train_report_fn report,
                       void *context) {
    if (!options) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_train_run: options is NULL");
    run r;
    memset(&r, 0, sizeof r);
    r.options = *options;
    r.report = report;
    r.report_context = context;
    r.saved_step = -1;
    tw_status status = options->resume ? TW_OK : check_options(&r.options);
    if (status == TW_OK && !options->out_dir)
        status = tw_error(TW_ERR_INVALID_ARGUMENT, "train: an output directory is needed");
    if (status == TW_OK) status = take_output_dir(&r);
    if (status == TW_OK) status = tw_device_open(options->device, &r.device);
    if (status == TW_OK) status = apply_memory_cap(&r);
    /* An asked precision the device cannot run is refused before any data is read. */
    if (status == TW_OK && options->precision_set)
        status = tw_gpt_check_dtype(r.device, options->precision);
    if (status == TW_OK) status = options->resume ? resume(&r) : fresh_start(&r);
    if (status == TW_OK) status = check_options(&r.options);
    if (status == TW_OK) status = apply_precision(&r);
    if (status == TW_OK) status = check_memory(&r); /* resumed or --init models, and --batch */
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
    if (status != TW_OK) {
        char message[2048];
        snprintf(message, sizeof message, "%s", tw_last_error());
        tw_checkpoint_lock_release(r.lock);
        tw_error(status, "%s", message);
    } else {
        tw_checkpoint_lock_release(r.lock);
    }
    return status;
}
