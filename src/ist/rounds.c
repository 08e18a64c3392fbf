/* The rounds of a distributed run, on the master's side, written once for every transport:
 * partition, extract, send, local training, receive, merge, evaluate, records (twist/record.h)
 * reported to the caller. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twist/error.h"
#include "ist/dist_internal.h"
#include "ist/dist_memory.h"
#include "ist/round_trace.h"
#include "train/train_internal.h"
#include "twist/record.h"
#include "twist/train.h"
#include "twist/clock.h"

static const char *const MODE_NAMES[] = {"ist", "allreduce", "localsgd"};
/* The command whose records these are: `twist ist` or `twist dp --mode ...`. */
static const char *command_name(tw_dist_mode mode) { return mode == TW_DIST_IST ? "ist" : "dp"; }

/* Hands a record (and its line of text, or NULL) to the caller, then frees it. */
static void report_record(tw_dist_report_fn report, void *context, cJSON *record,
                          const char *message, int round) {
    if (report) {
        tw_dist_report r = {.message = message, .record = record, .round = round,
                            .val_loss = NAN, .train_loss = NAN};
        report(context, &r);
    }
    cJSON_Delete(record);
}

static void report_line(tw_dist_report_fn report, void *context, int round, const char *format,
                        ...) __attribute__((format(printf, 4, 5)));

