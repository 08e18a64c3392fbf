/* IST merge: packed subnets back into the master. Every master element gets the weighted mean of
 * the values the added workers returned for it, sum_w(t_w x_w) / sum_w(t_w) with t_w the tokens
 * worker w trained on (1 for tw_ist_merge_add); an element no added worker held keeps its value.
 * Parameters and both AdamW moments follow the same rule.
 *
 * How it is fast. An add only checks the worker's partition and records its packed buffer;
 * finish does the work in one parallel pass over the master (OpenMP, the pool the CPU backend
 * already uses): each thread owns contiguous chunks of CHUNK master elements and, per chunk, adds
 * every worker's elements that fall in it, found from the worker's rows and columns per tensor
 * (a few runs per head and unit, ist_subnet_map_axes). The sums live in a chunk-sized buffer per
 * thread that stays in cache, so the master is read and written once and nothing of the
 * parameters' size is allocated (the merge used to keep 3 x P doubles and P counts, 26 bytes per
 * parameter, and walk them once per worker, on one core).
 *
 * Why the sums are still double: in the chunk buffer they cost no memory traffic, and they keep
 * the identities exact. The weights are integers (the tokens over their greatest common divisor,
 * so equal tokens are all 1) with a sum below 2^29; a float times such an integer, and the sum
 * of such products for equal floats, are exact in double (24 + 29 bits). So a merge of one
 * worker, or of workers that returned the same value, gives that value bit for bit; equal tokens
 * give exactly the unweighted mean of the old merge (its sums were double in worker order too);
 * and two workers give their weighted mean computed in double, rounded to float. Float sums would
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

typedef struct merge_source {
    int worker;
    const float *packed;   /* [params | exp_avg | exp_avg_sq], each sub_count floats: not owned */
    size_t sub_count;
    uint64_t tokens;
    double weight;         /* set by finish: tokens / gcd, scaled below 2^29 in all */
    ist_subnet_map map;    /* checked by the add, read by finish */
    ist_tensor_axes *axes; /* set by finish: (tensor_count) rows and columns of each tensor */
    ist_axis_run *arena;   /* the runs the axes point into */
} merge_source;

struct tw_ist_merge {
    tw_gpt_config config; /* the master's, with its layout: subnets are mapped against them */
    tw_gpt_tensor *tensors;
    int tensor_count;
    size_t param_count;
    merge_source *sources;
    int source_count, source_capacity;
    int threads;          /* 0: omp_get_max_threads() */
    int *order;           /* set by finish: tensor indices in master offset order */
};

void tw_ist_merge_abort(tw_ist_merge *merge) {
    if (!merge) return;
    for (int i = 0; i < merge->source_count; i++) {
        free(merge->sources[i].axes);
        free(merge->sources[i].arena);
        ist_subnet_map_release(&merge->sources[i].map);
    }
    free(merge->sources);
    free(merge->tensors);
    free(merge->order);
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
    merge->tensors = malloc(sizeof(tw_gpt_tensor) * (size_t)(master->tensor_count + 1));
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

/* One source's rows and columns of every tensor, into one arena. */
static tw_status source_axes(const tw_ist_merge *merge, merge_source *source,
                             ist_axis_run *scratch, size_t capacity) {
    const int T = merge->tensor_count;
    source->axes = calloc((size_t)T + 1, sizeof *source->axes);
    size_t *at = calloc((size_t)T + 1, sizeof *at); /* each tensor's first run in the arena */
    size_t used = 0, size = 0;
    tw_status status = source->axes && at ? TW_OK
                                          : tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of "
                                                     "host memory");
    for (int t = 0; status == TW_OK && t < T; t++) {
        ist_tensor_axes *axes = &source->axes[t];
        axes->rows = scratch;
        axes->cols = scratch + capacity;
        status = ist_subnet_map_axes(&source->map, t, axes);
        if (status != TW_OK) break;
        const size_t need = used + (size_t)axes->row_count + (size_t)axes->col_count;
        if (need > size) {
            const size_t bigger = need > 2 * size ? need : 2 * size;
            ist_axis_run *grown = realloc(source->arena, bigger * sizeof *grown);
            if (!grown) {
                status = tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
                break;
            }
            source->arena = grown;
            size = bigger;
        }
        memcpy(source->arena + used, axes->rows, sizeof *axes->rows * (size_t)axes->row_count);
        memcpy(source->arena + used + axes->row_count, axes->cols,
               sizeof *axes->cols * (size_t)axes->col_count);
        at[t] = used;
        used = need;
    }
    /* the arena has stopped moving: point the axes into it */
    for (int t = 0; status == TW_OK && t < T; t++) {
        source->axes[t].rows = source->arena + at[t];
        source->axes[t].cols = source->arena + at[t] + source->axes[t].row_count;
    }
    free(at);
    return status;
}

