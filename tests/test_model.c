/* Whole-model checks of the GPT on the CPU:
 *   - the float forward loss equals a double-precision reference forward built from the
 *     naive ops of reference.c;
 *   - every gradient of the float backward equals central finite differences of the double
 *     reference loss: all parameters of a small irregular model (per-layer heads, MLP widths and
 *     block scales that differ, ignored targets), and a sample of every tensor of the `nano`
 *     preset.
 * Tolerance: |analytic - numeric| <= 2e-3 * max(max|numeric| over the tensor, 1e-3), i.e. a
 * relative error of the float backward against the double reference, per tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"
#include "twist/model.h"

#define GRAD_TOLERANCE 2e-3
#define LOSS_TOLERANCE 1e-5

typedef struct reference_model {
    const tw_gpt_config *config;
    const tw_gpt_tensor *tensors;
    int tensor_count;
} reference_model;

static const double *tensor_data(const reference_model *rm, const double *params,
                                 const char *format, int layer) {
    char name[TW_GPT_NAME_MAX];
    snprintf(name, sizeof name, format, layer);
    for (int i = 0; i < rm->tensor_count; i++)
        if (strcmp(rm->tensors[i].name, name) == 0) return params + rm->tensors[i].offset;
    fprintf(stderr, "reference model: no tensor %s\n", name);
    abort();
}

/* x (N, C) += scale * (in (N, I) @ W (I, C)) + bias (C) */
static void residual_add(int N, int I, int C, double scale, const double *in, const double *w,
                         const double *bias, double *x) {
    ref_gemm(false, false, N, C, I, 1, scale, in, I, 0, w, C, 0, 1.0, x, C, 0);
    ref_bias_add(N, C, bias, x);
}

/* out (N, O) = in (N, I) @ W (I, O) + b */
static void linear(int N, int I, int O, const double *in, const double *w, const double *b,
                   double *out) {
    ref_gemm(false, false, N, O, I, 1, 1.0, in, I, 0, w, O, 0, 0.0, out, O, 0);
    ref_bias_add(N, O, b, out);
}

/* One block of the reference forward on x (N, C), in place. */
static void reference_block(const reference_model *rm, const double *p, int l, int B, int T,
                            double *x) {
    const tw_gpt_config *c = rm->config;
    const int N = B * T, C = c->n_embd, H = c->layers[l].heads, D = c->head_dim, A = H * D;
    const int M = c->layers[l].mlp_hidden;
    double *ln = malloc(sizeof(double) * (size_t)N * C), *stats = malloc(sizeof(double) * 2 * N);
    double *qkv = malloc(sizeof(double) * (size_t)N * 3 * A);
    double *att = malloc(sizeof(double) * (size_t)N * A), *lse = malloc(sizeof(double) * N * H);
    double *fc = malloc(sizeof(double) * (size_t)N * M);
    ref_layernorm_fwd(N, C, c->layernorm_eps, x, tensor_data(rm, p, "transformer.h.%d.ln_1.weight", l),
                      tensor_data(rm, p, "transformer.h.%d.ln_1.bias", l), ln, stats, stats + N);
    linear(N, C, 3 * A, ln, tensor_data(rm, p, "transformer.h.%d.attn.c_attn.weight", l),
           tensor_data(rm, p, "transformer.h.%d.attn.c_attn.bias", l), qkv);
    tw_bhtd_stride qkv_stride = {(int64_t)T * 3 * A, D, 3 * A}, out_stride = {(int64_t)T * A, D, A};
    ref_attention_fwd(B, H, T, D, 1.0 / sqrt((double)D), qkv_stride, out_stride, qkv, qkv + A,
                      qkv + 2 * A, att, lse);
    residual_add(N, A, C, c->layers[l].attn_scale, att,
                 tensor_data(rm, p, "transformer.h.%d.attn.c_proj.weight", l),
                 tensor_data(rm, p, "transformer.h.%d.attn.c_proj.bias", l), x);
    ref_layernorm_fwd(N, C, c->layernorm_eps, x, tensor_data(rm, p, "transformer.h.%d.ln_2.weight", l),
                      tensor_data(rm, p, "transformer.h.%d.ln_2.bias", l), ln, stats, stats + N);
    linear(N, C, M, ln, tensor_data(rm, p, "transformer.h.%d.mlp.c_fc.weight", l),
           tensor_data(rm, p, "transformer.h.%d.mlp.c_fc.bias", l), fc);
    ref_gelu_fwd((size_t)N * M, fc, fc);
    residual_add(N, M, C, c->layers[l].mlp_scale, fc,
                 tensor_data(rm, p, "transformer.h.%d.mlp.c_proj.weight", l),
                 tensor_data(rm, p, "transformer.h.%d.mlp.c_proj.bias", l), x);
    free(ln);
    free(stats);
    free(qkv);
    free(att);
    free(lse);
    free(fc);
}

