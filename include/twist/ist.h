/* twist: Independent Subnetwork Training (IST), the partition and the subnet exchange.
 *
 * A round of IST over n workers (see ../shared/DESIGN.md and twist/ist_run.h for the rounds):
 *
 *   tw_ist_partition_make()   per layer: heads dealt by "hats and balls", MLP units split
 *   tw_ist_subnet_config()    worker w's subnet as a dense smaller GPT config (scales 1/p)
 *   tw_ist_extract()          master (host) -> one packed buffer [params | exp_avg | exp_avg_sq]
 *   ... the worker trains its subnet for K steps and returns the packed buffer ...
 *   tw_ist_merge_*()          packed buffers -> master: copied where one worker held an element,
 *                             averaged where several did, untouched where none did
 *
 * Everything here is host code over host arrays: it knows the GPT parameter layout
 * (twist/model.h) but no device. The master model lives on the host (rank 0 under MPI).
 *
 * Index conventions. Layer l of the master has H_l heads of head_dim D and M_l MLP units. The
 * subnet of a worker keeps, per layer, a list of master head indices and a list of master unit
 * indices, both in ascending order (so a worker that holds everything is the master itself,
 * bit for bit, and its matrix products sum in the master's order). A kept head h keeps columns
 * [h*D, (h+1)*D) of each of the Q, K and V blocks of c_attn (weight (C, 3A), bias (3A)) and rows
 * [h*D, (h+1)*D) of attn.c_proj.weight (A, C); a kept unit u keeps column u of mlp.c_fc.weight
 * (C, M) and of mlp.c_fc.bias (M), and row u of mlp.c_proj.weight (M, C). Every other tensor
 * (wte, wpe, LayerNorms, c_proj biases) is copied whole to every worker. */
#ifndef TWIST_IST_H
#define TWIST_IST_H

#include <stdint.h>

#include "twist/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Partition                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* One worker's share of one layer. */
typedef struct tw_ist_layer_share {
    int head_count;
    int *heads;     /* (head_count) master head indices, ascending, distinct */
    int unit_count;
    int *units;     /* (unit_count) master MLP unit indices, ascending, distinct */
} tw_ist_layer_share;

typedef struct tw_ist_partition {
    int workers;
    int n_layer;
    tw_ist_layer_share *shares; /* (workers * n_layer): worker w, layer l at [w * n_layer + l] */
} tw_ist_partition;

static inline const tw_ist_layer_share *tw_ist_share(const tw_ist_partition *partition,
                                                     int worker, int layer) {
    return &partition->shares[(size_t)worker * (size_t)partition->n_layer + (size_t)layer];
}

/* Partition options.
 *   heads_per_worker m: the head quota of each worker in equal mode; per layer it is
 *     min(m, H_l), and workers * min(m, H_l) >= H_l is required (else TW_ERR_INVALID_ARGUMENT
 *     naming the layer). The total number of head slots per layer is S_l = workers * min(m, H_l).
 *   weights (workers) or NULL: relative speeds for --balance speed. With weights, worker w's head
 *     quota is its share of the S_l slots and its unit count its share of M_l, both in proportion
 *     to weights[w] (largest-remainder rounding), each at least 1 and a quota at most H_l; the
 *     quotas still sum to S_l and the units to M_l. NULL: equal quotas min(m, H_l), and units
 *     split as evenly as possible (sizes differ by at most 1).
 *   seed, round: the draw. Each (seed, round, layer) gives its own independent stream, so a
 *     round's partition is the same whatever came before it (and on every MPI rank).
 *
 * Heads of layer l, "hats and balls": walk the workers in a circle starting at a random worker,
 * dealing heads 0, 1, ..., H_l - 1 in a random order, one per visited worker whose quota is not
 * yet full, until every head has been dealt once; then fill each worker's remaining slots with
 * heads drawn uniformly without replacement from the heads it lacks. So the workers together hold
 * every head, no worker holds a head twice, and every quota is met exactly.
 * Units of layer l: a uniformly random permutation of [0, M_l) cut into consecutive pieces of the
 * workers' sizes: disjoint and complete. */
