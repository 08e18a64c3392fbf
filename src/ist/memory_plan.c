/* Memory-fitted subnets (twist/memory.h): what training a config needs on its device, and the
 * plan that sizes each worker's share of heads and MLP units, and its micro-batch, so that its
 * training state fits the memory its device has for it.
 *
 * A worker's need grows with its share s of the model: the parts every worker holds whole
 * (embeddings, LayerNorms, projection biases, the logits and the residual-stream activations)
 * do not shrink; its heads' and units' parameters, moments and activations grow with s. The
 * plan finds, per worker, the largest share its budget allows (s_max, by bisection over the
 * estimate of a subnet of that share), then gives every worker its desired share where it fits
 * and spreads what the small ones cannot take over the others (water-filling). A worker that
 * cannot hold a useful share at the full micro-batch runs smaller micro-batches (accumulating
 * gradients, so the tokens per step stay the same). The shares become partition weights
 * (twist/ist.h); the plan then builds a partition with them and checks every worker's actual
 * subnet, rounding included, against its budget. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/ist.h"
#include "twist/memory.h"

/* ------------------------------------------------------------------------------------------ */
/* The estimate                                                                               */
/* ------------------------------------------------------------------------------------------ */

void tw_training_memory_of(const tw_gpt_config *c, int micro_batch, int seq_len,
                           tw_training_memory *out) {
    tw_training_memory_typed(c, micro_batch, seq_len, TW_DTYPE_F32, out);
}

void tw_training_memory_typed(const tw_gpt_config *c, int micro_batch, int seq_len,
                              tw_dtype dtype, tw_training_memory *out) {
    memset(out, 0, sizeof *out);
    const uint64_t size = dtype == TW_DTYPE_F32 ? 4 : 2;
    const uint64_t C = (uint64_t)c->n_embd, V = (uint64_t)c->vocab_size;
    const uint64_t B = (uint64_t)(micro_batch > 0 ? micro_batch : 1);
    const uint64_t T = (uint64_t)(seq_len > 0 ? seq_len : c->max_seq_len);
    const uint64_t N = B * T;
    /* Parameters in tw_gpt_layout: wte (V, C), wpe (max T, C), ln_f, and per block ln_1, c_attn
     * (C, 3A) + (3A), attn.c_proj (A, C) + (C), ln_2, c_fc (C, M) + (M), mlp.c_proj (M, C) +
     * (C). */
    uint64_t P = V * C + (uint64_t)c->max_seq_len * C + 2 * C;
    /* Activations: one device buffer per tensor (tw_gpt_prepare_acts), 4 bytes per element:
     * tokens, targets (N); embeddings (N, C); per block ln_1 (N, C) + mean, rstd (N); qkv
     * (N, 3A); attention output (N, A); lse (B, H, T); residual (N, C); ln_2 (N, C) + (N) x 2;
     * MLP hidden and gelu (N, M) x 2; block output (N, C); then ln_f (N, C) + (N) x 2, logits
     * (N, V), losses, lse, correct (N) x 3, and the backward scratch shared by the blocks:
     * residual and LayerNorm gradients (N, C) x 2, qkv (N, 3 A_max), attention (N, A_max),
     * MLP (N, M_max) x 2, logits (N, V). */
    /* stats: the fp32 (and int32) ones whatever the data type: tokens, targets, LayerNorm
     * means and rstds, attention lse, the loss terms */
    uint64_t acts = 2 * N + N * C, max_a = 0, max_m = 0, max_h = 0, stats = 2 * N;
    for (int l = 0; l < c->n_layer; l++) {
        const uint64_t H = (uint64_t)c->layers[l].heads, A = H * (uint64_t)c->head_dim;
        const uint64_t M = (uint64_t)c->layers[l].mlp_hidden;
        P += 2 * C + C * 3 * A + 3 * A + A * C + C + 2 * C + C * M + M + M * C + C;
        acts += N * C + 2 * N + 3 * N * A + N * A + N * H + N * C + N * C + 2 * N + 2 * N * M +
                N * C;
        stats += 2 * N + N * H + 2 * N;
        if (A > max_a) max_a = A;
        if (M > max_m) max_m = M;
        if (H > max_h) max_h = H;
    }
    stats += 2 * N + 3 * N;
    acts += N * C + 2 * N + N * V + 3 * N + 2 * N * C + 3 * N * max_a + N * max_a +
            2 * N * max_m + N * V;
    /* fp32 master weights, and in another type its working copy too */
    out->params = 4 * P + (dtype == TW_DTYPE_F32 ? 0 : size * P);
    out->grads = size * P;
    out->moments = 8 * P + 4; /* m and v, and the clipping norm (1 float) */
    out->activations = 4 * stats + size * (acts - stats);
    /* Scratch that backend ops allocate and free within one op, so never two at once: the
     * largest of attention backward's row terms (B, H, T) floats (every backend); the column
     * partial sums of CUDA's LayerNorm and bias backward, 2 x min(256, ceil(N / 32)) segments x
     * the widest row (C, 3A or M) doubles; CUDA's sum_sq partials (at most 1024 doubles) and
     * OpenCL's and Vulkan's (4 KiB); OpenCL's embedding backward sort keys, 2N int32. */
    const uint64_t segments = (N + 31) / 32 < 256 ? (N + 31) / 32 : 256;
    uint64_t widest = C > 3 * max_a ? C : 3 * max_a;
    if (max_m > widest) widest = max_m;
    uint64_t scratch = 4 * B * max_h * T;
    if (16 * segments * widest > scratch) scratch = 16 * segments * widest;
    if (8 * 1024 > scratch) scratch = 8 * 1024;
    if (8 * N > scratch) scratch = 8 * N;
    out->scratch = scratch;
    out->total = out->params + out->grads + out->moments + out->activations + out->scratch;
}

