/* twist: the GPT-2 style decoder, written once above the backend interface.
 *
 *   tokens (B, T) -> wte[tokens] + wpe[t]                                   residual (B, T, C)
 *   per layer l:  x += attn_scale_l * (attention(ln_1(x)) @ W_attn_proj) + b_attn_proj
 *                 x += mlp_scale_l  * (gelu(ln_2(x) @ W_fc + b_fc) @ W_mlp_proj) + b_mlp_proj
 *   logits (B, T, V) = ln_f(x) @ wte^T  (unembedding tied to the token embedding)
 *
 * Every layer has its own number of heads (of one common head_dim) and its own MLP width, and
 * each block output carries a scale on its matrix product (not on its bias, so a subnet that
 * keeps a fraction p of a block and scales by 1/p keeps the full model's output in
 * expectation). Independent subnetwork training and model growth are then just models with
 * other numbers here.
 *
 * Parameters use Hugging Face GPT-2 names and layouts (Conv1D weights stored (in, out)), so a
 * checkpoint opens in PyTorch. They live in one device buffer, gradients in another of the same
 * layout; forward and backward enqueue backend ops only, with the tokens uploaded at the start
 * of a step and nothing read back until the caller asks for the metrics. */
#ifndef TWIST_MODEL_H
#define TWIST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* TW_GPT_MAX_SCALE bounds attn_scale and mlp_scale: an IST subnet keeping one head of the widest
 * layer (65536 heads of width 1) scales its block by at most that much. */
enum { TW_GPT_MAX_LAYERS = 128, TW_GPT_NAME_MAX = 64, TW_GPT_MAX_SCALE = 65536 };

typedef struct tw_gpt_layer {
    int heads;        /* attention heads of head_dim each: attention width A = heads * head_dim */
    int mlp_hidden;   /* MLP hidden units M (4 * n_embd in GPT-2) */
    float attn_scale; /* multiplies the attention block's projection (1 in a plain model) */
    float mlp_scale;  /* multiplies the MLP block's projection (1 in a plain model) */
} tw_gpt_layer;

typedef struct tw_gpt_config {
    int vocab_size;    /* V */
    int max_seq_len;   /* rows of wpe: the longest T a forward pass accepts */
    int n_layer;
    int n_embd;        /* C */
    int head_dim;      /* D */
    float layernorm_eps;
    tw_gpt_layer layers[TW_GPT_MAX_LAYERS];
} tw_gpt_config;

/* A uniform model: every layer gets n_head heads of n_embd / n_head and 4 * n_embd MLP units,
 * scales 1. Fails when n_embd is not a multiple of n_head or a size is out of range. */
tw_status tw_gpt_config_uniform(int vocab_size, int max_seq_len, int n_layer, int n_embd,
                                int n_head, tw_gpt_config *out);

/* Named presets ("nano", "tiny", "small") for a given vocabulary; see src/model/gpt_config.c. */
tw_status tw_gpt_config_preset(const char *name, int vocab_size, tw_gpt_config *out);
/* The preset names, NULL-terminated, for help texts. */
const char *const *tw_gpt_preset_names(void);

/* Checks every field; the message names the field and the layer. */
tw_status tw_gpt_config_validate(const tw_gpt_config *config);

/* One parameter tensor of the flat parameter buffer. 2-D tensors are (shape[0], shape[1])
 * row-major; 1-D tensors have shape[1] == 1 and ndim == 1. */
typedef struct tw_gpt_tensor {
    char name[TW_GPT_NAME_MAX]; /* "transformer.h.0.attn.c_attn.weight" */
    int ndim;
    int shape[2];
    size_t offset; /* in floats, in the parameter (and gradient, and optimizer) buffers */
    size_t count;
    bool decay;    /* takes weight decay: the matrices and embeddings, not biases or LayerNorms */
} tw_gpt_tensor;

/* The parameter layout of a config: tensors in buffer order, decayed ones first. The caller owns
 * *tensors (free()). */
tw_status tw_gpt_layout(const tw_gpt_config *config, tw_gpt_tensor **tensors, int *count,
                        size_t *param_count, size_t *decay_count);

typedef struct tw_gpt tw_gpt;

/* Allocates parameters and gradients on the device (activations follow on the first forward).
 * Parameters are uninitialised until tw_gpt_init_params or an upload. */
tw_status tw_gpt_create(tw_device *device, const tw_gpt_config *config, tw_gpt **out);
void tw_gpt_destroy(tw_gpt *model);

