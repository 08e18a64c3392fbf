/* twist: AdamW with decoupled weight decay, global-norm gradient clipping, and a warmup plus
 * cosine learning-rate schedule, over a model's flat parameter and gradient buffers. */
#ifndef TWIST_OPTIM_H
#define TWIST_OPTIM_H

#include "twist/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_adamw_config {
    float beta1, beta2, eps;
    float weight_decay; /* applied to the tensors the model marks `decay` only */
    float grad_clip;    /* clip the global gradient norm to this; 0 turns clipping off */
} tw_adamw_config;

/* GPT-2 style defaults: betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip 1.0. The two a user
 * sets from the command line are named here, so the CLI's flags and help use the same values. */
#define TW_ADAMW_DEFAULT_WEIGHT_DECAY 0.1
#define TW_ADAMW_DEFAULT_CLIP 1.0
tw_adamw_config tw_adamw_defaults(void);

/* Linear warmup from 0 to max_lr over warmup_steps, then cosine decay to min_lr at
 * total_steps, and min_lr after. Steps count from 0. */
typedef struct tw_lr_schedule {
    float max_lr, min_lr;
    int warmup_steps, total_steps;
} tw_lr_schedule;

float tw_lr_at(const tw_lr_schedule *schedule, int step);

typedef struct tw_adamw tw_adamw;

/* First and second moments, zero, on the model's device, in the model's parameter layout. */
tw_status tw_adamw_create(tw_gpt *model, const tw_adamw_config *config, tw_adamw **out);
void tw_adamw_destroy(tw_adamw *opt);

/* One update from the model's gradients (already averaged over micro-batches):
 *   norm = ||g||_2 (all parameters), scale = min(1, clip / norm) when clipping,
 *   AdamW on the decayed prefix with weight decay, on the rest without.
 * Reads the norm back from the device (one float), returns it in *grad_norm if not NULL. */
tw_status tw_adamw_update(tw_adamw *opt, float lr, float *grad_norm);

/* Dynamic loss scaling, for fp16 training (tw_gpt_set_dtype with F16), whose gradients would
 * underflow: the loss gradient is multiplied by `scale` (tw_gpt_backward's loss_scale), AdamW
 * divides it out again (its grad_scale, and the reported norm). A step whose gradients hold an
 * inf or nan (their sum of squares, fp32, is not finite) is skipped: no update, the scale
 * halves. After growth_interval good steps in a row the scale doubles. Not dynamic (fp32,
 * bf16): scale 1, nothing skipped, a non-finite norm is the divergence error it always was. */
#define TW_LOSS_SCALE_INITIAL 65536.0 /* 2^16, as PyTorch's GradScaler */
#define TW_LOSS_SCALE_GROWTH_INTERVAL 1000
#define TW_LOSS_SCALE_MAX 16777216.0 /* 2^24 */
typedef struct tw_loss_scaler {
    bool dynamic;
    float scale;
    int growth_interval;
    int good_steps; /* updates since the last skip or growth */
    long skipped;   /* steps skipped for non-finite gradients so far */
} tw_loss_scaler;

/* Dynamic for F16, static 1 otherwise. */
tw_loss_scaler tw_loss_scaler_for(tw_dtype dtype);

/* tw_adamw_update with a loss scaler (NULL: as tw_adamw_update). *skipped (may be NULL) tells
 * whether the step was skipped for an overflow (then TW_OK, *grad_norm inf, the weights and
 * moments untouched, the scaler updated). Fails as tw_adamw_update does on a non-finite norm
 * when the scaler is not dynamic or the scale is already down to 1. */
tw_status tw_adamw_update_scaled(tw_adamw *opt, float lr, tw_loss_scaler *scaler,
                                 float *grad_norm, bool *skipped);

/* Steps taken so far (AdamW's bias-correction counter). */
int tw_adamw_steps(const tw_adamw *opt);
/* Moments, for checkpoints: buffers in the model's parameter layout. */
tw_buffer *tw_adamw_first_moment(tw_adamw *opt);
tw_buffer *tw_adamw_second_moment(tw_adamw *opt);
/* Restores the step counter after loading moments from a checkpoint. */
void tw_adamw_set_steps(tw_adamw *opt, int steps);

#ifdef __cplusplus
}
#endif

#endif
