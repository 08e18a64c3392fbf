/* Mixed-precision training (twist/model.h, "Mixed precision"; twist/optim.h, tw_loss_scaler):
 *   - bf16 and f16 training steps run on the device and their losses track fp32's from the same
 *     initialisation and batches, step by step within a tolerance; the fp32 master weights stay
 *     fp32 and close to the fp32 run's;
 *   - fp16 loss scaling: an inf injected into the gradients skips the update (master weights,
 *     moments and AdamW's step counter untouched), halves the scale, counts the skip; the next
 *     step updates again, and growth_interval good steps double the scale;
 *   - --save-dtype bf16: model.safetensors holds BF16 tensors at about half the size, loads back
 *     as the bf16-rounded weights, and with the optimizer as the exact fp32 master weights;
 *   - a data type that is not a training precision is refused.
 * Usage: test_precision [--device SPEC] (default cpu); a device lacking bf16 or f16 for a model
 * op skips that part with the reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "twist/dtype.h"
#include "twist/train.h"

enum { B = 4, T = 16, V = 300, STEPS = 6 };

static tw_gpt_config small_config(void) {
    tw_gpt_config config;
    TW_CHECK_OK(tw_gpt_config_uniform(V, T, 2, 32, 2, &config));
    return config;
}

/* A fixed stream of batches: step s gets tokens from a seeded RNG, targets the next token. */
static void batch_of(int step, int32_t *tokens, int32_t *targets) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 100 + (uint64_t)step);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = tw_test_rng_int(&rng, V);
        targets[i] = (tokens[i] * 7 + 3) % V; /* learnable: a fixed map of the input */
    }
}

/* STEPS training steps in `dtype` from seed 5; losses[s] is step s's loss, *params (P floats,
 * malloc'd) the master weights after them. False when the device lacks the type. */
static bool train(tw_device *device, tw_dtype dtype, double *losses, float **params,
                  size_t *count) {
    if (tw_gpt_check_dtype(device, dtype) != TW_OK) {
        printf("  %s: %s\n", tw_dtype_name(dtype), tw_last_error());
        return false;
    }
    tw_gpt_config config = small_config();
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(device, &config, &model));
    TW_CHECK_OK(tw_gpt_set_dtype(model, dtype));
    TW_CHECK(tw_gpt_dtype(model) == dtype, "model dtype");
    TW_CHECK_OK(tw_gpt_init_params(model, 5));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    tw_loss_scaler scaler = tw_loss_scaler_for(dtype);
    TW_CHECK(scaler.dynamic == (dtype == TW_DTYPE_F16), "a dynamic scaler for f16 only");
    int32_t tokens[B * T], targets[B * T];
    for (int s = 0; s < STEPS; s++) {
        batch_of(s, tokens, targets);
        tw_gpt_metrics metrics = {0};
        bool skipped = true;
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
        TW_CHECK_OK(tw_gpt_backward(model, scaler.scale));
        TW_CHECK_OK(tw_gpt_metrics_read(model, &metrics));
        TW_CHECK_OK(tw_adamw_update_scaled(opt, 1e-2f, &scaler, NULL, &skipped));
        TW_CHECK(!skipped, "%s step %d skipped", tw_dtype_name(dtype), s);
        losses[s] = metrics.loss;
    }
    const size_t P = tw_gpt_param_count(model);
    *count = P;
    *params = malloc(P * sizeof **params);
    TW_CHECK_OK(tw_buffer_download(tw_gpt_params(model), 0, *params, P * sizeof **params));
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    return true;
}

