/* The data, model and optimizer flags shared by `twist train`, `twist ist` and `twist dp`: one
 * table, one meaning, one way to turn them into a model config and AdamW settings. */
#ifndef TWIST_TOOLS_MODEL_FLAGS_H
#define TWIST_TOOLS_MODEL_FLAGS_H

#include "args.h"
#include "twist/model.h"
#include "twist/optim.h"

typedef struct model_flags {
    const char *data, *tokenizer;
    int vocab, preset, layers, embd, heads, mlp, seq_len;
    double lr, min_lr, weight_decay, clip;
} model_flags;

enum { MODEL_FLAG_COUNT = 13 };

/* The TW_TRAIN_DEFAULT_* and TW_ADAMW_DEFAULT_* values (twist/train.h, twist/optim.h). */
model_flags model_flags_defaults(void);

/* Writes the MODEL_FLAG_COUNT option specs that fill `flags` into specs[0, MODEL_FLAG_COUNT). */
void model_flag_specs(model_flags *flags, arg_spec *specs);

/* The model: the preset, then any dimension flag given (vocabulary 2 until the tokenizer sets
 * it). Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after a message naming the flag. */
int model_flags_config(const model_flags *flags, const args_command *command,
                       tw_gpt_config *out);

/* Learning rates and AdamW settings (min-lr defaults to lr / 10 and may not exceed lr). */
int model_flags_optimizer(const model_flags *flags, const char *prog, float *lr, float *min_lr,
                          tw_adamw_config *adamw);

#endif
