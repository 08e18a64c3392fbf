/* --balance speed: how big a share of the heads and MLP units each worker gets, so that fast
 * and slow devices finish their K local steps at about the same time.
 *
 * A worker's time per token is its subnet's training FLOPs per token over its device's rate.
 * The FLOPs split into a part every worker pays in full (token embedding and the tied output
 * projection: the logits) and a part that shrinks with the worker's share of heads and units.
 * Balancing on tokens/s alone would be wrong: a worker given fewer heads gets faster per token,
 * so its share would swing back up the next round. The device's rate (FLOP/s) is what does not
 * depend on the share; it is measured every round and smoothed. */
#include <math.h>

#include "ist/dist_internal.h"

dist_cost dist_cost_of(const tw_gpt_config *config) {
    /* forward 2 FLOPs per multiply-add, backward twice the forward: 6 per weight per token */
    const double C = config->n_embd, T = config->max_seq_len;
    dist_cost cost = {.fixed = 6.0 * C * config->vocab_size};
    for (int l = 0; l < config->n_layer; l++) {
        const double A = (double)config->layers[l].heads * config->head_dim;
        const double M = config->layers[l].mlp_hidden;
        /* QKV and output projections, and the causal attention: a query sees T/2 keys on
         * average, 2 products of D per key (scores, values) per head */
        cost.attention += 6.0 * (3.0 * C * A + A * C) + 6.0 * T * A;
        cost.mlp += 6.0 * 2.0 * C * M;
    }
    return cost;
}

double dist_cost_total(const dist_cost *cost) { return cost->fixed + cost->attention + cost->mlp; }

void dist_update_rate(double *rate, const tw_gpt_config *subnet, double tokens_per_s) {
    const dist_cost cost = dist_cost_of(subnet);
    const double measured = dist_cost_total(&cost) * tokens_per_s;
    if (!(measured > 0.0) || !isfinite(measured)) return;
    /* half the weight on the last round: rounds on a shared machine are noisy */
    *rate = *rate > 0.0 ? 0.5 * *rate + 0.5 * measured : measured;
}

/* Worker w takes the fraction s_w of the MLP units and s_w * head_slots of the heads (head
 * slots: the workers' head quotas over the heads, >= 1 when heads are dealt more than once).
 * Its time per token is (F + s_w V) / r_w with V = head_slots * attention + mlp. Equal times
 * tau with sum s_w = 1 give tau = (V + n F) / sum r and s_w = (tau r_w - F) / V. A worker so
 * slow that it could not finish even the shared part in time keeps a small share anyway. */
void dist_balance_weights(const tw_gpt_config *master, double head_slots, const double *rates,
                          int workers, double *weights) {
    const dist_cost cost = dist_cost_of(master);
    const double variable = head_slots * cost.attention + cost.mlp;
    double rate_sum = 0.0;
    for (int w = 0; w < workers; w++) rate_sum += rates[w];
    const double tau = (variable + workers * cost.fixed) / rate_sum;
    const double floor_share = 0.1 / workers;
    for (int w = 0; w < workers; w++) {
        const double share = (tau * rates[w] - cost.fixed) / variable;
        weights[w] = share > floor_share ? share : floor_share;
    }
}
