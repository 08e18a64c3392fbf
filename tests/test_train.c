/* Training-step checks: the model plus AdamW on synthetic token data.
 *   - determinism: the same seeded run twice on the CPU gives bitwise identical losses;
 *   - gradient accumulation: two half batches at loss_scale 1/2 give the gradients of the whole
 *     batch (relative 1e-5);
 *   - the warmup + cosine schedule at known points;
 *   - every device: the same 20 steps give the CPU's losses within DEVICE_TOLERANCE (relative),
 *     and the loss falls. A device whose backend is absent is reported as skipped.
 * Usage: test_train [--device SPEC]: with a spec, only that device is compared with the CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/model.h"
#include "twist/optim.h"

enum { STEPS = 20, BATCH = 4, VOCAB = 64 };
/* Float differences between devices (summation order, exp/tanh implementations) compound
 * through 20 AdamW steps; measured worst on PoCL is reported by the test's output. */
#define DEVICE_TOLERANCE 2e-3

static tw_gpt_config nano_config(void) {
    tw_gpt_config config;
    tw_gpt_config_preset("nano", VOCAB, &config);
    config.max_seq_len = 32; /* short sequences keep the test fast */
    return config;
}

/* A learnable stream: each sequence counts up by a per-sequence stride modulo VOCAB. */
static void make_batch(tw_test_rng *rng, int T, int32_t *tokens, int32_t *targets) {
    for (int b = 0; b < BATCH; b++) {
        int start = tw_test_rng_int(rng, VOCAB), stride = 1 + tw_test_rng_int(rng, 3);
        for (int t = 0; t < T; t++) {
            tokens[b * T + t] = (start + t * stride) % VOCAB;
            targets[b * T + t] = (start + (t + 1) * stride) % VOCAB;
        }
    }
}

/* Trains STEPS steps of the nano model on `spec` and records the loss before each update. */
static bool train_losses(const char *spec, double *losses) {
    tw_device *device = NULL;
    if (tw_device_open(spec, &device) != TW_OK) return false;
    tw_gpt_config config = nano_config();
    const int T = config.max_seq_len;
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(device, &config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 7));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    tw_lr_schedule schedule = {.max_lr = 3e-3f, .min_lr = 3e-4f, .warmup_steps = 5,
                               .total_steps = STEPS};
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 99);
    int32_t tokens[BATCH * 32], targets[BATCH * 32];
    for (int step = 0; model && opt && step < STEPS; step++) {
        make_batch(&rng, T, tokens, targets);
        tw_gpt_metrics metrics = {0};
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, BATCH, T));
        TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
        TW_CHECK_OK(tw_adamw_update(opt, tw_lr_at(&schedule, step), NULL));
        TW_CHECK_OK(tw_gpt_metrics_read(model, &metrics));
        losses[step] = metrics.loss;
    }
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    tw_device_close(device);
    return true;
}

static void check_determinism(double *cpu_losses) {
    double again[STEPS];
    TW_CHECK(train_losses("cpu", cpu_losses), "cannot open cpu: %s", tw_last_error());
    TW_CHECK(train_losses("cpu", again), "cannot open cpu: %s", tw_last_error());
    TW_CHECK(memcmp(cpu_losses, again, sizeof again) == 0,
             "two seeded CPU runs differ: step 19 loss %.9g vs %.9g", cpu_losses[STEPS - 1],
             again[STEPS - 1]);
    TW_CHECK(cpu_losses[STEPS - 1] < cpu_losses[0] - 0.5, "loss did not fall: %.4f -> %.4f",
             cpu_losses[0], cpu_losses[STEPS - 1]);
    printf("cpu: loss %.4f -> %.4f over %d steps, bitwise repeatable\n", cpu_losses[0],
           cpu_losses[STEPS - 1], STEPS);
}