static void report_line(tw_dist_report_fn report, void *context, int round, const char *format,
                        ...) {
    if (!report) return;
    char message[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    tw_dist_report r = {.message = message, .round = round, .val_loss = NAN, .train_loss = NAN};
    report(context, &r);
}

/* ------------------------------------------------------------------------------------------ */
/* Set-up: corpus, tokenizer, data, model config                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct say_target {
    tw_dist_report_fn report;
    void *context;
} say_target;

static void say_setup(void *context, const char *message) {
    say_target *target = context;
    report_line(target->report, target->context, -1, "%s", message);
}

tw_status dist_setup_load(const tw_dist_options *options, dist_setup *setup, bool quiet,
                          tw_dist_report_fn report, void *context) {
    memset(setup, 0, sizeof *setup);
    say_target target = {quiet ? NULL : report, context};
    TW_TRY(tw_train_choose_corpus(options->data_path, setup->corpus, sizeof setup->corpus,
                                  &setup->synthetic, say_setup, &target));
    TW_TRY(tw_train_prepare_tokenizer(setup->corpus, options->tokenizer_path,
                                      options->vocab_size, &setup->tokenizer, say_setup,
                                      &target));
    TW_TRY(tw_train_load_dataset(setup->corpus, setup->tokenizer, &setup->dataset, say_setup,
                                 &target));
    TW_TRY(tw_train_check_validation(setup->dataset, setup->corpus, options->model.max_seq_len));
    setup->model = options->model;
    setup->model.vocab_size = tw_tokenizer_vocab_size(setup->tokenizer);
    return tw_gpt_config_validate(&setup->model);
}

void dist_setup_free(dist_setup *setup) {
    tw_dataset_free(setup->dataset);
    tw_tokenizer_free(setup->tokenizer);
    memset(setup, 0, sizeof *setup);
}

/* ------------------------------------------------------------------------------------------ */
/* Partitions                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Data parallel and local SGD: every worker holds every head and unit, so extract gives the
 * whole model and merge averages the replicas. Freed by free_replicas (not
 * tw_ist_partition_free: this file allocated it). */
static void free_replicas(tw_ist_partition *partition) {
    if (!partition) return;
    const int count = partition->workers * partition->n_layer;
    for (int i = 0; partition->shares && i < count; i++) {
        free(partition->shares[i].heads);
        free(partition->shares[i].units);
    }
    free(partition->shares);
    free(partition);
}

static tw_status make_replicas(const tw_gpt_config *config, int workers,
                               tw_ist_partition **out) {
    tw_ist_partition *p = calloc(1, sizeof *p);
    if (p) p->shares = calloc((size_t)workers * (size_t)config->n_layer, sizeof *p->shares);
    if (!p || !p->shares) {
        free(p);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "partition: out of host memory");
    }
    p->workers = workers;
    p->n_layer = config->n_layer;
    for (int w = 0; w < workers; w++)
        for (int l = 0; l < config->n_layer; l++) {
            tw_ist_layer_share *share = &p->shares[(size_t)w * (size_t)config->n_layer + l];
            const tw_gpt_layer *layer = &config->layers[l];
            share->heads = malloc((size_t)layer->heads * sizeof *share->heads);
            share->units = malloc((size_t)layer->mlp_hidden * sizeof *share->units);
            if (!share->heads || !share->units) {
                free_replicas(p);
                return tw_error(TW_ERR_OUT_OF_MEMORY, "partition: out of host memory");
            }
            share->head_count = layer->heads;
            share->unit_count = layer->mlp_hidden;
            for (int h = 0; h < layer->heads; h++) share->heads[h] = h;
            for (int u = 0; u < layer->mlp_hidden; u++) share->units[u] = u;
        }
    *out = p;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The master                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct round_phases {
    double partition, extract, send, train, receive, merge, eval;
} round_phases;

typedef struct master_run {
    const tw_dist_options *options;
    const dist_setup *setup;
    dist_transport *transport;
    tw_dist_report_fn report;
    void *context;
    int workers;
    tw_ist_master *master;
    tw_device *eval_device;
    tw_gpt *eval_model;
    bool *alive;          /* (workers) */
    double *rate;         /* (workers) smoothed training FLOP/s of each worker, 0 unknown */
    dist_job *jobs;       /* (workers) */
    dist_result *results; /* (workers) */
    float **packed;       /* (workers) */
    size_t *packed_capacity;
    int heads_per_worker; /* IST: the head quota, raised when too few workers are left */
    int saved_round;      /* of the last checkpoint saved, -1: none */
    double started;
    uint64_t total_bytes;
    tw_checkpoint_lock *lock; /* on out_dir, from before the first round to after the save */
    dist_codec_link *links;   /* (workers) the master's ends of the exchange (codec.h) */
    tw_loader_state *loader;  /* (workers) data positions after the last round (resume) */
    bool set_loader;          /* resumed: the next jobs carry the saved data positions */
    dist_memory *memory;      /* budgets and the round's memory plan (dist_memory.h) */
    dist_pace *pace;      /* (workers) --balance data: measured time per sequence, and the rest */
    int *batch;           /* (workers) this round's micro-batch of each worker */
} master_run;

/* The GPT-2 initialisation of tw_gpt_init_params, through a CPU model, into the master. */
static tw_status init_master(master_run *m) {
    TW_TRY(tw_ist_master_create(&m->setup->model, &m->master));
    tw_device *cpu = NULL;
    tw_gpt *model = NULL;
    tw_status status = tw_device_open("cpu", &cpu);
    if (status == TW_OK) status = tw_gpt_create(cpu, &m->setup->model, &model);
    if (status == TW_OK) status = tw_gpt_init_params(model, m->options->seed);
    if (status == TW_OK && tw_gpt_param_count(model) != m->master->param_count)
        status = tw_error(TW_ERR_INVALID_ARGUMENT, "master: layout differs from the model's");
    if (status == TW_OK)
        status = tw_buffer_download(tw_gpt_params(model), 0, m->master->params,
                                    m->master->param_count * sizeof(float));
    tw_gpt_destroy(model);
    tw_device_close(cpu);
    return status;
}

static tw_status evaluate_master(master_run *m, tw_eval_result *result) {
    const tw_dist_options *o = m->options;
    if (!m->eval_model) {
        TW_TRY(tw_device_open(o->eval_device ? o->eval_device : "cpu", &m->eval_device));
        TW_TRY(tw_gpt_create(m->eval_device, &m->setup->model, &m->eval_model));
    }
    TW_TRY(tw_buffer_upload(tw_gpt_params(m->eval_model), 0, m->master->params,
                            m->master->param_count * sizeof(float)));
    return tw_evaluate(m->eval_model, m->setup->dataset->val, m->setup->dataset->val_tokens,
                       o->batch, m->setup->model.max_seq_len, o->eval_batches, result);
}

static int alive_count(const master_run *m) {
    int n = 0;
    for (int w = 0; w < m->workers; w++) n += m->alive[w];
    return n;
}

/* Head slots over heads, averaged over the layers: how many times each head is dealt. */
static double head_slots(const tw_gpt_config *model, int workers, int heads_per_worker) {
    double sum = 0.0;
    for (int l = 0; l < model->n_layer; l++) {
        const int heads = model->layers[l].heads;
        const int quota = heads_per_worker < heads ? heads_per_worker : heads;
        sum += (double)workers * quota / heads;
    }
    return sum / model->n_layer;
}

/* The round's partition over the live workers; slot_of[w] is worker w's slot, or -1. */
static tw_status partition_round(master_run *m, int round, int *slot_of,
                                 tw_ist_partition **out) {
    const tw_dist_options *o = m->options;
    int live = 0;
    double rates[TW_DIST_MAX_WORKERS], weights[TW_DIST_MAX_WORKERS];
    bool rates_known = o->balance == TW_BALANCE_SPEED;
    for (int w = 0; w < m->workers; w++) {
        slot_of[w] = m->alive[w] ? live : -1;
        if (!m->alive[w]) continue;
        rates[live] = m->rate[w];
        if (!(m->rate[w] > 0.0)) rates_known = false;
        live++;
    }
    if (rates_known && o->mode == TW_DIST_IST)
        dist_balance_weights(&m->setup->model,
                             head_slots(&m->setup->model, live, m->heads_per_worker), rates,
                             live, weights);
    /* Memory: shares and micro-batches that fit each worker's budget. */
    TW_TRY(dist_memory_fit(m->memory, o, &m->setup->model, m->transport, slot_of, live,
                           m->heads_per_worker, o->mode != TW_DIST_IST, weights, &rates_known,
                           m->report, m->context, round));
    if (o->mode != TW_DIST_IST) return make_replicas(&m->setup->model, live, out);
    tw_ist_partition_options po = {.workers = live, .heads_per_worker = m->heads_per_worker,
                                   .weights = rates_known ? weights : NULL, .seed = o->seed,
                                   .round = round};
    return tw_ist_partition_make(&m->setup->model, &po, out);
}

static void free_partition(const master_run *m, tw_ist_partition *partition) {
    if (m->options->mode == TW_DIST_IST) tw_ist_partition_free(partition);
    else free_replicas(partition);
}

/* --balance data: the live workers' batches from their paces once every one is measured (round
 * 1 on), summing to live x --batch; otherwise (and without it) --batch each. Returns the sum. */
static int plan_batches(master_run *m, const int *slot_of) {
    const tw_dist_options *o = m->options;
    dist_pace pace[TW_DIST_MAX_WORKERS];
    int live = 0, batches[TW_DIST_MAX_WORKERS], previous[TW_DIST_MAX_WORKERS];
    bool measured = o->balance == TW_BALANCE_DATA;
    for (int w = 0; w < m->workers; w++) {
        if (slot_of[w] < 0) continue;
        /* last round's batch (0 before the first: none to keep) */
        previous[live] = m->batch[w];
        pace[live++] = m->pace[w];
        if (!(m->pace[w].seq_s > 0.0)) measured = false;
    }
    if (measured) dist_plan_batches(pace, live, live * o->batch, previous, batches);
    for (int w = 0; w < m->workers; w++)
        m->batch[w] = measured && slot_of[w] >= 0 ? batches[slot_of[w]] : o->batch;
    return live * o->batch;
}

/* Jobs and packed subnets of the live workers. */
static tw_status extract_round(master_run *m, int round, const tw_ist_partition *partition,
                               const int *slot_of) {
    const tw_dist_options *o = m->options;
    const int sequences = plan_batches(m, slot_of);
    for (int w = 0; w < m->workers; w++) {
        dist_job *job = &m->jobs[w];
        memset(job, 0, sizeof *job);
        job->command = DIST_TRAIN;
        job->active = slot_of[w] >= 0;
        job->fail_after = -1;
        if (!job->active) continue;
        TW_TRY(tw_ist_subnet_config(&m->setup->model, partition, slot_of[w], &job->config));
        job->start_step = m->master->step;
        job->local_steps = o->local_steps;
        job->active_workers = partition->workers;
        job->batch = m->batch[w];
        job->grad_scale = (float)((double)m->batch[w] * partition->workers / sequences);
        job->packed_floats = tw_ist_packed_floats(&job->config);
        job->micro_batch = dist_memory_micro_batch(m->memory, w, job->batch);
        if (w == o->fault_worker && round == o->fault_round)
            job->fail_after = o->local_steps > 1 ? 1 : 0;
        job->codec = (int)o->codec;
        job->set_loader = m->set_loader;
        job->loader = m->loader[w];
        if (o->codec == TW_CODEC_BF16_DELTA) {
            /* The worker maps its subnet onto the full layout with the round's share lists. */
            TW_TRY(dist_codec_set_shares(&m->links[w], partition, slot_of[w]));
            TW_TRY(dist_codec_map(&m->links[w], &m->setup->model, false));
            job->share_ints = m->links[w].share_count;
        }
        if (m->packed_capacity[w] < job->packed_floats) {
            float *bigger = realloc(m->packed[w], job->packed_floats * sizeof(float));
            if (!bigger) return tw_error(TW_ERR_OUT_OF_MEMORY, "extract: out of host memory");
            m->packed[w] = bigger;
            m->packed_capacity[w] = job->packed_floats;
        }
        TW_TRY(tw_ist_extract(m->master, partition, slot_of[w], m->packed[w]));
    }
    return TW_OK;
}

static tw_status merge_round(master_run *m, const tw_ist_partition *partition,
                             const int *slot_of) {
    tw_ist_merge *merge = NULL;
    TW_TRY(tw_ist_merge_begin(m->master, &merge));
    for (int w = 0; w < m->workers; w++) {
        if (slot_of[w] < 0 || !m->results[w].ok) continue;
        /* weighted by the tokens the worker trained on (--balance data: unequal batches) */
        const uint64_t tokens = (uint64_t)m->options->local_steps * m->options->grad_accum *
                                m->jobs[w].batch * m->setup->model.max_seq_len;
        tw_status status =
            tw_ist_merge_add_weighted(merge, partition, slot_of[w], m->packed[w], tokens);
        if (status != TW_OK) {
            tw_ist_merge_abort(merge);
            return status;
        }
    }
    return tw_ist_merge_finish(merge, m->master);
}

/* ------------------------------------------------------------------------------------------ */
/* Reporting                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static uint64_t bytes_to_worker(const master_run *m, int w) {
    const dist_job *job = &m->jobs[w];
    if (!job->active) return 0;
    return dist_codec_bytes(m->options->codec, job->packed_floats) +
           job->share_ints * sizeof(int32_t) + m->results[w].comm_bytes;
}

static uint64_t bytes_from_worker(const master_run *m, int w) {
    const dist_job *job = &m->jobs[w];
    if (!job->active) return 0;
    return (m->results[w].ok ? dist_codec_bytes(m->options->codec, job->packed_floats) : 0) +
           m->results[w].comm_bytes;
}

static void add_phases(cJSON *record, const round_phases *p) {
    cJSON *phases = record ? cJSON_AddObjectToObject(record, "phases_s") : NULL;
    if (!phases) return;
    cJSON_AddNumberToObject(phases, "partition", p->partition);
    cJSON_AddNumberToObject(phases, "extract", p->extract);
    cJSON_AddNumberToObject(phases, "send", p->send);
    cJSON_AddNumberToObject(phases, "local_training", p->train);
    cJSON_AddNumberToObject(phases, "receive", p->receive);
    cJSON_AddNumberToObject(phases, "merge", p->merge);
    cJSON_AddNumberToObject(phases, "eval", p->eval);
}

static void add_workers(cJSON *record, const master_run *m, double slowest) {
    cJSON *list = record ? cJSON_AddArrayToObject(record, "per_worker") : NULL;
    if (!list) return;
    for (int w = 0; w < m->workers; w++) {
        const dist_job *job = &m->jobs[w];
        const dist_result *r = &m->results[w];
        cJSON *item = cJSON_CreateObject();
        if (!item) return;
        cJSON_AddNumberToObject(item, "worker", w);
        cJSON_AddStringToObject(item, "device", m->transport->worker_devices[w]);
        cJSON_AddBoolToObject(item, "active", job->active);
        if (job->active) {
            cJSON_AddBoolToObject(item, "ok", r->ok);
            cJSON_AddNumberToObject(item, "bytes_sent", (double)bytes_to_worker(m, w));
            cJSON_AddNumberToObject(item, "bytes_received", (double)bytes_from_worker(m, w));
            tw_record_number(item, "loss", r->loss);
            tw_record_number(item, "tokens_per_s", r->tokens_per_s);
            tw_record_number(item, "train_s", r->train_s);
            /* idle: the local phase (the slowest worker's) less this worker's own compute;
             * time in gradient averaging (allreduce) is waiting for the others */
            const double compute = r->train_s - r->wait_s;
            tw_record_number(item, "compute_s", compute);
            tw_record_number(item, "idle_s", slowest - compute);
            tw_record_number(item, "idle_fraction", slowest > 0 ? (slowest - compute) / slowest
                                                                : 0.0);
            cJSON_AddNumberToObject(item, "batch", job->batch);
            cJSON_AddNumberToObject(item, "tokens",
                                    (double)job->local_steps * m->options->grad_accum *
                                        job->batch * m->setup->model.max_seq_len);
            int heads = 0, units = 0;
            for (int l = 0; l < job->config.n_layer; l++) {
                heads += job->config.layers[l].heads;
                units += job->config.layers[l].mlp_hidden;
            }
            cJSON_AddNumberToObject(item, "heads", heads);
            cJSON_AddNumberToObject(item, "units", units);
            dist_memory_record(m->memory, item, w, job);
            if (r->peak_bytes) cJSON_AddNumberToObject(item, "device_peak_bytes",
                                                       (double)r->peak_bytes);
            if (r->precision != TW_DTYPE_F32)
                cJSON_AddStringToObject(item, "precision", tw_dtype_name((tw_dtype)r->precision));
            if (r->precision == TW_DTYPE_F16) {
                /* fp16's dynamic loss scaling on this worker */
                cJSON_AddNumberToObject(item, "skipped_steps", r->skipped_steps);
                cJSON_AddNumberToObject(item, "loss_scale", r->loss_scale);
            }
            if (!r->ok) cJSON_AddStringToObject(item, "error", r->error);
        }
        cJSON_AddItemToArray(list, item);
    }
}