static uint64_t need_of(const tw_gpt_config *config, int micro_batch, int seq_len) {
    tw_training_memory m;
    tw_training_memory_of(config, micro_batch, seq_len, &m);
    return m.total;
}

/* ------------------------------------------------------------------------------------------ */
/* The plan                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* A subnet holding the share s of every layer: ceil(s x head slots) heads (the slots are the
 * workers' quotas together) and ceil(s x M) units, each in [1, all]. */
static void share_config(const tw_memory_plan_options *o, double s, tw_gpt_config *out) {
    *out = *o->model;
    for (int l = 0; l < out->n_layer; l++) {
        const int H = o->model->layers[l].heads, M = o->model->layers[l].mlp_hidden;
        const int quota = o->heads_per_worker < H ? o->heads_per_worker : H;
        const double slots = (double)o->workers * quota;
        int heads = (int)ceil(s * slots - 1e-9), units = (int)ceil(s * M - 1e-9);
        heads = heads < 1 ? 1 : heads > H ? H : heads;
        units = units < 1 ? 1 : units > M ? M : units;
        out->layers[l].heads = heads;
        out->layers[l].mlp_hidden = units;
    }
}

static uint64_t share_need(const tw_memory_plan_options *o, double s, int micro_batch) {
    if (o->whole_model) return need_of(o->model, micro_batch, o->seq_len);
    tw_gpt_config config;
    share_config(o, s, &config);
    return need_of(&config, micro_batch, o->seq_len);
}

/* The largest share in [0, 1] whose subnet fits `budget` at micro_batch (1 when all of it
 * fits), or -1 when not even the smallest subnet fits. */
