/* Batch loader: (B, T) input/target windows of a token stream, drawn at random positions from a
 * seeded xorshift64* generator (training) or walked in order (evaluation). The whole state is three
 * integers, so a checkpoint can store it and a resumed run draws exactly the same next batches. */
#include <stdio.h>
#include <string.h>

#include "twist/error.h"
#include "data/data_impl.h"
#include "twist/data.h"

uint64_t tw_loader_window_count(size_t token_count, int seq_len) {
    if (token_count < 2 || seq_len <= 0) return 0;
    return ((uint64_t)token_count - 1 + (uint64_t)seq_len - 1) / (uint64_t)seq_len;
}

static uint64_t xorshift64star(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform integer in [0, n), n >= 1, by rejection (no modulo bias; same draws on every machine). */
static uint64_t uniform_below(uint64_t *s, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* largest multiple of n, exclusive */
    for (;;) {
        uint64_t r = xorshift64star(s);
        if (r < limit) return r % n;
    }
}

/* The generator of (seed, shard): distinct shards draw independent sequences. Never 0. */
static uint64_t initial_rng(uint64_t seed, int shard) {
    uint64_t s = tw_splitmix64(seed ^ tw_splitmix64(0x5eed0000ull + (uint64_t)shard));
    return s ? s : 0x9E3779B97F4A7C15ull;
}

tw_status tw_loader_init(tw_loader *l, const int32_t *tokens, size_t token_count, int batch,
                         int seq_len, uint64_t seed, int shard, int shard_count,
                         const char *name) {
    if (!l) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_loader_init: loader is NULL");
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name ? name : "token stream");
    if (!tokens && token_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: tokens is NULL", l->name);
    if (batch <= 0 || seq_len <= 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: batch %d and sequence length %d must be > 0",
                        l->name, batch, seq_len);
    if (shard_count <= 0 || shard < 0 || shard >= shard_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: shard %d of %d is not a valid shard",
                        l->name, shard, shard_count);
    if (token_count < (size_t)seq_len + 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: %zu tokens, but a sequence of length %d needs at least %d; use a "
                        "larger corpus or a shorter sequence",
                        l->name, token_count, seq_len, seq_len + 1);
    uint64_t positions = (uint64_t)token_count - (uint64_t)seq_len;
    uint64_t windows = tw_loader_window_count(token_count, seq_len);
    uint64_t n = (uint64_t)shard_count, w = (uint64_t)shard;
    if (positions < n)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: %llu start positions (%zu tokens, sequence length %d) cannot be "
                        "shared by %d workers",
                        l->name, (unsigned long long)positions, token_count, seq_len,
                        shard_count);
    l->tokens = tokens;
    l->token_count = token_count;
    l->batch = batch;
    l->seq_len = seq_len;
    l->shard = shard;
    l->shard_count = shard_count;
    l->seed = seed;
    /* Contiguous blocks: worker w of n owns [w P / n, (w + 1) P / n). P * n cannot overflow 64
     * bits for any stream that fits in memory (P < 2^40 tokens, n < 2^31). */
    l->first = w * positions / n;
    l->count = (w + 1) * positions / n - l->first;
    l->window_first = w * windows / n;
    l->window_count = (w + 1) * windows / n - l->window_first;
    l->state.rng = initial_rng(seed, shard);
    return TW_OK;
}

static void copy_window(const tw_loader *l, uint64_t p, int32_t *in, int32_t *tg) {
    int T = l->seq_len;
    memcpy(in, l->tokens + p, (size_t)T * sizeof(int32_t));
    memcpy(tg, l->tokens + p + 1, (size_t)T * sizeof(int32_t));
}

tw_status tw_loader_next(tw_loader *l, int32_t *inputs, int32_t *targets) {
    if (!l || !l->tokens || !inputs || !targets)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_loader_next: loader (initialised), inputs and targets are required");
    size_t T = (size_t)l->seq_len;
    for (int b = 0; b < l->batch; b++) {
        uint64_t p = l->first + uniform_below(&l->state.rng, l->count);
        copy_window(l, p, inputs + (size_t)b * T, targets + (size_t)b * T);
    }
    l->state.batches++;
    return TW_OK;
}

tw_status tw_loader_next_eval(tw_loader *l, int32_t *inputs, int32_t *targets, int *rows) {
    if (!l || !l->tokens || !inputs || !targets || !rows)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_loader_next_eval: loader (initialised), inputs, targets and rows are "
                        "required");
    size_t T = (size_t)l->seq_len;
    int filled = 0;
    for (int b = 0; b < l->batch; b++) {
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        if (l->state.cursor >= l->window_count) {
            memset(in, 0, T * sizeof(int32_t));
            for (size_t t = 0; t < T; t++) tg[t] = -1;
            continue;
        }
        uint64_t p = (l->window_first + l->state.cursor) * T;
        uint64_t avail = l->token_count - 1 - p; /* targets left in the stream, >= 1 */
        if (avail >= T) {
            copy_window(l, p, in, tg);
        } else {
            /* The last, partial window: pad inputs with 0, targets with -1 (ignored). */
            for (size_t t = 0; t < T; t++) {
                in[t] = t < avail ? l->tokens[p + t] : 0;
                tg[t] = t < avail ? l->tokens[p + t + 1] : -1;
            }
        }
        l->state.cursor++;
        filled++;
    }
    if (filled) l->state.batches++;
    *rows = filled;
    return TW_OK;
}

void tw_loader_rewind(tw_loader *l) {
    if (l) l->state.cursor = 0;
}

tw_loader_state tw_loader_get_state(const tw_loader *l) { return l->state; }

tw_status tw_loader_set_state(tw_loader *l, tw_loader_state s) {
    if (!l || !l->tokens)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_loader_set_state: loader not initialised");
    if (s.rng == 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: saved loader state has RNG state 0 (not a saved state)", l->name);
    if (s.cursor > l->window_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: saved loader cursor %llu is past the %llu evaluation windows",
                        l->name, (unsigned long long)s.cursor,
                        (unsigned long long)l->window_count);
    l->state = s;
    return TW_OK;
}
