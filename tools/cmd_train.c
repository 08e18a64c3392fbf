/* `twist train`, `twist eval` and `twist sample`: the GPT training commands. The work is in the
 * library (twist/train.h); this file parses options and shows progress: one line per log step
 * (with a progress bar below the last line on a terminal), and records (output.h): --json on
 * stdout or in a file, and always metrics.jsonl and log.txt in the checkpoint directory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "device_memory_flag.h"
#include "cli.h"
#include "cli_profile.h"
#include "model_flags.h"
#include "output.h"
#include "precision_flag.h"
#include "stop_signals.h"
#include "twist/train.h"

/* ---- progress output ------------------------------------------------------------------- */

typedef struct progress {
    output *out;
    bool terminal; /* stdout is a terminal and shows the text: a progress bar under the lines */
    bool bar_open; /* a progress bar line is on screen without its newline */
    bool saved;    /* a checkpoint was saved in this invocation */
    int saved_step; /* step of the last checkpoint saved, -1 if none */
} progress;

static void format_duration(double seconds, char *buf, size_t size) {
    if (!(seconds >= 0.0) || seconds > 1e7) {
        snprintf(buf, size, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60) snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, size, "%lds", s);
}

/* Erases the bar so that the next text line takes its place: lines are never overwritten. */
static void end_bar(progress *p) {
    if (p->bar_open) fputs("\r\033[K", stdout);
    p->bar_open = false;
}

/* The bar below the last line, redrawn at each reported step (terminal only). */
static void draw_bar(progress *p, const tw_train_report *r, const char *eta) {
    enum { WIDTH = 24 };
    int filled = r->total_steps ? (int)((double)WIDTH * r->step / r->total_steps) : WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    printf("[%s] step %d/%d  ETA %s", bar, r->step, r->total_steps, eta);
    fflush(stdout);
    p->bar_open = true;
}

static void show_step(progress *p, const tw_train_report *r) {
    double remaining = r->tokens_per_s > 0 && r->step > 0
                           ? r->elapsed_s / r->step * (r->total_steps - r->step) : -1.0;
    char eta[32], elapsed[32];
    format_duration(remaining, eta, sizeof eta);
    format_duration(r->elapsed_s, elapsed, sizeof elapsed);
    cJSON *record = output_new(p->out, "step");
    tw_record_int(record, "step", r->step);
    tw_record_int(record, "steps", r->total_steps);
    tw_record_number(record, "loss", r->loss);
    tw_record_number(record, "accuracy", r->accuracy);
    tw_record_number(record, "lr", r->lr);
    tw_record_number(record, "grad_norm", r->grad_norm);
    tw_record_number(record, "tokens_per_s", r->tokens_per_s);
    tw_record_number(record, "elapsed_s", r->elapsed_s);
    if (r->precision != TW_DTYPE_F32)
        tw_record_string(record, "precision", r->precision == TW_DTYPE_F16 ? "fp16" : "bf16");
    if (r->precision == TW_DTYPE_F16) {
        /* fp16's dynamic loss scaling: the scale after this step, steps skipped so far */
        tw_record_number(record, "loss_scale", r->loss_scale);
        tw_record_int(record, "skipped_steps", r->skipped_steps);
    }
    output_record(p->out, record);
    end_bar(p);
    output_line(p->out,
                "step %d/%d  loss %.4f  acc %.3f  lr %.2e  grad norm %.3f  %.0f tok/s  "
                "elapsed %s  ETA %s",
                r->step, r->total_steps, r->loss, r->accuracy, r->lr, r->grad_norm,
                r->tokens_per_s, elapsed, eta);
    if (p->terminal && r->step < r->total_steps) draw_bar(p, r, eta);
}

/* The "eval" record of a validation pass (twist train and twist eval alike). */
static void record_eval(output *out, int step, const char *split, const tw_eval_result *e,
                        double elapsed_s) {
    cJSON *record = output_new(out, "eval");
    if (step >= 0) tw_record_int(record, "step", step);
    tw_record_string(record, "split", split);
    tw_record_number(record, "loss", e->loss);
    tw_record_number(record, "perplexity", e->perplexity);
    tw_record_number(record, "accuracy", e->accuracy);
    tw_record_int(record, "tokens", e->tokens);
    if (elapsed_s >= 0) tw_record_number(record, "elapsed_s", elapsed_s);
    output_record(out, record);
}

