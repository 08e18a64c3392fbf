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

/* --balance data: the micro-batch of each worker (sequences per step), so that all finish the
 * round's local phase together. Unlike heads and units, the batch scales every FLOP of a step,
 * the embedding and the tied logits included, so it can balance what shares cannot. A worker's
 * local phase lasts fixed_w + b_w * seq_w: seq_w the seconds per sequence of its forward and
 * backward passes over the round (K steps x grad_accum micro-batches), fixed_w the rest (AdamW
 * updates, uploads, downloads), both measured and smoothed. */
void dist_update_pace(dist_pace *pace, int batch, double grad_s, double compute_s) {
    if (!(grad_s > 0.0) || !(compute_s >= grad_s) || batch < 1 || !isfinite(compute_s)) return;
    /* A device can fall off a cliff at a larger batch: PoCL (through CLBlast) ran a `tiny` round
     * at 16 sequences in about 10 s and at 17 to 24 in 50 to 140 s. A round at a larger batch
     * than the last that took more than four times the prediction caps the worker at the last
     * batch, the largest known to be fine (probing for the edge would cost more such rounds), for
     * the rest of the run; it is not folded into the linear pace, which it does not fit. Four,
     * not two: on a shared machine another job can make one round two or three times slower
     * than predicted, and a cap taken for such noise would hold for the whole run. */
    const double predicted = pace->fixed_s + batch * pace->seq_s;
    if (pace->seq_s > 0.0 && batch > pace->last_batch && compute_s > 4.0 * predicted) {
        if (pace->cap == 0 || pace->last_batch < pace->cap) pace->cap = pace->last_batch;
        return;
    }
    /* The passes' time is a + batch * s: a per-micro-batch part (kernel launches, the loss read
     * back) that does not shrink with the batch, which matters at small batches. Two rounds at
     * different batches give s; with one, or a slope that noise made implausible (beyond
     * [1/4, 1] of grad_s / batch, since a >= 0), the passes count as proportional. */
    const double proportional = grad_s / (double)batch;
    double seq = proportional;
    if (pace->last_batch > 0 && pace->last_batch != batch) {
        const double slope = (grad_s - pace->last_grad_s) / (double)(batch - pace->last_batch);
        if (slope >= 0.25 * proportional && slope <= proportional) seq = slope;
    }
    const double fixed = compute_s - seq * (double)batch;
    pace->last_batch = batch;
    pace->last_grad_s = grad_s;
    /* half the weight on the last round, as for the FLOP/s rates */
    if (pace->seq_s > 0.0) {
        pace->seq_s = 0.5 * pace->seq_s + 0.5 * seq;
        pace->fixed_s = 0.5 * pace->fixed_s + 0.5 * fixed;
    } else {
        pace->seq_s = seq;
        pace->fixed_s = fixed;
    }
}

/* Deals `total` sequences (>= workers) one at a time, each to the worker whose local phase would
 * end first with it, starting from one each: this minimises the slowest worker's time for
 * integer batches (a sequence is the smallest unit a batch can move by). Keeps the total, so a
 * balanced run trains the same tokens per round as an equal one. A worker's cap is kept while
 * another worker can still take the sequence. */
void dist_balance_batches(const dist_pace *pace, int workers, int total, int *batches) {
    for (int w = 0; w < workers; w++) batches[w] = 1;
    for (int left = total - workers; left > 0; left--) {
        int best = -1;
        double best_end = INFINITY;
        /* workers at their cap (see dist_update_pace) take more only when all are */
        for (int pass = 0; pass < 2 && best < 0; pass++)
            for (int w = 0; w < workers; w++) {
                if (pass == 0 && pace[w].cap > 0 && batches[w] >= pace[w].cap) continue;
                const double end = pace[w].fixed_s + (batches[w] + 1) * pace[w].seq_s;
                if (best < 0 || end < best_end) {
                    best_end = end;
                    best = w;
                }
            }
        batches[best]++;
    }
}

/* The predicted local phase of the slowest worker with these batches. */
static double slowest_phase(const dist_pace *pace, int workers, const int *batches) {
    double worst = 0.0;
    for (int w = 0; w < workers; w++) {
        const double t = pace[w].fixed_s + batches[w] * pace[w].seq_s;
        if (t > worst) worst = t;
    }
    return worst;
}

bool dist_plan_batches(const dist_pace *pace, int workers, int total, const int *previous,
                       int *batches) {
    dist_balance_batches(pace, workers, total, batches);
    if (!previous) return true;
    int sum = 0;
    for (int w = 0; w < workers; w++) {
        /* none before, or above a cap found since: not kept */
        if (previous[w] < 1 || (pace[w].cap > 0 && previous[w] > pace[w].cap)) return true;
        sum += previous[w];
    }
    if (sum != total) return true;
    /* Each new batch costs new activation buffers (and on some backends new kernels), and one
     * round's noise should not move them back and forth: the previous batches stay unless the
     * new ones are predicted to end the phase at least 2% sooner (5% kept a worker 20% idle for
     * rounds: one sequence of a batch of 19 is about 5%). */
    if (slowest_phase(pace, workers, previous) <= 1.02 * slowest_phase(pace, workers, batches)) {
        for (int w = 0; w < workers; w++) batches[w] = previous[w];
        return false;
    }
    return true;
}