static double largest_share(const tw_memory_plan_options *o, uint64_t budget, int micro_batch) {
    if (!budget) return 1.0;
    if (share_need(o, 0.0, micro_batch) > budget) return -1.0;
    if (share_need(o, 1.0, micro_batch) <= budget) return 1.0;
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 40; i++) {
        const double mid = 0.5 * (lo + hi);
        if (share_need(o, mid, micro_batch) <= budget) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* The next smaller divisor of batch below d (1 stays 1). */
static int smaller_divisor(int batch, int d) {
    for (int k = d - 1; k >= 1; k--)
        if (batch % k == 0) return k;
    return 1;
}

static const char *device_of(const tw_memory_plan_options *o, int w) {
    return o->worker_devices && o->worker_devices[w] ? o->worker_devices[w] : "its device";
}

/* Water-filling: shares as close to desired (normalised) as the caps allow, summing to 1.
 * false when the caps sum to less than 1. */
static bool water_fill(const double *desired, const double *cap, int n, double *share) {
    double cap_sum = 0.0;
    for (int w = 0; w < n; w++) cap_sum += cap[w];
    if (cap_sum < 1.0 - 1e-9) return false;
    bool *fixed = calloc((size_t)n, sizeof *fixed);
    if (!fixed) return false;
    double left = 1.0;
    for (int pass = 0; pass <= n; pass++) {
        double free_weight = 0.0;
        for (int w = 0; w < n; w++)
            if (!fixed[w]) free_weight += desired[w];
        bool changed = false;
        for (int w = 0; w < n; w++) {
            if (fixed[w]) continue;
            share[w] = free_weight > 0.0 ? left * desired[w] / free_weight : 0.0;
            if (share[w] > cap[w]) {
                share[w] = cap[w];
                fixed[w] = true;
                left -= cap[w];
                changed = true;
            }
        }
        if (!changed) break;
    }
    free(fixed);
    return true;
}

/* The actual partition (any round: quotas and unit counts depend on the weights alone) checked
 * against the budgets; *over gets the first worker past its budget, or -1. */
static tw_status check_partition(const tw_memory_plan_options *o, const double *weights,
                                 const int *micro, uint64_t *need, int *over) {
    *over = -1;
    if (o->whole_model) {
        for (int w = 0; w < o->workers; w++) {
            need[w] = need_of(o->model, micro[w], o->seq_len);
            if (o->budgets[w] && need[w] > o->budgets[w] && *over < 0) *over = w;
        }
        return TW_OK;
    }
    tw_ist_partition *partition = NULL;
    tw_ist_partition_options po = {.workers = o->workers, .heads_per_worker = o->heads_per_worker,
                                   .weights = weights, .seed = 0, .round = 0};
    TW_TRY(tw_ist_partition_make(o->model, &po, &partition));
    tw_status status = TW_OK;
    for (int w = 0; w < o->workers && status == TW_OK; w++) {
        tw_gpt_config subnet;
        status = tw_ist_subnet_config(o->model, partition, w, &subnet);
        if (status != TW_OK) break;
        need[w] = need_of(&subnet, micro[w], o->seq_len);
        if (o->budgets[w] && need[w] > o->budgets[w] && *over < 0) *over = w;
    }
    tw_ist_partition_free(partition);
    return status;
}

tw_status tw_memory_plan_make(const tw_memory_plan_options *o, tw_memory_plan *plan) {
    if (!o || !plan || !o->model || !o->budgets || o->workers < 1 || o->batch < 1 ||
        !plan->weights || !plan->micro_batch || !plan->need)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "memory plan: missing or bad arguments");
    const int n = o->workers;
    double *desired = calloc((size_t)n, sizeof *desired), *cap = calloc((size_t)n, sizeof *cap);
    if (!desired || !cap) {
        free(desired);
        free(cap);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "memory plan: out of host memory");
    }
    double desired_sum = 0.0;
    for (int w = 0; w < n; w++) desired_sum += o->desired ? o->desired[w] : 1.0;
    for (int w = 0; w < n; w++) desired[w] = (o->desired ? o->desired[w] : 1.0) / desired_sum;
    tw_status status = TW_OK;
    plan->fitted = false;
    plan->reshaped = false;

    /* Even the smallest subnet must fit. */
    for (int w = 0; w < n && status == TW_OK; w++) {
        plan->micro_batch[w] = o->batch;
        if (!o->budgets[w] || largest_share(o, o->budgets[w], 1) >= 0.0) continue;
        char budget[32], need[32];
        status = tw_error(
            TW_ERR_OUT_OF_MEMORY,
            "device memory: worker %d on %s has %s, less than the smallest %s needs: %s (%s at "
            "micro-batch 1 of sequence %d)",
            w, device_of(o, w), tw_format_bytes(o->budgets[w], budget, sizeof budget),
            o->whole_model ? "replica (the whole model: data parallel and local SGD)"
                           : "subnet (1 head and 1 MLP unit per layer)",
            tw_format_bytes(share_need(o, 0.0, 1), need, sizeof need),
            o->whole_model ? "parameters, gradients, AdamW moments and activations"
                           : "shared embeddings, LayerNorms and logits included",
            o->seq_len);
    }
    /* Micro-batches: the largest divisor of batch at which the worker can take its desired
     * share (data parallel: the whole model). */
    for (int w = 0; w < n && status == TW_OK; w++) {
        const double want = o->whole_model ? 1.0 : desired[w];
        while (o->budgets[w] && plan->micro_batch[w] > 1 &&
               largest_share(o, o->budgets[w], plan->micro_batch[w]) < want)
            plan->micro_batch[w] = smaller_divisor(o->batch, plan->micro_batch[w]);
        cap[w] = largest_share(o, o->budgets[w], plan->micro_batch[w]);
        if (cap[w] < 0.0) cap[w] = 0.0;
        if (plan->micro_batch[w] != o->batch) plan->fitted = true;
    }
    if (status == TW_OK && o->whole_model) {
        for (int w = 0; w < n; w++) plan->weights[w] = desired[w];
    } else if (status == TW_OK) {
        /* Too little in all: every worker goes down to micro-batch 1 before the plan gives up. */
        double cap_sum = 0.0;
        for (int w = 0; w < n; w++) cap_sum += cap[w];
        for (int w = 0; w < n && cap_sum < 1.0; w++)
            if (o->budgets[w] && plan->micro_batch[w] > 1) {
                plan->micro_batch[w] = 1;
                plan->fitted = true;
                cap_sum -= cap[w];
                cap[w] = largest_share(o, o->budgets[w], 1);
                cap_sum += cap[w];
            }
        /* Rounding in the partition can put a worker a head or a unit past its share: check
         * the real partition, and shrink the cap of a worker that is over until none is. */
        for (int attempt = 0; status == TW_OK; attempt++) {
            if (!water_fill(desired, cap, n, plan->weights) || attempt == 60) {
                uint64_t total = 0;
                char sum[32], whole[32], least[32];
                for (int w = 0; w < n; w++) total += o->budgets[w];
                status = tw_error(TW_ERR_OUT_OF_MEMORY,
                                  "device memory: the %d workers together (%s) cannot hold "
                                  "every head and MLP unit of the model once, even at "
                                  "micro-batch 1: each holds its own embeddings, LayerNorms and "
                                  "logits (its smallest subnet needs %s; the whole model's "
                                  "training state %s); add workers or memory, or train a "
                                  "smaller model",
                                  n, tw_format_bytes(total, sum, sizeof sum),
                                  tw_format_bytes(share_need(o, 0.0, 1), least, sizeof least),
                                  tw_format_bytes(need_of(o->model, 1, o->seq_len), whole,
                                                  sizeof whole));
                break;
            }
            bool reshaped = false;
            for (int w = 0; w < n; w++)
                if (fabs(plan->weights[w] - desired[w]) > 1e-12) reshaped = true;
            /* Weights the partition accepts: each > 0 (a worker with no room keeps 1 head and
             * 1 unit, which fit: the smallest subnet was checked above). */
            for (int w = 0; w < n; w++)
                if (!(plan->weights[w] > 1e-9)) plan->weights[w] = 1e-9;
            int over = -1;
            status = check_partition(o, reshaped || o->desired ? plan->weights : NULL,
                                     plan->micro_batch, plan->need, &over);
            if (status != TW_OK || over < 0) {
                plan->fitted = plan->fitted || reshaped;
                plan->reshaped = reshaped;
                break;
            }
            cap[over] = cap[over] > 1e-6 ? cap[over] * 0.97 : 0.0;
        }
    }
    if (status == TW_OK && o->whole_model) {
        int over = -1;
        status = check_partition(o, NULL, plan->micro_batch, plan->need, &over);
        if (status == TW_OK && over >= 0) {
            char budget[32], need[32];
            status = tw_error(TW_ERR_OUT_OF_MEMORY,
                              "device memory: worker %d on %s has %s; the whole model needs %s "
                              "at micro-batch %d",
                              over, device_of(o, over),
                              tw_format_bytes(o->budgets[over], budget, sizeof budget),
                              tw_format_bytes(plan->need[over], need, sizeof need),
                              plan->micro_batch[over]);
        }
    }
    free(desired);
    free(cap);
    return status;
}
