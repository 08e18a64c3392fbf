/* twist: a smaller dense model cut from a trained one (TwIST's "zero-cost pruning").
 *
 * An IST subnet is already a dense smaller model: the same embeddings, LayerNorms and biases,
 * and per layer a subset of the heads and MLP units (twist/ist.h). Cutting a deployable model is
 * therefore a one-worker partition, chosen by importance instead of at random, followed by the
 * subnet extraction IST uses every round (tw_ist_extract): no retraining, no other copy code.
 *
 * Importance (data-free, from the weights alone), per layer l with head_dim D, width C:
 *   head h: sqrt(|W_V[:, h]|^2 + |b_V[h]|^2) * |W_O[h, :]|
 *     W_V[:, h] = columns [2A + hD, 2A + (h+1)D) of attn.c_attn.weight (C, 3A), b_V[h] the same
 *     entries of attn.c_attn.bias (3A), W_O[h, :] = rows [hD, (h+1)D) of attn.c_proj.weight
 *     (A, C); |.| the Frobenius norm. A head's output is a convex mix (the softmax weights sum
 *     to 1) of its values x W_V[:, h] + b_V[h], sent through W_O[h, :]: the product of the two
 *     norms bounds how much the head can move the residual stream for a unit-norm input.
 *   unit u: sqrt(|W_fc[:, u]|^2 + b_fc[u]^2) * |W_proj[u, :]|
 *     column u of mlp.c_fc.weight (C, M) and entry u of its bias (the unit's input weights),
 *     row u of mlp.c_proj.weight (M, C) (its output weights): the same bound through the GELU,
 *     whose slope is at most about 1.13.
 * Queries and keys only decide where a head looks, not how much it adds, so they do not enter.
 * The block scales are common to every head (unit) of a layer and do not change the order.
 * Ties keep the lower index. */
#ifndef TWIST_EXTRACT_H
#define TWIST_EXTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include "twist/ist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The importance of every head (head_scores: H_l entries) and MLP unit (unit_scores: M_l
 * entries) of layer `layer` of master, as defined above. */
tw_status tw_extract_importance(const tw_ist_master *master, int layer, double *head_scores,
                                double *unit_scores);

/* A one-worker partition keeping, in every layer, the `heads` heads and `units` MLP units of
 * highest importance (indices ascending, as every partition). heads must be in [1, H_l] and
 * units in [1, M_l] for every layer, else TW_ERR_INVALID_ARGUMENT naming the layer. Free with
 * tw_ist_partition_free. */
tw_status tw_extract_plan(const tw_ist_master *master, int heads, int units,
                          tw_ist_partition **out);

/* The same with the heads and units of every layer drawn uniformly at random (a fixed draw for
 * each seed): the baseline the importance score is measured against. */
tw_status tw_extract_plan_random(const tw_ist_master *master, int heads, int units,
                                 uint64_t seed, tw_ist_partition **out);

/* Block scales of a cut model. */
typedef enum tw_extract_scale {
    /* IST's subnet scales: the master's times H_l / heads and M_l / units, the 1/p a subnet
     * trains with, so that kept blocks add as much as the whole block did on average (exact in
     * expectation for a uniformly random pick) */
    TW_EXTRACT_SCALE_SUBNET,
    /* the master's: the kept heads and units add exactly what they added in the full model,
     * the dropped ones nothing */
    TW_EXTRACT_SCALE_KEEP,
    /* the master's times (sum of all heads' importance) / (sum of the kept heads'), and the same
     * for units: 1/p measured in importance instead of in count, so that picking the largest
     * heads is not scaled up as if they were average ones */
    TW_EXTRACT_SCALE_MASS
} tw_extract_scale;

/* The model that worker 0 of `keep` holds, as a new master: parameters copied by tw_ist_extract,
 * AdamW moments zero and step 0 (a deployable model, not a run to resume), block scales as
 * `scale` says. Keeping everything returns the master's parameters and scales bit for bit
 * whatever the scale rule. */
tw_status tw_extract_model(const tw_ist_master *master, const tw_ist_partition *keep,
                           tw_extract_scale scale, tw_ist_master **out);

#ifdef __cplusplus
}
#endif

#endif