/* Local SGD's fp32 bytes for this round's workers: the yardstick of the codecs. */
static double localsgd_bytes(const master_run *m) {
    int in_round = 0;
    for (int w = 0; w < m->workers; w++) in_round += m->jobs[w].active;
    return 2.0 * in_round * 3.0 * (double)m->master->param_count * 4.0;
}

/* The local phase's length (the slowest active worker's train_s) and worker w's idle part of it:
 * the phase less its own compute (time in gradient averaging is waiting, not computing). */
static double local_phase(const master_run *m) {
    double slowest = 0.0;
    for (int w = 0; w < m->workers; w++)
        if (m->jobs[w].active && m->results[w].train_s > slowest) slowest = m->results[w].train_s;
    return slowest;
}

static double idle_of(const master_run *m, int w) {
    return local_phase(m) - (m->results[w].train_s - m->results[w].wait_s);
}

/* The largest idle fraction of the round's successful workers; *worker gets whose. */
static double max_idle_fraction(const master_run *m, int *worker) {
    const double phase = local_phase(m);
    double most = 0.0;
    if (worker) *worker = -1;
    for (int w = 0; phase > 0.0 && w < m->workers; w++) {
        if (!m->jobs[w].active || !m->results[w].ok) continue;
        const double f = idle_of(m, w) / phase;
        if (worker && (*worker < 0 || f > most)) *worker = w;
        if (f > most) most = f;
    }
    return most;
}

