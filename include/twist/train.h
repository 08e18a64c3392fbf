/* twist: training, evaluation, sampling and checkpoints of GPT models, above the backends.
 *
 * A checkpoint directory (see twist/checkpoint.h for the format and its crash safety) holds
 *   model.safetensors      parameters under Hugging Face GPT-2 names (opens in PyTorch)
 *   optimizer.safetensors  AdamW moments: "<name>.exp_avg", "<name>.exp_avg_sq"
 *   config.json            a Hugging Face GPT2Config, plus a "twist" section with the per-layer
 *                          heads, MLP widths and block scales
 *   state.json             step, data loader position, seed and the training options, so that
 *                          --resume continues exactly (bit for bit on the CPU)
 *   tokenizer.json         the Hugging Face tokenizer the model was trained with
 */
#ifndef TWIST_TRAIN_H
#define TWIST_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "twist/checkpoint.h"
#include "twist/data.h"
#include "twist/model.h"
#include "twist/optim.h"
#include "twist/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Model configuration as JSON                                                                */
/* ------------------------------------------------------------------------------------------ */

/* A Hugging Face GPT2Config (vocab_size, n_positions, n_embd, n_layer, n_head, n_inner, ...)
 * with a "twist" section for per-layer settings. *json is malloc'd. */
tw_status tw_gpt_config_to_json(const tw_gpt_config *config, int eot_id, char **json);
/* Parses config.json text; `source` names the file in messages. Without a "twist" section the
 * model is uniform (n_head heads of n_embd / n_head, n_inner or 4 n_embd units). */
tw_status tw_gpt_config_from_json(const char *json, const char *source, tw_gpt_config *out);

/* ------------------------------------------------------------------------------------------ */
/* Checkpoints of models                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Saves the model (and the optimizer's moments when opt is not NULL) with the given state JSON
 * ("{}" if NULL) and tokenizer to dir, atomically. */
tw_status tw_train_save(const char *dir, tw_gpt *model, tw_adamw *opt, const char *state_json,
                        const tw_tokenizer *tokenizer);

/* An opened model checkpoint: the model on `device`, its tokenizer, and the checkpoint itself
 * (for state.json). With want_optimizer, *opt gets AdamW moments and step restored (the AdamW
 * settings come from adam). Every tensor is checked against the config: a missing tensor or a
 * wrong shape is TW_ERR_FORMAT naming the file and the tensor. */
typedef struct tw_loaded_model {
    tw_gpt *model;
    tw_adamw *opt; /* NULL unless asked for */
    tw_tokenizer *tokenizer;
    tw_checkpoint *checkpoint;
} tw_loaded_model;

tw_status tw_train_load(const char *dir, tw_device *device, const tw_adamw_config *adam,
                        tw_loaded_model *out);
void tw_loaded_model_free(tw_loaded_model *loaded);

/* ------------------------------------------------------------------------------------------ */
/* Evaluation and sampling                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct tw_eval_result {
    double loss;       /* mean cross-entropy per token (nats) */
    double perplexity; /* exp(loss) */
    double accuracy;   /* next-token accuracy */
    long tokens;
} tw_eval_result;

/* Evaluates on the stream's sequential windows (every target counted once), at most max_batches
 * batches of (batch, seq_len) (0: the whole stream). */
tw_status tw_evaluate(tw_gpt *model, const int32_t *stream, size_t token_count, int batch,
                      int seq_len, int max_batches, tw_eval_result *out);

typedef struct tw_sample_options {
    int tokens;        /* new tokens to generate */
    float temperature; /* 0: greedy */
    int top_k;         /* 0: the whole vocabulary */
    uint64_t seed;
} tw_sample_options;

/* Appends sampled tokens to the prompt's, calling emit(context, id) for each new token
 * (stops early at end-of-text). The context window is the last max_seq_len tokens. */
tw_status tw_sample(tw_gpt *model, const int32_t *prompt, size_t prompt_length, int32_t eot_id,
                    const tw_sample_options *options,
                    void (*emit)(void *context, int32_t id), void *context);

/* ------------------------------------------------------------------------------------------ */
/* Training runs                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct tw_train_options {
    const char *device;         /* device spec */
    const char *data_path;      /* corpus; NULL: the built-in synthetic corpus (see below) */
    const char *tokenizer_path; /* an existing tokenizer.json; NULL: train one on the data */
    int vocab_size;             /* of a trained tokenizer */
    tw_gpt_config model;        /* vocab_size is replaced by the tokenizer's */
    int batch, grad_accum, steps;
    float lr, min_lr;
    int warmup;
    tw_adamw_config adamw;
    uint64_t seed;
    int log_every, eval_every, eval_batches, save_every;
    const char *out_dir;
    bool resume;
    /* Stop after this many steps of this invocation (0: run to `steps`); for tests of --resume
     * and for time-boxed runs. */
    int stop_after;
} tw_train_options;

/* Sensible defaults for everything but device, data, model and out_dir. */
tw_train_options tw_train_defaults(void);

typedef enum tw_report_kind {
    TW_REPORT_INFO = 0, /* a line of setup information in `message` */
    TW_REPORT_STEP,     /* a training step (every log_every steps and the last) */
    TW_REPORT_EVAL,     /* a validation pass */
    TW_REPORT_SAVE      /* a checkpoint written to `message` */
} tw_report_kind;

typedef struct tw_train_report {
    tw_report_kind kind;
    int step, total_steps;  /* steps done */
    double loss, accuracy;  /* the step's training batch */
    double lr, grad_norm;
    double tokens_per_s;    /* training tokens per second since this invocation started */
    double elapsed_s;
    tw_eval_result eval;    /* TW_REPORT_EVAL */
    const char *message;
} tw_train_report;

typedef void (*tw_train_report_fn)(void *context, const tw_train_report *report);

/* Trains per the options, reporting through report (may be NULL), and saves a checkpoint to
 * out_dir every save_every steps and at the end. With resume, continues the checkpoint in
 * out_dir: model, optimizer, step and data position, with the data and tokenizer it names. */
tw_status tw_train_run(const tw_train_options *options, tw_train_report_fn report,
                       void *context);

/* The built-in corpus used when no data is given: graded synthetic English (levels 0 and 1,
 * about `words` words in all), written once into the twist cache directory and reused. Writes
 * the file's path into path (capacity bytes). */
tw_status tw_default_corpus(size_t words, char *path, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif
