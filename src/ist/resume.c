/* Checkpoints that a distributed run (IST, data parallel, local SGD) can resume from: the
 * merged master is saved like `twist train`'s (tw_train_save: crash-safe, atomic), with a
 * state.json whose "distributed" object holds the run's options and the state beside the
 * weights that the next round depends on:
 *
 *   round                rounds done (the partition of round r is drawn from seed and r)
 *   heads_per_worker     the IST head quota, raised when failures left too few workers
 *   alive, rate          the live workers and their measured FLOP/s (--balance speed)
 *   loader               each worker's data position: xorshift state, batches, cursor (the
 *                        64-bit words as hexadecimal strings: JSON numbers are doubles)
 *   total_bytes          bytes moved so far (the records go on counting)
 *   data_hash            FNV-1a of the training token stream, to refuse other data
 *
 * Everything else a round needs is in the weights, the AdamW moments and the step, or is
 * recomputed from the options, so a resumed threads run ends with the same weights, bit for
 * bit, as an uninterrupted one. Not saved: bf16-delta's per-link references and residuals
 * (codec.h; 3 to 6 copies of the model per worker); a resumed bf16-delta run starts them
 * afresh, which is said, and it is then not bit-identical to an uninterrupted one. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ist/dist_internal.h"
#include "twist/error.h"
#include "twist/train.h"

static const char *const MODES[] = {"ist", "allreduce", "localsgd"};
static const char *const CODECS[] = {"fp32", "bf16", "bf16-delta"};
static const char *const BALANCES[] = {"equal", "speed"};

static uint64_t stream_hash(const dist_setup *setup) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, 64 bits, over the token ids' bytes */
    const int32_t *tokens = setup->dataset->train;
    for (size_t i = 0; i < setup->dataset->train_tokens; i++) {
        uint32_t v = (uint32_t)tokens[i];
        for (int b = 0; b < 4; b++, v >>= 8) {
            h ^= v & 0xffu;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

static void add_hex(cJSON *object, const char *name, uint64_t value) {
    char text[24];
    snprintf(text, sizeof text, "%016" PRIx64, value);
    cJSON_AddStringToObject(object, name, text);
}

char *dist_state_json(const tw_dist_options *o, const dist_setup *setup, int step,
                      const dist_run_state *s) {
    cJSON *root = cJSON_CreateObject();
    cJSON *d = root ? cJSON_AddObjectToObject(root, "distributed") : NULL;
    if (!d) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddNumberToObject(root, "step", step);
    cJSON_AddStringToObject(d, "mode", MODES[o->mode]);
    cJSON_AddNumberToObject(d, "rounds", o->rounds);
    cJSON_AddNumberToObject(d, "local_steps", o->local_steps);
    cJSON_AddNumberToObject(d, "workers", s->workers);
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    cJSON_AddRawToObject(d, "seed", seed); /* an integer, as before */
    cJSON_AddNumberToObject(d, "heads_per_worker_option", o->heads_per_worker);
    cJSON_AddNumberToObject(d, "batch", o->batch);
    cJSON_AddNumberToObject(d, "grad_accum", o->grad_accum);
    cJSON_AddNumberToObject(d, "lr", o->lr);
    cJSON_AddNumberToObject(d, "min_lr", o->min_lr);
    cJSON_AddNumberToObject(d, "warmup", o->warmup);
    cJSON_AddNumberToObject(d, "weight_decay", o->adamw.weight_decay);
    cJSON_AddNumberToObject(d, "grad_clip", o->adamw.grad_clip);
    cJSON_AddStringToObject(d, "balance", BALANCES[o->balance]);
    cJSON_AddStringToObject(d, "codec", CODECS[o->codec]);
    add_hex(d, "data_hash", stream_hash(setup));
    cJSON_AddNumberToObject(d, "round", s->round);
    cJSON_AddNumberToObject(d, "heads_per_worker", s->heads_per_worker);
    cJSON_AddNumberToObject(d, "total_bytes", (double)s->total_bytes);
    cJSON *alive = cJSON_AddArrayToObject(d, "alive");
    cJSON *rate = cJSON_AddArrayToObject(d, "rate");
    cJSON *loader = cJSON_AddArrayToObject(d, "loader");
    for (int w = 0; alive && rate && loader && w < s->workers; w++) {
        cJSON_AddItemToArray(alive, cJSON_CreateBool(s->alive[w]));
        cJSON_AddItemToArray(rate, cJSON_CreateNumber(s->rate[w]));
        cJSON *position = cJSON_CreateObject();
        if (!position) break;
        add_hex(position, "rng", s->loader[w].rng);
        add_hex(position, "batches", s->loader[w].batches);
        add_hex(position, "cursor", s->loader[w].cursor);
        cJSON_AddItemToArray(loader, position);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- reading it back ------------------------------------------------------------------- */

typedef struct reader {
    const tw_dist_options *o;
    const cJSON *d;
    const char *source; /* DIR/state.json */
} reader;

static tw_status missing(const reader *r, const char *field) {
    return tw_error(TW_ERR_FORMAT, "--resume: %s: no valid \"distributed.%s\" (was the "
                    "checkpoint saved by twist ist or twist dp of this version?)", r->source,
                    field);
}

static tw_status number(const reader *r, const char *field, double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(r->d, field);
    if (!cJSON_IsNumber(item)) return missing(r, field);
    *out = item->valuedouble;
    return TW_OK;
}

static tw_status text(const reader *r, const char *field, const char **out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(r->d, field);
    if (!cJSON_IsString(item)) return missing(r, field);
    *out = item->valuestring;
    return TW_OK;
}

static tw_status hex(const reader *r, const cJSON *object, const char *field, uint64_t *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, field);
    char *end = NULL;
    if (!cJSON_IsString(item) || !item->valuestring[0]) return missing(r, field);
    *out = strtoull(item->valuestring, &end, 16);
    if (*end) return missing(r, field);
    return TW_OK;
}

/* A flag whose value differs from the checkpoint's. */
static tw_status conflict(const reader *r, const char *flag, const char *given,
                          const char *field, const char *have) {
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "--resume: %s %s conflicts with the checkpoint in %s (%s %s); a resumed run "
                    "needs the options it was started with: give %s %s, or start a new run "
                    "(another --out, or --overwrite to replace this one)",
                    flag, given, r->o->out_dir, field, have, flag, have);
}

static tw_status same_int(const reader *r, const char *flag, const char *field, long given) {
    double have = 0;
    TW_TRY(number(r, field, &have));
    if ((double)given == have) return TW_OK;
    char a[32], b[32];
    snprintf(a, sizeof a, "%ld", given);
    snprintf(b, sizeof b, "%.0f", have);
    return conflict(r, flag, a, field, b);
}

static tw_status same_real(const reader *r, const char *flag, const char *field, float given) {
    double have = 0;
    TW_TRY(number(r, field, &have));
    if (given == (float)have) return TW_OK;
    char a[32], b[32];
    snprintf(a, sizeof a, "%g", (double)given);
    snprintf(b, sizeof b, "%g", have);
    return conflict(r, flag, a, field, b);
}

static tw_status same_text(const reader *r, const char *flag, const char *field,
                           const char *given) {
    const char *have = NULL;
    TW_TRY(text(r, field, &have));
    return strcmp(given, have) == 0 ? TW_OK : conflict(r, flag, given, field, have);
}

static tw_status check_options(const reader *r, const dist_setup *setup, int workers) {
    const tw_dist_options *o = r->o;
    const char *mode = NULL;
    TW_TRY(text(r, "mode", &mode));
    if (strcmp(mode, MODES[o->mode]) != 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--resume: the checkpoint in %s was saved by a %s run, not %s; resume it "
                        "with %s", o->out_dir, mode, MODES[o->mode],
                        strcmp(mode, "ist") == 0 ? "twist ist"
                                                 : strcmp(mode, "allreduce") == 0
                                                       ? "twist dp --mode allreduce"
                                                       : "twist dp --mode localsgd");
    TW_TRY(same_int(r, "--devices x --workers-per-device", "workers", workers));
    TW_TRY(same_int(r, "--local-steps", "local_steps", o->local_steps));
    if (o->mode == TW_DIST_IST)
        TW_TRY(same_int(r, "--heads-per-worker", "heads_per_worker_option",
                        o->heads_per_worker));
    TW_TRY(same_int(r, "--batch", "batch", o->batch));
    TW_TRY(same_int(r, "--accum", "grad_accum", o->grad_accum));
    TW_TRY(same_real(r, "--lr", "lr", o->lr));
    TW_TRY(same_real(r, "--min-lr", "min_lr", o->min_lr));
    TW_TRY(same_int(r, "--warmup", "warmup", o->warmup));
    TW_TRY(same_real(r, "--weight-decay", "weight_decay", o->adamw.weight_decay));
    TW_TRY(same_real(r, "--clip", "grad_clip", o->adamw.grad_clip));
    TW_TRY(same_text(r, "--balance", "balance", BALANCES[o->balance]));
    TW_TRY(same_text(r, "--codec", "codec", CODECS[o->codec]));
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(r->d, "seed");
    if (!cJSON_IsNumber(seed)) return missing(r, "seed");
    if ((double)o->seed != seed->valuedouble) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%" PRIu64, o->seed);
        snprintf(b, sizeof b, "%.0f", seed->valuedouble);
        return conflict(r, "--seed", a, "seed", b);
    }
    uint64_t hash = 0;
    TW_TRY(hex(r, r->d, "data_hash", &hash));
    if (hash != stream_hash(setup))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--resume: the training data (--data %s) differ from those the "
                        "checkpoint in %s was trained on; give the same --data",
                        o->data_path ? o->data_path : "(the built-in corpus)", o->out_dir);
    return TW_OK;
}

