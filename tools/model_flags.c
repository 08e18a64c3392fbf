/* The data, model and optimizer flags shared by the training commands (model_flags.h). */
#include "model_flags.h"

#include <string.h>

#include "cli.h"
#include "twist/train.h"

model_flags model_flags_defaults(void) {
    int preset = 0;
    for (int i = 0; tw_gpt_preset_names()[i]; i++)
        if (!strcmp(tw_gpt_preset_names()[i], TW_TRAIN_DEFAULT_PRESET)) preset = i;
    return (model_flags){.vocab = TW_TRAIN_DEFAULT_VOCAB, .preset = preset,
                         .lr = TW_TRAIN_DEFAULT_LR, .min_lr = -1,
                         .weight_decay = TW_ADAMW_DEFAULT_WEIGHT_DECAY,
                         .clip = TW_ADAMW_DEFAULT_CLIP};
}

void model_flag_specs(model_flags *f, arg_spec *specs) {
    const arg_spec table[MODEL_FLAG_COUNT] = {
        {.name = "--data", .kind = ARG_STRING, .dest = &f->data, .metavar = "FILE",
         .help = "training corpus (default: built-in graded synthetic English)"},
        {.name = "--tokenizer", .kind = ARG_STRING, .dest = &f->tokenizer, .metavar = "FILE",
         .help = "tokenizer.json to use (default: train one on the data)"},
        {.name = "--vocab", .kind = ARG_INT, .dest = &f->vocab, .metavar = "N",
         .help = "vocabulary of a trained tokenizer (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_VOCAB) ")",
         .min = 257, .max = 1 << 20},
        {.name = "--preset", .kind = ARG_CHOICE, .dest = &f->preset, .metavar = "NAME",
         .help = "model preset: nano, tiny, small (default " TW_TRAIN_DEFAULT_PRESET ")",
         .choices = tw_gpt_preset_names()},
        {.name = "--layers", .kind = ARG_INT, .dest = &f->layers, .metavar = "N",
         .help = "transformer blocks (overrides the preset)", .min = 1, .max = TW_GPT_MAX_LAYERS},
        {.name = "--embd", .kind = ARG_INT, .dest = &f->embd, .metavar = "C",
         .help = "model width (overrides the preset)", .min = 1, .max = 65536},
        {.name = "--heads", .kind = ARG_INT, .dest = &f->heads, .metavar = "H",
         .help = "attention heads per block (overrides the preset)", .min = 1, .max = 4096},
        {.name = "--mlp", .kind = ARG_INT, .dest = &f->mlp, .metavar = "M",
         .help = "MLP hidden units per block (default 4 x embd)", .min = 1, .max = 1 << 18},
        {.name = "--seq-len", .kind = ARG_INT, .dest = &f->seq_len, .metavar = "T",
         .help = "sequence length (overrides the preset)", .min = 1, .max = 1 << 20},
        {.name = "--lr", .kind = ARG_FLOAT, .dest = &f->lr, .metavar = "LR",
         .help = "peak learning rate (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_LR) ")",
         .min_real = 1e-12, .max_real = 10},
        {.name = "--min-lr", .kind = ARG_FLOAT, .dest = &f->min_lr, .metavar = "LR",
         .help = "final learning rate (default lr / " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_MIN_LR_DIVISOR) ")",
         .min_real = 0, .max_real = 10},
        {.name = "--weight-decay", .kind = ARG_FLOAT, .dest = &f->weight_decay, .metavar = "W",
         .help = "AdamW weight decay (default " TW_DEFAULT_TEXT(TW_ADAMW_DEFAULT_WEIGHT_DECAY) ")",
         .min_real = 0, .max_real = 10},
        {.name = "--clip", .kind = ARG_FLOAT, .dest = &f->clip, .metavar = "NORM",
         .help = "gradient norm clip, 0 for none (default " TW_DEFAULT_TEXT(TW_ADAMW_DEFAULT_CLIP) ")",
         .min_real = 0, .max_real = 1e6},
    };
    memcpy(specs, table, sizeof table);
}

int model_flags_config(const model_flags *f, const args_command *command, tw_gpt_config *out) {
    tw_gpt_config preset;
    tw_gpt_config_preset(tw_gpt_preset_names()[f->preset], 2, &preset);
    int layers = args_given(command, "--layers") ? f->layers : preset.n_layer;
    int embd = args_given(command, "--embd") ? f->embd : preset.n_embd;
    int heads = args_given(command, "--heads") ? f->heads : preset.layers[0].heads;
    int seq_len = args_given(command, "--seq-len") ? f->seq_len : preset.max_seq_len;
    if (embd % heads != 0)
        return args_usage_error(command->name, "--embd %d must be a multiple of --heads %d",
                                embd, heads);
    if (tw_gpt_config_uniform(2, seq_len, layers, embd, heads, out) != TW_OK)
        return args_usage_error(command->name, "%s", tw_last_error());
    if (args_given(command, "--mlp"))
        for (int l = 0; l < out->n_layer; l++) out->layers[l].mlp_hidden = f->mlp;
    return CLI_EXIT_OK;
}

int model_flags_optimizer(const model_flags *f, const char *prog, float *lr, float *min_lr,
                          tw_adamw_config *adamw) {
    *lr = (float)f->lr;
    *min_lr = f->min_lr >= 0 ? (float)f->min_lr
                             : (float)f->lr / (float)TW_TRAIN_DEFAULT_MIN_LR_DIVISOR;
    if (*min_lr > *lr)
        return args_usage_error(prog, "--min-lr %g exceeds --lr %g", f->min_lr, f->lr);
    adamw->weight_decay = (float)f->weight_decay;
    adamw->grad_clip = (float)f->clip;
    return CLI_EXIT_OK;
}
