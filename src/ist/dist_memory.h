/* Memory-fitted subnets in a distributed run: each worker's budget (its --device-memory cap,
 * or its device's queried free memory shared among the workers on it), the round's memory plan
 * (twist/memory.h) on the master's side, and the worker's micro-batched gradient step. */
#ifndef TWIST_IST_DIST_MEMORY_H
#define TWIST_IST_DIST_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "ist/dist_internal.h"
#include "twist/memory.h"

struct cJSON;

typedef struct dist_memory {
    int workers;
    int batch;         /* --batch: the micro-batch of a worker no plan cut */
    uint64_t *budget;  /* (workers) bytes, 0: unknown */
    bool *capped;      /* (workers) the budget is a --device-memory cap */
    int *micro_batch;  /* (workers) of the round planned last */
    uint64_t *need;    /* (workers) its estimated need, 0: not planned */
    bool reported;     /* the plan's first line was reported */
} dist_memory;

/* Budgets of the transport's workers: caps, else (threads) 90% of the device's free memory
 * shared by the workers on it; under MPI uncapped workers have no budget (rank 0 cannot see devices of
 * other ranks). Reports one line on the budgets when any device is capped. */
tw_status dist_memory_create(const tw_dist_options *options, const dist_transport *transport,
                             const tw_gpt_config *model, tw_dist_report_fn report,
                             void *context, dist_memory **out);
void dist_memory_free(dist_memory *memory);

/* The round's plan over the live workers (slot_of[w] >= 0, `live` of them). weights (live) holds
 * the desired shares when *use_weights (--balance speed), and gets the planned ones; *use_weights
 * is set when the partition must take them. IST unless whole_model. */
tw_status dist_memory_fit(dist_memory *memory, const tw_dist_options *options,
                          const tw_gpt_config *model, const dist_transport *transport,
                          const int *slot_of, int live, int heads_per_worker, bool whole_model,
                          double *weights, bool *use_weights, tw_dist_report_fn report,
                          void *context, int round);
/* Worker w's micro-batch for the round, when it trains `batch` sequences a step: 0 for the
 * whole batch (no plan bound it); a capped worker given more than --batch by --balance data gets
 * at most the rows the plan checked. */
int dist_memory_micro_batch(const dist_memory *memory, int w, int batch);
/* Adds "micro_batch" (rows per forward pass of the worker's job), "memory_budget" and
 * "memory_need" (bytes, null when unknown) of worker w to its record. */
void dist_memory_record(const dist_memory *memory, struct cJSON *item, int w,
                        const dist_job *job);

/* One optimizer step's gradients (as tw_train_compute_grads) with each loaded batch of `batch`
 * rows run as ceil(batch / micro_batch) forward and backward passes of at most micro_batch rows
 * (the last takes the rest when --balance data gives a batch micro_batch does not divide).
 * A pass of n rows adds d(loss) x n / (batch x grad_accum): the same mean gradient as one pass
 * over the batch when every row has its full count of targets (the training stream's windows
 * do). */
/* loss_scale: fp16's dynamic loss scale (1 otherwise). */
tw_status dist_compute_grads_micro(tw_gpt *model, tw_loader *loader, int batch, int micro_batch,
                                   int seq_len, int grad_accum, float loss_scale,
                                   int32_t *inputs, int32_t *targets, double *loss);

#endif
