/* Choosing between a backend's attention kernel variants by measurement
 * (twist/backend_support.h: tw_attention_measure, tw_attention_tuned_variant). Used by the
 * Vulkan (vk_attention.c), OpenCL (cl_attention.c) and CUDA (cuda_ops.c) backends; the choice is
 * cached per shape class in tw_tune_cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/backend_support.h"
#include "twist/clock.h"
#include "twist/error.h"

void tw_attention_class_key(char *key, size_t capacity, const char *op, int head_dim,
                            int seq_len) {
    long bucket = 64;
    while (bucket < seq_len && bucket < (1L << 30)) bucket *= 2;
    snprintf(key, capacity, "%s d%d-t%ld", op, head_dim, bucket);
}

/* The forward's results (out and lse, whole buffers) into host memory. */
static tw_status results_of(const tw_attention_args *a, float *out, float *lse) {
    TW_TRY(tw_buffer_download(a->out.buffer, 0, out, tw_buffer_size(a->out.buffer)));
    return tw_buffer_download(a->lse.buffer, 0, lse, tw_buffer_size(a->lse.buffer));
}

/* Largest |got - want| within 1e-3 of the largest |want| (sums in other orders), NaN never. */
static bool agrees(const float *got, const float *want, size_t count) {
    double largest = 0.0, worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double w = fabs((double)want[i]), e = fabs((double)got[i] - (double)want[i]);
        if (w > largest) largest = w;
        if (!(e <= worst)) worst = e; /* NaN sticks */
    }
    return worst <= 1e-3 * (1.0 + largest);
}

/* One run of variant v, waited for; seconds in *seconds. */
static tw_status timed_run(tw_device *device, tw_attention_variant_fn fn, void *context,
                           const tw_attention_args *a, int v, double *seconds) {
    double start = tw_now_seconds();
    tw_status status = fn(context, a, v);
    if (status == TW_OK) status = tw_device_sync(device);
    *seconds = tw_now_seconds() - start;
    return status;
}

tw_status tw_attention_measure(tw_device *device, const tw_attention_args *args,
                               tw_attention_variant_fn fwd, void *context, int reference,
                               const bool *usable, int count, int *best, double *ms) {
    *best = -1;
    for (int v = 0; v < count && ms; v++) ms[v] = -1.0;
    if (reference < 0 || reference >= count || !usable[reference])
        return tw_error(TW_ERR_INVALID_ARGUMENT, "attention tuning: no reference variant");
    const size_t out_count = tw_buffer_size(args->out.buffer) / sizeof(float);
    const size_t lse_count = tw_buffer_size(args->lse.buffer) / sizeof(float);
    float *want = malloc((out_count + lse_count) * sizeof(float));
    float *got = malloc((out_count + lse_count) * sizeof(float));
    tw_status status = TW_OK;
    if (!want || !got)
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "attention tuning: out of host memory");
    /* The reference first: its results are what the others must reproduce. */
    if (status == TW_OK) status = fwd(context, args, reference);
    if (status == TW_OK) status = results_of(args, want, want + out_count);
    double best_seconds = 0.0;
    for (int i = 0; i < count && status == TW_OK; i++) {
        const int v = (reference + i) % count; /* the reference, then the others in order */
        if (!usable[v]) continue;
        double first = 0.0, second = 0.0;
        if (v != reference) {
            /* The first run builds the kernels and gives the results; a variant that fails or
             * disagrees with the reference is skipped, and one that took over 8 times the best
             * time so far (kernel building included) is not timed again: it cannot win. */
            if (timed_run(device, fwd, context, args, v, &first) != TW_OK ||
                results_of(args, got, got + out_count) != TW_OK ||
                !agrees(got, want, out_count + lse_count))
                continue;
            if (*best >= 0 && first > 8.0 * best_seconds) {
                if (ms) ms[v] = first * 1e3;
                continue;
            }
        }
        if (timed_run(device, fwd, context, args, v, &first) != TW_OK ||
            timed_run(device, fwd, context, args, v, &second) != TW_OK)
            continue;
        double seconds = first < second ? first : second;
        if (ms) ms[v] = seconds * 1e3;
        if (*best < 0 || seconds < best_seconds) {
            *best = v;
            best_seconds = seconds;
        }
    }
    free(want);
    free(got);
    if (status != TW_OK) return status;
    if (*best < 0)
        return tw_error(TW_ERR_UNSUPPORTED, "attention_fwd: no attention variant ran");
    return TW_OK;
}