const tw_gpt_config *tw_gpt_get_config(const tw_gpt *model);
tw_device *tw_gpt_device(const tw_gpt *model);
size_t tw_gpt_param_count(const tw_gpt *model);
/* Parameters with weight decay form the prefix [0, decay_count) of the buffers. */
size_t tw_gpt_decay_count(const tw_gpt *model);
int tw_gpt_tensor_count(const tw_gpt *model);
const tw_gpt_tensor *tw_gpt_tensor_at(const tw_gpt *model, int index);
/* The tensor of that name, or NULL. */
const tw_gpt_tensor *tw_gpt_find_tensor(const tw_gpt *model, const char *name);
tw_buffer *tw_gpt_params(tw_gpt *model);
tw_buffer *tw_gpt_grads(tw_gpt *model);

/* GPT-2 initialisation from a seeded host RNG (the same values on every device): weights and
 * embeddings N(0, 0.02), wpe N(0, 0.01), the two output projections of each block
 * N(0, 0.02 / sqrt(2 n_layer)), biases 0, LayerNorm weights 1. */
tw_status tw_gpt_init_params(tw_gpt *model, uint64_t seed);

/* Forward pass over tokens (B, T) int32 in [0, V), T <= max_seq_len. With targets (B, T) (a
 * target < 0 is ignored), also the per-token cross-entropy, kept for tw_gpt_metrics and
 * tw_gpt_backward. Token and target values are checked on the host. */
tw_status tw_gpt_forward(tw_gpt *model, const int32_t *tokens, const int32_t *targets, int batch,
                         int seq_len);

typedef struct tw_gpt_metrics {
    double loss;     /* mean cross-entropy over the counted tokens (nats) */
    double accuracy; /* fraction of counted tokens whose target was the argmax */
    long tokens;     /* tokens with a target >= 0 */
} tw_gpt_metrics;

/* Reads back the loss and accuracy of the last forward pass with targets (waits for it). */
tw_status tw_gpt_metrics_read(tw_gpt *model, tw_gpt_metrics *out);

/* Logits (V) of batch row b at position t of the last forward pass (waits for it). */
tw_status tw_gpt_logits_read(tw_gpt *model, int b, int t, float *out);

/* Backward pass of the last forward pass with targets: ADDS d(loss_scale * mean loss)/d(param)
 * into the gradient buffer (so micro-batches accumulate; pass loss_scale = 1 / micro-batches,
 * times fp16's dynamic loss scale where there is one). */
tw_status tw_gpt_backward(tw_gpt *model, float loss_scale);

/* Sets every gradient to 0. */
tw_status tw_gpt_zero_grad(tw_gpt *model);

/* Bytes of activations and scratch currently held for the largest (B, T) seen so far. */
size_t tw_gpt_activation_bytes(const tw_gpt *model);

/* ------------------------------------------------------------------------------------------ */
/* Mixed precision                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* A model runs in fp32 (the default) or, after tw_gpt_set_dtype, in bf16 or f16: activations,
 * their gradients, a working copy of the weights and the weight gradients (tw_gpt_grads) in that
 * type, while tw_gpt_params stays the fp32 master weights that AdamW updates, checkpoints save
 * and IST exchanges. The working copy is converted from the master (tw_convert) at the first
 * forward pass after tw_gpt_params was called (whoever takes the buffer may have written it) or
 * the parameters were initialised. The ops keep LayerNorm statistics, attention and cross-entropy
 * log-sum-exps, losses and the gradient norm in fp32 and accumulate GEMMs in fp32. */

/* Whether `device` runs every op of a training step (and the f32 -> dtype conversion) in
 * `dtype`: TW_OK, or TW_ERR_UNSUPPORTED naming the device, the first op missing and the type.
 * F32 always passes; other types than F32, BF16 and F16 are TW_ERR_INVALID_ARGUMENT. */
tw_status tw_gpt_check_dtype(tw_device *device, tw_dtype dtype);

/* Switches the model's data type (checked with tw_gpt_check_dtype first): new gradient and
 * working-copy buffers (gradients start undefined: zero them), activations laid out again at
 * the next forward. The master weights are kept. */
tw_status tw_gpt_set_dtype(tw_gpt *model, tw_dtype dtype);
tw_dtype tw_gpt_dtype(const tw_gpt *model);

/* The gradients (param_count) as fp32 on the host, widened from the model's type; and back,
 * rounded to nearest even (data-parallel averaging works on these). */
tw_status tw_gpt_grads_download(tw_gpt *model, float *out);
tw_status tw_gpt_grads_upload(tw_gpt *model, const float *grads);

/* The precision a run takes when none is asked for: bf16 where the device has a fast
 * low-precision path that twist uses (a CUDA device of compute capability 8.0 or later, whose
 * tensor cores run bf16 GEMMs, and whose backend runs every model op in bf16), else fp32: on
 * CPUs, PoCL, lavapipe and GPUs without bf16 matrix units, bf16 storage saves memory but no
 * time. *why gets a short reason for `twist devices` (may be NULL). */
tw_dtype tw_gpt_default_dtype(tw_device *device, const char **why);

#ifdef __cplusplus
}
#endif

#endif
