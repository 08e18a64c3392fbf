/* AdamW over the flat parameter buffer: two tw_adamw_step ops (decayed prefix, undecayed rest)
 * after a global-norm clip computed with tw_sum_sq. */
#include <math.h>
#include <stdlib.h>

#include "twist/profile.h"
#include "twist/error.h"
#include "twist/optim.h"

struct tw_adamw {
    tw_gpt *model;
    tw_adamw_config config;
    tw_buffer *m, *v;  /* (P) first and second moments */
    tw_buffer *norm;   /* (1) squared gradient norm */
    int steps;
};

tw_adamw_config tw_adamw_defaults(void) {
    tw_adamw_config config = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                              .weight_decay = (float)TW_ADAMW_DEFAULT_WEIGHT_DECAY,
                              .grad_clip = (float)TW_ADAMW_DEFAULT_CLIP};
    return config;
}

float tw_lr_at(const tw_lr_schedule *s, int step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return s->max_lr * (float)(step + 1) / (float)s->warmup_steps;
    if (step >= s->total_steps || s->total_steps <= s->warmup_steps) return s->min_lr;
    double progress = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    double cosine = 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
    return s->min_lr + (float)cosine * (s->max_lr - s->min_lr);
}

tw_status tw_adamw_create(tw_gpt *model, const tw_adamw_config *config, tw_adamw **out) {
    if (!model || !config || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_adamw_create: NULL argument");
    *out = NULL;
    if (!(config->beta1 >= 0.0f && config->beta1 < 1.0f) ||
        !(config->beta2 >= 0.0f && config->beta2 < 1.0f) || !(config->eps > 0.0f) ||
        !(config->weight_decay >= 0.0f) || !(config->grad_clip >= 0.0f))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "AdamW: betas must lie in [0, 1), eps > 0, weight decay and clip >= 0");
    tw_adamw *opt = calloc(1, sizeof *opt);
    if (!opt) return tw_error(TW_ERR_OUT_OF_MEMORY, "AdamW: out of host memory");
    opt->model = model;
    opt->config = *config;
    tw_device *device = tw_gpt_device(model);
    const size_t P = tw_gpt_param_count(model);
    tw_status status = tw_buffer_alloc(device, P * 4, &opt->m);
    if (status == TW_OK) status = tw_buffer_alloc(device, P * 4, &opt->v);
    if (status == TW_OK) status = tw_buffer_alloc(device, 4, &opt->norm);
    if (status == TW_OK) status = tw_buffer_fill_f32(opt->m, 0, P, 0.0f);
    if (status == TW_OK) status = tw_buffer_fill_f32(opt->v, 0, P, 0.0f);
    if (status != TW_OK) {
        tw_adamw_destroy(opt);
        return status;
    }
    *out = opt;
    return TW_OK;
}

void tw_adamw_destroy(tw_adamw *opt) {
    if (!opt) return;
    tw_buffer_free(opt->m);
    tw_buffer_free(opt->v);
    tw_buffer_free(opt->norm);
    free(opt);
}

int tw_adamw_steps(const tw_adamw *opt) { return opt->steps; }
tw_buffer *tw_adamw_first_moment(tw_adamw *opt) { return opt->m; }
tw_buffer *tw_adamw_second_moment(tw_adamw *opt) { return opt->v; }
void tw_adamw_set_steps(tw_adamw *opt, int steps) { opt->steps = steps; }

/* AdamW on parameters [begin, end) of the flat buffers. */
static tw_status step_range(tw_adamw *opt, const tw_adamw_args *args, size_t begin, size_t end) {
    if (end <= begin) return TW_OK;
    tw_gpt *model = opt->model;
    /* fp32 master weights and moments; the gradients in the model's type */
    return tw_adamw_step(tw_gpt_device(model), end - begin, args,
                         tw_at(tw_gpt_params(model), begin),
                         tw_at_typed(tw_gpt_grads(model), begin, tw_gpt_dtype(model)),
                         tw_at(opt->m, begin), tw_at(opt->v, begin));
}

tw_loss_scaler tw_loss_scaler_for(tw_dtype dtype) {
    tw_loss_scaler scaler = {.dynamic = dtype == TW_DTYPE_F16, .scale = 1.0f,
                             .growth_interval = TW_LOSS_SCALE_GROWTH_INTERVAL};
    if (scaler.dynamic) scaler.scale = (float)TW_LOSS_SCALE_INITIAL;
    return scaler;
}

tw_status tw_adamw_update(tw_adamw *opt, float lr, float *grad_norm) {
    return tw_adamw_update_scaled(opt, lr, NULL, grad_norm, NULL);
}

tw_status tw_adamw_update_scaled(tw_adamw *opt, float lr, tw_loss_scaler *scaler,
                                 float *grad_norm, bool *skipped) {
    if (skipped) *skipped = false;
    if (!opt) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_adamw_update: optimizer is NULL");
    if (!isfinite(lr) || lr < 0.0f)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "AdamW: learning rate %g is not finite and >= 0",
                        (double)lr);
    tw_gpt *model = opt->model;
    tw_device *device = tw_gpt_device(model);
    const size_t P = tw_gpt_param_count(model), decayed = tw_gpt_decay_count(model);
    float squared = 0.0f;
    tw_profile_where(-1, "adamw", NULL); /* profiler names: adamw.sum_sq, adamw.adamw_step */
    /* the sum of squares is fp32 whatever the gradients' type */
    tw_status status = tw_sum_sq(device, P, tw_at_typed(tw_gpt_grads(model), 0,
                                                        tw_gpt_dtype(model)),
                                 tw_at(opt->norm, 0));
    if (status == TW_OK) status = tw_buffer_download(opt->norm, 0, &squared, sizeof squared);
    if (status != TW_OK) return status;
    const bool dynamic = scaler && scaler->dynamic;
    if (dynamic && !isfinite(squared) && scaler->scale > 1.0f) {
        /* An overflow of the scaled fp16 gradients: skip this step, halve the scale. */
        scaler->scale *= 0.5f;
        scaler->good_steps = 0;
        scaler->skipped++;
        if (grad_norm) *grad_norm = INFINITY;
        if (skipped) *skipped = true;
        tw_profile_clear();
        return TW_OK;
    }
    /* The gradients hold loss_scale * dL/dw: the norm and the update divide it out. */
    const float unscale = dynamic ? 1.0f / scaler->scale : 1.0f;
    const float norm = dynamic ? sqrtf(squared) * unscale : sqrtf(squared);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "AdamW: the gradient norm is %g (the loss diverged); update skipped",
                        (double)norm);
    const float clip = opt->config.grad_clip;
    tw_adamw_args args = {.lr = lr, .beta1 = opt->config.beta1, .beta2 = opt->config.beta2,
                          .eps = opt->config.eps, .weight_decay = opt->config.weight_decay,
                          .grad_scale = clip > 0.0f && norm > clip ? clip / norm : 1.0f,
                          .step = opt->steps + 1};
    if (dynamic) args.grad_scale *= unscale;
    status = step_range(opt, &args, 0, decayed);
    args.weight_decay = 0.0f;
    if (status == TW_OK) status = step_range(opt, &args, decayed, P);
    if (status == TW_OK) opt->steps++;
    if (status == TW_OK && dynamic && ++scaler->good_steps >= scaler->growth_interval) {
        if (scaler->scale * 2.0f <= (float)TW_LOSS_SCALE_MAX) scaler->scale *= 2.0f;
        scaler->good_steps = 0;
    }
    tw_profile_clear();
    return status;
}