static void test_tracks_fp32(tw_device *device) {
    double reference[STEPS], low[STEPS];
    float *reference_params = NULL, *params = NULL;
    size_t P = 0, low_count = 0;
    TW_CHECK(train(device, TW_DTYPE_F32, reference, &reference_params, &P),
             "fp32 runs everywhere");
    const tw_dtype types[2] = {TW_DTYPE_BF16, TW_DTYPE_F16};
    /* Relative tolerances on the loss: bf16 keeps 8 bits of mantissa, f16 11. */
    const double tolerance[2] = {0.02, 0.005};
    for (int k = 0; k < 2; k++) {
        if (!train(device, types[k], low, &params, &low_count)) continue;
        TW_CHECK(low_count == P, "same layout");
        double worst = 0.0, weight_gap = 0.0;
        for (int s = 0; s < STEPS; s++) {
            double gap = fabs(low[s] - reference[s]) / reference[s];
            if (gap > worst) worst = gap;
            TW_CHECK(isfinite(low[s]) && gap <= tolerance[k],
                     "%s step %d: loss %.6f, fp32 %.6f (relative gap %.4f > %.4f)",
                     tw_dtype_name(types[k]), s, low[s], reference[s], gap, tolerance[k]);
        }
        for (size_t i = 0; i < P; i++) {
            double gap = (double)params[i] - reference_params[i];
            weight_gap += gap * gap;
        }
        weight_gap = sqrt(weight_gap / (double)P);
        /* lr 1e-2 for 6 steps moves a weight by up to 6e-2 (AdamW's steps are ~lr whatever the
         * gradient, so a weight whose tiny gradient changes sign differs by that much); the
         * root mean square gap of the master weights stays a small fraction of it */
        TW_CHECK(weight_gap < 1e-2, "%s master weights differ from fp32's by %g (rms)",
                 tw_dtype_name(types[k]), weight_gap);
        TW_CHECK(low[STEPS - 1] < low[0], "%s: the loss falls (%.4f -> %.4f)",
                 tw_dtype_name(types[k]), low[0], low[STEPS - 1]);
        printf("  %s: loss %.4f -> %.4f (fp32 %.4f -> %.4f), worst relative gap %.4f, master "
               "weights %.2e (rms) from fp32's\n",
               tw_dtype_name(types[k]), low[0], low[STEPS - 1], reference[0],
               reference[STEPS - 1], worst, weight_gap);
        free(params);
        params = NULL;
    }
    free(reference_params);
}

/* Downloads a (P) fp32 device buffer. */
static float *download(tw_buffer *buffer, size_t P) {
    float *host = malloc(P * sizeof *host);
    TW_CHECK_OK(tw_buffer_download(buffer, 0, host, P * sizeof *host));
    return host;
}