static void check_device(const char *spec, const double *cpu_losses) {
    double losses[STEPS];
    if (!train_losses(spec, losses)) {
        printf("SKIP %s: %s\n", spec, tw_last_error());
        return;
    }
    double worst = 0.0;
    for (int s = 0; s < STEPS; s++)
        worst = fmax(worst, fabs(losses[s] - cpu_losses[s]) / fabs(cpu_losses[s]));
    TW_CHECK(worst <= DEVICE_TOLERANCE, "%s: losses differ from the cpu's by %.2e (tol %.0e)",
             spec, worst, DEVICE_TOLERANCE);
    printf("%s: loss %.4f -> %.4f, worst relative difference from cpu %.2e (tol %.0e)\n", spec,
           losses[0], losses[STEPS - 1], worst, DEVICE_TOLERANCE);
}

/* grads(whole batch) == grads(first half, scale 1/2) + grads(second half, scale 1/2) when both
 * halves count the same number of targets. */
static void check_accumulation(void) {
    tw_device *cpu = NULL;
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    tw_gpt_config config = nano_config();
    const int T = config.max_seq_len, half = BATCH / 2;
    TW_CHECK_OK(tw_gpt_create(cpu, &config, &model));
    if (!model) return;
    TW_CHECK_OK(tw_gpt_init_params(model, 3));
    const size_t P = tw_gpt_param_count(model);
    float *whole = malloc(P * 4), *accumulated = malloc(P * 4);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 5);
    int32_t tokens[BATCH * 32], targets[BATCH * 32];
    make_batch(&rng, T, tokens, targets);
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, BATCH, T));
    TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
    TW_CHECK_OK(tw_buffer_download(tw_gpt_grads(model), 0, whole, P * 4));
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    for (int part = 0; part < 2; part++) {
        TW_CHECK_OK(tw_gpt_forward(model, tokens + part * half * T, targets + part * half * T,
                                   half, T));
        TW_CHECK_OK(tw_gpt_backward(model, 0.5f));
    }
    TW_CHECK_OK(tw_buffer_download(tw_gpt_grads(model), 0, accumulated, P * 4));
    double max_error = 0.0, max_value = 0.0;
    for (size_t i = 0; i < P; i++) {
        max_error = fmax(max_error, fabs((double)whole[i] - accumulated[i]));
        max_value = fmax(max_value, fabs((double)whole[i]));
    }
    TW_CHECK(max_error <= 1e-5 * max_value, "accumulated gradients differ by %.3g (max %.3g)",
             max_error, max_value);
    printf("gradient accumulation: 2 x B=%d vs B=%d, relative difference %.2e\n", half, BATCH,
           max_error / max_value);
    free(whole);
    free(accumulated);
    tw_gpt_destroy(model);
    tw_device_close(cpu);
}

static void check_schedule(void) {
    tw_lr_schedule s = {.max_lr = 1.0f, .min_lr = 0.1f, .warmup_steps = 10, .total_steps = 110};
    TW_CHECK(fabsf(tw_lr_at(&s, 0) - 0.1f) < 1e-6f, "warmup step 0: %g", tw_lr_at(&s, 0));
    TW_CHECK(fabsf(tw_lr_at(&s, 9) - 1.0f) < 1e-6f, "end of warmup: %g", tw_lr_at(&s, 9));
    TW_CHECK(fabsf(tw_lr_at(&s, 60) - 0.55f) < 1e-6f, "cosine midpoint: %g", tw_lr_at(&s, 60));
    TW_CHECK(fabsf(tw_lr_at(&s, 110) - 0.1f) < 1e-6f, "after the end: %g", tw_lr_at(&s, 110));
}

int main(int argc, char **argv) {
    const char *only = argc == 3 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    double cpu_losses[STEPS];
    check_schedule();
    check_accumulation();
    check_determinism(cpu_losses);
    for (int i = 0; i < tw_device_count(); i++) {
        tw_device_info info;
        if (tw_device_info_at(i, &info) != TW_OK || info.backend == TW_BACKEND_CPU) continue;
        if (!only || strcmp(only, info.spec) == 0) check_device(info.spec, cpu_losses);
    }
    return tw_test_finish("train");
}
