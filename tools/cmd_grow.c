/* `twist grow`: build a larger model from trained checkpoints with the growth operators of
 * twist/grow.h, and write it as a normal checkpoint (config.json, model.safetensors,
 * tokenizer.json; optimizer.safetensors only where the operator carries AdamW state).
 *
 * Every source is loaded (checksums, shapes, finite values) and checked against the others
 * before anything is written; --out is locked and must be absent or empty: an existing
 * checkpoint or other files there are refused, never overwritten. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/grow.h"
#include "twist/optim.h"
#include "twist/train.h"

enum { MAX_SOURCES = 64 };

static const char *const OPS[] = {"depth", "combine", "double", "widen", "concat", NULL};
enum { OP_DEPTH, OP_COMBINE, OP_DOUBLE, OP_WIDEN, OP_CONCAT };
static const char *const MODES[] = {"stack", "interleave", NULL};

typedef struct source {
    const char *dir;
    tw_loaded_model loaded;
    tw_ist_master *master;
    bool has_optimizer;
} source;

/* Loads dir on the CPU into a host master. With want_optimizer, the AdamW state comes along
 * when the checkpoint has it (a checkpoint written by twist grow may hold none). */
static tw_status load_source(source *s, tw_device *cpu, bool want_optimizer) {
    tw_adamw_config adam = tw_adamw_defaults();
    tw_status status = tw_train_load(s->dir, cpu, want_optimizer ? &adam : NULL, &s->loaded);
    if (status == TW_ERR_FORMAT && want_optimizer && strstr(tw_last_error(), "no optimizer state")) {
        tw_clear_error();
        status = tw_train_load(s->dir, cpu, NULL, &s->loaded);
    }
    TW_TRY(status);
    const tw_gpt_config *config = tw_gpt_get_config(s->loaded.model);
    TW_TRY(tw_ist_master_create(config, &s->master));
    const size_t bytes = s->master->param_count * sizeof(float);
    TW_TRY(tw_buffer_download(tw_gpt_params(s->loaded.model), 0, s->master->params, bytes));
    if (s->loaded.opt) {
        s->has_optimizer = true;
        TW_TRY(tw_buffer_download(tw_adamw_first_moment(s->loaded.opt), 0, s->master->exp_avg, bytes));
        TW_TRY(tw_buffer_download(tw_adamw_second_moment(s->loaded.opt), 0, s->master->exp_avg_sq,
                                  bytes));
        s->master->step = tw_adamw_steps(s->loaded.opt);
    }
    return TW_OK;
}

/* The grown master as a model (and AdamW state when carry) on the CPU, saved to dir. */
static tw_status save_grown(const char *dir, const tw_ist_master *m, bool carry,
                            const tw_tokenizer *tokenizer, tw_device *cpu) {
    tw_gpt *model = NULL;
    tw_adamw *opt = NULL;
    tw_adamw_config adam = tw_adamw_defaults();
    const size_t bytes = m->param_count * sizeof(float);
    tw_status status = tw_gpt_create(cpu, &m->config, &model);
    if (status == TW_OK) status = tw_buffer_upload(tw_gpt_params(model), 0, m->params, bytes);
    if (status == TW_OK && carry) {
        status = tw_adamw_create(model, &adam, &opt);
        if (status == TW_OK)
            status = tw_buffer_upload(tw_adamw_first_moment(opt), 0, m->exp_avg, bytes);
        if (status == TW_OK)
            status = tw_buffer_upload(tw_adamw_second_moment(opt), 0, m->exp_avg_sq, bytes);
        if (status == TW_OK) tw_adamw_set_steps(opt, m->step);
    }
    if (status == TW_OK) status = tw_train_save(dir, model, opt, "{}", tokenizer);
    tw_adamw_destroy(opt);
    tw_gpt_destroy(model);
    return status;
}

/* --op widen: GPT-2 shaped sources (every layer A = C and M = 4 C) stay GPT-2 shaped by
 * default; the flags are checked here so that the messages name them. */