/* The model of the options (with the tokenizer's vocabulary) against the checkpoint's. */
static tw_status check_model(const reader *r, const tw_gpt_config *want,
                             const tw_gpt_config *have) {
    const struct {
        const char *flag, *field;
        long want, have;
    } checks[] = {
        {"--layers", "n_layer", want->n_layer, have->n_layer},
        {"--embd", "n_embd", want->n_embd, have->n_embd},
        {"--heads", "n_head", want->layers[0].heads, have->layers[0].heads},
        {"--mlp", "n_inner", want->layers[0].mlp_hidden, have->layers[0].mlp_hidden},
        {"--seq-len", "n_positions", want->max_seq_len, have->max_seq_len},
        {"--vocab", "vocab_size", want->vocab_size, have->vocab_size},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        if (checks[i].want == checks[i].have) continue;
        char a[32], b[32];
        snprintf(a, sizeof a, "%ld", checks[i].want);
        snprintf(b, sizeof b, "%ld", checks[i].have);
        return conflict(r, checks[i].flag, a, checks[i].field, b);
    }
    return TW_OK;
}

static tw_status read_state(const reader *r, dist_run_state *s, int workers) {
    double value = 0;
    TW_TRY(number(r, "round", &value));
    s->round = (int)value;
    TW_TRY(number(r, "heads_per_worker", &value));
    s->heads_per_worker = (int)value;
    TW_TRY(number(r, "total_bytes", &value));
    s->total_bytes = (uint64_t)value;
    s->workers = workers;
    const cJSON *alive = cJSON_GetObjectItemCaseSensitive(r->d, "alive");
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(r->d, "rate");
    const cJSON *loader = cJSON_GetObjectItemCaseSensitive(r->d, "loader");
    if (cJSON_GetArraySize(alive) != workers) return missing(r, "alive");
    if (cJSON_GetArraySize(rate) != workers) return missing(r, "rate");
    if (cJSON_GetArraySize(loader) != workers) return missing(r, "loader");
    for (int w = 0; w < workers; w++) {
        const cJSON *a = cJSON_GetArrayItem(alive, w), *q = cJSON_GetArrayItem(rate, w);
        if (!cJSON_IsBool(a)) return missing(r, "alive");
        if (!cJSON_IsNumber(q)) return missing(r, "rate");
        s->alive[w] = cJSON_IsTrue(a);
        s->rate[w] = q->valuedouble;
        const cJSON *position = cJSON_GetArrayItem(loader, w);
        TW_TRY(hex(r, position, "rng", &s->loader[w].rng));
        TW_TRY(hex(r, position, "batches", &s->loader[w].batches));
        TW_TRY(hex(r, position, "cursor", &s->loader[w].cursor));
    }
    if (s->round < 1) return missing(r, "round");
    if (r->o->mode == TW_DIST_IST && s->heads_per_worker < 1)
        return missing(r, "heads_per_worker");
    return TW_OK;
}