/* Mean cross-entropy over targets >= 0 of the double-precision model at params p. */
static double reference_loss(const reference_model *rm, const double *p, const int32_t *tokens,
                             const int32_t *targets, int B, int T) {
    const tw_gpt_config *c = rm->config;
    const int N = B * T, C = c->n_embd, V = c->vocab_size;
    double *x = malloc(sizeof(double) * (size_t)N * C), *ln = malloc(sizeof(double) * (size_t)N * C);
    double *stats = malloc(sizeof(double) * 2 * N), *logits = malloc(sizeof(double) * (size_t)N * V);
    double *losses = malloc(sizeof(double) * 3 * N);
    ref_embedding_fwd(B, T, C, tokens, tensor_data(rm, p, "transformer.wte.weight", 0),
                      tensor_data(rm, p, "transformer.wpe.weight", 0), x);
    for (int l = 0; l < c->n_layer; l++) reference_block(rm, p, l, B, T, x);
    ref_layernorm_fwd(N, C, c->layernorm_eps, x, tensor_data(rm, p, "transformer.ln_f.weight", 0),
                      tensor_data(rm, p, "transformer.ln_f.bias", 0), ln, stats, stats + N);
    ref_gemm(false, true, N, V, C, 1, 1.0, ln, C, 0, tensor_data(rm, p, "transformer.wte.weight", 0),
             C, 0, 0.0, logits, V, 0);
    ref_softmax_xent_fwd(N, V, V, logits, targets, losses, losses + N, losses + 2 * N);
    double sum = 0.0;
    int counted = 0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) {
            sum += losses[i];
            counted++;
        }
    free(x);
    free(ln);
    free(stats);
    free(logits);
    free(losses);
    return sum / counted;
}

/* Runs the float model and the double reference on the same parameters; checks the loss and
 * `samples_per_tensor` gradient entries of every tensor (all entries when 0). */
