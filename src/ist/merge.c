/* IST merge: packed subnets back into the master. Every master element gets the weighted mean of
 * the values the added workers returned for it, sum_w(t_w x_w) / sum_w(t_w) with t_w the tokens
 * worker w trained on (1 for tw_ist_merge_add); an element no added worker held keeps its value.
 * Parameters and both AdamW moments follow the same rule.
 *
 * How it is fast. An add only records the worker's packed buffer and its runs (where its
 * elements live in the master); finish does the work in one parallel pass over the master
 * (OpenMP, the pool the CPU backend already uses): each thread owns contiguous chunks of CHUNK
 * master elements and, per chunk, adds every worker's elements that fall in it. The sums live in
 * a chunk-sized buffer per thread that stays in cache, so the master is read and written once
 * and nothing of the parameters' size is allocated (the merge used to keep 3 x P doubles and P
 * counts, 26 bytes per parameter, and walk them once per worker, on one core).
 *
 * Why the sums are still double: in the chunk buffer they cost no memory traffic, and they keep
 * the identities exact. The weights are integers (the tokens over their greatest common divisor,
 * so equal tokens are all 1) with a sum below 2^29; a float times such an integer, and the sum
 * of such products for equal floats, are exact in double (24 + 29 bits). So a merge of one
 * worker, or of workers that returned the same value, gives that value bit for bit; equal tokens
 * give exactly the unweighted mean of the old merge (its sums were double in worker order too);
 * and two workers give the correctly rounded weighted mean of their two values. Float sums would
 * lose the identical-values identity (3x is not a float for most x). */
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "ist/ist_internal.h"

enum {
    MAX_ADDS = 65535,
    CHUNK = 4096 /* master elements per unit of parallel work: 128 KiB of sums and weights */
};

/* A run of elements contiguous in both the subnet and the master (see ist_run_fn). */
typedef struct merge_run {
    size_t sub, master, len;
} merge_run;

typedef struct merge_source {
    int worker;
    const float *packed; /* [params | exp_avg | exp_avg_sq], each sub_count floats: not owned */
    size_t sub_count;
    uint64_t tokens;
    double weight;       /* set by finish: tokens / gcd, scaled below 2^29 in all */
    ist_subnet_map map;  /* checked by the add, walked by finish */
    merge_run *runs;     /* set by finish: every tensor's runs, ascending in master */
    size_t run_count;
} merge_source;

/* The runs of one (source, tensor), collected in parallel by finish. */
typedef struct run_list {
    merge_run *runs;
    size_t count, capacity;
    bool failed; /* out of memory */
} run_list;

struct tw_ist_merge {
    tw_gpt_config config; /* the master's, with its layout: subnets are mapped against them */
    tw_gpt_tensor *tensors;
    int tensor_count;
    size_t param_count;
    merge_source *sources;
    int source_count, source_capacity;
    int threads;          /* 0: omp_get_max_threads() */
};

void tw_ist_merge_abort(tw_ist_merge *merge) {
    if (!merge) return;
    for (int i = 0; i < merge->source_count; i++) {
        free(merge->sources[i].runs);
        ist_subnet_map_release(&merge->sources[i].map);
    }
    free(merge->sources);
    free(merge->tensors);
    free(merge);
}

