/* IST merge: packed subnets back into the master. Every master element gets the mean of the
 * values the added workers returned for it (sums in double, one count per element); an element
 * no added worker held keeps its value. Parameters and both AdamW moments follow the same rule. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "ist/ist_internal.h"

/* Counts are 16-bit to keep the merge at 26 bytes per parameter; more adds are refused. */
enum { MAX_ADDS = UINT16_MAX };

struct tw_ist_merge {
    tw_gpt_config config; /* the master's, with its layout: subnets are mapped against them */
    tw_gpt_tensor *tensors;
    int tensor_count;
    size_t param_count;
    double *sums;     /* (3 * param_count): params, exp_avg, exp_avg_sq */
    uint16_t *counts; /* (param_count): how many added workers held each element */
    int *added;       /* (MAX_ADDS at most) worker indices added so far */
    int added_count, added_capacity;
};

void tw_ist_merge_abort(tw_ist_merge *merge) {
    if (!merge) return;
    free(merge->tensors);
    free(merge->sums);
    free(merge->counts);
    free(merge->added);
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
    merge->sums = calloc(3 * master->param_count, sizeof(double));
    merge->counts = calloc(master->param_count, sizeof(uint16_t));
    if (!merge->tensors || !merge->sums || !merge->counts) {
        tw_ist_merge_abort(merge);
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "IST merge: out of host memory for the sums of %zu parameters",
                        master->param_count);
    }
    memcpy(merge->tensors, master->tensors, sizeof(tw_gpt_tensor) * (size_t)master->tensor_count);
    *out = merge;
    return TW_OK;
}

/* Refuses a worker added twice (its values would count double), then records it. */
static tw_status record_worker(tw_ist_merge *merge, int worker) {
    for (int i = 0; i < merge->added_count; i++)
        if (merge->added[i] == worker)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "IST merge: worker %d was already added to this merge", worker);
    if (merge->added_count >= MAX_ADDS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: more than %d workers added",
                        MAX_ADDS);
    if (merge->added_count == merge->added_capacity) {
        int capacity = merge->added_capacity ? 2 * merge->added_capacity : 16;
        int *grown = realloc(merge->added, sizeof(int) * (size_t)capacity);
        if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "IST merge: out of host memory");
        merge->added = grown;
        merge->added_capacity = capacity;
    }
    merge->added[merge->added_count++] = worker;
    return TW_OK;
}

typedef struct add_context {
    tw_ist_merge *merge;
    const float *packed;
    size_t sub_count; /* the subnet's parameter count: the stride of the three packed parts */
} add_context;

static void add_run(void *context, size_t sub, size_t master, size_t len) {
    const add_context *a = context;
    const size_t P = a->merge->param_count, S = a->sub_count;
    double *sums = a->merge->sums;
    for (size_t i = 0; i < len; i++) {
        sums[master + i] += a->packed[sub + i];
        sums[P + master + i] += a->packed[S + sub + i];
        sums[2 * P + master + i] += a->packed[2 * S + sub + i];
        a->merge->counts[master + i]++;
    }
}

tw_status tw_ist_merge_add(tw_ist_merge *merge, const tw_ist_partition *partition, int worker,
                           const float *packed) {
    if (!merge || !partition || !packed)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "IST merge: NULL argument");
    ist_subnet_map map;
    /* The map checks the partition against the master and the worker index before any sum is
     * touched, so a refused add leaves the merge as it was. */
    tw_status status = ist_subnet_map_init(&map, &merge->config, merge->tensors,
                                           merge->tensor_count, partition, worker);
    if (status == TW_OK) status = record_worker(merge, worker);
    if (status == TW_OK) {
        add_context context = {merge, packed, map.param_count};
        status = ist_subnet_map_walk(&map, add_run, &context);
        if (status != TW_OK) merge->added_count--; /* fails before summing (memory) */
    }
    ist_subnet_map_release(&map);
    return status;
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
    const size_t P = merge->param_count;
    float *targets[3] = {master->params, master->exp_avg, master->exp_avg_sq};
    for (size_t i = 0; i < P; i++) {
        if (merge->counts[i] == 0) continue;
        const double n = (double)merge->counts[i];
        /* Exact for n equal values: their double sum is exact, so sum / n is the value. */
        for (int part = 0; part < 3; part++)
            targets[part][i] = (float)(merge->sums[(size_t)part * P + i] / n);
    }
    tw_ist_merge_abort(merge);
    return TW_OK;
}