static tw_status widen(const tw_gpt_config *c0, const char *dir, int embd, int heads, int mlp,
                       double noise, uint64_t seed, const tw_ist_master *from,
                       tw_ist_master **out) {
    if (embd < c0->n_embd)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--embd %d is smaller than n_embd %d of %s: growth only adds width", embd,
                        c0->n_embd, dir);
    bool gpt2 = true;
    for (int l = 0; l < c0->n_layer; l++)
        gpt2 = gpt2 && c0->layers[l].heads * c0->head_dim == c0->n_embd &&
               c0->layers[l].mlp_hidden == 4 * c0->n_embd;
    const int D = c0->head_dim;
    if (heads && gpt2 && (long long)heads * D != embd)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--heads %d does not divide --embd %d into heads of head_dim %d (the head "
                        "width of %s, which widening keeps): use --heads %d%s",
                        heads, embd, D, dir, embd / D, embd % D ? " and an --embd that is a multiple of it" : "");
    if (!heads && gpt2 && embd % D == 0) heads = embd / D;
    if (!mlp && gpt2) mlp = 4 * embd;
    tw_grow_widen_options o = {embd, heads, mlp, noise, seed};
    return tw_grow_widen(from, &o, out);
}

/* Pulls every "--from DIR" / "--from=DIR" out of argv (args_parse refuses a repeated flag). */
static int take_sources(int *argc, char **argv, const char **dirs, int *count) {
    int kept = 0;
    for (int i = 0; i < *argc; i++) {
        const char *dir = NULL;
        if (strcmp(argv[i], "--from") == 0) {
            if (i + 1 >= *argc) return args_usage_error("twist grow", "--from needs a DIR");
            dir = argv[++i];
        } else if (strncmp(argv[i], "--from=", 7) == 0) {
            dir = argv[i] + 7;
        } else {
            argv[kept++] = argv[i];
            continue;
        }
        if (!*dir) return args_usage_error("twist grow", "--from needs a non-empty DIR");
        if (*count >= MAX_SOURCES)
            return args_usage_error("twist grow", "at most %d --from checkpoints", MAX_SOURCES);
        dirs[(*count)++] = dir;
    }
    *argc = kept;
    return CLI_EXIT_OK;
}

