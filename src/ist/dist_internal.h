/* Internals of distributed runs (twist/ist_run.h): the worker, the per-round job it receives,
 * the result it returns, and the transports that carry them. The round code (rounds.c) is
 * written once against dist_transport; threads and MPI fill it in. */
#ifndef TWIST_DIST_INTERNAL_H
#define TWIST_DIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ist/codec.h"
#include "twist/data.h"
#include "twist/ist_run.h"
#include "twist/tokenizer.h"

/* What a worker does in one round. Plain data: MPI sends it as bytes to every rank. */
typedef struct dist_job {
    int command;        /* DIST_TRAIN or DIST_QUIT */
    int active;         /* takes part in this round */
    int fail_after;     /* injected fault: fail after this many local steps; -1: none */
    int start_step;     /* the master's step: AdamW's counter and the LR schedule's position */
    int local_steps;    /* K */
    int active_workers; /* taking part in this round (data parallel averages over them) */
    uint64_t packed_floats; /* tw_ist_packed_floats(&config) */
    tw_gpt_config config;   /* the worker's subnet (the whole model outside IST) */
    int codec;              /* tw_dist_codec of the exchange */
    uint64_t share_ints;    /* bf16-delta: the share lists sent with the subnet (codec.h) */
    int set_loader;         /* resume: the worker's data position is `loader` before training */
    tw_loader_state loader;
    int micro_batch;        /* rows per forward pass (a divisor of batch), 0: the whole batch */
    int batch;          /* sequences per micro-batch this round (--balance data varies it) */
    float grad_scale;   /* allreduce: the gradient's factor before averaging, batch x active
                           workers / the round's sequences, so the mean is token-weighted */
} dist_job;

enum { DIST_TRAIN = 1, DIST_QUIT = 2 };

/* What a worker reports back. Plain data, like dist_job. */
typedef struct dist_result {
    int ok;                 /* 0: the worker failed; its packed buffer is not merged */
    double loss;            /* mean training loss of its local steps */
    double tokens_per_s;    /* training tokens / train_s */
    double train_s;         /* wall time of its local phase (upload, K steps, download) */
    uint64_t comm_bytes;    /* bytes it sent during training (data parallel gradients) */
    char error[256];        /* why it failed */
    tw_loader_state loader; /* the worker's data position after the round (resume) */
    uint64_t peak_bytes;    /* the worker device's allocation peak during the round */
    double grad_s;          /* of train_s: forward and backward passes (scale with the batch) */
    double wait_s;          /* of train_s: in gradient averaging (waiting for the others) */
    int skipped_steps;      /* fp16: local steps whose update was skipped (overflow) */
    float loss_scale;       /* fp16: the worker's loss scale after the round (1 otherwise) */
    int precision;          /* the worker's tw_dtype */
} dist_result;

/* Averaging across the round's workers during local training (data parallel). Every active
 * worker calls average() the same number of times; `ok` false contributes nothing (a failed
 * worker keeps calling so the others never wait for it). data (count floats) becomes the mean,
 * in double, over the ok contributors in worker order; *contributors gets their number. */
typedef struct dist_comm {
    tw_status (*average)(void *context, int worker, float *data, size_t count, bool ok,
                         int *contributors);
    void *context;
} dist_comm;

/* A worker: one device, its shard of the training data, its model for the current config. */
typedef struct dist_worker {
    int index;
    const tw_dist_options *options;
    int total_steps;          /* of the LR schedule: rounds * local_steps */
    tw_device *device;
    tw_loader loader;
    tw_gpt *model;            /* kept across rounds while the config does not change */
    tw_adamw *opt;
    tw_gpt_config model_config;
    int32_t *inputs, *targets;/* (batch * seq_len) */
    size_t batch_capacity;    /* ids each of inputs and targets hold */
    float *grads;             /* (param count) host copy of the gradients (data parallel) */
    size_t grads_capacity;
    float *packed;            /* the worker's packed subnet [params | exp_avg | exp_avg_sq] */
    size_t packed_capacity;   /* floats */
    dist_codec_link codec;    /* the worker's end of its link to the master (codec.h) */
    int micro_batch;          /* the model's activations are sized for it (dist_job) */
    tw_dtype dtype;           /* the worker's precision (tw_dist_options.precision) */
    tw_loss_scaler scaler;    /* fp16's, kept across rounds */
} dist_worker;

/* Opens the device and the data shard `index` of `shard_count` of the training stream. */
tw_status dist_worker_init(dist_worker *worker, int index, int shard_count, const char *device,
                           const tw_dataset *dataset, const tw_dist_options *options,
                           int total_steps);
void dist_worker_free(dist_worker *worker);
/* Makes worker->packed hold at least floats floats. */
tw_status dist_worker_reserve(dist_worker *worker, size_t floats);
/* The round's local training on worker->packed, in place. Never fails as a call: a failure is
 * reported in result (ok 0 and the message). comm is used in data parallel mode only. */
void dist_worker_train(dist_worker *worker, const dist_job *job, const dist_comm *comm,
                       dist_result *result);

/* Training FLOPs per token of a config (balance.c): the part every worker pays whatever its
 * share (embedding and logits), and the parts that scale with its heads and its MLP units. */
typedef struct dist_cost {
    double fixed, attention, mlp;
} dist_cost;