/* Every source's axes (in parallel over sources) and the tensors in master order. Nothing of the
 * master is touched, so a failure here leaves it as it was. */
static tw_status collect_axes(tw_ist_merge *merge, int threads) {
    const int T = merge->tensor_count, S = merge->source_count;
    merge->order = malloc(sizeof(int) * ((size_t)T + 1));
    if (!merge->order) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
    /* layout order is offset order already; insertion sort makes sure of it in O(T) then */
    for (int t = 0; t < T; t++) {
        int k = t;
        while (k > 0 && merge->tensors[merge->order[k - 1]].offset > merge->tensors[t].offset) {
            merge->order[k] = merge->order[k - 1];
            k--;
        }
        merge->order[k] = t;
    }
    const size_t capacity = (size_t)ist_subnet_axis_capacity(&merge->config);
    int failed = -1;
    tw_status failed_status = TW_OK;
    char failure[512] = "";
#pragma omp parallel num_threads(threads)
    {
        ist_axis_run *scratch = malloc(2 * capacity * sizeof *scratch);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < S; i++) {
            tw_status status =
                scratch ? source_axes(merge, &merge->sources[i], scratch, capacity)
                        : tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
            if (status != TW_OK) {
                /* the error text is per thread: the first failure's is copied for the caller */
#pragma omp critical(twist_merge_failure)
                if (failed < 0) {
                    failed = i;
                    failed_status = status;
                    snprintf(failure, sizeof failure, "%s", tw_last_error());
                }
            }
        }
        free(scratch);
    }
    if (failed >= 0)
        return tw_error(failed_status, "IST merge: worker %d: %s", merge->sources[failed].worker,
                        failure);
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