static void test_loss_scaling(tw_device *device) {
    if (tw_gpt_check_dtype(device, TW_DTYPE_F16) != TW_OK) {
        printf("  loss scaling skipped: %s\n", tw_last_error());
        return;
    }
    tw_gpt_config config = small_config();
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(device, &config, &model));
    TW_CHECK_OK(tw_gpt_set_dtype(model, TW_DTYPE_F16));
    TW_CHECK_OK(tw_gpt_init_params(model, 5));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    const size_t P = tw_gpt_param_count(model);
    tw_loss_scaler scaler = tw_loss_scaler_for(TW_DTYPE_F16);
    scaler.growth_interval = 2;
    TW_CHECK(scaler.scale == (float)TW_LOSS_SCALE_INITIAL, "initial scale %g", scaler.scale);
    int32_t tokens[B * T], targets[B * T];
    batch_of(0, tokens, targets);

    /* A step whose gradients overflowed: f16 +inf written into gradient element 7. */
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
    TW_CHECK_OK(tw_gpt_backward(model, scaler.scale));
    const uint16_t inf = 0x7c00;
    TW_CHECK_OK(tw_buffer_upload(tw_gpt_grads(model), 7 * sizeof inf, &inf, sizeof inf));
    float *before = download(tw_gpt_params(model), P);
    float *m_before = download(tw_adamw_first_moment(opt), P);
    bool skipped = false;
    float norm = 0.0f;
    TW_CHECK_OK(tw_adamw_update_scaled(opt, 1e-2f, &scaler, &norm, &skipped));
    float *after = download(tw_gpt_params(model), P);
    float *m_after = download(tw_adamw_first_moment(opt), P);
    TW_CHECK(skipped && isinf(norm), "the overflowed step is skipped (norm %g)", norm);
    TW_CHECK(scaler.scale == (float)TW_LOSS_SCALE_INITIAL / 2 && scaler.skipped == 1 &&
                 scaler.good_steps == 0,
             "the scale halves (%g) and the skip is counted (%ld)", scaler.scale, scaler.skipped);
    TW_CHECK(memcmp(before, after, P * sizeof *before) == 0, "skipped: master weights unchanged");
    TW_CHECK(memcmp(m_before, m_after, P * sizeof *m_before) == 0, "skipped: moments unchanged");
    TW_CHECK(tw_adamw_steps(opt) == 0, "skipped: AdamW's step counter stays 0");

    /* Recovery: the same batch without the inf updates the weights, twice, and the scale
     * doubles after growth_interval (2) good steps. */
    for (int s = 0; s < 2; s++) {
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
        TW_CHECK_OK(tw_gpt_backward(model, scaler.scale));
        TW_CHECK_OK(tw_adamw_update_scaled(opt, 1e-2f, &scaler, &norm, &skipped));
        TW_CHECK(!skipped && isfinite(norm) && norm > 0.0f, "step %d after the skip: norm %g",
                 s, norm);
    }
    float *trained = download(tw_gpt_params(model), P);
    TW_CHECK(memcmp(before, trained, P * sizeof *before) != 0, "the weights move again");
    TW_CHECK(tw_adamw_steps(opt) == 2, "two updates counted (%d)", tw_adamw_steps(opt));
    TW_CHECK(scaler.scale == (float)TW_LOSS_SCALE_INITIAL && scaler.good_steps == 0,
             "two good steps double the scale back (%g)", scaler.scale);

    /* The unscaled norm does not depend on the scale: the same gradients at scale 2^16 and 1. */
    float scaled_norm = 0.0f, plain_norm = 0.0f;
    tw_loss_scaler one = scaler;
    one.scale = 1.0f;
    for (int pass = 0; pass < 2; pass++) {
        tw_loss_scaler *use = pass == 0 ? &scaler : &one;
        TW_CHECK_OK(tw_gpt_zero_grad(model));
        TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
        TW_CHECK_OK(tw_gpt_backward(model, use->scale));
        TW_CHECK_OK(tw_adamw_update_scaled(opt, 0.0f, use, pass == 0 ? &scaled_norm : &plain_norm,
                                           NULL));
    }
    TW_CHECK(fabsf(scaled_norm - plain_norm) <= 0.01f * plain_norm,
             "the reported norm is unscaled: %g at scale 2^16, %g at 1", scaled_norm, plain_norm);
    free(before), free(after), free(m_before), free(m_after), free(trained);
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
}

static long file_size(const char *dir, const char *name) {
    char path[600];
    struct stat info;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &info) == 0 ? (long)info.st_size : -1;
}