/* One line per round with several workers: each one's idle time and batch (up to 8 workers;
 * beyond, the largest idle fraction), so the effect of --balance is visible in the text. */
static void report_idle(const master_run *m, int round) {
    int in_round = 0;
    for (int w = 0; w < m->workers; w++) in_round += m->jobs[w].active && m->results[w].ok;
    if (in_round < 2) return;
    const double phase = local_phase(m);
    char line[2048];
    int used = snprintf(line, sizeof line, "round %d: local phase %.2f s; idle", round + 1, phase);
    if (in_round > 8) {
        int worst = -1;
        const double f = max_idle_fraction(m, &worst);
        report_line(m->report, m->context, round, "%s at most %.0f%% (worker %d, %s)", line,
                    100.0 * f, worst, worst >= 0 ? m->transport->worker_devices[worst] : "-");
        return;
    }
    const char *separator = "";
    for (int w = 0; w < m->workers && used > 0 && (size_t)used < sizeof line; w++) {
        if (!m->jobs[w].active || !m->results[w].ok) continue;
        const double idle = idle_of(m, w);
        used += snprintf(line + used, sizeof line - (size_t)used,
                         "%s w%d %s %.2f s (%.0f%%, batch %d)", separator, w,
                         m->transport->worker_devices[w], idle,
                         phase > 0 ? 100.0 * idle / phase : 0.0, m->jobs[w].batch);
        separator = ",";
    }
    report_line(m->report, m->context, round, "%s", line);
}