/* The first run of runs[0 .. count) that ends after index `at` (runs ascend in master). */
static int first_run(const ist_axis_run *runs, int count, size_t at) {
    int lo = 0, hi = count;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if ((size_t)runs[mid].master + (size_t)runs[mid].len <= at) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Source s's elements of tensor t within master elements [a, b) (inside the tensor) into the
 * chunk that starts at lo. */
static void add_tensor_range(const merge_source *s, const ist_tensor_axes *x, size_t a, size_t b,
                             size_t lo, double *sums, double *weights) {
    const float *params = s->packed, *m1 = s->packed + s->sub_count,
                *m2 = s->packed + 2 * s->sub_count;
    const size_t mcols = x->master_cols;
    const size_t r0 = (a - x->master_offset) / mcols, r1 = (b - 1 - x->master_offset) / mcols;
    for (int i = first_run(x->rows, x->row_count, r0);
         i < x->row_count && (size_t)x->rows[i].master <= r1; i++) {
        const ist_axis_run *rr = &x->rows[i];
        const size_t from = (size_t)rr->master > r0 ? (size_t)rr->master : r0;
        const size_t to = (size_t)rr->master + (size_t)rr->len - 1 < r1
                              ? (size_t)rr->master + (size_t)rr->len - 1
                              : r1;
        for (size_t r = from; r <= to; r++) {
            const size_t row_m = x->master_offset + r * mcols;
            const size_t row_s = x->sub_offset + ((size_t)rr->sub + (r - (size_t)rr->master)) *
                                                     x->sub_cols;
            const size_t c0 = (a > row_m ? a : row_m) - row_m;
            const size_t c1 = (b < row_m + mcols ? b : row_m + mcols) - row_m;
            int j = c0 == 0 ? 0 : first_run(x->cols, x->col_count, c0);
            for (; j < x->col_count && (size_t)x->cols[j].master < c1; j++) {
                const ist_axis_run *cr = &x->cols[j];
                const size_t cs = (size_t)cr->master > c0 ? (size_t)cr->master : c0;
                const size_t ce = (size_t)cr->master + (size_t)cr->len < c1
                                      ? (size_t)cr->master + (size_t)cr->len
                                      : c1;
                const size_t sub = row_s + (size_t)cr->sub + (cs - (size_t)cr->master);
                const size_t at = row_m + cs - lo;
                accumulate(sums + at, weights + at, s->weight, params + sub, m1 + sub, m2 + sub,
                           ce - cs);
            }
        }
    }
}

/* Master elements [lo, hi) (at most CHUNK): every source's contribution summed into the
 * thread's buffers (sums: 3 x CHUNK, weights: CHUNK), then the means written to the master.
 * *tensor is the first tensor (in master order) that may reach this chunk; it only moves on. */
static void merge_chunk(const tw_ist_merge *merge, size_t lo, size_t hi, int *tensor,
                        double *sums, double *weights, float *const targets[3]) {
    const size_t n = hi - lo;
    memset(sums, 0, 3 * CHUNK * sizeof *sums);
    memset(weights, 0, n * sizeof *weights);
    const int T = merge->tensor_count;
    while (*tensor < T) {
        const tw_gpt_tensor *t = &merge->tensors[merge->order[*tensor]];
        if (t->offset + t->count > lo) break;
        (*tensor)++;
    }
    for (int k = *tensor; k < T; k++) {
        const int t = merge->order[k];
        const tw_gpt_tensor *tensor_m = &merge->tensors[t];
        if (tensor_m->offset >= hi) break;
        const size_t a = tensor_m->offset > lo ? tensor_m->offset : lo;
        const size_t b = tensor_m->offset + tensor_m->count < hi ? tensor_m->offset + tensor_m->count
                                                                 : hi;
        if (a >= b) continue;
        /* in add order, so the sums are those of the old merge, bit for bit */
        for (int i = 0; i < merge->source_count; i++)
            add_tensor_range(&merge->sources[i], &merge->sources[i].axes[t], a, b, lo, sums,
                             weights);
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
    const size_t P = merge->param_count;
    const size_t chunks = (P + CHUNK - 1) / CHUNK;
    int threads = merge->threads > 0 ? merge->threads : omp_get_max_threads();
    if ((size_t)threads > chunks) threads = (int)chunks;
    if (threads < 1) threads = 1;
    tw_status status = collect_axes(merge, threads);
    if (status != TW_OK) {
        tw_ist_merge_abort(merge);
        return status;
    }
    set_weights(merge);
    float *const targets[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    /* Every thread's buffers are allocated before any element is written, so running out of
     * memory leaves the master as it was. */
    const size_t per_thread = 4 * CHUNK; /* sums (3 x CHUNK), weights (CHUNK) */
    double *scratch = malloc((size_t)threads * per_thread * sizeof(double));
    if (!scratch) {
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
        int tensor = 0;
        for (size_t c = first; c < last; c++) {
            const size_t lo = c * CHUNK, hi = lo + CHUNK < P ? lo + CHUNK : P;
            merge_chunk(merge, lo, hi, &tensor, sums, weights, targets);
        }
    }
    free(scratch);
    tw_ist_merge_abort(merge);
    return TW_OK;
}