int cmd_grow(int argc, char **argv) {
    const char *dirs[MAX_SOURCES];
    int n = 0;
    int code = take_sources(&argc, argv, dirs, &n);
    if (code != CLI_EXIT_OK) return code;

    const char *out_dir = NULL, *json = NULL;
    int op = 0, layers = 0, embd = 0, mode = 0, heads = 0, mlp = 0, seed = 1;
    double noise = 0.0;
    bool identity = false;
    const char *from_help = "a source checkpoint (repeat for combine)";
    arg_spec specs[] = {
        {.name = "--from", .kind = ARG_STRING, .dest = &from_help, .metavar = "DIR",
         .help = "a source checkpoint; repeat it for combine (n >= 2 sources)"},
        {.name = "--op", .kind = ARG_CHOICE, .dest = &op, .metavar = "OP", .required = true,
         .choices = OPS,
         .help = "depth: stack layers (--layers N); combine: union of the sources' heads and MLP "
                 "units, block scales 1/n; double: exact width doubling C -> 2C"},
        {.name = "--out", .kind = ARG_STRING, .dest = &out_dir, .metavar = "DIR", .required = true,
         .help = "the grown checkpoint (must be absent or empty: never overwritten)"},
        {.name = "--layers", .kind = ARG_INT, .dest = &layers, .metavar = "N", .min = 1,
         .max = TW_GPT_MAX_LAYERS, .help = "depth: layers of the grown model, a multiple of the source's"},
        {.name = "--mode", .kind = ARG_CHOICE, .dest = &mode, .metavar = "MODE", .choices = MODES,
         .help = "depth: stack (G_stack: 0..L-1, 0..L-1, ...; default) or interleave (0,0,1,1,...)"},
        {.name = "--identity", .kind = ARG_FLAG, .dest = &identity,
         .help = "depth: added copies get zero output projections, so the grown model computes "
                 "the source's function exactly"},
        {.name = "--embd", .kind = ARG_INT, .dest = &embd, .metavar = "C", .min = 1, .max = 1 << 20,
         .help = "widen: the grown width C1 >= the source's (exact when it is a multiple); "
                 "double: checked to be 2x the source's"},
        {.name = "--heads", .kind = ARG_INT, .dest = &heads, .metavar = "H", .min = 1,
         .max = 1 << 20,
         .help = "widen: heads per layer (head_dim kept; default --embd / head_dim for a GPT-2 "
                 "shaped source, else the source's)"},
        {.name = "--mlp", .kind = ARG_INT, .dest = &mlp, .metavar = "M", .min = 1, .max = 1 << 24,
         .help = "widen: MLP units per layer (default 4 x --embd for a GPT-2 shaped source, "
                 "else the source's)"},
        {.name = "--noise", .kind = ARG_FLOAT, .dest = &noise, .metavar = "S", .min_real = 0.0,
         .max_real = 1.0,
         .help = "widen: zero-sum symmetry-breaking noise on split rows, times each tensor's "
                 "RMS (default 0; keeps the function)"},
        {.name = "--seed", .kind = ARG_INT, .dest = &seed, .metavar = "S", .min = 0,
         .max = 2147483647, .help = "widen: seed of the noise (default 1)"},
        output_json_spec(&json, "a \"grow\" record (JSON) on stdout instead of the text, or "
                                "appended to FILE"),
    };
    args_command command = {
        "twist grow",
        "twist grow --from DIR [--from DIR ...] --op depth|combine|double|widen|concat --out DIR "
        "[options]",
        "Grows a larger model from trained checkpoints and writes it as a normal checkpoint. "
        "Optimizer state: carried (transformed) by double when the source has it, reset by "
        "depth, combine, widen and concat. Start training from it with twist train --init DIR.",
        specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (n == 0) return args_usage_error(command.name, "--from DIR is required");
    const bool many = op == OP_COMBINE || op == OP_CONCAT;
    if (many && n < 2)
        return args_usage_error(command.name, "--op %s needs 2 or more --from checkpoints",
                                OPS[op]);
    if (!many && n != 1)
        return args_usage_error(command.name, "--op %s takes exactly one --from", OPS[op]);
    if (op == OP_DEPTH && !args_given(&command, "--layers"))
        return args_usage_error(command.name, "--op depth needs --layers N");
    if (op != OP_DEPTH && (args_given(&command, "--layers") || args_given(&command, "--mode") ||
                           identity))
        return args_usage_error(command.name, "--layers, --mode and --identity belong to --op depth");
    if (op != OP_DOUBLE && op != OP_WIDEN && args_given(&command, "--embd"))
        return args_usage_error(command.name, "--embd belongs to --op double and widen");
    if (op == OP_WIDEN && !args_given(&command, "--embd"))
        return args_usage_error(command.name, "--op widen needs --embd C");
    static const char *const widen_only[] = {"--heads", "--mlp", "--noise", "--seed"};
    for (size_t i = 0; i < sizeof widen_only / sizeof widen_only[0]; i++)
        if (op != OP_WIDEN && args_given(&command, widen_only[i]))
            return args_usage_error(command.name, "%s belongs to --op widen", widen_only[i]);
    for (int i = 0; i < n; i++)
        if (strcmp(dirs[i], out_dir) == 0)
            return args_usage_error(command.name, "--out %s is also a --from checkpoint", out_dir);

    output out;
    code = output_open(&out, command.name, "grow", json);
    if (code != CLI_EXIT_OK) return code;
    source sources[MAX_SOURCES];
    memset(sources, 0, sizeof sources);
    tw_device *cpu = NULL;
    tw_ist_master *grown = NULL;
    tw_checkpoint_lock *lock = NULL;
    bool carry = false;
    const char *failed_flag = NULL;

    /* --out first: a directory we may not write is refused before any work. */
    tw_ckpt_target kind = TW_CKPT_TARGET_EMPTY;
    tw_status status = tw_checkpoint_probe(out_dir, &kind);
    if (status == TW_OK && kind == TW_CKPT_TARGET_CHECKPOINT)
        status = tw_error(TW_ERR_INVALID_ARGUMENT,
                          "%s already holds a twist checkpoint; twist grow never overwrites one: "
                          "choose another directory", out_dir);
    if (status != TW_OK) failed_flag = "--out";
    if (status == TW_OK) status = tw_device_open("cpu", &cpu);
    for (int i = 0; i < n && status == TW_OK; i++) {
        sources[i].dir = dirs[i];
        status = load_source(&sources[i], cpu, op == OP_DOUBLE);
        if (status != TW_OK) failed_flag = "--from";
    }
    /* One tokenizer for all: token ids must mean the same text in every source. */
    for (int i = 1; i < n && status == TW_OK; i++)
        if (tw_tokenizer_hash(sources[i].loaded.tokenizer) !=
            tw_tokenizer_hash(sources[0].loaded.tokenizer)) {
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "%s/tokenizer.json differs from %s/tokenizer.json (vocabulary %d "
                              "vs %d tokens): combined models must share one tokenizer",
                              dirs[i], dirs[0], tw_tokenizer_vocab_size(sources[i].loaded.tokenizer),
                              tw_tokenizer_vocab_size(sources[0].loaded.tokenizer));
            failed_flag = "--from";
        }
    if (status == TW_OK) {
        const tw_gpt_config *c0 = &sources[0].master->config;
        if (op == OP_DEPTH) {
            if (layers % c0->n_layer != 0) {
                status = tw_error(TW_ERR_INVALID_ARGUMENT,
                                  "--layers %d is not a multiple of the %d layers of %s", layers,
                                  c0->n_layer, dirs[0]);
            } else {
                tw_grow_depth_options o = {layers / c0->n_layer,
                                           mode ? TW_GROW_INTERLEAVE : TW_GROW_STACK, identity};
                status = tw_grow_depth(sources[0].master, &o, &grown);
            }
        } else if (many) {
            const tw_ist_master *masters[MAX_SOURCES];
            for (int i = 0; i < n; i++) masters[i] = sources[i].master;
            status = op == OP_COMBINE ? tw_grow_combine(masters, n, &grown)
                                      : tw_grow_concat(masters, n, &grown);
        } else if (op == OP_WIDEN) {
            status = widen(c0, dirs[0], embd, heads, mlp, noise, (uint64_t)seed,
                           sources[0].master, &grown);
        } else {
            if (embd && embd != 2 * c0->n_embd)
                status = tw_error(TW_ERR_INVALID_ARGUMENT,
                                  "--embd %d: --op double grows n_embd %d to exactly %d", embd,
                                  c0->n_embd, 2 * c0->n_embd);
            else status = tw_grow_double(sources[0].master, &grown);
            carry = sources[0].has_optimizer;
        }
        if (status != TW_OK && !failed_flag) failed_flag = "--op";
    }
    /* Lock --out (creating it) only now, so a refused growth leaves nothing behind; a save
     * that fails releases the lock, which removes the directory it created. */
    if (status == TW_OK) {
        status = tw_checkpoint_lock_take(out_dir, &kind, &lock);
        if (status == TW_OK && kind == TW_CKPT_TARGET_CHECKPOINT)
            status = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "%s already holds a twist checkpoint; twist grow never overwrites "
                              "one: choose another directory", out_dir);
        if (status == TW_OK)
            status = save_grown(out_dir, grown, carry, sources[0].loaded.tokenizer, cpu);
        tw_checkpoint_lock_release(lock);
    }
    if (status != TW_OK && many && failed_flag &&
        strcmp(failed_flag, "--op") == 0) {
        /* The library counts sources from 0: name them by their --from. */
        fprintf(stderr, "%s: %s (source i is the i-th --from:", command.name, tw_last_error());
        for (int i = 0; i < n; i++) fprintf(stderr, " %d = %s%s", i, dirs[i], i + 1 < n ? "," : ")\n");
        code = CLI_EXIT_RUNTIME;
    } else if (status != TW_OK) {
        code = cli_library_error(command.name, status);
    } else {
        const tw_gpt_config *g = &grown->config;
        size_t source_params = 0;
        for (int i = 0; i < n; i++) source_params += sources[i].master->param_count;
        cJSON *record = output_new(&out, "grow");
        tw_record_string(record, "op", OPS[op]);
        tw_record_int(record, "sources", n);
        tw_record_int(record, "source_params", (long long)source_params);
        tw_record_int(record, "params", (long long)grown->param_count);
        tw_record_int(record, "n_layer", g->n_layer);
        tw_record_int(record, "n_embd", g->n_embd);
        tw_record_int(record, "heads_layer0", g->layers[0].heads);
        tw_record_int(record, "mlp_layer0", g->layers[0].mlp_hidden);
        tw_record_string(record, "optimizer", carry ? "carried" : "reset");
        tw_record_string(record, "out", out_dir);
        output_record(&out, record);
        output_line(&out, "grew %d checkpoint%s (%zu parameters) by %s into %s: %d layers, "
                    "n_embd %d, layer 0 %d heads and %d MLP units, %zu parameters; optimizer "
                    "state %s",
                    n, n > 1 ? "s" : "", source_params, OPS[op], out_dir, g->n_layer, g->n_embd,
                    g->layers[0].heads, g->layers[0].mlp_hidden, grown->param_count,
                    carry ? "carried (exp_avg / 2, exp_avg_sq / 4, ln_f as is, step kept)"
                          : "reset");
    }
    tw_ist_master_free(grown);
    for (int i = 0; i < n; i++) {
        tw_ist_master_free(sources[i].master);
        tw_loaded_model_free(&sources[i].loaded);
    }
    tw_device_close(cpu);
    return output_close(&out, code);
}
