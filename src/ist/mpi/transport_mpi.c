/* The MPI transport: one rank per worker, rank w is worker w and drives its own device; rank 0
 * also holds the master and runs the round loop of rounds.c. Per round, every rank takes part
 * in the same collectives in the same order:
 *
 *   send     MPI_Scatter of the jobs, MPI_Scatterv of the packed subnets (inactive ranks: 0)
 *   train    MPI_Comm_split of the round's active ranks (data parallel averages over it: a
 *            gather to its first rank, the mean in rank order in double, a broadcast), then
 *            MPI_Gather of the results
 *   receive  MPI_Gatherv of the packed subnets (failed or inactive ranks: 0)
 *
 * A job with command DIST_QUIT ends the other ranks' loop. Built only when CMake finds MPI. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "ist/dist_internal.h"

typedef struct mpi_transport {
    dist_transport base;
    dist_worker worker;      /* this rank's */
    const tw_dist_options *options;
    int rank, size;
    MPI_Comm round_comm;     /* the round's active ranks, or MPI_COMM_NULL */
    dist_job job;            /* this rank's job of the round */
    bool trained_ok;         /* this rank's result of the round */
    float *gathered;         /* averaging: (active ranks * count) on the round's first rank */
    size_t gathered_capacity;
    const char **devices;    /* (size) */
} mpi_transport;

static tw_status mpi_failed(int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    return tw_error(TW_ERR_BACKEND, "MPI: %s failed: %s", what, text);
}

#define MPI_TRY(call, what)                                 \
    do {                                                    \
        int mpi_code_ = (call);                             \
        if (mpi_code_ != MPI_SUCCESS) return mpi_failed(mpi_code_, what); \
    } while (0)

static tw_status float_count(uint64_t floats, int *out) {
    if (floats > (uint64_t)INT32_MAX)
        return tw_error(TW_ERR_UNSUPPORTED, "MPI: a packed subnet of %llu floats exceeds one "
                        "message", (unsigned long long)floats);
    *out = (int)floats;
    return TW_OK;
}

/* ---- data parallel averaging over the round's ranks ------------------------------------- */

static tw_status mpi_average(void *context, int worker, float *data, size_t count, bool ok,
                             int *contributors) {
    mpi_transport *t = context;
    int n = 0, me = 0, flag = ok ? 1 : 0, c = 0;
    (void)worker;
    TW_TRY(float_count(count, &c));
    MPI_TRY(MPI_Comm_size(t->round_comm, &n), "MPI_Comm_size");
    MPI_TRY(MPI_Comm_rank(t->round_comm, &me), "MPI_Comm_rank");
    int flags[TW_DIST_MAX_WORKERS];
    MPI_TRY(MPI_Gather(&flag, 1, MPI_INT, flags, 1, MPI_INT, 0, t->round_comm), "MPI_Gather");
    if (me == 0 && t->gathered_capacity < (size_t)n * count) {
        float *bigger = realloc(t->gathered, (size_t)n * count * sizeof *bigger);
        if (!bigger) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI averaging: out of host memory");
        t->gathered = bigger;
        t->gathered_capacity = (size_t)n * count;
    }
    MPI_TRY(MPI_Gather(data, c, MPI_FLOAT, t->gathered, c, MPI_FLOAT, 0, t->round_comm),
            "MPI_Gather");
    int used = 0;
    if (me == 0) {
        for (int r = 0; r < n; r++) used += flags[r];
        /* The same sums as the threads transport: worker order, double. */
        for (size_t i = 0; used > 0 && i < count; i++) {
            double sum = 0.0;
            for (int r = 0; r < n; r++)
                if (flags[r]) sum += (double)t->gathered[(size_t)r * count + i];
            data[i] = (float)(sum / used);
        }
    }
    MPI_TRY(MPI_Bcast(&used, 1, MPI_INT, 0, t->round_comm), "MPI_Bcast");
    MPI_TRY(MPI_Bcast(data, c, MPI_FLOAT, 0, t->round_comm), "MPI_Bcast");
    *contributors = used;
    return TW_OK;
}

/* ---- the three collectives of a round, the same on every rank ---------------------------- */

