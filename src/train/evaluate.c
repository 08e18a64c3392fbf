/* Evaluation over a token stream's sequential windows, and sampling. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "twist/train.h"

tw_status tw_evaluate(tw_gpt *model, const int32_t *stream, size_t token_count, int batch,
                      int seq_len, int max_batches, tw_eval_result *out) {
    if (!model || !stream || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_evaluate: NULL argument");
    memset(out, 0, sizeof *out);
    tw_loader loader;
    tw_status status = tw_loader_init(&loader, stream, token_count, batch, seq_len, 0, 0, 1,
                                      "evaluation stream");
    if (status != TW_OK) return status;
    const size_t N = (size_t)batch * (size_t)seq_len;
    int32_t *inputs = malloc(N * sizeof *inputs), *targets = malloc(N * sizeof *targets);
    if (!inputs || !targets) status = tw_error(TW_ERR_OUT_OF_MEMORY, "evaluate: out of memory");
    double loss_sum = 0.0, correct_sum = 0.0;
    long tokens = 0;
    for (int b = 0; status == TW_OK && (max_batches <= 0 || b < max_batches); b++) {
        int rows = 0;
        status = tw_loader_next_eval(&loader, inputs, targets, &rows);
        if (status != TW_OK || rows == 0) break;
        tw_gpt_metrics metrics;
        status = tw_gpt_forward(model, inputs, targets, batch, seq_len);
        if (status == TW_OK) status = tw_gpt_metrics_read(model, &metrics);
        if (status != TW_OK) break;
        /* Finite logits always give a finite loss, so a non-finite one means the weights or the
         * config's scales are broken (NaN in a tensor, a scale of 1e38): say so, never print a
         * "loss nan" as if it were a result. */
        if (!isfinite(metrics.loss)) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "evaluate: the loss of batch %d is %g, not a finite number: the "
                              "model's logits are not (weights with NaN or infinities, from a "
                              "damaged checkpoint or a run that diverged)",
                              b + 1, (double)metrics.loss);
            break;
        }
        /* Batches are weighted by their counted tokens, so every target counts once. */
        loss_sum += metrics.loss * (double)metrics.tokens;
        correct_sum += metrics.accuracy * (double)metrics.tokens;
        tokens += metrics.tokens;
    }
    free(inputs);
    free(targets);
    if (status != TW_OK) return status;
    out->tokens = tokens;
    out->loss = tokens ? loss_sum / (double)tokens : 0.0;
    out->perplexity = exp(out->loss);
    out->accuracy = tokens ? correct_sum / (double)tokens : 0.0;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Sampling                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static double uniform01(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static int compare_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Picks the next token from logits (V): greedy at temperature 0, else softmax(logits / T)
 * restricted to the top_k largest logits. `scratch` holds V floats. */
static int32_t pick_token(float *logits, int V, const tw_sample_options *o, uint64_t *rng,
                          float *scratch) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (o->temperature <= 0.0f) return best;
    float cutoff = -INFINITY;
    if (o->top_k > 0 && o->top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof *scratch);
        qsort(scratch, (size_t)V, sizeof *scratch, compare_desc);
        cutoff = scratch[o->top_k - 1];
    }
    double total = 0.0;
    for (int i = 0; i < V; i++) {
        double p = logits[i] >= cutoff ? exp((logits[i] - logits[best]) / o->temperature) : 0.0;
        scratch[i] = (float)p;
        total += p;
    }
    double target = uniform01(rng) * total;
    for (int i = 0; i < V; i++) {
        target -= scratch[i];
        if (target <= 0.0 && scratch[i] > 0.0f) return i;
    }
    return best;
}

tw_status tw_sample(tw_gpt *model, const int32_t *prompt, size_t prompt_length, int32_t eot_id,
                    const tw_sample_options *o, void (*emit)(void *context, int32_t id),
                    void *context) {
    if (!model || !o || (!prompt && prompt_length))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_sample: NULL argument");
    if (o->tokens < 0 || o->temperature < 0.0f || o->top_k < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "sample: tokens, temperature and top_k must be >= 0");
    const tw_gpt_config *c = tw_gpt_get_config(model);
    const int V = c->vocab_size, window = c->max_seq_len;
    size_t length = prompt_length ? prompt_length : 1;
    int32_t *tokens = malloc((length + (size_t)o->tokens) * sizeof *tokens);
    float *logits = malloc((size_t)V * sizeof *logits), *scratch = malloc((size_t)V * sizeof *scratch);
    if (!tokens || !logits || !scratch) {
        free(tokens);
        free(logits);
        free(scratch);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "sample: out of host memory");
    }
    /* An empty prompt starts from end-of-text, as every document does in training. */
    if (prompt_length) memcpy(tokens, prompt, prompt_length * sizeof *tokens);
    else tokens[0] = eot_id;
    uint64_t rng = o->seed;
    tw_status status = TW_OK;
    for (int n = 0; n < o->tokens; n++) {
        size_t start = length > (size_t)window ? length - (size_t)window : 0;
        int T = (int)(length - start);
        status = tw_gpt_forward(model, tokens + start, NULL, 1, T);
        if (status == TW_OK) status = tw_gpt_logits_read(model, 0, T - 1, logits);
        if (status != TW_OK) break;
        /* NaN logits made pick_token return token 0 every time (a NUL byte in byte-level
         * vocabularies): refuse them instead. */
        for (int i = 0; i < V && status == TW_OK; i++)
            if (!isfinite(logits[i]))
                status = tw_error(TW_ERR_INVALID_ARGUMENT,
                                  "sample: logit %d of generated token %d is %g, not a finite "
                                  "number: the model's weights or config are damaged",
                                  i, n + 1, (double)logits[i]);
        if (status != TW_OK) break;
        int32_t next = pick_token(logits, V, o, &rng, scratch);
        if (next == eot_id) break;
        tokens[length++] = next;
        if (emit) emit(context, next);
    }
    free(tokens);
    free(logits);
    free(scratch);
    return status;
}