static void show_report(void *context, const tw_train_report *r) {
    progress *p = context;
    end_bar(p);
    switch (r->kind) {
    case TW_REPORT_STEP: show_step(p, r); break;
    case TW_REPORT_EVAL:
        record_eval(p->out, r->step, "val", &r->eval, r->elapsed_s);
        output_line(p->out, "step %d: validation loss %.4f, perplexity %.6g, accuracy %.3f "
                    "(%ld tokens)",
                    r->step, r->eval.loss, r->eval.perplexity, r->eval.accuracy, r->eval.tokens);
        break;
    case TW_REPORT_SAVE: {
        cJSON *record = output_new(p->out, "save");
        tw_record_int(record, "step", r->step);
        tw_record_string(record, "path", r->message);
        output_record(p->out, record);
        output_line(p->out, "step %d: checkpoint saved to %s", r->step, r->message);
        /* the directory now exists (or was replaced): its metrics.jsonl and log.txt hold the
         * whole history from here on */
        p->saved = true;
        p->saved_step = r->step;
        output_sync(p->out);
        break;
    }
    case TW_REPORT_INFO: output_line(p->out, "%s", r->message); break;
    }
}

/* ---- twist train ----------------------------------------------------------------------- */

typedef struct train_cli {
    const char *device, *out;
    model_flags model;
    int batch, accum, steps, warmup, seed, log_every, eval_every, eval_batches, save_every;
    int keep, stop_after, precision, save_dtype;
    bool resume, overwrite, init_optimizer;
    const char *json, *init;
    arg_string_list device_memory;
} train_cli;

/* Flags whose value a resumed run must not contradict, with their TW_TRAIN_GIVEN_* bit. */
static const struct {
    const char *flag;
    uint32_t bit;
} k_given_flags[] = {
    {"--batch", TW_TRAIN_GIVEN_BATCH},     {"--accum", TW_TRAIN_GIVEN_ACCUM},
    {"--steps", TW_TRAIN_GIVEN_STEPS},     {"--lr", TW_TRAIN_GIVEN_LR},
    {"--min-lr", TW_TRAIN_GIVEN_MIN_LR},   {"--warmup", TW_TRAIN_GIVEN_WARMUP},
    {"--weight-decay", TW_TRAIN_GIVEN_WEIGHT_DECAY}, {"--clip", TW_TRAIN_GIVEN_CLIP},
    {"--seed", TW_TRAIN_GIVEN_SEED},       {"--vocab", TW_TRAIN_GIVEN_VOCAB},
    {"--tokenizer", TW_TRAIN_GIVEN_TOKENIZER}, {"--preset", TW_TRAIN_GIVEN_PRESET},
    {"--layers", TW_TRAIN_GIVEN_LAYERS},   {"--embd", TW_TRAIN_GIVEN_EMBD},
    {"--heads", TW_TRAIN_GIVEN_HEADS},     {"--mlp", TW_TRAIN_GIVEN_MLP},
    {"--seq-len", TW_TRAIN_GIVEN_SEQ_LEN}, {"--keep", TW_TRAIN_GIVEN_KEEP},
    {"--precision", TW_TRAIN_GIVEN_PRECISION},
};

