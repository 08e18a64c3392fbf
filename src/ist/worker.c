/* A worker of a distributed run: one device, its shard of the training data, and the local
 * training of one round on a packed subnet. The steps are those of `twist train`
 * (tw_train_compute_grads, then tw_adamw_update at the global step's learning rate), so a
 * worker that holds the whole model for K steps does exactly what plain training does. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twist/error.h"
#include "ist/dist_internal.h"
#include "ist/dist_memory.h"
#include "train/train_internal.h"
#include "twist/clock.h"

tw_status dist_worker_init(dist_worker *worker, int index, int shard_count, const char *device,
                           const tw_dataset *dataset, const tw_dist_options *options,
                           int total_steps) {
    memset(worker, 0, sizeof *worker);
    worker->index = index;
    worker->options = options;
    worker->total_steps = total_steps;
    const size_t N = (size_t)options->batch * (size_t)options->model.max_seq_len;
    worker->inputs = malloc(N * sizeof *worker->inputs);
    worker->targets = malloc(N * sizeof *worker->targets);
    if (!worker->inputs || !worker->targets)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "worker %d: out of host memory", index);
    worker->batch_capacity = N;
    char name[256];
    snprintf(name, sizeof name, "training shard %d of %d", index, shard_count);
    TW_TRY(tw_loader_init(&worker->loader, dataset->train, dataset->train_tokens, options->batch,
                          options->model.max_seq_len, options->seed, index, shard_count, name));
    TW_TRY(tw_device_open(device, &worker->device));
    /* --precision: refused here, before the first round, where the device cannot run it */
    TW_TRY(tw_train_choose_precision(worker->device, options->precision_set, options->precision,
                                     &worker->dtype, NULL));
    worker->scaler = tw_loss_scaler_for(worker->dtype);
    /* --device-memory: this worker's own cap (per worker when several share the device) */
    return tw_device_set_memory_cap(
        worker->device,
        tw_memory_caps_find(&options->device_memory, tw_device_get_info(worker->device)->spec));
}

static void drop_model(dist_worker *worker) {
    tw_adamw_destroy(worker->opt);
    tw_gpt_destroy(worker->model);
    worker->opt = NULL;
    worker->model = NULL;
}

void dist_worker_free(dist_worker *worker) {
    if (!worker) return;
    drop_model(worker);
    tw_device_close(worker->device);
    free(worker->inputs);
    free(worker->targets);
    free(worker->grads);
    free(worker->packed);
    dist_codec_link_free(&worker->codec);
    memset(worker, 0, sizeof *worker);
}

static tw_status grow(float **buffer, size_t *capacity, size_t floats) {
    if (*capacity >= floats) return TW_OK;
    float *bigger = realloc(*buffer, floats * sizeof *bigger);
    if (!bigger) return tw_error(TW_ERR_OUT_OF_MEMORY, "out of host memory (%zu floats)", floats);
    *buffer = bigger;
    *capacity = floats;
    return TW_OK;
}

tw_status dist_worker_reserve(dist_worker *worker, size_t floats) {
    return grow(&worker->packed, &worker->packed_capacity, floats);
}

/* Input and target scratch for micro-batches of `batch` sequences (--balance data changes it
 * between rounds). */
static tw_status ensure_batch(dist_worker *worker, int batch) {
    const size_t N = (size_t)batch * (size_t)worker->options->model.max_seq_len;
    if (N <= worker->batch_capacity) return TW_OK;
    int32_t *inputs = realloc(worker->inputs, N * sizeof *inputs);
    if (inputs) worker->inputs = inputs;
    int32_t *targets = inputs ? realloc(worker->targets, N * sizeof *targets) : NULL;
    if (targets) worker->targets = targets;
    if (!inputs || !targets)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "worker %d: out of host memory for a batch of %d",
                        worker->index, batch);
    worker->batch_capacity = N;
    return TW_OK;
}

/* A model and optimizer for the job's config: the previous round's when the config is the same
 * (data parallel and local SGD keep one shape), a new one otherwise (IST subnets change). */
static tw_status ensure_model(dist_worker *worker, const tw_gpt_config *config) {
    if (worker->model && memcmp(&worker->model_config, config, sizeof *config) == 0)
        return TW_OK;
    drop_model(worker);
    TW_TRY(tw_gpt_create(worker->device, config, &worker->model));
    /* the packed subnet (fp32 master weights) is uploaded into tw_gpt_params; the passes run
     * in the worker's precision on a working copy converted from it */
    TW_TRY(tw_gpt_set_dtype(worker->model, worker->dtype));
    TW_TRY(tw_adamw_create(worker->model, &worker->options->adamw, &worker->opt));
    worker->model_config = *config;
    return TW_OK;
}