int tw_attention_op_index(const char *op) {
    if (!op) return -1;
    if (strcmp(op, "attention_fwd") == 0) return 0;
    if (strcmp(op, "attention_bwd") == 0) return 1;
    return -1;
}

tw_status tw_attention_force(int forced[2], const char *backend, const char *op, const char *name,
                             const char *const *names, int count) {
    const int which = tw_attention_op_index(op);
    if (which < 0) return tw_error(TW_ERR_NOT_FOUND, "%s: no attention op \"%s\"", backend, op);
    if (!name) {
        forced[which] = -1;
        return TW_OK;
    }
    char listed[256] = "";
    for (int v = 0; v < count; v++) {
        if (strcmp(name, names[v]) == 0) {
            forced[which] = v;
            return TW_OK;
        }
        size_t used = strlen(listed);
        snprintf(listed + used, sizeof listed - used, "%s%s", v ? ", " : "", names[v]);
    }
    return tw_error(TW_ERR_NOT_FOUND, "%s: %s has no variant \"%s\" (variants: %s)", backend, op,
                    name, listed);
}

/* Reports a measurement under TWIST_TUNE=verbose: "<name> <ms> ms" per variant (-1: not run). */
static void print_times(const tw_attention_tuning *tuning, const char *key, const double *ms,
                        int best) {
    char line[512];
    size_t used = (size_t)snprintf(line, sizeof line, "twist: tune: %s %s:", tuning->backend, key);
    for (int v = 0; v < tuning->count && used < sizeof line; v++)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s %s %.3f ms", v ? "," : "",
                                 tuning->names[v], ms[v]);
    if (used < sizeof line)
        snprintf(line + used, sizeof line - used, " -> %s", tuning->names[best]);
    fprintf(stderr, "%s\n", line);
}

tw_status tw_attention_tuned_variant(const tw_attention_tuning *tuning,
                                     const tw_attention_args *args, bool backward, int *variant) {
    enum { MAX_VARIANTS = 8 };
    if (tuning->count < 1 || tuning->count > MAX_VARIANTS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: attention: %d variants (1 to %d)",
                        tuning->backend, tuning->count, MAX_VARIANTS);
    char key[64];
    tw_attention_class_key(key, sizeof key, backward ? "attention_bwd" : "attention_fwd",
                           args->head_dim, args->seq_len);
    const char *cached = tuning->cache ? tw_tune_cache_get(tuning->cache, key) : NULL;
    for (int v = 0; cached && v < tuning->count; v++)
        if (strcmp(cached, tuning->names[v]) == 0) {
            *variant = v;
            return TW_OK;
        }
    /* The backward takes what its class's forward measured (it cannot run twice in place). */
    if (backward) return TW_OK;
    bool usable[MAX_VARIANTS];
    double ms[MAX_VARIANTS];
    for (int v = 0; v < tuning->count; v++) usable[v] = true;
    int best = -1;
    TW_TRY(tw_attention_measure(tuning->device, args, tuning->fwd, tuning->context,
                                tuning->reference, usable, tuning->count, &best, ms));
    const int reference = tuning->reference;
    if (best != reference && ms[reference] >= 0 && ms[best] > tuning->margin * ms[reference])
        best = reference;
    if (tw_tune_mode_from_env() == TW_TUNE_MODE_VERBOSE) print_times(tuning, key, ms, best);
    if (tuning->cache) {
        char bwd_key[64];
        tw_attention_class_key(bwd_key, sizeof bwd_key, "attention_bwd", args->head_dim,
                               args->seq_len);
        tw_tune_cache_put(tuning->cache, key, tuning->names[best]);
        tw_tune_cache_put(tuning->cache, bwd_key, tuning->names[best]);
    }
    *variant = best;
    return TW_OK;
}
