/* The in-process transport: one thread per worker, each driving its own device, with host
 * memory as the meeting point. send and receive copy the packed subnets between the master's
 * buffers and each worker's own (the copies an MPI transport would make over the wire); train
 * wakes every worker thread and waits for all of them. Data parallel averaging meets at a
 * barrier of the round's active workers. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "ist/dist_internal.h"

typedef struct threads_transport threads_transport;

typedef struct worker_thread {
    threads_transport *owner;
    dist_worker worker;
    pthread_t thread;
    bool started;
    const dist_job *job;   /* this round's, while `pending` */
    dist_result *result;
    bool pending;
} worker_thread;

/* Gradient averaging of the data parallel mode: every active worker posts its slot, the lowest
 * active worker sums in worker order (double) once all have arrived, everyone copies the mean. */
typedef struct average_point {
    pthread_barrier_t barrier;
    bool barrier_ready;
    int leader;
    float **slots;       /* (workers) */
    bool *ok;            /* (workers) */
    size_t *counts;      /* (workers) */
    float *mean;
    size_t mean_capacity;
    int contributors;
    tw_status status;
    dist_codec_link mean_link; /* the leader's end: the residual of the means it sends */
    int mean_owner;            /* the leader that residual belongs to (-1: none) */
} average_point;

struct threads_transport {
    dist_transport base;
    worker_thread *threads; /* (workers) */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int running;            /* threads still training this round */
    bool quit;
    average_point point;
    int codec;              /* tw_dist_codec */
};

/* The leader's part: the mean over the ok slots, in worker order, summed in double. */
static tw_status leader_mean(threads_transport *t) {
    average_point *p = &t->point;
    size_t count = 0;
    p->contributors = 0;
    for (int w = 0; w < t->base.workers; w++)
        if (p->ok[w]) {
            if (p->contributors > 0 && p->counts[w] != count)
                return tw_error(TW_ERR_INVALID_ARGUMENT, "averaging: workers sent %zu and %zu "
                                "floats", count, p->counts[w]);
            count = p->counts[w];
            p->contributors++;
        }
    if (p->mean_capacity < count) {
        float *mean = realloc(p->mean, count * sizeof *mean);
        if (!mean) return tw_error(TW_ERR_OUT_OF_MEMORY, "averaging: out of host memory");
        p->mean = mean;
        p->mean_capacity = count;
    }
    for (size_t i = 0; i < count; i++) {
        double sum = 0.0;
        for (int w = 0; w < t->base.workers; w++)
            if (p->ok[w]) sum += (double)p->slots[w][i];
        p->mean[i] = (float)(sum / p->contributors);
    }
    /* The mean goes back under --codec too; its residual is the leader's (as under MPI, where
     * the leader rank keeps it), so a new leader starts afresh. */
    if (p->mean_owner != p->leader) {
        dist_codec_link_free(&p->mean_link);
        p->mean_owner = p->leader;
    }
    return p->contributors > 0
               ? dist_codec_quantize(&p->mean_link, (tw_dist_codec)t->codec, p->mean, count)
               : TW_OK;
}

static tw_status threads_average(void *context, int worker, float *data, size_t count, bool ok,
                                 int *contributors) {
    threads_transport *t = context;
    average_point *p = &t->point;
    p->slots[worker] = data;
    p->counts[worker] = count;
    p->ok[worker] = ok && count > 0;
    pthread_barrier_wait(&p->barrier);
    if (worker == p->leader) p->status = leader_mean(t);
    pthread_barrier_wait(&p->barrier);
    *contributors = p->contributors;
    if (p->status != TW_OK) return tw_error(p->status, "averaging across workers failed");
    if (ok && count > 0 && p->contributors > 0) memcpy(data, p->mean, count * sizeof *data);
    return TW_OK;
}