/* fp16 workers that skipped updates this round (overflowed gradients), with their loss scale
 * after it; nothing when none did. */
static void report_skipped(const master_run *m, int round) {
    char line[2048];
    int used = snprintf(line, sizeof line, "round %d: fp16 gradients overflowed, updates skipped:",
                        round + 1);
    int count = 0;
    for (int w = 0; w < m->workers && used > 0 && (size_t)used < sizeof line; w++) {
        const dist_result *r = &m->results[w];
        if (!m->jobs[w].active || r->skipped_steps == 0) continue;
        used += snprintf(line + used, sizeof line - (size_t)used,
                         "%s w%d %d step%s (loss scale now %g)", count ? "," : "", w,
                         r->skipped_steps, r->skipped_steps == 1 ? "" : "s",
                         (double)r->loss_scale);
        count++;
    }
    if (count) report_line(m->report, m->context, round, "%s", line);
}

/* The "round" record: round counted from 1 as in the text; loss is the mean training loss of
 * the round's workers (null when none has a finite one). */
static cJSON *round_record(master_run *m, int round, const round_phases *p, double train_loss,
                           uint64_t round_bytes, const int *failed, int failed_count) {
    double slowest = 0.0;
    for (int w = 0; w < m->workers; w++)
        if (m->jobs[w].active && m->results[w].train_s > slowest) slowest = m->results[w].train_s;
    cJSON *record = tw_record_new(command_name(m->options->mode), "round");
    tw_record_string(record, "mode", MODE_NAMES[m->options->mode]);
    tw_record_int(record, "round", round + 1);
    tw_record_int(record, "rounds", m->options->rounds);
    tw_record_int(record, "step", m->master->step);
    int in_round = 0;
    for (int w = 0; w < m->workers; w++) in_round += m->jobs[w].active;
    tw_record_int(record, "workers_in_round", in_round);
    tw_record_int(record, "workers", alive_count(m));
    cJSON *failures = record ? cJSON_AddArrayToObject(record, "failed_workers") : NULL;
    for (int i = 0; failures && i < failed_count; i++)
        cJSON_AddItemToArray(failures, cJSON_CreateNumber(failed[i]));
    add_phases(record, p);
    add_workers(record, m, slowest);
    tw_record_number(record, "idle_fraction_max", max_idle_fraction(m, NULL));
    tw_record_number(record, "bytes_round", (double)round_bytes);
    /* Bytes on the wire under --codec, each way (the master's sends, the workers' returns), and
     * the yardstick: local SGD's fp32 bytes for the same workers (each sends and gets back the
     * whole model's [params | exp_avg | exp_avg_sq]). */
    uint64_t sent = 0, received = 0;
    for (int w = 0; w < m->workers; w++) {
        sent += bytes_to_worker(m, w);
        received += bytes_from_worker(m, w);
    }
    static const char *const codecs[] = {"fp32", "bf16", "bf16-delta"};
    const double localsgd = localsgd_bytes(m);
    tw_record_number(record, "bytes_sent", (double)sent);
    tw_record_number(record, "bytes_received", (double)received);
    tw_record_string(record, "codec", codecs[m->options->codec]);
    tw_record_number(record, "bytes_localsgd_fp32", localsgd);
    tw_record_number(record, "bytes_ratio_localsgd_fp32",
                     localsgd > 0 ? round_bytes / localsgd : NAN);
    tw_record_number(record, "bytes_total", (double)m->total_bytes);
    tw_record_number(record, "loss", train_loss);
    tw_record_number(record, "elapsed_s", tw_now_seconds() - m->started);
    return record;
}