/* Every rank: its job, then its packed subnet (root: jobs and packed of every rank). */
static tw_status collect_send(mpi_transport *t, const dist_job *jobs, float *const *packed) {
    MPI_TRY(MPI_Scatter(jobs, (int)sizeof(dist_job), MPI_BYTE, &t->job, (int)sizeof(dist_job),
                        MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Scatter of the jobs");
    if (t->job.command == DIST_QUIT) return TW_OK;
    int counts[TW_DIST_MAX_WORKERS], offsets[TW_DIST_MAX_WORKERS];
    float *send = NULL;
    if (t->rank == 0) {
        /* One contiguous send buffer, as Scatterv needs. */
        size_t total = 0;
        for (int r = 0; r < t->size; r++) {
            TW_TRY(float_count(jobs[r].active ? jobs[r].packed_floats : 0, &counts[r]));
            total += (size_t)counts[r];
        }
        if (total > (size_t)INT32_MAX)
            return tw_error(TW_ERR_UNSUPPORTED, "MPI: the round's subnets exceed one message");
        send = malloc((total ? total : 1) * sizeof *send);
        if (!send) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI send: out of host memory");
        size_t offset = 0;
        for (int r = 0; r < t->size; r++) {
            offsets[r] = (int)offset;
            if (counts[r]) memcpy(send + offset, packed[r], (size_t)counts[r] * sizeof *send);
            offset += (size_t)counts[r];
        }
    }
    int mine = 0;
    tw_status status = float_count(t->job.active ? t->job.packed_floats : 0, &mine);
    if (status == TW_OK && mine) status = dist_worker_reserve(&t->worker, (size_t)mine);
    /* A rank that could not make room still takes part (its job then fails). */
    float scratch = 0.0f;
    float *receive = status == TW_OK && mine ? t->worker.packed : &scratch;
    int code = MPI_Scatterv(send, counts, offsets, MPI_FLOAT, receive,
                            status == TW_OK ? mine : 0, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(send);
    if (code != MPI_SUCCESS) return mpi_failed(code, "MPI_Scatterv of the subnets");
    return status;
}

static tw_status collect_train(mpi_transport *t, dist_result *results) {
    dist_result mine;
    memset(&mine, 0, sizeof mine);
    MPI_TRY(MPI_Comm_split(MPI_COMM_WORLD, t->job.active ? 0 : MPI_UNDEFINED, t->rank,
                           &t->round_comm), "MPI_Comm_split");
    if (t->job.active) {
        dist_comm comm = {mpi_average, t};
        dist_worker_train(&t->worker, &t->job, &comm, &mine);
        MPI_Comm_free(&t->round_comm);
    }
    t->trained_ok = mine.ok != 0;
    MPI_TRY(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, results, (int)sizeof mine, MPI_BYTE, 0,
                       MPI_COMM_WORLD), "MPI_Gather of the results");
    return TW_OK;
}

static tw_status collect_receive(mpi_transport *t, const dist_job *jobs,
                                 const dist_result *results, float *const *packed) {
    const bool sending = t->job.active && t->trained_ok;
    int mine = 0;
    TW_TRY(float_count(sending ? t->job.packed_floats : 0, &mine));
    int counts[TW_DIST_MAX_WORKERS], offsets[TW_DIST_MAX_WORKERS];
    float *receive = NULL;
    if (t->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < t->size; r++) {
            /* The worker keeps its model exactly when its result is ok (worker.c). */
            TW_TRY(float_count(jobs[r].active && results[r].ok ? jobs[r].packed_floats : 0,
                               &counts[r]));
            offsets[r] = (int)total;
            total += (size_t)counts[r];
        }
        receive = malloc((total ? total : 1) * sizeof *receive);
        if (!receive) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI receive: out of host memory");
    }
    int code = MPI_Gatherv(mine ? t->worker.packed : NULL, mine, MPI_FLOAT, receive, counts,
                           offsets, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (code == MPI_SUCCESS && t->rank == 0)
        for (int r = 0; r < t->size; r++)
            if (counts[r])
                memcpy(packed[r], receive + offsets[r], (size_t)counts[r] * sizeof *receive);
    free(receive);
    return code == MPI_SUCCESS ? TW_OK : mpi_failed(code, "MPI_Gatherv of the subnets");
}

/* ---- the transport of rank 0 ------------------------------------------------------------ */

static tw_status root_send(dist_transport *base, const dist_job *jobs, float *const *packed) {
    return collect_send((mpi_transport *)base, jobs, packed);
}

static tw_status root_train(dist_transport *base, const dist_job *jobs, dist_result *results) {
    (void)jobs;
    return collect_train((mpi_transport *)base, results);
}

static tw_status root_receive(dist_transport *base, const dist_job *jobs,
                              const dist_result *results, float *const *packed) {
    return collect_receive((mpi_transport *)base, jobs, results, packed);
}

static void root_destroy(dist_transport *base) {
    (void)base; /* rank 0's transport lives on dist_mpi_run's stack; QUIT is sent there */
}

static const dist_transport_ops mpi_ops = {root_send, root_train, root_receive, root_destroy};

/* Every rank but 0: serve rounds until QUIT. */
static tw_status serve(mpi_transport *t) {
    for (;;) {
        TW_TRY(collect_send(t, NULL, NULL));
        if (t->job.command == DIST_QUIT) return TW_OK;
        TW_TRY(collect_train(t, NULL));
        TW_TRY(collect_receive(t, NULL, NULL, NULL));
    }
}

static tw_status send_quit(mpi_transport *t) {
    dist_job *jobs = calloc((size_t)t->size, sizeof *jobs);
    if (!jobs) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    for (int r = 0; r < t->size; r++) jobs[r].command = DIST_QUIT;
    tw_status status = collect_send(t, jobs, NULL);
    free(jobs);
    return status;
}

/* Whether every rank got here with TW_OK (so none waits in a collective for a rank that
 * gave up). */
static bool all_ranks_ok(tw_status status) {
    int mine = status == TW_OK, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
}

static tw_status run_ranks(const tw_dist_options *options, mpi_transport *t,
                           tw_dist_report_fn report, void *context) {
    const int workers = options->device_count * options->workers_per_device;
    if (t->size != workers)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--transport mpi: %d ranks for %d workers (%d devices x "
                        "--workers-per-device %d); run mpirun -np %d",
                        t->size, workers, options->device_count, options->workers_per_device,
                        workers);
    dist_setup setup;
    tw_status status = dist_setup_load(options, &setup, t->rank != 0, report, context);
    tw_dist_options o = *options;
    o.model = setup.model;
    t->options = &o;
    t->devices = calloc((size_t)t->size, sizeof *t->devices);
    if (status == TW_OK && !t->devices)
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    for (int r = 0; status == TW_OK && r < t->size; r++)
        t->devices[r] = options->devices[r / options->workers_per_device];
    if (status == TW_OK)
        status = dist_worker_init(&t->worker, t->rank, workers, t->devices[t->rank],
                                  setup.dataset, &o, o.rounds * o.local_steps);
    if (!all_ranks_ok(status)) {
        if (status == TW_OK)
            status = tw_error(TW_ERR_BACKEND, "MPI: another rank failed to set up its worker");
    } else if (t->rank == 0) {
        t->base.ops = &mpi_ops;
        t->base.workers = t->size;
        t->base.worker_devices = t->devices;
        status = dist_master_rounds(&o, &setup, &t->base, report, context);
        tw_status quit = send_quit(t);
        if (status == TW_OK) status = quit;
    } else {
        status = serve(t);
    }
    dist_worker_free(&t->worker);
    free(t->gathered);
    free(t->devices);
    dist_setup_free(&setup);
    return status;
}

tw_status dist_mpi_run(const tw_dist_options *options, tw_dist_report_fn report, void *context) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return tw_error(TW_ERR_BACKEND, "--transport mpi: MPI_Init failed");
    mpi_transport t;
    memset(&t, 0, sizeof t);
    t.round_comm = MPI_COMM_NULL;
    MPI_Comm_rank(MPI_COMM_WORLD, &t.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t.size);
    tw_status status = t.size > TW_DIST_MAX_WORKERS
                           ? tw_error(TW_ERR_INVALID_ARGUMENT, "MPI: at most %d ranks",
                                      TW_DIST_MAX_WORKERS)
                           : run_ranks(options, &t, t.rank == 0 ? report : NULL, context);
    if (!initialized) MPI_Finalize();
    return status;
}