static void *thread_main(void *argument) {
    worker_thread *self = argument;
    threads_transport *t = self->owner;
    dist_comm comm = {threads_average, t};
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!self->pending && !t->quit) pthread_cond_wait(&t->wake, &t->lock);
        if (t->quit) break;
        pthread_mutex_unlock(&t->lock);
        dist_worker_train(&self->worker, self->job, &comm, self->result);
        pthread_mutex_lock(&t->lock);
        self->pending = false;
        if (--t->running == 0) pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* Under a codec other than fp32 the master's end encodes, the wire is copied, and the worker's
 * end decodes (bf16-delta: with the round's share lists sent first). */
static tw_status threads_send(dist_transport *base, const dist_job *jobs, float *const *packed) {
    threads_transport *t = (threads_transport *)base;
    for (int w = 0; w < base->workers; w++) {
        if (!jobs[w].active) continue;
        dist_worker *worker = &t->threads[w].worker;
        const size_t n = jobs[w].packed_floats;
        TW_TRY(dist_worker_reserve(worker, n));
        const tw_dist_codec codec = (tw_dist_codec)jobs[w].codec;
        if (codec == TW_CODEC_FP32) {
            memcpy(worker->packed, packed[w], n * sizeof(float));
            continue;
        }
        dist_codec_link *master = &base->links[w], *end = &worker->codec;
        TW_TRY(dist_codec_reserve_wire(master, n));
        TW_TRY(dist_codec_reserve_wire(end, n));
        if (codec == TW_CODEC_BF16_DELTA) {
            TW_TRY(dist_codec_reserve_shares(end, master->share_count));
            memcpy(end->shares, master->shares, master->share_count * sizeof *end->shares);
            TW_TRY(dist_codec_map(end, &worker->options->model, true));
        }
        dist_codec_encode(master, codec, false, packed[w], n);
        memcpy(end->wire, master->wire, n * sizeof *end->wire);
        dist_codec_decode(end, codec, true, worker->packed, n);
    }
    return TW_OK;
}

static tw_status prepare_average_point(threads_transport *t, const dist_job *jobs) {
    average_point *p = &t->point;
    if (p->barrier_ready) pthread_barrier_destroy(&p->barrier);
    p->barrier_ready = false;
    int active = 0;
    p->leader = -1;
    for (int w = 0; w < t->base.workers; w++)
        if (jobs[w].active) {
            if (p->leader < 0) p->leader = w;
            active++;
        }
    if (active == 0) return TW_OK;
    if (pthread_barrier_init(&p->barrier, NULL, (unsigned)active) != 0)
        return tw_error(TW_ERR_BACKEND, "threads transport: cannot create a barrier");
    p->barrier_ready = true;
    return TW_OK;
}

static tw_status threads_train(dist_transport *base, const dist_job *jobs, dist_result *results) {
    threads_transport *t = (threads_transport *)base;
    TW_TRY(prepare_average_point(t, jobs));
    pthread_mutex_lock(&t->lock);
    for (int w = 0; w < base->workers; w++) {
        if (!jobs[w].active) continue;
        t->threads[w].job = &jobs[w];
        t->threads[w].result = &results[w];
        t->threads[w].pending = true;
        t->running++;
    }
    pthread_cond_broadcast(&t->wake);
    while (t->running > 0) pthread_cond_wait(&t->done, &t->lock);
    pthread_mutex_unlock(&t->lock);
    return TW_OK;
}

static tw_status threads_receive(dist_transport *base, const dist_job *jobs,
                                 const dist_result *results, float *const *packed) {
    threads_transport *t = (threads_transport *)base;
    for (int w = 0; w < base->workers; w++) {
        if (!jobs[w].active || !results[w].ok) continue;
        dist_worker *worker = &t->threads[w].worker;
        const size_t n = jobs[w].packed_floats;
        const tw_dist_codec codec = (tw_dist_codec)jobs[w].codec;
        if (codec == TW_CODEC_FP32) {
            memcpy(packed[w], worker->packed, n * sizeof(float));
            continue;
        }
        dist_codec_link *master = &base->links[w], *end = &worker->codec;
        dist_codec_encode(end, codec, true, worker->packed, n);
        memcpy(master->wire, end->wire, n * sizeof *master->wire);
        dist_codec_decode(master, codec, false, packed[w], n);
    }
    return TW_OK;
}

static void threads_destroy(dist_transport *base) {
    threads_transport *t = (threads_transport *)base;
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->quit = true;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    for (int w = 0; w < base->workers; w++) {
        if (t->threads[w].started) pthread_join(t->threads[w].thread, NULL);
        dist_worker_free(&t->threads[w].worker);
    }
    if (t->point.barrier_ready) pthread_barrier_destroy(&t->point.barrier);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    pthread_cond_destroy(&t->done);
    free(t->point.slots);
    free(t->point.ok);
    free(t->point.counts);
    free(t->point.mean);
    dist_codec_link_free(&t->point.mean_link);
    free((void *)base->worker_devices);
    free(t->threads);
    free(t);
}

static const dist_transport_ops threads_ops = {threads_send, threads_train, threads_receive,
                                               threads_destroy};

tw_status dist_threads_create(const tw_dist_options *options, const tw_dataset *dataset,
                              int total_steps, dist_transport **out) {
    *out = NULL;
    const int workers = options->device_count * options->workers_per_device;
    threads_transport *t = calloc(1, sizeof *t);
    if (!t) return tw_error(TW_ERR_OUT_OF_MEMORY, "threads transport: out of host memory");
    t->base.ops = &threads_ops;
    t->base.workers = workers;
    t->codec = (int)options->codec;
    t->point.mean_owner = -1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    pthread_cond_init(&t->done, NULL);
    t->threads = calloc((size_t)workers, sizeof *t->threads);
    const char **devices = calloc((size_t)workers, sizeof *devices);
    t->base.worker_devices = devices;
    t->point.slots = calloc((size_t)workers, sizeof *t->point.slots);
    t->point.ok = calloc((size_t)workers, sizeof *t->point.ok);
    t->point.counts = calloc((size_t)workers, sizeof *t->point.counts);
    tw_status status = t->threads && devices && t->point.slots && t->point.ok && t->point.counts
                           ? TW_OK : tw_error(TW_ERR_OUT_OF_MEMORY, "threads transport: out of memory");
    for (int w = 0; status == TW_OK && w < workers; w++) {
        devices[w] = options->devices[w / options->workers_per_device];
        t->threads[w].owner = t;
        status = dist_worker_init(&t->threads[w].worker, w, workers, devices[w], dataset, options,
                                  total_steps);
    }
    for (int w = 0; status == TW_OK && w < workers; w++) {
        if (pthread_create(&t->threads[w].thread, NULL, thread_main, &t->threads[w]) != 0)
            status = tw_error(TW_ERR_BACKEND, "threads transport: cannot start worker thread %d", w);
        else
            t->threads[w].started = true;
    }
    if (status != TW_OK) {
        if (t->threads) threads_destroy(&t->base);
        else free(t);
        return status;
    }
    *out = &t->base;
    return TW_OK;
}
