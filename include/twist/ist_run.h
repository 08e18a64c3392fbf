/* twist: distributed training runs over several workers, each bound to one device of any
 * backend: Independent Subnetwork Training (IST) and, in the same engine, the data parallel and
 * local SGD baselines.
 *
 * A run is a sequence of rounds. In each round (see ../shared/DESIGN.md, "IST"):
 *
 *   partition  IST: heads and MLP units dealt to the workers (twist/ist.h), fresh each round;
 *              data parallel and local SGD: every worker holds the whole model
 *   extract    each worker's share of the master's parameters and AdamW moments, packed
 *   send       packed buffers to the workers (threads: host memory; MPI: MPI_Scatterv)
 *   train      each worker runs K local steps of plain training on its own data shard, with
 *              AdamW's step and the learning rate at the GLOBAL step (data parallel averages
 *              the gradients of every worker at each step and applies the same update)
 *   receive    packed buffers back (threads: host memory; MPI: MPI_Gatherv)
 *   merge      averaged into the master where several workers held an element
 *   evaluate   the merged full model's validation loss
 *
 * The master's step advances by K per round. A worker that fails (a device error or an injected
 * fault) is left out of the round's merge (its slices keep their pre-round values) and of every
 * later round; the run continues with the others (IST: with the head quota raised when those
 * left could not cover every head otherwise). */
#ifndef TWIST_IST_RUN_H
#define TWIST_IST_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "twist/ist.h"
#include "twist/memory.h"
#include "twist/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tw_dist_mode {
    TW_DIST_IST = 0,       /* independent subnetworks */
    TW_DIST_ALLREDUCE = 1, /* data parallel: gradients averaged every step */
    TW_DIST_LOCALSGD = 2   /* full replicas, parameters and moments averaged every K steps */
} tw_dist_mode;

typedef enum tw_dist_balance {
    TW_BALANCE_EQUAL = 0, /* equal head quotas and unit shares */
    TW_BALANCE_SPEED = 1, /* shares in proportion to each worker's tokens/s of the last round */
    /* equal shares; each worker's micro-batch from its measured time per sequence, so all end
     * the local phase together (the round's sequences stay workers x batch). IST, data parallel
     * and local SGD alike; the merge weights each worker by the tokens it trained. */
    TW_BALANCE_DATA = 2
} tw_dist_balance;

typedef enum tw_dist_transport {
    TW_TRANSPORT_THREADS = 0, /* one thread per worker in this process */
    TW_TRANSPORT_MPI = 1      /* one MPI rank per worker; rank 0 holds the master */
} tw_dist_transport;

/* What the exchange sends (--codec; src/ist/codec.h says what is encoded where). */
typedef enum tw_dist_codec {
    TW_CODEC_FP32 = 0,      /* float32 as it is */
    TW_CODEC_BF16 = 1,      /* every value rounded to bfloat16 (nearest even) */
    TW_CODEC_BF16_DELTA = 2 /* bfloat16 of the change since the last value both ends know,
                               with error feedback */
} tw_dist_codec;

enum { TW_DIST_MAX_WORKERS = 256 };