/* packed [params | exp_avg | exp_avg_sq] <-> the device buffers, each (P) floats. */
static tw_status upload_packed(dist_worker *worker, size_t P) {
    const size_t bytes = P * sizeof(float);
    TW_TRY(tw_buffer_upload(tw_gpt_params(worker->model), 0, worker->packed, bytes));
    TW_TRY(tw_buffer_upload(tw_adamw_first_moment(worker->opt), 0, worker->packed + P, bytes));
    return tw_buffer_upload(tw_adamw_second_moment(worker->opt), 0, worker->packed + 2 * P,
                            bytes);
}

static tw_status download_packed(dist_worker *worker, size_t P) {
    const size_t bytes = P * sizeof(float);
    TW_TRY(tw_buffer_download(tw_gpt_params(worker->model), 0, worker->packed, bytes));
    TW_TRY(tw_buffer_download(tw_adamw_first_moment(worker->opt), 0, worker->packed + P, bytes));
    return tw_buffer_download(tw_adamw_second_moment(worker->opt), 0, worker->packed + 2 * P,
                              bytes);
}

/* Data parallel: replace the gradients by their mean over the round's workers. */
static tw_status average_grads(dist_worker *worker, const dist_job *job, const dist_comm *comm,
                               bool ok, dist_result *result) {
    uint64_t *bytes = &result->comm_bytes;
    const size_t P = tw_gpt_param_count(worker->model);
    TW_TRY(grow(&worker->grads, &worker->grads_capacity, P));
    /* fp32 on the host whatever the worker's precision (widened from bf16/f16) */
    if (ok) TW_TRY(tw_gpt_grads_download(worker->model, worker->grads));
    /* What goes on the wire under --codec (codec.h): bf16, with this worker's residual. */
    const tw_dist_codec codec = (tw_dist_codec)worker->options->codec;
    /* --balance data: unequal batches; the plain mean of the scaled gradients is the
     * token-weighted mean (equal batches: factor 1, the gradients untouched). */
    if (ok && job->grad_scale != 1.0f && job->grad_scale > 0.0f)
        for (size_t i = 0; i < P; i++) worker->grads[i] *= job->grad_scale;
    if (ok) TW_TRY(dist_codec_quantize(&worker->codec, codec, worker->grads, P));
    int contributors = 0;
    const double wait_started = tw_now_seconds();
    tw_status averaged =
        comm->average(comm->context, worker->index, worker->grads, P, ok, &contributors);
    result->wait_s += tw_now_seconds() - wait_started;
    TW_TRY(averaged);
    if (!ok) return TW_OK;
    *bytes += dist_codec_bytes(codec, P);
    if (contributors < 1)
        return tw_error(TW_ERR_BACKEND, "worker %d: no worker contributed gradients",
                        worker->index);
    return tw_gpt_grads_upload(worker->model, worker->grads);
}

/* --slow-worker: sleeps (factor - 1) times the time since step_started (the part of a step just
 * done: the forward and backward passes, whose loss was read back, or the AdamW update, which
 * read the gradient norm back; either way the device has finished it). */
static void pretend_slower(double factor, double step_started) {
    const double wait = (factor - 1.0) * (tw_now_seconds() - step_started);
    if (!(wait > 0.0)) return;
    struct timespec duration = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
    while (nanosleep(&duration, &duration) != 0 && errno == EINTR) {
    }
}

/* K local steps; *failed_at gets the step a failure happened at. In data parallel mode a failed
 * worker goes on calling the averaging (contributing nothing) so the others never wait on it. */