static void say(tw_dist_report_fn report, void *context, const char *message) {
    if (!report) return;
    tw_dist_report line = {.message = message, .round = -1};
    report(context, &line);
}

tw_status dist_resume_load(const tw_dist_options *o, const dist_setup *setup,
                           tw_ist_master *master, dist_run_state *s, tw_dist_report_fn report,
                           void *context) {
    const int workers = o->device_count * o->workers_per_device;
    char source[4200];
    snprintf(source, sizeof source, "%s/state.json", o->out_dir);
    tw_device *cpu = NULL;
    tw_loaded_model loaded;
    memset(&loaded, 0, sizeof loaded);
    cJSON *root = NULL;
    tw_status status = tw_device_open("cpu", &cpu);
    if (status == TW_OK) status = tw_train_load(o->out_dir, cpu, &o->adamw, &loaded);
    if (status == TW_OK && !loaded.opt)
        status = tw_error(TW_ERR_FORMAT, "--resume: the checkpoint in %s holds no optimizer "
                          "state", o->out_dir);
    if (status == TW_OK) {
        root = cJSON_Parse(tw_checkpoint_state_json(loaded.checkpoint));
        reader r = {o, cJSON_GetObjectItemCaseSensitive(root, "distributed"), source};
        if (!cJSON_IsObject(r.d))
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "--resume: the checkpoint in %s was not "
                              "saved by twist ist or twist dp (%s has no \"distributed\"); "
                              "continue it with twist train --resume", o->out_dir, source);
        if (status == TW_OK) status = check_options(&r, setup, workers);
        if (status == TW_OK)
            status = check_model(&r, &setup->model, tw_gpt_get_config(loaded.model));
        if (status == TW_OK) status = read_state(&r, s, workers);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(root, "step");
        if (status == TW_OK && !cJSON_IsNumber(step)) status = missing(&r, "step");
        if (status == TW_OK) master->step = step->valueint;
        if (status == TW_OK && master->step != s->round * o->local_steps)
            status = tw_error(TW_ERR_FORMAT, "--resume: %s: step %d is not round %d x "
                              "--local-steps %d", source, master->step, s->round,
                              o->local_steps);
        if (status == TW_OK && s->round >= o->rounds)
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "--resume: the run in %s is finished: it has done %d of %d "
                              "rounds; pass a larger --rounds to train further", o->out_dir,
                              s->round, o->rounds);
    }
    const size_t bytes = master->param_count * sizeof(float);
    if (status == TW_OK && tw_gpt_param_count(loaded.model) != master->param_count)
        status = tw_error(TW_ERR_FORMAT, "--resume: the checkpoint's model has %zu parameters, "
                          "this run's %zu", tw_gpt_param_count(loaded.model),
                          master->param_count);
    if (status == TW_OK)
        status = tw_buffer_download(tw_gpt_params(loaded.model), 0, master->params, bytes);
    if (status == TW_OK)
        status = tw_buffer_download(tw_adamw_first_moment(loaded.opt), 0, master->exp_avg,
                                    bytes);
    if (status == TW_OK)
        status = tw_buffer_download(tw_adamw_second_moment(loaded.opt), 0, master->exp_avg_sq,
                                    bytes);
    double saved_rounds = 0;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "distributed");
    const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(d, "rounds");
    if (cJSON_IsNumber(rounds)) saved_rounds = rounds->valuedouble;
    cJSON_Delete(root);
    tw_loaded_model_free(&loaded);
    tw_device_close(cpu);
    if (status != TW_OK) return status;
    char message[4400];
    int live = 0;
    for (int w = 0; w < workers; w++) live += s->alive[w];
    snprintf(message, sizeof message, "resumed %s after round %d of %d (step %d, %d of %d "
             "workers alive)%s", o->out_dir, s->round, o->rounds, master->step, live, workers,
             saved_rounds != o->rounds ? "; --rounds differs from the checkpoint's run: the "
                                         "learning-rate schedule is recomputed for the new total"
                                       : "");
    say(report, context, message);
    if (o->codec == TW_CODEC_BF16_DELTA)
        say(report, context, "--codec bf16-delta: its references and residuals are not in the "
            "checkpoint (3 to 6 copies of the model per worker); they start afresh, so the first "
            "exchange after the resume sends whole values in bf16, and this run is not "
            "bit-identical to an uninterrupted one (fp32 and bf16 carry no state and are)");
    return TW_OK;
}