/* ------------------------------------------------------------------------------------------ */
/* A round                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Marks the workers that failed as gone, says so, and returns their number. */
static int retire_failures(master_run *m, int round, int *failed) {
    int count = 0;
    for (int w = 0; w < m->workers; w++) {
        if (!m->jobs[w].active) continue;
        if (m->results[w].ok) {
            dist_update_rate(&m->rate[w], &m->jobs[w].config, m->results[w].tokens_per_s);
            dist_update_pace(&m->pace[w], m->jobs[w].batch, m->results[w].grad_s,
                             m->results[w].train_s - m->results[w].wait_s);
            continue;
        }
        m->alive[w] = false;
        failed[count++] = w;
        /* IST: the master keeps what the worker held; replicas: the others' average stands */
        const char *kept = m->options->mode == TW_DIST_IST
                               ? "its slices keep their pre-round values"
                               : "its replica is left out of the average";
        report_line(m->report, m->context, round,
                    "round %d: worker %d (%s) failed: %s; %s and the run continues with %d "
                    "workers",
                    round + 1, w, m->transport->worker_devices[w], m->results[w].error, kept,
                    alive_count(m));
    }
    return count;
}

/* IST: after failures, the live workers must still cover every head (live x quota >= heads in
 * each layer); raises the quota to the smallest that does, and says so. */
static void replan_quota(master_run *m, int round) {
    const int live = alive_count(m);
    if (m->options->mode != TW_DIST_IST || live < 1) return;
    int quota = m->heads_per_worker, layer = -1;
    for (int l = 0; l < m->setup->model.n_layer; l++) {
        const int heads = m->setup->model.layers[l].heads;
        const int need = (heads + live - 1) / live;
        if (need > quota && (quota < heads)) {
            quota = need;
            layer = l;
        }
    }
    if (layer < 0) return;
    report_line(m->report, m->context, round,
                "round %d: %d workers x %d heads cannot cover the %d heads of layer %d; the "
                "head quota is re-planned to %d heads per worker",
                round + 1, live, m->heads_per_worker, m->setup->model.layers[layer].heads,
                layer, quota);
    m->heads_per_worker = quota;
}

static double mean_train_loss(const master_run *m) {
    double sum = 0.0;
    int n = 0;
    for (int w = 0; w < m->workers; w++)
        if (m->jobs[w].active && m->results[w].ok && isfinite(m->results[w].loss)) {
            sum += m->results[w].loss;
            n++;
        }
    return n ? sum / n : NAN;
}