typedef struct tw_dist_options {
    tw_dist_mode mode;
    /* Worker w runs on devices[w / workers_per_device] (threads). Under MPI, rank w is worker w
     * and the world size must equal device_count * workers_per_device. */
    const char *const *devices;
    int device_count;
    int workers_per_device;
    int heads_per_worker;   /* IST: the head quota m of each worker (equal balance) */
    int local_steps;        /* K: steps per round */
    int rounds;
    tw_dist_balance balance;
    tw_dist_transport transport;

    const char *data_path;      /* NULL: the built-in synthetic corpus */
    const char *tokenizer_path; /* NULL: train one of vocab_size tokens on the data */
    int vocab_size;
    tw_gpt_config model;        /* vocab_size is replaced by the tokenizer's */
    int batch, grad_accum;      /* per worker and step */
    float lr, min_lr;
    int warmup;                 /* the schedule runs over rounds * local_steps global steps */
    tw_adamw_config adamw;
    uint64_t seed;              /* initialisation, partitions and every worker's batches */

    const char *eval_device;    /* NULL: "cpu" */
    int eval_every;             /* rounds between validation passes (the last round always) */
    int eval_batches;           /* batches per pass, 0: the whole validation stream */

    const char *out_dir;        /* NULL: nothing saved; else the merged master as a checkpoint */
    int save_every;             /* with out_dir: rounds between saves, 0: after the last only */
    /* MPI: seconds a rank waits in a collective for ranks on other machines before it ends
     * the job (ranks on the same machine are checked directly); 0: no limit. */
    double peer_timeout_s;
    /* When not NULL and nonzero (a signal handler sets it), the run stops after the current
     * round, saves the merged model (with out_dir) unless that round was just saved, and returns
     * TW_OK; no round starts after it is seen. The threads transport; under MPI a signal ends
     * the job by the transport's failure rules. */
    volatile sig_atomic_t *stop;
    bool overwrite;             /* out_dir may hold a checkpoint, which is replaced (twist's
                                   files only); without it such an out_dir is refused at once.
                                   out_dir is checked by the save's rules before any work
                                   (tw_checkpoint_probe) and locked for the run by the master
                                   (tw_checkpoint_lock_take) before the first round */

    /* Fault injection for tests: worker fault_worker fails in round fault_round (after its
     * first local step); -1: none. */
    int fault_worker, fault_round;
    /* A slower device, for --balance experiments: worker slow_worker waits (slow_factor - 1)
     * times each local step's duration after it, so its device appears slow_factor times
     * slower; -1: none. */
    int slow_worker;
    double slow_factor;

    /* The exchange codec of the packed subnets (and, data parallel, the gradients). */
    tw_dist_codec codec;
    /* Continue the checkpoint in out_dir (saved by a run with the same options; rounds may be
     * larger): the master's weights, AdamW moments and step, and the run state in state.json
     * (round, live workers, head quota, measured rates, every worker's data position), so
     * that an interrupted and resumed threads run ends with the same weights, bit for bit, as
     * an uninterrupted one. bf16-delta's references and residuals are not saved: a resumed
     * bf16-delta run starts them afresh (it says so). Excludes overwrite. */
    bool resume;
    /* > 0: stop (with a save, like a signal) after this many rounds of this invocation. */
    int stop_after;
    /* --device-memory: caps per device spec (twist/memory.h), applied to each worker's device
     * context (per worker when several share a device); the master's host-side model
     * (initialisation, merge, --eval-device) is not capped. Every worker's subnet, and its
     * micro-batch, is planned to fit its cap, or its device's queried free memory shared
     * among the workers on it. */
    tw_memory_caps device_memory;
    /* --precision (twist/train.h's tw_train_options.precision): every worker trains its subnet
     * or replica in this type (precision_set false: its device's default), checked on every
     * worker's device before the first round; fp16 workers scale their loss dynamically. The
     * exchange, merge and averaging stay on fp32 master weights and fp32 gradients. */
    bool precision_set;
    tw_dtype precision;
} tw_dist_options;

/* Defaults for everything but devices, data and model: one worker per device, K 10, 10 rounds,
 * batch 16, lr 1e-3 to 1e-4, seed 1337, evaluation every round over 20 batches. */
tw_dist_options tw_dist_defaults(void);

struct cJSON;

/* One line of progress: set-up information, a finished round, a validation pass, a worker
 * failure or the save; with a record (twist/record.h) where there are numbers to keep: a
 * "round" record after each round, an "eval" record after each validation pass, a "save" record
 * after the save. message is NULL for a report that carries only a record. */
typedef struct tw_dist_report {
    const char *message;
    const struct cJSON *record; /* NULL or a record, valid during the call */
    int round;        /* -1 for set-up lines */
    int workers;      /* active workers after this round */
    double val_loss;  /* the merged model's, NaN when not evaluated this round */
    double train_loss;/* mean over the round's successful workers */
    double elapsed_s;
} tw_dist_report;

typedef void (*tw_dist_report_fn)(void *context, const tw_dist_report *report);

/* Runs the rounds. With the MPI transport every rank calls this (after MPI_Init, or it calls
 * MPI_Init itself); rank 0 holds the master, writes the checkpoint, and reports.
 * Returns TW_ERR_UNSUPPORTED naming the transport when twist was built without MPI. */
tw_status tw_dist_run(const tw_dist_options *options, tw_dist_report_fn report, void *context);

/* Whether this build has the MPI transport. */
bool tw_dist_have_mpi(void);

/* After tw_dist_run failed under the MPI transport. One rank reports each failure (its
 * tw_last_error names the rank and host): the rank that failed, or the lowest rank alive when
 * a rank was lost. tw_dist_error_reported_elsewhere() is true on the other ranks, which should
 * not print it again. Every rank then calls tw_dist_end_job(exit_code), after printing: it ends
 * every rank of the job (MPI_Abort) when some may be waiting in a collective for this one;
 * otherwise it finalizes MPI (which waits for the other ranks, so none exits before the
 * reporter printed) and returns, and the caller exits as usual. Without MPI it returns. */
bool tw_dist_error_reported_elsewhere(void);
void tw_dist_end_job(int exit_code);

#ifdef __cplusplus
}
#endif

#endif