static tw_status local_steps(dist_worker *worker, const dist_job *job, const dist_comm *comm,
                             dist_result *result) {
    const tw_dist_options *o = worker->options;
    const bool allreduce = o->mode == TW_DIST_ALLREDUCE;
    const int T = o->model.max_seq_len;
    const int B = job->batch > 0 ? job->batch : o->batch;
    worker->loader.batch = B; /* --balance data: this round's batch */
    tw_lr_schedule schedule = {o->lr, o->min_lr, o->warmup, worker->total_steps};
    const bool slow = worker->index == o->slow_worker;
    tw_status failure = TW_OK;
    double loss_sum = 0.0;
    int done = 0;
    for (int s = 0; s < job->local_steps; s++) {
        if (failure == TW_OK && job->fail_after >= 0 && s >= job->fail_after)
            failure = tw_error(TW_ERR_BACKEND, "worker %d: fault injected at local step %d",
                               worker->index, s);
        double loss = 0.0;
        const double step_started = tw_now_seconds();
        /* B: this round's batch (--balance data); micro_batch: the most rows one forward
         * pass may take (the memory plan), the batch's gradient accumulated over passes */
        if (failure == TW_OK && job->micro_batch > 0)
            failure = dist_compute_grads_micro(worker->model, &worker->loader, B,
                                               job->micro_batch, T, o->grad_accum,
                                               worker->scaler.scale, worker->inputs,
                                               worker->targets, &loss);
        else if (failure == TW_OK)
            failure = tw_train_compute_grads_scaled(worker->model, &worker->loader, B, T,
                                                    o->grad_accum, worker->scaler.scale,
                                                    worker->inputs, worker->targets, &loss,
                                                    NULL);
        if (failure == TW_OK && slow) pretend_slower(o->slow_factor, step_started);
        result->grad_s += tw_now_seconds() - step_started;
        if (allreduce) {
            tw_status status = average_grads(worker, job, comm, failure == TW_OK, result);
            if (failure == TW_OK) failure = status;
        }
        const double update_started = tw_now_seconds();
        bool skipped = false;
        /* data parallel: every worker decides on the same averaged gradients, so fp16 workers
         * skip the same steps and keep equal loss scales */
        if (failure == TW_OK)
            failure = tw_adamw_update_scaled(worker->opt, tw_lr_at(&schedule, job->start_step + s),
                                             &worker->scaler, NULL, &skipped);
        if (skipped) result->skipped_steps++;
        if (failure == TW_OK) {
            loss_sum += loss;
            done++;
            if (slow) pretend_slower(o->slow_factor, update_started);
        }
        if (failure != TW_OK && !allreduce) break;
    }
    result->loss = done ? loss_sum / done : NAN;
    result->loss_scale = worker->scaler.scale;
    return failure;
}

/* Data parallel, a worker that could not even start its round: the others still average with
 * it at every step, so it joins each averaging without contributing. */
static void idle_averages(dist_worker *worker, const dist_job *job, const dist_comm *comm,
                          size_t P) {
    if (grow(&worker->grads, &worker->grads_capacity, P) != TW_OK) P = 0;
    for (int s = 0; s < job->local_steps; s++) {
        int contributors = 0;
        if (comm->average(comm->context, worker->index, worker->grads, P, false,
                          &contributors) != TW_OK)
            break;
    }
}

void dist_worker_train(dist_worker *worker, const dist_job *job, const dist_comm *comm,
                       dist_result *result) {
    const tw_dist_options *o = worker->options;
    memset(result, 0, sizeof *result);
    result->loss = NAN;
    result->precision = (int)worker->dtype;
    result->loss_scale = worker->scaler.scale;
    const double started = tw_now_seconds();
    const size_t P = (size_t)(job->packed_floats / 3);
    if (worker->device) tw_device_reset_peak(worker->device);
    /* Under MPI a rank that could not make room for the subnet received nothing. */
    tw_status status = worker->packed_capacity < job->packed_floats
                           ? tw_error(TW_ERR_OUT_OF_MEMORY,
                                      "worker %d: no host memory for a packed subnet of %llu "
                                      "floats", worker->index,
                                      (unsigned long long)job->packed_floats)
                           : TW_OK;
    /* Activations of another micro-batch would be allocated beside the old ones (a cap could
     * refuse the sum): a new micro-batch starts from a new model (the packed subnet holds the
     * state anyway). */
    if (worker->model && worker->micro_batch != job->micro_batch) drop_model(worker);
    worker->micro_batch = job->micro_batch;
    if (status == TW_OK) status = ensure_batch(worker, job->batch > 0 ? job->batch : o->batch);
    if (status == TW_OK) status = ensure_model(worker, &job->config);
    if (status == TW_OK && tw_gpt_param_count(worker->model) != P)
        status = tw_error(TW_ERR_INVALID_ARGUMENT,
                          "worker %d: packed subnet of %zu parameters for a model of %zu",
                          worker->index, P, tw_gpt_param_count(worker->model));
    if (status == TW_OK && job->set_loader)
        status = tw_loader_set_state(&worker->loader, job->loader);
    if (status == TW_OK) status = upload_packed(worker, P);
    if (status == TW_OK) {
        tw_adamw_set_steps(worker->opt, job->start_step);
        status = local_steps(worker, job, comm, result);
    } else if (o->mode == TW_DIST_ALLREDUCE) {
        idle_averages(worker, job, comm, P);
    }
    if (status == TW_OK) status = download_packed(worker, P);
    result->loader = tw_loader_get_state(&worker->loader);
    result->train_s = tw_now_seconds() - started;
    if (worker->device) result->peak_bytes = tw_device_peak_bytes(worker->device);
    const double tokens = (double)job->local_steps * o->grad_accum *
                          (job->batch > 0 ? job->batch : o->batch) * o->model.max_seq_len;
    result->tokens_per_s = result->train_s > 0 ? tokens / result->train_s : 0.0;
    result->ok = status == TW_OK;
    if (!result->ok) {
        snprintf(result->error, sizeof result->error, "%s", tw_last_error());
        drop_model(worker); /* a device that failed may hold a broken model */
    }
}
