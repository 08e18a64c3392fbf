/* The per-op profiler (twist/profile.h) on training steps of a small GPT:
 *   - on the cpu, the summed device times of the ops of a step match the step's wall time
 *     within 10% (the ops are the step; what is left is host work between them);
 *   - profiling leaves the trained parameters bit-identical to an unprofiled run;
 *   - every op of the step is recorded once, named by layer and role, with FLOPs and bytes;
 *   - the trace writer's file parses (cJSON) and has an "X" event per op;
 *   - the same on opencl:0, vulkan:0 and cuda:0 when present (skipped with a message otherwise),
 *     where device time is at most the wall time (the queue runs the ops one after another).
 * Usage: test_profile [--device SPEC]... (default: cpu opencl:0 vulkan:0 cuda:0) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "twist/clock.h"
#include "twist/error.h"
#include "twist/model.h"
#include "twist/optim.h"
#include "twist/profile.h"

enum { STEPS = 4, BATCH = 8, SEQ = 64, VOCAB = 512 };

typedef struct run_result {
    bool opened;
    float *params; /* after STEPS steps */
    size_t count;
    double wall;   /* seconds of the profiled steps (first step excluded: it warms caches) */
    tw_profile_totals steps; /* the ops of those steps */
    long long calls_per_step;
} run_result;

static void make_batch(tw_test_rng *rng, int32_t *tokens, int32_t *targets) {
    for (int i = 0; i < BATCH * SEQ; i++) {
        tokens[i] = tw_test_rng_int(rng, VOCAB);
        targets[i] = (tokens[i] * 7 + 3) % VOCAB;
    }
}

static tw_status step(tw_gpt *model, tw_adamw *opt, tw_test_rng *rng) {
    int32_t tokens[BATCH * SEQ], targets[BATCH * SEQ];
    make_batch(rng, tokens, targets);
    tw_gpt_metrics metrics;
    TW_TRY(tw_gpt_zero_grad(model));
    TW_TRY(tw_gpt_forward(model, tokens, targets, BATCH, SEQ));
    TW_TRY(tw_gpt_backward(model, 1.0f));
    TW_TRY(tw_adamw_update(opt, 1e-3f, NULL));
    return tw_gpt_metrics_read(model, &metrics);
}

static void totals_since(tw_profile_totals *out, const tw_profile_totals *before) {
    tw_profile_totals now;
    TW_CHECK_OK(tw_profile_totals_get(&now));
    out->calls = now.calls - before->calls;
    out->unresolved = now.unresolved - before->unresolved;
    out->device_seconds = now.device_seconds - before->device_seconds;
    out->host_seconds = now.host_seconds - before->host_seconds;
    out->flops = now.flops - before->flops;
    out->bytes = now.bytes - before->bytes;
}

/* STEPS training steps of a 2-layer model on spec, inside a profiling session when profile. */
static run_result train(const char *spec, bool profile) {
    run_result result = {0};
    if (profile) TW_CHECK_OK(tw_profile_start());
    tw_device *device = NULL;
    if (tw_device_open(spec, &device) != TW_OK) {
        if (profile) tw_profile_stop(), tw_profile_release();
        return result;
    }
    result.opened = true;
    tw_gpt_config config;
    TW_CHECK_OK(tw_gpt_config_uniform(VOCAB, SEQ, 2, 128, 4, &config));
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(device, &config, &model));
    if (model) TW_CHECK_OK(tw_gpt_init_params(model, 11));
    if (model) TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 3);
    if (model && opt) {
        TW_CHECK_OK(step(model, opt, &rng));
        TW_CHECK_OK(tw_device_sync(device));
        tw_profile_totals before;
        TW_CHECK_OK(tw_profile_totals_get(&before));
        double t0 = tw_now_seconds();
        for (int s = 1; s < STEPS; s++) TW_CHECK_OK(step(model, opt, &rng));
        TW_CHECK_OK(tw_device_sync(device));
        result.wall = tw_now_seconds() - t0;
        totals_since(&result.steps, &before);
        result.calls_per_step = result.steps.calls / (STEPS - 1);
        result.count = tw_gpt_param_count(model);
        result.params = malloc(result.count * 4);
        TW_CHECK_OK(tw_buffer_download(tw_gpt_params(model), 0, result.params, result.count * 4));
    }
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    tw_device_close(device);
    if (profile) TW_CHECK_OK(tw_profile_stop());
    return result;
}