tw_status tw_ist_merge_begin(const tw_ist_master *master, tw_ist_merge **out) {
    if (!master || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: NULL argument");
    *out = NULL;
    tw_ist_merge *merge = calloc(1, sizeof *merge);
    if (!merge) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
    merge->config = master->config;
    merge->param_count = master->param_count;
    merge->tensor_count = master->tensor_count;
    merge->tensors = malloc(sizeof(tw_gpt_tensor) * (size_t)master->tensor_count);
    if (!merge->tensors) {
        tw_ist_merge_abort(merge);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
    }
    memcpy(merge->tensors, master->tensors, sizeof(tw_gpt_tensor) * (size_t)master->tensor_count);
    *out = merge;
    return TW_OK;
}

void tw_ist_merge_set_threads(tw_ist_merge *merge, int threads) {
    if (merge) merge->threads = threads > 0 ? threads : 0;
}

static void collect_run(void *context, size_t sub, size_t master, size_t len) {
    run_list *list = context;
    if (list->failed) return;
    /* Neighbouring runs (rows of a whole tensor, say) are joined: fewer runs to walk. */
    if (list->count > 0) {
        merge_run *last = &list->runs[list->count - 1];
        if (last->sub + last->len == sub && last->master + last->len == master) {
            last->len += len;
            return;
        }
    }
    if (list->count == list->capacity) {
        const size_t capacity = list->capacity ? 2 * list->capacity : 256;
        merge_run *grown = realloc(list->runs, capacity * sizeof *grown);
        if (!grown) {
            list->failed = true;
            return;
        }
        list->runs = grown;
        list->capacity = capacity;
    }
    list->runs[list->count++] = (merge_run){sub, master, len};
}

static int by_master(const void *a, const void *b) {
    const size_t x = ((const merge_run *)a)->master, y = ((const merge_run *)b)->master;
    return (x > y) - (x < y);
}

tw_status tw_ist_merge_add_weighted(tw_ist_merge *merge, const tw_ist_partition *partition,
                                    int worker, const float *packed, uint64_t tokens) {
    if (!merge || !partition || !packed)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: NULL argument");
    if (tokens == 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST merge: worker %d trained on 0 tokens (a worker's weight must be "
                        "positive; leave a worker that did not train out of the merge)", worker);
    for (int i = 0; i < merge->source_count; i++)
        if (merge->sources[i].worker == worker)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST merge: worker %d was already added to this merge", worker);
    if (merge->source_count >= MAX_ADDS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: more than %d workers added",
                        MAX_ADDS);
    if (merge->source_count == merge->source_capacity) {
        const int capacity = merge->source_capacity ? 2 * merge->source_capacity : 16;
        merge_source *grown = realloc(merge->sources, sizeof *grown * (size_t)capacity);
        if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
        merge->sources = grown;
        merge->source_capacity = capacity;
    }
    merge_source *source = &merge->sources[merge->source_count];
    memset(source, 0, sizeof *source);
    /* The map checks the partition against the master and the worker index before anything is
     * recorded, so a refused add leaves the merge as it was. */
    TW_TRY(ist_subnet_map_init(&source->map, &merge->config, merge->tensors, merge->tensor_count,
                               partition, worker));
    source->worker = worker;
    source->packed = packed;
    source->sub_count = source->map.param_count;
    source->tokens = tokens;
    merge->source_count++;
    return TW_OK;
}

tw_status tw_ist_merge_add(tw_ist_merge *merge, const tw_ist_partition *partition, int worker,
                           const float *packed) {
    return tw_ist_merge_add_weighted(merge, partition, worker, packed, 1);
}

/* Every source's runs, walked in parallel per (source, tensor), then joined per source in
 * tensor order. Nothing of the master is touched, so a failure here leaves it as it was. */
static tw_status collect_runs(tw_ist_merge *merge) {
    const int S = merge->source_count, T = merge->tensor_count;
    const long tasks = (long)S * T;
    run_list *lists = calloc((size_t)tasks, sizeof *lists);
    if (!lists) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
    int failed_task = -1;
    tw_status failed_status = TW_OK;
    char failure[512] = "";
    const int threads = merge->threads > 0 ? merge->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long task = 0; task < tasks; task++) {
        const merge_source *source = &merge->sources[task / T];
        run_list *list = &lists[task];
        tw_status status =
            ist_subnet_map_walk_tensor(&source->map, (int)(task % T), collect_run, list);
        if (status != TW_OK || list->failed) {
            /* the error text is per thread: the first failure's is copied for the caller */
#pragma omp critical(twist_merge_failure)
            if (failed_task < 0) {
                failed_task = (int)task;
                failed_status = status != TW_OK ? status : TW_ERR_OUT_OF_MEMORY;
                snprintf(failure, sizeof failure, "%s",
                         status != TW_OK ? tw_last_error() : "out of host memory");
            }
        }
    }
    bool out_of_memory = false;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < S; i++) {
        merge_source *source = &merge->sources[i];
        size_t count = 0;
        for (int t = 0; t < T; t++) count += lists[(size_t)i * T + t].count;
        source->runs = failed_task < 0 ? malloc((count ? count : 1) * sizeof *source->runs)
                                       : NULL;
        if (!source->runs) {
            if (failed_task < 0) {
#pragma omp atomic write
                out_of_memory = true;
            }
            continue;
        }
        for (int t = 0; t < T; t++) {
            const run_list *list = &lists[(size_t)i * T + t];
            if (list->count)
                memcpy(source->runs + source->run_count, list->runs,
                       list->count * sizeof *list->runs);
            source->run_count += list->count;
        }
        /* Layout order is ascending in the master already; the cursors of finish rely on it,
         * so it is not left to that. */
        for (size_t r = 1; r < source->run_count; r++)
            if (source->runs[r].master < source->runs[r - 1].master) {
                qsort(source->runs, source->run_count, sizeof *source->runs, by_master);
                break;
            }
    }
    for (long task = 0; task < tasks; task++) free(lists[task].runs);
    free(lists);
    if (failed_task >= 0)
        return tw_error(failed_status, "IST merge: worker %d, tensor %d: %s",
                        merge->sources[failed_task / T].worker, failed_task % T, failure);
    if (out_of_memory) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
    return TW_OK;
}

static uint64_t gcd(uint64_t a, uint64_t b) {
    while (b) {
        const uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* Integer weights from the tokens: divided by their gcd (equal tokens: all 1), then, only if
 * their sum is 2^29 or more, scaled to a sum below 2^29 and rounded (at least 1), which moves a
 * weight by under 2^-28 of the total. */
static void set_weights(tw_ist_merge *merge) {
    uint64_t g = 0;
    for (int i = 0; i < merge->source_count; i++) g = gcd(g, merge->sources[i].tokens);
    double total = 0.0;
    for (int i = 0; i < merge->source_count; i++) {
        merge->sources[i].weight = (double)(merge->sources[i].tokens / g);
        total += merge->sources[i].weight;
    }
    const double limit = 536870912.0; /* 2^29 */
    if (total < limit) return;
    const double scale = (limit / 2.0) / total;
    for (int i = 0; i < merge->source_count; i++) {
        const double w = (double)(uint64_t)(merge->sources[i].weight * scale + 0.5);
        merge->sources[i].weight = w >= 1.0 ? w : 1.0;
    }
}

/* The first run of s that ends after master element `at` (binary search). */
static size_t first_run(const merge_source *s, size_t at) {
    size_t lo = 0, hi = s->run_count;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (s->runs[mid].master + s->runs[mid].len <= at) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* One run's elements into the chunk's sums (3 parts, CHUNK apart) and weights. */
static void accumulate(double *restrict sums, double *restrict weights, double w,
                       const float *restrict params, const float *restrict m1,
                       const float *restrict m2, size_t len) {
    double *restrict s1 = sums + CHUNK, *restrict s2 = sums + 2 * CHUNK;
    for (size_t j = 0; j < len; j++) {
        sums[j] += w * (double)params[j];
        s1[j] += w * (double)m1[j];
        s2[j] += w * (double)m2[j];
        weights[j] += w;
    }
}

/* Master elements [lo, hi) (at most CHUNK): every source's contribution summed into the
 * thread's buffers (sums: 3 x CHUNK, weights: CHUNK), then the means written to the master.
 * cursor[i] is source i's first run that may reach this chunk; it only moves forward. */
static void merge_chunk(const tw_ist_merge *merge, size_t lo, size_t hi, size_t *cursor,
                        double *sums, double *weights, float *const targets[3]) {
    const size_t n = hi - lo;
    memset(sums, 0, 3 * CHUNK * sizeof *sums);
    memset(weights, 0, n * sizeof *weights);
    for (int i = 0; i < merge->source_count; i++) {
        const merge_source *s = &merge->sources[i];
        const double w = s->weight;
        const float *params = s->packed, *m1 = s->packed + s->sub_count,
                    *m2 = s->packed + 2 * s->sub_count;
        size_t r = cursor[i];
        while (r < s->run_count && s->runs[r].master + s->runs[r].len <= lo) r++;
        for (; r < s->run_count && s->runs[r].master < hi; r++) {
            const merge_run *run = &s->runs[r];
            const size_t start = run->master > lo ? run->master : lo;
            const size_t end = run->master + run->len < hi ? run->master + run->len : hi;
            const size_t from = run->sub + (start - run->master), len = end - start;
            accumulate(sums + (start - lo), weights + (start - lo), w, params + from, m1 + from,
                       m2 + from, len);
        }
        /* The run that crosses into the next chunk is looked at again there. */
        cursor[i] = r > 0 && s->runs[r - 1].master + s->runs[r - 1].len > hi ? r - 1 : r;
    }
    /* Branch-free so that it vectorizes (the divisions were half the time as a scalar loop):
     * an element nobody held divides by 1 and keeps the master's value. */
    for (int part = 0; part < 3; part++) {
        const double *restrict sum = sums + (size_t)part * CHUNK;
        float *restrict target = targets[part] + lo;
        for (size_t j = 0; j < n; j++) {
            const double held = weights[j];
            const float mean = (float)(sum[j] / (held != 0.0 ? held : 1.0));
            target[j] = held != 0.0 ? mean : target[j];
        }
    }
}

tw_status tw_ist_merge_finish(tw_ist_merge *merge, tw_ist_master *master) {
    if (!merge || !master) {
        tw_ist_merge_abort(merge);
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: NULL argument");
    }
    if (master->param_count != merge->param_count) {
        size_t expected = merge->param_count;
        tw_ist_merge_abort(merge);
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "IST merge: the master has %zu parameters but the merge was begun for %zu",
                        master->param_count, expected);
    }
    if (merge->source_count == 0) {
        tw_ist_merge_abort(merge);
        return TW_OK;
    }
    tw_status status = collect_runs(merge);
    if (status != TW_OK) {
        tw_ist_merge_abort(merge);
        return status;
    }
    set_weights(merge);
    const size_t P = merge->param_count;
    const size_t chunks = (P + CHUNK - 1) / CHUNK;
    int threads = merge->threads > 0 ? merge->threads : omp_get_max_threads();
    if ((size_t)threads > chunks) threads = (int)chunks;
    if (threads < 1) threads = 1;
    float *const targets[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    /* Every thread's buffers are allocated before any element is written, so running out of
     * memory leaves the master as it was. */
    const size_t per_thread = 4 * CHUNK; /* sums (3 x CHUNK), weights (CHUNK) */
    double *scratch = malloc((size_t)threads * per_thread * sizeof(double));
    size_t *cursors = malloc((size_t)threads * (size_t)merge->source_count * sizeof(size_t));
    if (!scratch || !cursors) {
        free(scratch);
        free(cursors);
        tw_ist_merge_abort(merge);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory for %d threads",
                        threads);
    }
#pragma omp parallel num_threads(threads)
    {
        /* Thread t takes the contiguous chunks [t chunks / T, (t + 1) chunks / T). */
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const size_t first = chunks * (size_t)t / (size_t)T;
        const size_t last = chunks * (size_t)(t + 1) / (size_t)T;
        double *sums = scratch + (size_t)t * per_thread, *weights = sums + 3 * CHUNK;
        size_t *cursor = cursors + (size_t)t * (size_t)merge->source_count;
        for (int i = 0; i < merge->source_count && first < last; i++)
            cursor[i] = first_run(&merge->sources[i], first * CHUNK);
        for (size_t c = first; c < last; c++) {
            const size_t lo = c * CHUNK, hi = lo + CHUNK < P ? lo + CHUNK : P;
            merge_chunk(merge, lo, hi, cursor, sums, weights, targets);
        }
    }
    free(scratch);
    free(cursors);
    tw_ist_merge_abort(merge);
    return TW_OK;
}