static void test_save_bf16(tw_device *device, const char *root) {
    char corpus[400], fp32_dir[400], bf16_dir[400];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", root);
    snprintf(fp32_dir, sizeof fp32_dir, "%s/fp32", root);
    snprintf(bf16_dir, sizeof bf16_dir, "%s/bf16", root);
    TW_CHECK_OK(tw_synth_write(1, 3, 3000, corpus));
    tw_tokenizer *tok = NULL;
    const char *paths[1] = {corpus};
    TW_CHECK_OK(tw_tokenizer_train(paths, 1, 300, &tok));
    if (!tok) return;
    tw_gpt_config config;
    TW_CHECK_OK(tw_gpt_config_uniform(tw_tokenizer_vocab_size(tok), T, 2, 32, 2, &config));
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    TW_CHECK_OK(tw_gpt_create(device, &config, &model));
    TW_CHECK_OK(tw_gpt_init_params(model, 9));
    TW_CHECK_OK(tw_adamw_create(model, &adam, &opt));
    const size_t P = tw_gpt_param_count(model);
    float *master = download(tw_gpt_params(model), P);
    TW_CHECK_OK(tw_train_save(fp32_dir, model, opt, NULL, tok));
    TW_CHECK_OK(tw_train_save_as(bf16_dir, model, opt, NULL, tok, TW_DTYPE_BF16));
    TW_CHECK_ERROR(tw_train_save_as(bf16_dir, model, opt, NULL, tok, TW_DTYPE_F16),
                   TW_ERR_INVALID_ARGUMENT, "f32 or bf16");
    const long full = file_size(fp32_dir, "model.safetensors");
    const long half = file_size(bf16_dir, "model.safetensors");
    TW_CHECK(half > 0 && full > 0 && half < full * 55 / 100,
             "bf16 model.safetensors is %ld bytes, fp32 %ld: not half", half, full);
    printf("  model.safetensors: fp32 %ld bytes, bf16 %ld bytes (%.3f)\n", full, half,
           (double)half / (double)full);

    /* Every tensor of the model file is BF16. */
    tw_checkpoint *ckpt = NULL;
    TW_CHECK_OK(tw_checkpoint_open(bf16_dir, &ckpt));
    if (ckpt) {
        const tw_safetensors *file = tw_checkpoint_safetensors(ckpt, TW_CKPT_MODEL);
        int bf16 = 0;
        for (int i = 0; i < tw_safetensors_count(file); i++)
            bf16 += strcmp(tw_safetensors_dtype_at(file, i), "BF16") == 0;
        TW_CHECK(bf16 == tw_safetensors_count(file) && bf16 == tw_gpt_tensor_count(model),
                 "%d of %d tensors are BF16", bf16, tw_safetensors_count(file));
        tw_checkpoint_close(ckpt);
    }

    /* Loaded without the optimizer (eval, sample, --init): the weights rounded to bf16. */
    tw_loaded_model loaded;
    TW_CHECK_OK(tw_train_load(bf16_dir, device, NULL, &loaded));
    if (loaded.model) {
        float *rounded = download(tw_gpt_params(loaded.model), P);
        size_t wrong = 0;
        for (size_t i = 0; i < P; i++)
            wrong += rounded[i] != tw_bf16_to_f32(tw_f32_to_bf16(master[i]));
        TW_CHECK(wrong == 0, "%zu weights are not the bf16 rounding of the saved ones", wrong);
        free(rounded);
        tw_loaded_model_free(&loaded);
    }
    /* With the optimizer (--resume): the exact fp32 master weights. */
    TW_CHECK_OK(tw_train_load(bf16_dir, device, &adam, &loaded));
    if (loaded.model) {
        float *exact = download(tw_gpt_params(loaded.model), P);
        TW_CHECK(memcmp(exact, master, P * sizeof *exact) == 0,
                 "resumed from a bf16 save: the fp32 master weights come back exactly");
        free(exact);
        tw_loaded_model_free(&loaded);
    }
    free(master);
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    tw_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    const char *spec = argc == 3 && strcmp(argv[1], "--device") == 0 ? argv[2] : "cpu";
    tw_device *device = NULL;
    if (tw_device_open(spec, &device) != TW_OK)
        tw_test_skip("%s: %s", spec, tw_last_error());
    TW_CHECK_ERROR(tw_gpt_check_dtype(device, TW_DTYPE_I32), TW_ERR_INVALID_ARGUMENT,
                   "not a training precision");
    printf("bf16 and f16 training track fp32 on %s:\n", spec);
    test_tracks_fp32(device);
    printf("fp16 loss scaling:\n");
    test_loss_scaling(device);
    char root[256];
    tw_test_temp_dir("precision", root, sizeof root);
    printf("--save-dtype bf16:\n");
    test_save_bf16(device, root);
    tw_test_remove_temp_dir(root);
    tw_device_close(device);
    return tw_test_finish("precision");
}