/* The trace of the last session: parses, one "X" event per op, names by layer and role. */
static void check_trace(const char *spec, long long calls) {
    char dir[256], path[320];
    tw_test_temp_dir("profile", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/trace.json", dir);
    TW_CHECK_OK(tw_profile_write_trace(path));
    FILE *f = fopen(path, "rb");
    TW_CHECK(f != NULL, "%s: no trace at %s", spec, path);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    text[fread(text, 1, (size_t)size, f)] = '\0';
    fclose(f);
    cJSON *trace = cJSON_Parse(text);
    free(text);
    TW_CHECK(trace != NULL, "%s: the trace does not parse", spec);
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(trace, "traceEvents");
    long long ops = 0;
    bool qkv = false, gelu_bwd = false, head = false, adamw = false, bad = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
        if (!cJSON_IsString(ph) || strcmp(ph->valuestring, "X") != 0) continue;
        ops++;
        const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
        qkv = qkv || strcmp(name, "block1.attn.qkv_gemm") == 0;
        gelu_bwd = gelu_bwd || strcmp(name, "block0.mlp.gelu_bwd") == 0;
        head = head || strcmp(name, "lm_head.gemm") == 0;
        adamw = adamw || strcmp(name, "adamw.adamw_step") == 0;
        const cJSON *dur = cJSON_GetObjectItemCaseSensitive(e, "dur");
        const cJSON *flops = cJSON_GetObjectItemCaseSensitive(args, "flops");
        bad = bad || !cJSON_IsNumber(dur) || dur->valuedouble < 0 || !cJSON_IsNumber(flops);
    }
    TW_CHECK(ops == calls, "%s: %lld X events in the trace, %lld op calls recorded", spec, ops,
             calls);
    TW_CHECK(qkv && gelu_bwd && head && adamw,
             "%s: names by layer and role missing (qkv %d gelu_bwd %d lm_head %d adamw %d)",
             spec, qkv, gelu_bwd, head, adamw);
    TW_CHECK(!bad, "%s: an X event lacks a duration >= 0 or its FLOPs", spec);
    cJSON_Delete(trace);
    if (tw_test_failures() == 0) tw_test_remove_temp_dir(dir);
}

static void check_device(const char *spec) {
    run_result plain = train(spec, false);
    if (!plain.opened) {
        printf("SKIP %s: %s\n", spec, tw_last_error());
        return;
    }
    run_result profiled = train(spec, true);
    TW_CHECK(profiled.opened && plain.params && profiled.params && plain.count == profiled.count &&
                 memcmp(plain.params, profiled.params, plain.count * 4) == 0,
             "%s: profiling changed the trained parameters", spec);
    const tw_profile_totals *t = &profiled.steps;
    /* Per step: 2 layers x (forward 11 + backward 15 ops) + head and embedding + AdamW. */
    TW_CHECK(profiled.calls_per_step > 50 && t->calls == profiled.calls_per_step * (STEPS - 1),
             "%s: %lld op calls over %d steps", spec, t->calls, STEPS - 1);
    TW_CHECK(t->unresolved == 0, "%s: %lld ops without a device time after a sync", spec,
             t->unresolved);
    TW_CHECK(t->flops > 0 && t->bytes > 0, "%s: no FLOPs or bytes counted", spec);
    double ratio = t->device_seconds / profiled.wall;
    printf("%s: %lld ops/step, summed op device time %.3f ms of %.3f ms wall (%.1f%%), host time "
           "in calls %.3f ms, %.3g GFLOP/s\n",
           spec, profiled.calls_per_step, t->device_seconds * 1e3, profiled.wall * 1e3,
           100 * ratio, t->host_seconds * 1e3, t->flops / t->device_seconds * 1e-9);
    if (strcmp(spec, "cpu") == 0)
        TW_CHECK(fabs(ratio - 1.0) <= 0.10,
                 "cpu: summed op device time is %.1f%% of the steps' wall time (want 90-110%%)",
                 100 * ratio);
    else /* one in-order queue: ops do not overlap, and the host waits at least as long */
        TW_CHECK(ratio > 0.0 && ratio <= 1.02, "%s: summed op device time is %.1f%% of wall",
                 spec, 100 * ratio);
    tw_profile_totals all;
    TW_CHECK_OK(tw_profile_totals_get(&all));
    check_trace(spec, all.calls);
    tw_profile_release();
    free(plain.params);
    free(profiled.params);
}

int main(int argc, char **argv) {
    const char *defaults[] = {"cpu", "opencl:0", "vulkan:0", "cuda:0"};
    const char *specs[8];
    int count = 0;
    for (int i = 1; i + 1 < argc && count < 8; i += 2)
        if (strcmp(argv[i], "--device") == 0) specs[count++] = argv[i + 1];
    if (count == 0)
        for (int i = 0; i < 4; i++) specs[count++] = defaults[i];
    for (int i = 0; i < count; i++) check_device(specs[i]);
    return tw_test_finish("profile");
}