static tw_status run_round(master_run *m, int round) {
    const tw_dist_options *o = m->options;
    round_phases p = {0};
    int slot_of[TW_DIST_MAX_WORKERS], failed[TW_DIST_MAX_WORKERS];
    tw_ist_partition *partition = NULL;
    double t = tw_now_seconds();
    TW_TRY(partition_round(m, round, slot_of, &partition));
    p.partition = tw_now_seconds() - t;
    t = tw_now_seconds();
    tw_status status = extract_round(m, round, partition, slot_of);
    p.extract = tw_now_seconds() - t;
    t = tw_now_seconds();
    if (status == TW_OK) status = m->transport->ops->send(m->transport, m->jobs, m->packed);
    p.send = tw_now_seconds() - t;
    t = tw_now_seconds();
    if (status == TW_OK) status = m->transport->ops->train(m->transport, m->jobs, m->results);
    p.train = tw_now_seconds() - t;
    t = tw_now_seconds();
    if (status == TW_OK)
        status = m->transport->ops->receive(m->transport, m->jobs, m->results, m->packed);
    p.receive = tw_now_seconds() - t;
    t = tw_now_seconds();
    if (status == TW_OK) status = merge_round(m, partition, slot_of);
    p.merge = tw_now_seconds() - t;
    dist_trace_round(round, m->workers, m->transport->worker_devices, m->jobs, m->results,
                     t + p.merge, p.partition + p.extract, p.send, p.train, p.receive, p.merge);
    free_partition(m, partition);
    if (status != TW_OK) return status;

    for (int w = 0; w < m->workers; w++)
        if (m->jobs[w].active && m->results[w].ok) m->loader[w] = m->results[w].loader;
    m->set_loader = false;
    const int failed_count = retire_failures(m, round, failed);
    if (alive_count(m) == 0)
        return tw_error(TW_ERR_BACKEND, "round %d: every worker has failed (worker %d: %s)",
                        round + 1, failed[0], m->results[failed[0]].error);
    if (failed_count) replan_quota(m, round);
    m->master->step += o->local_steps;
    double val_loss = NAN;
    tw_eval_result eval = {0};
    const bool last = round == o->rounds - 1;
    const bool evaluated = last || (o->eval_every > 0 && (round + 1) % o->eval_every == 0);
    if (evaluated) {
        t = tw_now_seconds();
        TW_TRY(evaluate_master(m, &eval));
        val_loss = eval.loss;
        p.eval = tw_now_seconds() - t;
        dist_trace_master(round, "eval", t, t + p.eval);
    }
    uint64_t round_bytes = 0;
    for (int w = 0; w < m->workers; w++)
        round_bytes += bytes_to_worker(m, w) + bytes_from_worker(m, w);
    m->total_bytes += round_bytes;
    const double train_loss = mean_train_loss(m);
    if (m->report) {
        char message[512], val[32] = "";
        if (isfinite(val_loss)) snprintf(val, sizeof val, ", val loss %.4f", val_loss);
        snprintf(message, sizeof message,
                 "round %d/%d: step %d, %d workers, train loss %.4f%s, %.1f MiB moved (%s: "
                 "%.3f of local SGD's fp32), training %.2f s, elapsed %.1f s",
                 round + 1, o->rounds, m->master->step, alive_count(m), train_loss, val,
                 (double)round_bytes / 1048576.0,
                 o->codec == TW_CODEC_FP32 ? "fp32" : o->codec == TW_CODEC_BF16 ? "bf16"
                                                                                : "bf16-delta",
                 (double)round_bytes / localsgd_bytes(m), p.train,
                 tw_now_seconds() - m->started);
        cJSON *record = round_record(m, round, &p, train_loss, round_bytes, failed, failed_count);
        tw_dist_report r = {.message = message, .record = record, .round = round,
                            .workers = alive_count(m), .val_loss = val_loss,
                            .train_loss = train_loss, .elapsed_s = tw_now_seconds() - m->started};
        m->report(m->context, &r);
        cJSON_Delete(record);
        report_idle(m, round);
        report_skipped(m, round);
        if (evaluated) {
            /* the same "eval" record as twist train's, with the round */
            cJSON *e = tw_record_new(command_name(o->mode), "eval");
            tw_record_int(e, "round", round + 1);
            tw_record_int(e, "step", m->master->step);
            tw_record_string(e, "split", "val");
            tw_record_number(e, "loss", eval.loss);
            tw_record_number(e, "perplexity", eval.perplexity);
            tw_record_number(e, "accuracy", eval.accuracy);
            tw_record_int(e, "tokens", eval.tokens);
            tw_record_number(e, "elapsed_s", tw_now_seconds() - m->started);
            report_record(m->report, m->context, e, NULL, round);
        }
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The run                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static tw_status save_master(master_run *m, int round) {
    const tw_dist_options *o = m->options;
    tw_adamw *opt = NULL;
    tw_status status = TW_OK;
    if (!m->eval_model) {
        status = tw_device_open(o->eval_device ? o->eval_device : "cpu", &m->eval_device);
        if (status == TW_OK) status = tw_gpt_create(m->eval_device, &m->setup->model, &m->eval_model);
    }
    const size_t bytes = m->master->param_count * sizeof(float);
    if (status == TW_OK) status = tw_adamw_create(m->eval_model, &o->adamw, &opt);
    if (status == TW_OK)
        status = tw_buffer_upload(tw_gpt_params(m->eval_model), 0, m->master->params, bytes);
    if (status == TW_OK)
        status = tw_buffer_upload(tw_adamw_first_moment(opt), 0, m->master->exp_avg, bytes);
    if (status == TW_OK)
        status = tw_buffer_upload(tw_adamw_second_moment(opt), 0, m->master->exp_avg_sq, bytes);
    if (status == TW_OK) {
        tw_adamw_set_steps(opt, m->master->step);
        /* With what a resumed run needs (resume.c). */
        dist_run_state *run = calloc(1, sizeof *run);
        char *state = NULL;
        if (run) {
            run->round = round + 1;
            run->heads_per_worker = m->heads_per_worker;
            run->total_bytes = m->total_bytes;
            run->workers = m->workers;
            for (int w = 0; w < m->workers; w++) {
                run->alive[w] = m->alive[w];
                run->rate[w] = m->rate[w];
                run->loader[w] = m->loader[w];
            }
            state = dist_state_json(o, m->setup, m->master->step, run);
        }
        status = state ? tw_train_save(o->out_dir, m->eval_model, opt, state, m->setup->tokenizer)
                       : tw_error(TW_ERR_OUT_OF_MEMORY, "save: out of host memory");
        free(state);
        free(run);
    }
    tw_adamw_destroy(opt);
    if (status == TW_OK) {
        m->saved_round = round;
        char message[1024];
        snprintf(message, sizeof message, "saved the merged model of round %d/%d to %s",
                 round + 1, o->rounds, o->out_dir);
        cJSON *record = tw_record_new(command_name(o->mode), "save");
        tw_record_int(record, "step", m->master->step);
        tw_record_string(record, "path", o->out_dir);
        report_record(m->report, m->context, record, message, -1);
    }
    return status;
}

/* options->resume: the checkpoint's master and run state (resume.c); *first is the next
 * round. */
static tw_status resume_master(master_run *m, int *first) {
    dist_run_state *run = calloc(1, sizeof *run);
    if (!run) return tw_error(TW_ERR_OUT_OF_MEMORY, "--resume: out of host memory");
    tw_status status = dist_resume_load(m->options, m->setup, m->master, run, m->report,
                                        m->context);
    if (status == TW_OK) {
        *first = run->round;
        m->heads_per_worker = run->heads_per_worker;
        m->total_bytes = run->total_bytes;
        m->saved_round = run->round - 1;
        for (int w = 0; w < m->workers; w++) {
            m->alive[w] = run->alive[w];
            m->rate[w] = run->rate[w];
            m->loader[w] = run->loader[w];
        }
        m->set_loader = true;
    }
    free(run);
    return status;
}

static tw_status allocate(master_run *m) {
    const size_t n = (size_t)m->workers;
    m->alive = calloc(n, sizeof *m->alive);
    m->rate = calloc(n, sizeof *m->rate);
    m->jobs = calloc(n, sizeof *m->jobs);
    m->results = calloc(n, sizeof *m->results);
    m->packed = calloc(n, sizeof *m->packed);
    m->packed_capacity = calloc(n, sizeof *m->packed_capacity);
    m->links = calloc(n, sizeof *m->links);
    m->loader = calloc(n, sizeof *m->loader);
    m->transport->links = m->links;
    m->pace = calloc(n, sizeof *m->pace);
    m->batch = calloc(n, sizeof *m->batch);
    if (!m->alive || !m->rate || !m->jobs || !m->results || !m->packed || !m->packed_capacity ||
        !m->links || !m->loader || !m->pace || !m->batch)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "distributed run: out of host memory");
    for (int w = 0; w < m->workers; w++) m->alive[w] = true;
    return TW_OK;
}

static void release(master_run *m) {
    for (int w = 0; m->packed && w < m->workers; w++) free(m->packed[w]);
    free(m->packed);
    free(m->packed_capacity);
    for (int w = 0; m->links && w < m->workers; w++) dist_codec_link_free(&m->links[w]);
    free(m->links);
    if (m->transport) m->transport->links = NULL;
    free(m->loader);
    free(m->alive);
    free(m->rate);
    free(m->pace);
    free(m->batch);
    free(m->jobs);
    free(m->results);
    tw_gpt_destroy(m->eval_model);
    tw_device_close(m->eval_device);
    tw_ist_master_free(m->master);
    tw_checkpoint_lock_release(m->lock);
    dist_memory_free(m->memory);
}

tw_status dist_master_rounds(const tw_dist_options *options, const dist_setup *setup,
                             dist_transport *transport, tw_dist_report_fn report, void *context) {
    master_run m = {.options = options, .setup = setup, .transport = transport,
                    .report = report, .context = context, .workers = transport->workers,
                    .heads_per_worker = options->heads_per_worker, .saved_round = -1,
                    .started = tw_now_seconds()};
    tw_status status = allocate(&m);
    /* out_dir must be writable and ours for the whole run, before any round (the same check
     * as `twist train`'s). */
    if (status == TW_OK && options->out_dir)
        status = tw_checkpoint_lock_take(options->out_dir, NULL, &m.lock);
    if (status == TW_OK)
        status = dist_memory_create(options, transport, &setup->model, report, context,
                                    &m.memory);
    if (status == TW_OK) status = init_master(&m);
    int first = 0;
    if (status == TW_OK && options->resume) status = resume_master(&m, &first);
    if (status == TW_OK)
        report_line(report, context, -1,
                    "%s: %d workers, %d rounds of %d local steps, model of %zu parameters",
                    MODE_NAMES[options->mode], m.workers, options->rounds, options->local_steps,
                    m.master->param_count);
    bool stopped = options->stop && *options->stop;
    for (int round = first; status == TW_OK && !stopped && round < options->rounds; round++) {
        status = run_round(&m, round);
        stopped = options->stop && *options->stop;
        if (options->stop_after > 0 && round + 1 - first >= options->stop_after) stopped = true;
        /* Round-level saves: a run that ends early (a lost MPI rank, a signal) keeps the last
         * one. */
        const bool last = round == options->rounds - 1;
        if (status == TW_OK && options->out_dir &&
            (last || stopped ||
             (options->save_every > 0 && (round + 1) % options->save_every == 0)))
            status = save_master(&m, round);
        if (status == TW_OK && stopped && !last)
            report_line(report, context, round, "stopped %s after round %d of %d",
                        options->stop && *options->stop ? "on request" : "(--stop-after)",
                        round + 1, options->rounds);
    }
    if (status != TW_OK && m.saved_round >= 0) {
        char message[2048];
        snprintf(message, sizeof message, "%s", tw_last_error());
        status = tw_error(status, "%s; the last checkpoint, of round %d/%d, is in %s", message,
                          m.saved_round + 1, options->rounds, options->out_dir);
    }
    release(&m);
    return status;
}
