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

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "twist/checkpoint.h"
#include "twist/data.h"
#include "twist/memory.h"
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

/* The same, with model.safetensors stored as `model_dtype`: F32 (tw_train_save) or BF16 (half
 * the size; tensors of safetensors dtype "BF16", which PyTorch and twist open). With opt, a BF16
 * save also keeps the fp32 master weights in optimizer.safetensors ("<name>.master"), which
 * tw_train_load with an optimizer takes over the rounded model file: resuming stays exact. */
tw_status tw_train_save_as(const char *dir, tw_gpt *model, tw_adamw *opt, const char *state_json,
                           const tw_tokenizer *tokenizer, tw_dtype model_dtype);

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

/* The one set of training defaults. tw_train_defaults(), tw_dist_defaults() and the CLI's
 * flags and their help text (through TW_DEFAULT_TEXT) all take them from here. */
#define TW_TRAIN_DEFAULT_PRESET "tiny"
#define TW_TRAIN_DEFAULT_VOCAB 4096
#define TW_TRAIN_DEFAULT_BATCH 16
#define TW_TRAIN_DEFAULT_ACCUM 1
#define TW_TRAIN_DEFAULT_STEPS 1000
#define TW_TRAIN_DEFAULT_LR 1e-3
#define TW_TRAIN_DEFAULT_MIN_LR_DIVISOR 10 /* min_lr = lr / 10 */
#define TW_TRAIN_DEFAULT_WARMUP_MAX 100    /* warmup = min(100, steps / 10) */
#define TW_TRAIN_DEFAULT_SEED 1337
#define TW_TRAIN_DEFAULT_LOG_EVERY 10
#define TW_TRAIN_DEFAULT_EVAL_EVERY 250
#define TW_TRAIN_DEFAULT_EVAL_BATCHES 20
#define TW_TRAIN_DEFAULT_SAVE_EVERY 250
#define TW_TRAIN_DEFAULT_KEEP 1
/* "16" from 16: a default inside a help string literal. */
#define TW_DEFAULT_TEXT(value) TW_DEFAULT_TEXT_(value)
#define TW_DEFAULT_TEXT_(value) #value

/* The default warmup of a run of `steps` steps: min(TW_TRAIN_DEFAULT_WARMUP_MAX, steps / 10). */
int tw_train_default_warmup(int steps);

/* Options a caller set explicitly (tw_train_options.given), for --resume: a given option that
 * differs from the checkpoint's is refused, naming the flag and both values; an option not
 * given takes the checkpoint's value. Steps and keep may change on resume. */
