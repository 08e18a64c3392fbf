/* Memory-fitted subnets in a distributed run (dist_memory.h): budgets, the round's plan, and the
 * worker's micro-batched gradient step. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ist/dist_memory.h"
#include "twist/error.h"

void dist_memory_free(dist_memory *memory) {
    if (!memory) return;
    free(memory->budget);
    free(memory->capped);
    free(memory->micro_batch);
    free(memory->need);
    free(memory);
}

static void say(tw_dist_report_fn report, void *context, int round, const char *message) {
    if (!report) return;
    tw_dist_report r = {.message = message, .round = round, .val_loss = NAN, .train_loss = NAN};
    report(context, &r);
}

tw_status dist_memory_create(const tw_dist_options *o, const dist_transport *transport,
                             const tw_gpt_config *model, tw_dist_report_fn report,
                             void *context, dist_memory **out) {
    *out = NULL;
    const int n = transport->workers;
    dist_memory *m = calloc(1, sizeof *m);
    if (m) {
        m->workers = n;
        m->batch = o->batch;
        m->budget = calloc((size_t)n, sizeof *m->budget);
        m->capped = calloc((size_t)n, sizeof *m->capped);
        m->micro_batch = calloc((size_t)n, sizeof *m->micro_batch);
        m->need = calloc((size_t)n, sizeof *m->need);
    }
    if (!m || !m->budget || !m->capped || !m->micro_batch || !m->need) {
        dist_memory_free(m);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "memory plan: out of host memory");
    }
    bool any_cap = false;
    for (int w = 0; w < n; w++) {
        const char *spec = transport->worker_devices[w];
        m->budget[w] = tw_memory_caps_find(&o->device_memory, spec);
        m->capped[w] = m->budget[w] > 0;
        any_cap = any_cap || m->capped[w];
        /* Under MPI the workers' devices belong to other ranks, perhaps on other hosts: rank 0
         * plans with the caps only (querying a GPU here would open a context on it). */
        if (m->capped[w] || o->transport == TW_TRANSPORT_MPI) continue;
        /* Uncapped: the device's free memory, shared by the workers on it. */
        int sharing = 0;
        char normal[32], other[32];
        const bool named = tw_device_spec_normalise(spec, normal, sizeof normal);
        for (int v = 0; v < n; v++)
            sharing += named &&
                       tw_device_spec_normalise(transport->worker_devices[v], other,
                                                sizeof other) &&
                       strcmp(normal, other) == 0;
        uint64_t free_bytes = 0;
        if (tw_device_spec_free_memory(spec, &free_bytes) != TW_OK) {
            tw_clear_error(); /* a device rank 0 cannot see: no budget known */
            free_bytes = 0;
        }
        /* 90% of it: the rest for what twist's count does not see (allocator rounding and
         * caches, vendor-library workspaces, the driver) */
        m->budget[w] = (sharing > 1 ? free_bytes / (uint64_t)sharing : free_bytes) / 10 * 9;
    }
    if (any_cap) {
        char line[1024], need[32];
        tw_training_memory whole;
        tw_training_memory_of(model, o->batch, model->max_seq_len, &whole);
        int used = snprintf(line, sizeof line,
                            "device memory: the whole model's training state needs %s at "
                            "micro-batch %d; worker budgets (--device-memory caps apply to each "
                            "worker):",
                            tw_format_bytes(whole.total, need, sizeof need), o->batch);
        for (int w = 0; w < n && used > 0 && (size_t)used < sizeof line; w++) {
            char budget[32];
            used += snprintf(line + used, sizeof line - (size_t)used, "%s %d %s %s%s",
                             w ? "," : "", w, transport->worker_devices[w],
                             m->budget[w] ? tw_format_bytes(m->budget[w], budget, sizeof budget)
                                          : "unknown",
                             m->capped[w] ? " (cap)" : " (free)");
        }
        say(report, context, -1, line);
    }
    *out = m;
    return TW_OK;
}