int cmd_train(int argc, char **argv) {
    train_cli c = {.device = "auto", .model = model_flags_defaults(),
                   .batch = TW_TRAIN_DEFAULT_BATCH, .accum = TW_TRAIN_DEFAULT_ACCUM,
                   .steps = TW_TRAIN_DEFAULT_STEPS, .warmup = -1, .seed = TW_TRAIN_DEFAULT_SEED,
                   .log_every = TW_TRAIN_DEFAULT_LOG_EVERY,
                   .eval_every = TW_TRAIN_DEFAULT_EVAL_EVERY,
                   .eval_batches = TW_TRAIN_DEFAULT_EVAL_BATCHES,
                   .save_every = TW_TRAIN_DEFAULT_SAVE_EVERY, .keep = TW_TRAIN_DEFAULT_KEEP};
    const char *profile = NULL;
    arg_spec own[] = {
        {.name = "--device", .kind = ARG_STRING, .dest = &c.device, .metavar = "SPEC",
         .help = "device: auto, cpu, opencl:N, vulkan:N, cuda:N (default auto: the best GPU, else cpu)"},
        {.name = "--batch", .kind = ARG_INT, .dest = &c.batch, .metavar = "B",
         .help = "sequences per micro-batch (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_BATCH) ")",
         .min = 1, .max = 1 << 20},
        {.name = "--accum", .kind = ARG_INT, .dest = &c.accum, .metavar = "K",
         .help = "micro-batches per step (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_ACCUM) ")",
         .min = 1, .max = 1 << 16},
        {.name = "--steps", .kind = ARG_INT, .dest = &c.steps, .metavar = "N",
         .help = "optimizer steps in all (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_STEPS)
                 "; with --resume: a new total, the cosine schedule recomputed for it)",
         .min = 1, .max = 1 << 30},
        {.name = "--warmup", .kind = ARG_INT, .dest = &c.warmup, .metavar = "N",
         .help = "linear warmup steps (default min(" TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_WARMUP_MAX)
                 ", steps / 10))", .min = 0, .max = 1 << 30},
        {.name = "--seed", .kind = ARG_INT, .dest = &c.seed, .metavar = "S",
         .help = "seed of initialisation and batches (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_SEED) ")", .min = 0, .max = 2147483647},
        {.name = "--log-every", .kind = ARG_INT, .dest = &c.log_every, .metavar = "N",
         .help = "steps between log lines (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_LOG_EVERY)
                 ")", .min = 1, .max = 1 << 30},
        {.name = "--eval-every", .kind = ARG_INT, .dest = &c.eval_every, .metavar = "N",
         .help = "steps between validation passes, 0 for the end only (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_EVAL_EVERY) ")", .min = 0, .max = 1 << 30},
        {.name = "--eval-batches", .kind = ARG_INT, .dest = &c.eval_batches, .metavar = "N",
         .help = "validation batches per pass, 0 for all (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_EVAL_BATCHES) ")", .min = 0, .max = 1 << 30},
        {.name = "--save-every", .kind = ARG_INT, .dest = &c.save_every, .metavar = "N",
         .help = "steps between checkpoints, 0 for the end only (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_SAVE_EVERY) ")", .min = 0, .max = 1 << 30},
        {.name = "--keep", .kind = ARG_INT, .dest = &c.keep, .metavar = "N",
         .help = "checkpoints kept: the newest in --out, and with N > 1 the N newest also in "
                 "--out/step-NNNNNNNNN/ (hard links) (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_KEEP) ")", .min = 1, .max = 1000000},
        {.name = "--stop-after", .kind = ARG_INT, .dest = &c.stop_after, .metavar = "N",
         .help = "stop (and save) after N steps of this invocation", .min = 1, .max = 1 << 30},
        {.name = "--out", .kind = ARG_STRING, .dest = &c.out, .metavar = "DIR",
         .help = "checkpoint directory (new or empty, or with --resume / --overwrite)",
         .required = true},
        {.name = "--resume", .kind = ARG_FLAG, .dest = &c.resume,
         .help = "continue the checkpoint in --out (same data, options and position)"},
        {.name = "--overwrite", .kind = ARG_FLAG, .dest = &c.overwrite,
         .help = "replace the checkpoint in --out with a new run (twist's files only)"},
        {.name = "--init", .kind = ARG_STRING, .dest = &c.init, .metavar = "DIR",
         .help = "start from this checkpoint's weights, config and tokenizer (e.g. one twist "
                 "grow wrote) instead of a random model; AdamW starts fresh"},
        {.name = "--init-optimizer", .kind = ARG_FLAG, .dest = &c.init_optimizer,
         .help = "with --init: carry the checkpoint's AdamW moments and step count too (fails "
                 "if it has none, as after twist grow --op depth or combine)"},
        output_json_spec(&c.json, "records (JSON lines: steps, validation passes, saves) on "
                                  "stdout instead of the text, or appended to FILE"),
        cli_profile_spec(&profile), /* read by cli_profile_run (twist.c) */
        device_memory_spec(&c.device_memory),
        precision_spec(&c.precision),
        save_dtype_spec(&c.save_dtype),
    };
    enum { OWN_COUNT = sizeof own / sizeof own[0] };
    arg_spec specs[MODEL_FLAG_COUNT + OWN_COUNT];
    model_flag_specs(&c.model, specs);
    memcpy(specs + MODEL_FLAG_COUNT, own, sizeof own);
    args_command command = {"twist train",
                            "twist train [--device SPEC] [--data FILE] [--preset NAME] "
                            "[--steps N] --out DIR [--resume | --overwrite] [options]",
                            "Trains a GPT model and saves a checkpoint (safetensors with Hugging "
                            "Face GPT-2 names, config, optimizer state, tokenizer) to --out. "
                            "SIGINT, SIGTERM or SIGHUP stops after the current step with a "
                            "checkpoint saved (exit 130, 143, 129); a second signal aborts.",
                            specs, MODEL_FLAG_COUNT + OWN_COUNT};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (c.resume && c.overwrite)
        return args_usage_error(command.name, "--resume and --overwrite exclude each other");

    if (c.init_optimizer && !c.init)
        return args_usage_error(command.name, "--init-optimizer needs --init DIR");
    if (c.init) {
        /* The model and its tokenizer are the checkpoint's: flags that set them contradict it. */
        static const char *const init_excludes[] = {"--preset", "--layers", "--embd", "--heads",
                                                  "--mlp", "--seq-len", "--vocab", "--tokenizer",
                                                  "--resume"};
        for (size_t i = 0; i < sizeof init_excludes / sizeof init_excludes[0]; i++)
            if (args_given(&command, init_excludes[i]))
                return args_usage_error(command.name,
                                        "--init %s takes the model, sequence length and "
                                        "tokenizer from that checkpoint: drop %s",
                                        c.init, init_excludes[i]);
    }

    tw_train_options o = tw_train_defaults();
    int code = model_flags_config(&c.model, &command, &o.model);
    if (code == CLI_EXIT_OK)
        code = model_flags_optimizer(&c.model, command.name, &o.lr, &o.min_lr, &o.adamw);
    if (code != CLI_EXIT_OK) return code;
    o.device = c.device;
    code = device_memory_caps(command.name, &c.device_memory, &o.device, 1, &o.device_memory);
    if (code != CLI_EXIT_OK) return code;
    o.data_path = c.model.data;
    o.tokenizer_path = c.model.tokenizer;
    o.vocab_size = c.model.vocab;
    o.batch = c.batch;
    o.grad_accum = c.accum;
    o.steps = c.steps;
    o.warmup = c.warmup >= 0 ? c.warmup : tw_train_default_warmup(c.steps);
    o.seed = (uint64_t)c.seed;
    o.log_every = c.log_every;
    o.eval_every = c.eval_every;
    o.eval_batches = c.eval_batches;
    o.save_every = c.save_every;
    o.keep = c.keep;
    o.stop_after = c.stop_after;
    o.out_dir = c.out;
    o.resume = c.resume;
    o.overwrite = c.overwrite;
    o.init_dir = c.init;
    o.init_optimizer = c.init_optimizer;
    o.preset_name = tw_gpt_preset_names()[c.model.preset];
    o.precision_set = precision_dtype(c.precision, &o.precision);
    o.save_dtype = save_dtype_of(c.save_dtype);
    for (size_t i = 0; i < sizeof k_given_flags / sizeof k_given_flags[0]; i++)
        if (args_given(&command, k_given_flags[i].flag)) o.given |= k_given_flags[i].bit;
    o.stop = stop_signals_catch(command.name, "step");

    output out;
    code = output_open(&out, command.name, "train", c.json);
    if (code == CLI_EXIT_OK) code = output_open_run_log(&out, c.out, c.resume);
    if (code != CLI_EXIT_OK) return output_close(&out, code);
    progress p = {.out = &out, .terminal = out.text && isatty(STDOUT_FILENO) != 0,
                  .saved_step = -1};
    tw_status status = tw_train_run(&o, show_report, &p);
    end_bar(&p);
    const int sig = stop_signals_received();
    if (status != TW_OK) {
        code = cli_library_error(command.name, status);
        if (out.log) tw_run_log_line(out.log, tw_last_error());
    }
    if (sig && status == TW_OK) {
        char line[2048];
        if (p.saved_step >= 0)
            snprintf(line, sizeof line, "stopped by %s: the checkpoint of step %d is saved in "
                     "%s; continue with: twist train --out %s --resume",
                     stop_signal_name(sig), p.saved_step, c.out, c.out);
        else
            snprintf(line, sizeof line, "stopped by %s before the first step: nothing new to "
                     "save", stop_signal_name(sig));
        fprintf(stderr, "%s: %s\n", command.name, line);
        if (out.log) tw_run_log_line(out.log, line);
    }
    /* A resumed run continues the directory's log; a fresh one that saved nothing leaves the
     * directory (perhaps an earlier checkpoint) as it was. */
    if (p.saved || c.resume) output_sync(&out);
    code = output_close(&out, code);
    return sig ? 128 + sig : code;
}