enum {
    TW_TRAIN_GIVEN_BATCH = 1u << 0,
    TW_TRAIN_GIVEN_ACCUM = 1u << 1,
    TW_TRAIN_GIVEN_STEPS = 1u << 2,
    TW_TRAIN_GIVEN_LR = 1u << 3,
    TW_TRAIN_GIVEN_MIN_LR = 1u << 4,
    TW_TRAIN_GIVEN_WARMUP = 1u << 5,
    TW_TRAIN_GIVEN_WEIGHT_DECAY = 1u << 6,
    TW_TRAIN_GIVEN_CLIP = 1u << 7,
    TW_TRAIN_GIVEN_SEED = 1u << 8,
    TW_TRAIN_GIVEN_VOCAB = 1u << 9,
    TW_TRAIN_GIVEN_TOKENIZER = 1u << 10,
    TW_TRAIN_GIVEN_PRESET = 1u << 11, /* the model's shape as a whole (preset_name) */
    TW_TRAIN_GIVEN_LAYERS = 1u << 12,
    TW_TRAIN_GIVEN_EMBD = 1u << 13,
    TW_TRAIN_GIVEN_HEADS = 1u << 14,
    TW_TRAIN_GIVEN_MLP = 1u << 15,
    TW_TRAIN_GIVEN_SEQ_LEN = 1u << 16,
    TW_TRAIN_GIVEN_KEEP = 1u << 17,
    TW_TRAIN_GIVEN_PRECISION = 1u << 18,
};

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
    int log_every, eval_every, eval_batches;
    int save_every;             /* steps between checkpoints; 0: at the end only */
    int keep;                   /* checkpoints kept: the newest in out_dir, all of them also in
                                   out_dir/step-<9 digits>/ when > 1 (tw_checkpoint_snapshot) */
    const char *out_dir;
    /* out_dir may hold a checkpoint only with resume (continue it) or overwrite (replace it:
     * twist's files only; other files in out_dir stay). */
    bool resume, overwrite;
    uint32_t given;             /* TW_TRAIN_GIVEN_* (resume) */
    const char *preset_name;    /* for messages about TW_TRAIN_GIVEN_PRESET */
    /* Stop after this many steps of this invocation (0: run to `steps`); for tests of --resume
     * and for time-boxed runs. */
    int stop_after;
    /* A fresh run that starts from the weights of a checkpoint (e.g. one `twist grow` wrote)
     * instead of a random initialisation: the model config and the tokenizer are the
     * checkpoint's (model, vocab and tokenizer options are ignored). AdamW starts fresh (zero
     * moments, step 0) unless init_optimizer, which carries the checkpoint's moments and AdamW
     * step count (for bias correction) and fails if it has none. The run's own step, schedule
     * and data position start at 0 either way. NULL: random initialisation. */
    const char *init_dir;
    bool init_optimizer;
    /* When not NULL and nonzero (a signal handler sets it), the run stops after the current
     * step, saves a checkpoint and returns TW_OK; no step runs after it is seen. */
    volatile sig_atomic_t *stop;
    /* --device-memory: a cap on the training device (twist/memory.h), enforced by its
     * allocator. Before the model is allocated the run checks that the training state
     * (tw_training_memory_of at batch x max_seq_len) fits the cap, or the device's queried free
     * memory, and refuses naming both. A cap for another device is refused. */
    tw_memory_caps device_memory;
    /* --precision (twist/model.h, "Mixed precision"): the data type of activations, gradients
     * and the working copy of the weights, fp32 master weights and moments whatever it is.
     * precision_set false: tw_gpt_default_dtype of the device (a resumed run: the checkpoint's).
     * An F16 run scales its loss dynamically (tw_loss_scaler). A precision the device cannot
     * run is refused before any data is read, naming the device, the op and the type. */
    bool precision_set;
    tw_dtype precision;
    /* --save-dtype: model.safetensors as F32 (the zero default) or BF16 (tw_train_save_as). */
    tw_dtype save_dtype;
} tw_train_options;

/* Sensible defaults for everything but device, data, model and out_dir (the TW_TRAIN_DEFAULT_*
 * values; warmup from tw_train_default_warmup). */
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
    /* TW_REPORT_STEP: the run's precision, fp16's loss scale after this step (1 otherwise),
     * whether this step's update was skipped for an overflow and how many were so far. */
    tw_dtype precision;
    double loss_scale;
    bool skipped;
    long skipped_steps;
} tw_train_report;

typedef void (*tw_train_report_fn)(void *context, const tw_train_report *report);

/* Trains per the options, reporting through report (may be NULL), and saves a checkpoint to
 * out_dir every save_every steps, at the end, and when *stop is set. Before any work it takes
 * out_dir's lock (tw_checkpoint_lock_take: another run there is refused, naming its pid), which
 * also checks that out_dir can take checkpoints (writable, not a symbolic link, a twist
 * checkpoint or empty), and it checks the data (a validation split of at least one sequence).
 * A fresh run refuses an out_dir holding a checkpoint unless overwrite. With resume, continues
 * the checkpoint in out_dir: model, optimizer, step and data position, with the data (an
 * absolute path; data_path may name the same text elsewhere) and tokenizer it names; given
 * options must agree with the checkpoint's (see TW_TRAIN_GIVEN_*); a new `steps` total
 * recomputes the cosine schedule for it, which the run reports with the learning rate before
 * and after. */
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