tw_status dist_memory_fit(dist_memory *m, const tw_dist_options *o, const tw_gpt_config *model,
                          const dist_transport *transport, const int *slot_of, int live,
                          int heads_per_worker, bool whole_model, double *weights,
                          bool *use_weights, tw_dist_report_fn report, void *context,
                          int round) {
    for (int w = 0; w < m->workers; w++) {
        m->micro_batch[w] = 0;
        m->need[w] = 0;
    }
    uint64_t budgets[TW_DIST_MAX_WORKERS];
    const char *devices[TW_DIST_MAX_WORKERS];
    int worker_of[TW_DIST_MAX_WORKERS];
    bool any = false;
    for (int w = 0; w < m->workers; w++) {
        if (slot_of[w] < 0) continue;
        budgets[slot_of[w]] = m->budget[w];
        devices[slot_of[w]] = transport->worker_devices[w];
        worker_of[slot_of[w]] = w;
        any = any || m->budget[w] > 0;
    }
    if (!any || live < 1) return TW_OK;
    int micro[TW_DIST_MAX_WORKERS];
    uint64_t need[TW_DIST_MAX_WORKERS];
    double planned[TW_DIST_MAX_WORKERS];
    tw_memory_plan_options po = {.model = model, .workers = live,
                                 .heads_per_worker = heads_per_worker, .batch = o->batch,
                                 .seq_len = model->max_seq_len, .whole_model = whole_model,
                                 .budgets = budgets,
                                 .desired = *use_weights && !whole_model ? weights : NULL,
                                 .worker_devices = devices};
    tw_memory_plan plan = {.weights = planned, .micro_batch = micro, .need = need};
    tw_status status = tw_memory_plan_make(&po, &plan);
    if (status != TW_OK) return status;
    for (int s = 0; s < live; s++) {
        const int w = worker_of[s];
        m->micro_batch[w] = micro[s] < o->batch ? micro[s] : 0;
        m->need[w] = need[s];
    }
    if (plan.reshaped) {
        for (int s = 0; s < live; s++) weights[s] = planned[s];
        *use_weights = true;
    }
    if (plan.fitted && !m->reported) {
        m->reported = true;
        char line[2048];
        int used = snprintf(line, sizeof line, "round %d: memory plan:", round + 1);
        for (int s = 0; s < live && used > 0 && (size_t)used < sizeof line; s++) {
            char a[32], b[32];
            used += snprintf(line + used, sizeof line - (size_t)used,
                             "%s worker %d %s of %s at micro-batch %d", s ? "," : "",
                             worker_of[s], tw_format_bytes(need[s], a, sizeof a),
                             budgets[s] ? tw_format_bytes(budgets[s], b, sizeof b) : "unknown",
                             micro[s]);
        }
        say(report, context, round, line);
    }
    return TW_OK;
}

int dist_memory_micro_batch(const dist_memory *m, int w, int batch) {
    if (!m || w >= m->workers) return 0;
    /* --balance data may give a capped worker more rows than the plan checked (--batch): it
     * then runs them in passes of the planned size, so its memory stays within the plan */
    if (m->micro_batch[w] == 0 && m->capped[w] && batch > m->batch) return m->batch;
    return m->micro_batch[w];
}

void dist_memory_record(const dist_memory *m, cJSON *item, int w, const dist_job *job) {
    if (!m || !item || w >= m->workers) return;
    const int batch = job->batch > 0 ? job->batch : m->batch;
    const int micro = job->micro_batch > 0 && job->micro_batch < batch ? job->micro_batch : batch;
    cJSON_AddNumberToObject(item, "micro_batch", micro);
    if (m->budget[w]) cJSON_AddNumberToObject(item, "memory_budget", (double)m->budget[w]);
    else cJSON_AddNullToObject(item, "memory_budget");
    if (m->need[w]) cJSON_AddNumberToObject(item, "memory_need", (double)m->need[w]);
    else cJSON_AddNullToObject(item, "memory_need");
}

tw_status dist_compute_grads_micro(tw_gpt *model, tw_loader *loader, int batch, int micro_batch,
                                   int seq_len, int grad_accum, float loss_scale,
                                   int32_t *inputs, int32_t *targets, double *loss) {
    if (micro_batch < 1 || batch < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "micro-batch %d of a batch of %d", micro_batch,
                        batch);
    /* --balance data may give a batch that micro_batch does not divide: the last pass takes the
     * rest, and each pass's mean loss weighs by its rows (n_p / batch), so the gradient is the
     * whole batch's. When micro_batch divides the batch every weight is 1 / passes. */
    const int passes = (batch + micro_batch - 1) / micro_batch;
    const bool even = batch % micro_batch == 0;
    double loss_sum = 0.0;
    TW_TRY(tw_gpt_zero_grad(model));
    for (int micro = 0; micro < grad_accum; micro++) {
        TW_TRY(tw_loader_next(loader, inputs, targets));
        for (int p = 0; p < passes; p++) {
            const int rows_in_pass = p < passes - 1 || even ? micro_batch : batch % micro_batch;
            const size_t first = (size_t)p * (size_t)micro_batch * (size_t)seq_len;
            tw_gpt_metrics metrics;
            TW_TRY(tw_gpt_forward(model, inputs + first, targets + first, rows_in_pass, seq_len));
            const float scale = even ? 1.0f / (float)(grad_accum * passes)
                                     : (float)rows_in_pass / (float)(grad_accum * batch);
            TW_TRY(tw_gpt_backward(model, scale * loss_scale));
            TW_TRY(tw_gpt_metrics_read(model, &metrics));
            loss_sum += even ? metrics.loss / (grad_accum * passes)
                             : metrics.loss * rows_in_pass / ((double)grad_accum * batch);
        }
    }
    if (loss) *loss = loss_sum;
    return TW_OK;
}