dist_cost dist_cost_of(const tw_gpt_config *config);
double dist_cost_total(const dist_cost *cost);
/* Folds a round's tokens/s of a worker that trained `subnet` into its smoothed FLOP/s *rate. */
void dist_update_rate(double *rate, const tw_gpt_config *subnet, double tokens_per_s);
/* Partition weights (workers) that give every worker the same local training time at the given
 * FLOP/s rates; head_slots = sum of head quotas / heads (1 when each head is dealt once). */
void dist_balance_weights(const tw_gpt_config *master, double head_slots, const double *rates,
                          int workers, double *weights);

/* --balance data (balance.c): a worker's measured pace. Its round's local phase lasts about
 * fixed_s + batch * seq_s: seq_s the seconds of forward and backward passes per sequence of its
 * batch over the round, fixed_s the rest (updates, transfers, per-micro-batch overheads). 0: not
 * measured yet. */
typedef struct dist_pace {
    double seq_s, fixed_s;
    int last_batch;     /* the last round's batch and passes' time: the slope's other point */
    double last_grad_s;
    int cap;            /* the largest batch before the device's time fell off a cliff; 0 none */
} dist_pace;

/* Folds a round of a worker that trained with `batch` (grad_s in forward and backward passes,
 * compute_s in all, waits for other workers excluded) into its smoothed pace. */
void dist_update_pace(dist_pace *pace, int batch, double grad_s, double compute_s);
/* Batches (workers) summing to total (>= workers, each >= 1) that minimise the slowest worker's
 * predicted local phase. */
void dist_balance_batches(const dist_pace *pace, int workers, int total, int *batches);
/* dist_balance_batches, but keeping `previous` (workers, may be NULL: none) when the new split
 * is not predicted at least 2% faster; returns whether the batches changed. */
bool dist_plan_batches(const dist_pace *pace, int workers, int total, const int *previous,
                       int *batches);

/* A transport: moves jobs, packed buffers and results between the master and the workers. */
typedef struct dist_transport dist_transport;
typedef struct dist_transport_ops {
    /* jobs (workers) and packed[w] (jobs[w].packed_floats floats, NULL when inactive) */
    tw_status (*send)(dist_transport *t, const dist_job *jobs, float *const *packed);
    /* runs every active worker's local training and waits for all: results (workers) */
    tw_status (*train)(dist_transport *t, const dist_job *jobs, dist_result *results);
    /* the trained packed buffers of the workers whose result is ok back into packed[w] */
    tw_status (*receive)(dist_transport *t, const dist_job *jobs, const dist_result *results,
                         float *const *packed);
    /* tells the workers to stop and frees everything */
    void (*destroy)(dist_transport *t);
} dist_transport_ops;

struct dist_transport {
    const dist_transport_ops *ops;
    int workers;
    const char *const *worker_devices; /* (workers) device spec of each worker */
    dist_codec_link *links; /* (workers) the master's ends of the links (codec.h), set by the
                               round loop; used by send and receive when the codec is not fp32 */
};

/* In-process: one thread per worker, each with its own device. */
tw_status dist_threads_create(const tw_dist_options *options, const tw_dataset *dataset,
                              int total_steps, dist_transport **out);

/* The round loop on the master side (rounds.c); also used by rank 0 under MPI. */
typedef struct dist_setup {
    char corpus[4096];
    bool synthetic;
    tw_tokenizer *tokenizer;
    tw_dataset *dataset;
    tw_gpt_config model; /* with the tokenizer's vocabulary */
} dist_setup;

tw_status dist_setup_load(const tw_dist_options *options, dist_setup *setup, bool quiet,
                          tw_dist_report_fn report, void *context);
void dist_setup_free(dist_setup *setup);

tw_status dist_master_rounds(const tw_dist_options *options, const dist_setup *setup,
                             dist_transport *transport, tw_dist_report_fn report, void *context);

/* The run state beside the master's weights that a resumed run needs to go on exactly as an
 * uninterrupted one (resume.c): saved in state.json's "distributed" object. */
typedef struct dist_run_state {
    int round;            /* rounds done */
    int heads_per_worker; /* IST: the head quota (raised after failures) */
    uint64_t total_bytes;
    int workers;
    bool alive[TW_DIST_MAX_WORKERS];
    double rate[TW_DIST_MAX_WORKERS];            /* measured FLOP/s (--balance speed) */
    tw_loader_state loader[TW_DIST_MAX_WORKERS]; /* each worker's data position */
} dist_run_state;

/* state.json of a save (malloc'd, NULL when out of memory): the master's step, the options a
 * resume must agree with, and the run state. */
char *dist_state_json(const tw_dist_options *options, const dist_setup *setup, int step,
                      const dist_run_state *state);
/* options->resume: the checkpoint in options->out_dir into master (weights, AdamW moments and
 * step) and *state, after checking that it is this run's (model, data, options: a difference is
 * refused naming the flag) and not finished. Says what it resumed through report. */
tw_status dist_resume_load(const tw_dist_options *options, const dist_setup *setup,
                           tw_ist_master *master, dist_run_state *state,
                           tw_dist_report_fn report, void *context);

#ifdef TWIST_HAVE_MPI
/* MPI: every rank opens its worker; rank 0 gets a transport for the round loop, the other
 * ranks serve jobs until the master's QUIT (then *out is NULL). */
tw_status dist_mpi_run(const tw_dist_options *options, tw_dist_report_fn report, void *context);
/* After dist_mpi_run failed: whether another rank reports the failure; ending every rank. */
bool dist_mpi_quiet(void);
void dist_mpi_end(int exit_code);
#endif

#endif