/* ---- twist eval ------------------------------------------------------------------------ */

static const char *const SPLITS[] = {"val", "train", NULL};

static tw_status encode_text(void *context, const char *text, size_t length, int32_t **ids,
                             size_t *count) {
    return tw_tokenizer_encode(context, text, length, ids, count);
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *device_spec = "auto";
    int batch = 16, batches = 0, split = 0, precision = 0;
    const char *json = NULL;
    const char *profile = NULL;
    arg_spec specs[] = {
        precision_spec(&precision),
        {.name = "--model", .kind = ARG_STRING, .dest = &model_dir, .metavar = "DIR",
         .help = "checkpoint directory", .required = true},
        {.name = "--data", .kind = ARG_STRING, .dest = &data, .metavar = "FILE",
         .help = "corpus to evaluate on", .required = true},
        {.name = "--device", .kind = ARG_STRING, .dest = &device_spec, .metavar = "SPEC",
         .help = "device (default auto: the best GPU, else cpu)"},
        {.name = "--split", .kind = ARG_CHOICE, .dest = &split, .metavar = "SPLIT",
         .help = "val or train part of the corpus (default val)", .choices = SPLITS},
        {.name = "--batch", .kind = ARG_INT, .dest = &batch, .metavar = "B",
         .help = "sequences per batch (default 16)", .min = 1, .max = 1 << 20},
        {.name = "--batches", .kind = ARG_INT, .dest = &batches, .metavar = "N",
         .help = "at most N batches, 0 for the whole split (default 0)", .min = 0, .max = 1 << 30},
        output_json_spec(&json, "an \"eval\" record (JSON) on stdout instead of the text, or "
                                "appended to FILE"),
        cli_profile_spec(&profile), /* read by cli_profile_run (twist.c) */
    };
    args_command command = {"twist eval", "twist eval --model DIR --data FILE [options]",
                            "Validation loss, perplexity and next-token accuracy of a checkpoint "
                            "on a corpus (split as in training: the same documents are held out).",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;

    output out;
    int code = output_open(&out, command.name, "eval", json);
    if (code != CLI_EXIT_OK) return code;
    tw_device *device = NULL;
    tw_loaded_model loaded = {0};
    tw_dataset *dataset = NULL;
    tw_eval_result result = {0};
    tw_status status = tw_device_open(device_spec, &device);
    tw_dtype dtype = TW_DTYPE_F32;
    const bool precision_set = precision_dtype(precision, &dtype);
    /* an asked precision the device cannot run is refused before the checkpoint is read */
    if (status == TW_OK && precision_set) status = tw_gpt_check_dtype(device, dtype);
    if (status == TW_OK) status = tw_train_load(model_dir, device, NULL, &loaded);
    if (status == TW_OK && !precision_set) dtype = tw_gpt_default_dtype(device, NULL);
    if (status == TW_OK) status = tw_gpt_set_dtype(loaded.model, dtype);
    if (status == TW_OK) {
        tw_encoder encoder = {encode_text, loaded.tokenizer, tw_tokenizer_hash(loaded.tokenizer),
                              tw_tokenizer_eot_id(loaded.tokenizer)};
        status = tw_dataset_load(data, &encoder, NULL, &dataset);
    }
    if (status == TW_OK) {
        const int T = tw_gpt_get_config(loaded.model)->max_seq_len;
        const int32_t *stream = split == 0 ? dataset->val : dataset->train;
        size_t count = split == 0 ? dataset->val_tokens : dataset->train_tokens;
        status = tw_evaluate(loaded.model, stream, count, batch, T, batches, &result);
    }
    code = status == TW_OK ? CLI_EXIT_OK : cli_library_error(command.name, status);
    if (status == TW_OK) {
        record_eval(&out, -1, SPLITS[split], &result, -1.0);
        if (dtype != TW_DTYPE_F32) output_line(&out, "precision: %s", tw_dtype_name(dtype));
        output_line(&out, "%s (%s split): loss %.4f, perplexity %.6g, accuracy %.3f over %ld "
                    "tokens", data, SPLITS[split], result.loss, result.perplexity,
                    result.accuracy, result.tokens);
    }
    tw_dataset_free(dataset);
    tw_loaded_model_free(&loaded);
    tw_device_close(device);
    return output_close(&out, code);
}

/* ---- twist sample ---------------------------------------------------------------------- */

/* Writes a token's bytes, a NUL byte as U+FFFD: corpora cannot hold NUL (they are refused), so a
 * model only samples such a token by chance, and a terminal or pipe should not get one. */
static void print_token(void *context, int32_t id) {
    size_t length = 0;
    const unsigned char *bytes = tw_tokenizer_token_bytes(context, id, &length);
    for (size_t i = 0; bytes && i < length; i++)
        if (bytes[i]) putchar(bytes[i]);
        else fputs("\xEF\xBF\xBD", stdout);
    fflush(stdout);
}

int cmd_sample(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = "", *device_spec = "auto";
    int tokens = 200, top_k = 40, seed = 1;
    double temperature = 0.8;
    arg_spec specs[] = {
        {.name = "--model", .kind = ARG_STRING, .dest = &model_dir, .metavar = "DIR",
         .help = "checkpoint directory", .required = true},
        {.name = "--prompt", .kind = ARG_STRING, .dest = &prompt, .metavar = "TEXT",
         .help = "text to continue (default: a new document)"},
        {.name = "--tokens", .kind = ARG_INT, .dest = &tokens, .metavar = "N",
         .help = "tokens to generate (default 200)", .min = 0, .max = 1 << 20},
        {.name = "--temperature", .kind = ARG_FLOAT, .dest = &temperature, .metavar = "T",
         .help = "sampling temperature, 0 for greedy (default 0.8)", .min_real = 0,
         .max_real = 100},
        {.name = "--top-k", .kind = ARG_INT, .dest = &top_k, .metavar = "K",
         .help = "sample among the K likeliest tokens, 0 for all (default 40)", .min = 0,
         .max = 1 << 20},
        {.name = "--seed", .kind = ARG_INT, .dest = &seed, .metavar = "S",
         .help = "sampling seed (default 1)", .min = 0, .max = 2147483647},
        {.name = "--device", .kind = ARG_STRING, .dest = &device_spec, .metavar = "SPEC",
         .help = "device (default auto: the best GPU, else cpu)"},
    };
    args_command command = {"twist sample", "twist sample --model DIR [--prompt TEXT] [options]",
                            "Continues a prompt with a trained model, printing tokens as they come.",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;

    tw_device *device = NULL;
    tw_loaded_model loaded = {0};
    int32_t *ids = NULL;
    size_t count = 0;
    tw_status status = tw_device_open(device_spec, &device);
    if (status == TW_OK) status = tw_train_load(model_dir, device, NULL, &loaded);
    if (status == TW_OK) status = tw_tokenizer_encode(loaded.tokenizer, prompt, strlen(prompt), &ids, &count);
    if (status == TW_OK) {
        tw_sample_options o = {tokens, (float)temperature, top_k, (uint64_t)seed};
        fputs(prompt, stdout);
        status = tw_sample(loaded.model, ids, count, tw_tokenizer_eot_id(loaded.tokenizer), &o,
                           print_token, loaded.tokenizer);
        fputc('\n', stdout);
    }
    free(ids);
    int code = status == TW_OK ? CLI_EXIT_OK : cli_library_error(command.name, status);
    tw_loaded_model_free(&loaded);
    tw_device_close(device);
    return code;
}