typedef struct tw_ist_partition_options {
    int workers;
    int heads_per_worker;
    const double *weights;
    uint64_t seed;
    int round;
} tw_ist_partition_options;

tw_status tw_ist_partition_make(const tw_gpt_config *master,
                                const tw_ist_partition_options *options,
                                tw_ist_partition **out);
void tw_ist_partition_free(tw_ist_partition *partition);

/* ------------------------------------------------------------------------------------------ */
/* Subnets                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Worker w's subnet: the master config with, per layer, heads = its head_count, mlp_hidden = its
 * unit_count, attn_scale = master attn_scale * H_l / head_count and mlp_scale = master mlp_scale
 * * M_l / unit_count (the 1/p of the kept fraction p). */
tw_status tw_ist_subnet_config(const tw_gpt_config *master, const tw_ist_partition *partition,
                               int worker, tw_gpt_config *out);

/* The master on the host: its config and layout, parameters and AdamW moments in the layout of
 * tw_gpt_layout(config), and AdamW's step counter. */
typedef struct tw_ist_master {
    tw_gpt_config config;
    tw_gpt_tensor *tensors; /* (tensor_count) */
    int tensor_count;
    size_t param_count;
    float *params;     /* (param_count) */
    float *exp_avg;    /* (param_count) */
    float *exp_avg_sq; /* (param_count) */
    int step;
} tw_ist_master;

/* Allocates a master for config with everything 0 and step 0. */
tw_status tw_ist_master_create(const tw_gpt_config *config, tw_ist_master **out);
void tw_ist_master_free(tw_ist_master *master);

/* Floats in a packed subnet of this (subnet) config: 3 * its parameter count, as
 * [params | exp_avg | exp_avg_sq], each in the subnet's own tw_gpt_layout order. */
size_t tw_ist_packed_floats(const tw_gpt_config *subnet);

/* Copies worker w's slices of the master's parameters and moments into packed
 * (tw_ist_packed_floats(subnet config) floats). */
tw_status tw_ist_extract(const tw_ist_master *master, const tw_ist_partition *partition,
                         int worker, float *packed);

/* Merging: begin, add each returned packed subnet (any order; a failed worker is simply not
 * added), finish. Each element becomes the mean of the values the added workers hold for it,
 * weighted by the tokens each worker trained on: sum_w(t_w x_w) / sum_w(t_w). Sums are kept in
 * double with integer weights (t_w over their gcd), so averaging equal values returns the value
 * itself (partition then merge with no training gives back the master bit for bit), equal token
 * counts give exactly the unweighted mean, and two workers their weighted mean computed in
 * double, rounded to float.
 * finish runs in parallel over the master's elements (OpenMP threads). */
typedef struct tw_ist_merge tw_ist_merge;

tw_status tw_ist_merge_begin(const tw_ist_master *master, tw_ist_merge **out);
/* Adds worker `worker`'s packed subnet with weight 1 (the partition and worker index are checked
 * here). packed and partition are read by tw_ist_merge_finish, not here: both must stay valid
 * and unchanged until the merge is finished or aborted. */
tw_status tw_ist_merge_add(tw_ist_merge *merge, const tw_ist_partition *partition, int worker,
                           const float *packed);
/* The same, weighted by tokens (> 0): the training tokens behind the worker's values. */
tw_status tw_ist_merge_add_weighted(tw_ist_merge *merge, const tw_ist_partition *partition,
                                    int worker, const float *packed, uint64_t tokens);
/* Threads finish uses (0, the default: OpenMP's maximum, normally the available cores). The
 * result does not depend on it. */
void tw_ist_merge_set_threads(tw_ist_merge *merge, int threads);
/* Writes the averages into master (elements no added worker held keep their values) and frees
 * merge. */
tw_status tw_ist_merge_finish(tw_ist_merge *merge, tw_ist_master *master);
/* Frees a merge without writing anything (on an error path). */
void tw_ist_merge_abort(tw_ist_merge *merge);

#ifdef __cplusplus
}
#endif

#endif
