/* tw_dist_run: checks the options, prepares data and model, and runs the rounds over the chosen
 * transport (twist/ist_run.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "twist/error.h"
#include "ist/dist_internal.h"
#include "twist/train.h"

tw_dist_options tw_dist_defaults(void) {
    /* The training options are those of a plain run (twist/train.h), the round ones its own. */
    const tw_train_options train = tw_train_defaults();
    tw_dist_options o;
    memset(&o, 0, sizeof o);
    o.mode = TW_DIST_IST;
    o.workers_per_device = 1;
    o.heads_per_worker = 1;
    o.local_steps = 10;
    o.rounds = 10;
    o.vocab_size = train.vocab_size;
    o.batch = train.batch;
    o.grad_accum = train.grad_accum;
    o.lr = train.lr;
    o.min_lr = train.min_lr;
    o.warmup = tw_train_default_warmup(o.rounds * o.local_steps);
    o.adamw = train.adamw;
    o.seed = train.seed;
    o.eval_every = 1;
    o.eval_batches = train.eval_batches;
    o.fault_worker = -1;
    o.fault_round = -1;
    o.slow_worker = -1;
    o.slow_factor = 1.0;
    o.save_every = 1;
    o.peer_timeout_s = 600.0;
    return o;
}

bool tw_dist_have_mpi(void) {
#ifdef TWIST_HAVE_MPI
    return true;
#else
    return false;
#endif
}

bool tw_dist_error_reported_elsewhere(void) {
#ifdef TWIST_HAVE_MPI
    return dist_mpi_quiet();
#else
    return false;
#endif
}

void tw_dist_end_job(int exit_code) {
#ifdef TWIST_HAVE_MPI
    dist_mpi_end(exit_code);
#else
    (void)exit_code;
#endif
}

static tw_status check_options(const tw_dist_options *o) {
    if (o->mode != TW_DIST_IST && o->mode != TW_DIST_ALLREDUCE && o->mode != TW_DIST_LOCALSGD)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "distributed run: unknown mode %d", (int)o->mode);
    if (!o->devices || o->device_count < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--devices: at least one device is needed");
    if (o->workers_per_device < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--workers-per-device must be at least 1");
    if ((long)o->device_count * o->workers_per_device > TW_DIST_MAX_WORKERS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "at most %d workers in all", TW_DIST_MAX_WORKERS);
    if (o->local_steps < 1 || o->rounds < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--local-steps and --rounds must be at least 1");
    /* The schedule and the master count global steps in an int. */
    const long long total = (long long)o->rounds * o->local_steps;
    if (total > INT_MAX)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--rounds %d x --local-steps %d = %lld steps; at most %d in all",
                        o->rounds, o->local_steps, total, INT_MAX);
    if (o->batch < 1 || o->grad_accum < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--batch and --accum must be at least 1");
    if (o->warmup < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--warmup %d: must be >= 0", o->warmup);
    if (o->save_every < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--save-every %d: must be >= 0", o->save_every);
    if (!(o->peer_timeout_s >= 0.0))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--peer-timeout: must be >= 0 seconds");
    if (!(o->lr > 0.0f) || o->min_lr < 0.0f || o->min_lr > o->lr)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "need --lr > 0 and 0 <= --min-lr <= --lr");
    if (o->balance != TW_BALANCE_EQUAL && o->balance != TW_BALANCE_SPEED)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--balance: unknown balance %d", (int)o->balance);
    if (o->transport != TW_TRANSPORT_THREADS && o->transport != TW_TRANSPORT_MPI)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--transport: unknown transport %d",
                        (int)o->transport);
    if (o->codec != TW_CODEC_FP32 && o->codec != TW_CODEC_BF16 && o->codec != TW_CODEC_BF16_DELTA)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--codec: unknown codec %d", (int)o->codec);
    if (o->stop_after < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "--stop-after %d: must be >= 0", o->stop_after);
    if (o->resume && (!o->out_dir || o->overwrite))
        return tw_error(TW_ERR_INVALID_ARGUMENT, o->overwrite
                                                     ? "--resume and --overwrite exclude each other"
                                                     : "--resume needs --out DIR");
    if (o->resume) {
        tw_ckpt_target kind;
        TW_TRY(tw_checkpoint_probe(o->out_dir, &kind));
        if (kind != TW_CKPT_TARGET_CHECKPOINT)
            return tw_error(TW_ERR_NOT_FOUND, "--resume: %s holds no checkpoint to continue "
                            "(drop --resume to start a new run there)", o->out_dir);
    } else if (o->out_dir) {
        /* The save's rules now, not after the rounds: a symbolic link, a directory of other
         * files or a foreign checksums.json would lose the whole run at the end. */
        tw_ckpt_target kind;
        TW_TRY(tw_checkpoint_probe(o->out_dir, &kind));
        if (kind == TW_CKPT_TARGET_CHECKPOINT && !o->overwrite)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--out %s already holds a twist checkpoint; pass --overwrite to "
                            "replace it (only twist's files are replaced; other files in %s "
                            "stay), or choose another directory",
                            o->out_dir, o->out_dir);
    }
    if (o->mode == TW_DIST_IST)
        for (int l = 0; l < o->model.n_layer; l++) {
            const int H = o->model.layers[l].heads;
            const int m = o->heads_per_worker < H ? o->heads_per_worker : H;
            const long workers = (long)o->device_count * o->workers_per_device;
            if (o->heads_per_worker < 1 || workers * m < H)
                return tw_error(TW_ERR_INVALID_ARGUMENT,
                                "--heads-per-worker %d: %ld workers with %d heads each cannot "
                                "cover the %d heads of layer %d (need workers x heads >= %d)",
                                o->heads_per_worker, workers, m, H, l, H);
        }
    return TW_OK;
}

static tw_status run_threads(const tw_dist_options *options, tw_dist_report_fn report,
                             void *context) {
    dist_setup setup;
    tw_status status = dist_setup_load(options, &setup, false, report, context);
    /* The workers see the model with the tokenizer's vocabulary. */
    tw_dist_options o = *options;
    o.model = setup.model;
    dist_transport *transport = NULL;
    if (status == TW_OK)
        status = dist_threads_create(&o, setup.dataset, o.rounds * o.local_steps, &transport);
    if (status == TW_OK) status = dist_master_rounds(&o, &setup, transport, report, context);
    if (transport) transport->ops->destroy(transport);
    dist_setup_free(&setup);
    return status;
}

tw_status tw_dist_run(const tw_dist_options *options, tw_dist_report_fn report, void *context) {
    if (!options) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_dist_run: options is NULL");
    TW_TRY(check_options(options));
    /* A resumed run uses the tokenizer saved in the checkpoint (its vocabulary and ids). */
    tw_dist_options o = *options;
    char tokenizer[4200];
    if (o.resume && !o.tokenizer_path) {
        snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", o.out_dir);
        o.tokenizer_path = tokenizer;
    }
    if (o.transport == TW_TRANSPORT_THREADS) return run_threads(&o, report, context);
#ifdef TWIST_HAVE_MPI
    return dist_mpi_run(&o, report, context);
#else
    return tw_error(TW_ERR_UNSUPPORTED,
                    "--transport mpi: this twist was built without MPI (install libopenmpi-dev "
                    "and openmpi-bin, then rebuild)");
#endif
}