static void check_model(const char *label, const tw_gpt_config *config, int B, int T,
                        float init_range, int samples_per_tensor, uint64_t seed) {
    tw_device *cpu = NULL;
    tw_gpt *model = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    TW_CHECK_OK(tw_gpt_create(cpu, config, &model));
    if (!model) return;
    const size_t P = tw_gpt_param_count(model);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    float *params = malloc(P * sizeof *params), *grads = malloc(P * sizeof *grads);
    double *p64 = malloc(P * sizeof *p64);
    /* Uniform parameters larger than GPT-2's init, so no gradient is negligibly small; LayerNorm
     * weights around 1 as in a real model. */
    tw_test_fill_uniform(&rng, params, P, -init_range, init_range);
    for (int i = 0; i < tw_gpt_tensor_count(model); i++) {
        const tw_gpt_tensor *t = tw_gpt_tensor_at(model, i);
        if (strstr(t->name, "ln_") && strstr(t->name, ".weight"))
            for (size_t j = 0; j < t->count; j++) params[t->offset + j] += 1.0f;
    }
    for (size_t i = 0; i < P; i++) p64[i] = params[i];
    const int N = B * T;
    int32_t *tokens = malloc(N * sizeof *tokens), *targets = malloc(N * sizeof *targets);
    for (int i = 0; i < N; i++) {
        tokens[i] = tw_test_rng_int(&rng, config->vocab_size);
        targets[i] = i % 5 == 3 ? -1 : tw_test_rng_int(&rng, config->vocab_size);
    }

    TW_CHECK_OK(tw_buffer_upload(tw_gpt_params(model), 0, params, P * 4));
    TW_CHECK_OK(tw_gpt_zero_grad(model));
    TW_CHECK_OK(tw_gpt_forward(model, tokens, targets, B, T));
    TW_CHECK_OK(tw_gpt_backward(model, 1.0f));
    tw_gpt_metrics metrics = {0};
    TW_CHECK_OK(tw_gpt_metrics_read(model, &metrics));
    TW_CHECK_OK(tw_buffer_download(tw_gpt_grads(model), 0, grads, P * 4));

    reference_model rm = {config, NULL, tw_gpt_tensor_count(model)};
    rm.tensors = tw_gpt_tensor_at(model, 0);
    const double loss = reference_loss(&rm, p64, tokens, targets, B, T);
    TW_CHECK(fabs(metrics.loss - loss) <= LOSS_TOLERANCE * fabs(loss),
             "%s: float loss %.9f, double reference %.9f", label, metrics.loss, loss);

    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < tw_gpt_tensor_count(model); i++) {
        const tw_gpt_tensor *t = tw_gpt_tensor_at(model, i);
        size_t samples = samples_per_tensor > 0 && (size_t)samples_per_tensor < t->count
                             ? (size_t)samples_per_tensor : t->count;
        double max_numeric = 1e-3, max_error = 0.0;
        for (size_t s = 0; s < samples; s++) {
            size_t j = samples == t->count ? s : (size_t)tw_test_rng_int(&rng, (int)t->count);
            double *x = &p64[t->offset + j], saved = *x, h = 1e-5 * fmax(1.0, fabs(saved));
            *x = saved + h;
            double up = reference_loss(&rm, p64, tokens, targets, B, T);
            *x = saved - h;
            double down = reference_loss(&rm, p64, tokens, targets, B, T);
            *x = saved;
            double numeric = (up - down) / (2.0 * h);
            max_numeric = fmax(max_numeric, fabs(numeric));
            max_error = fmax(max_error, fabs(numeric - grads[t->offset + j]));
        }
        double relative = max_error / max_numeric;
        TW_CHECK(relative <= GRAD_TOLERANCE, "%s: %s gradient error %.2e (tolerance %.0e)", label,
                 t->name, relative, GRAD_TOLERANCE);
        if (relative > worst) {
            worst = relative;
            worst_name = t->name;
        }
    }
    printf("%-34s %zu params, loss %.6f (reference %.6f), worst gradient error %.2e in %s\n",
           label, P, metrics.loss, loss, worst, worst_name);
    free(params);
    free(grads);
    free(p64);
    free(tokens);
    free(targets);
    tw_gpt_destroy(model);
    tw_device_close(cpu);
}

/* Two layers that differ in every per-layer setting, attention width != n_embd. */
static void check_irregular_model(void) {
    tw_gpt_config config;
    TW_CHECK_OK(tw_gpt_config_uniform(13, 7, 2, 8, 2, &config));
    config.head_dim = 3;
    config.layers[0] = (tw_gpt_layer){.heads = 3, .mlp_hidden = 11, .attn_scale = 1.5f,
                                      .mlp_scale = 0.75f};
    config.layers[1] = (tw_gpt_layer){.heads = 2, .mlp_hidden = 5, .attn_scale = 0.5f,
                                      .mlp_scale = 2.0f};
    check_model("irregular 2-layer model (all)", &config, 2, 7, 0.5f, 0, 11);
}

static void check_nano_preset(void) {
    tw_gpt_config config;
    /* The nano preset's shapes with a small vocabulary, so the double reference stays fast. */
    TW_CHECK_OK(tw_gpt_config_preset("nano", 96, &config));
    check_model("nano preset, V=96 (sampled)", &config, 2, 9, 0.08f, 3, 12);
}

int main(void) {
    check_irregular_model();
    check_nano_preset();
    return tw_test_finish("model");
}
