/* `twist bench step`: tokens per second of full training steps (forward, backward, AdamW with
 * clipping) of a GPT preset (or its --layers/--embd/--heads/--mlp/--seq-len/--vocab
 * variation) on a device in a --precision, with the device's peak memory, and with --peer the
 * same model, batch, sequence length and precision in PyTorch in the same command (on the same
 * CUDA device where twist runs on one and PyTorch has CUDA; on the CPU otherwise, as before). Rounds alternate twist and PyTorch (ABAB...) so that a
 * noisy shared machine slows both alike; each side's figure is the median step time of its
 * rounds' timed steps. The PyTorch script is embedded in the binary (tools/bench_step_torch.py
 * and tools/torch_gpt2.py) and run with $TWIST_PYTHON (default /usr/bin/python3) from a temporary directory.
 *
 * PyTorch runs twice per round: as installed (the environment without the variables twist's
 * restart set, see twist/cpu.h: on CPUs Debian's OpenBLAS does not know this means its slow
 * fallback kernels), and with twist's OpenBLAS and OpenMP settings, which is the fairer race of
 * the two. Both figures are printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "cli_profile.h"
#include "output.h"
#include "precision_flag.h"
#include "twist/model.h"
#include "twist/optim.h"

extern const char twist_py_torch_gpt2_py[];
extern const size_t twist_py_torch_gpt2_py_size;
extern const char twist_py_bench_step_torch_py[];
extern const size_t twist_py_bench_step_torch_py_size;

static const char *const PROG = "twist bench step";
static const char *const PRESETS[] = {"nano", "tiny", "small", NULL};

typedef struct step_options {
    const char *device;
    int preset, vocab, batch, seq_len, steps, warmup, rounds;
    int layers, embd, heads, mlp, precision;
    bool peer;
    const char *json;
} step_options;

/* ---- twist ----------------------------------------------------------------------------- */

typedef struct twist_side {
    tw_device *device;
    tw_gpt *model;
    tw_adamw *opt;
    int32_t *tokens, *targets;
    tw_dtype dtype;
    tw_loss_scaler scaler;
} twist_side;

static void twist_side_free(twist_side *s) {
    tw_adamw_destroy(s->opt);
    tw_gpt_destroy(s->model);
    tw_device_close(s->device);
    free(s->tokens);
    free(s->targets);
}

static tw_status twist_side_init(twist_side *s, const step_options *o,
                                 const tw_gpt_config *config) {
    tw_adamw_config adam = tw_adamw_defaults();
    const size_t N = (size_t)o->batch * (size_t)o->seq_len;
    TW_TRY(tw_device_open(o->device, &s->device));
    tw_dtype asked = TW_DTYPE_F32;
    const bool set = precision_dtype(o->precision, &asked);
    if (set) TW_TRY(tw_gpt_check_dtype(s->device, asked));
    s->dtype = set ? asked : tw_gpt_default_dtype(s->device, NULL);
    s->scaler = tw_loss_scaler_for(s->dtype);
    TW_TRY(tw_gpt_create(s->device, config, &s->model));
    TW_TRY(tw_gpt_set_dtype(s->model, s->dtype));
    TW_TRY(tw_gpt_init_params(s->model, 1));
    TW_TRY(tw_adamw_create(s->model, &adam, &s->opt));
    s->tokens = malloc(N * sizeof *s->tokens);
    s->targets = malloc(N * sizeof *s->targets);
    if (!s->tokens || !s->targets) return TW_ERR_OUT_OF_MEMORY; /* reported by the caller */
    uint64_t state = 12345;
    for (size_t i = 0; i < N; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        s->tokens[i] = (int32_t)((state >> 33) % (uint64_t)o->vocab);
        s->targets[i] = (int32_t)((state >> 13) % (uint64_t)o->vocab);
    }
    return TW_OK;
}

/* One full step; the optimizer reads the gradient norm back, so it ends synchronised. */
static tw_status twist_step(twist_side *s, const step_options *o) {
    TW_TRY(tw_gpt_zero_grad(s->model));
    TW_TRY(tw_gpt_forward(s->model, s->tokens, s->targets, o->batch, o->seq_len));
    TW_TRY(tw_gpt_backward(s->model, s->scaler.scale));
    return tw_adamw_update_scaled(s->opt, 1e-4f, &s->scaler, NULL, NULL);
}

/* Appends o->steps step times (ms) to times. */
static tw_status twist_round(twist_side *s, const step_options *o, double *times) {
    for (int i = 0; i < o->warmup; i++) TW_TRY(twist_step(s, o));
    for (int i = 0; i < o->steps; i++) {
        double start = cli_now_ms();
        TW_TRY(twist_step(s, o));
        times[i] = cli_now_ms() - start;
    }
    return TW_OK;
}

/* ---- PyTorch ---------------------------------------------------------------------------- */

static bool write_file(const char *dir, const char *name, const char *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    if (!file) return false;
    bool ok = fwrite(data, 1, size, file) == size;
    return fclose(file) == 0 && ok;
}

static void remove_scripts(const char *dir) {
    char path[512];
    const char *names[] = {"torch_gpt2.py", "bench_step_torch.py"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/__pycache__", dir);
    rmdir(path);
    rmdir(dir);
}

static const char *python(void) {
    const char *chosen = getenv("TWIST_PYTHON");
    return chosen && *chosen ? chosen : "/usr/bin/python3";
}

/* Runs the PyTorch side once; its step times (ms) go to times. The message of a failure
 * (no python3, no torch, a script error) goes to stderr. A peer that cannot run the device and
 * precision says why in `skipped` (then true is returned with no times). */
static bool peer_round(const char *dir, const char *env_prefix, const step_options *o,
                       const tw_gpt_config *c, tw_dtype dtype, double *times, char *skipped,
                       size_t skipped_size) {
    char command[2048];
    /* a CUDA device of twist's is PyTorch's device of the same index; anything else: the CPU */
    const char *torch_device = strncmp(o->device, "cuda:", 5) == 0 ? o->device : "cpu";
    const char *precision = dtype == TW_DTYPE_BF16 ? "bf16" : dtype == TW_DTYPE_F16 ? "fp16"
                                                                                     : "fp32";
    snprintf(command, sizeof command,
             "cd '%s' && %s'%s' bench_step_torch.py --layers %d --embd %d --heads %d --mlp %d "
             "--seq-len %d --vocab %d --batch %d --steps %d --warmup %d --device %s "
             "--precision %s 2>&1",
             dir, env_prefix, python(), c->n_layer, c->n_embd, c->layers[0].heads,
             c->layers[0].mlp_hidden, o->seq_len, o->vocab, o->batch, o->steps, o->warmup,
             torch_device, precision);
    FILE *pipe = popen(command, "r");
    if (!pipe) return false;
    char line[8192], result[8192] = "";
    while (fgets(line, sizeof line, pipe))
        if (line[0] == '{') snprintf(result, sizeof result, "%s", line);
        else fputs(line, stderr); /* a traceback or warning, shown as it is */
    int status = pclose(pipe);
    const char *why = strstr(result, "\"skipped\": \"");
    if (status == 0 && why) {
        why += strlen("\"skipped\": \"");
        snprintf(skipped, skipped_size, "%.*s", (int)strcspn(why, "\""), why);
        return true;
    }
    const char *list = strstr(result, "\"step_ms\": [");
    if (status != 0 || !list) {
        fprintf(stderr, "%s: the PyTorch peer failed (needs %s with torch: Debian's "
                        "python3-torch, or TWIST_PYTHON naming an interpreter with torch)\n",
                PROG, python());
        return false;
    }
    list += strlen("\"step_ms\": [");
    for (int i = 0; i < o->steps; i++) {
        char *end = NULL;
        times[i] = strtod(list, &end);
        if (end == list) return false;
        list = end + strspn(end, ", ");
    }
    return true;
}

static bool peer_setup(char *dir, size_t size) {
    snprintf(dir, size, "%s/twist-bench-step-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return false;
    return write_file(dir, "torch_gpt2.py", twist_py_torch_gpt2_py, twist_py_torch_gpt2_py_size) &&
           write_file(dir, "bench_step_torch.py", twist_py_bench_step_torch_py,
                      twist_py_bench_step_torch_py_size);
}

/* "env -u A -u B " for the variables twist's restart set (TWIST_RESTART_SET), or "" when it set
 * none, in which case PyTorch as installed and PyTorch with twist's settings are one run. */
static void installed_env_prefix(char *out, size_t size) {
    const char *set = getenv("TWIST_RESTART_SET");
    out[0] = '\0';
    if (!set || !*set) return;
    char names[256];
    snprintf(names, sizeof names, "%s", set);
    snprintf(out, size, "env");
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name;
         name = strtok_r(NULL, ",", &save))
        snprintf(out + strlen(out), size - strlen(out), " -u %s", name);
    snprintf(out + strlen(out), size - strlen(out), " ");
}

/* ---- the command ------------------------------------------------------------------------ */

typedef struct step_result {
    double twist, installed, tuned; /* tokens/s; installed < 0 when it is the tuned run */
    tw_dtype dtype;                 /* twist's precision */
    size_t peak_bytes;              /* twist's device peak over the whole command */
    const char *skipped;            /* why the peer did not run, or "" */
} step_result;

static void print_result(output *out, const step_options *o, const tw_gpt_config *c, size_t params,
                         const step_result *r, const tw_device_info *info) {
    if (out->sink) {
        cJSON *j = output_new(out, "bench");
        tw_record_string(j, "device", o->device);
        tw_record_string(j, "device_name", info->name);
        tw_record_string(j, "preset", PRESETS[o->preset]);
        tw_record_number(j, "params", (double)params);
        tw_record_int(j, "batch", o->batch);
        tw_record_int(j, "seq_len", o->seq_len);
        tw_record_int(j, "vocab", o->vocab);
        tw_record_int(j, "layers", c->n_layer);
        tw_record_int(j, "embd", c->n_embd);
        tw_record_int(j, "heads", c->layers[0].heads);
        tw_record_int(j, "mlp", c->layers[0].mlp_hidden);
        tw_record_string(j, "precision", tw_dtype_name(r->dtype));
        tw_record_number(j, "peak_bytes", (double)r->peak_bytes);
        tw_record_number(j, "tokens_per_s", r->twist);
        if (o->peer && r->skipped[0]) tw_record_string(j, "pytorch_skipped", r->skipped);
        if (o->peer && r->skipped[0]) {
        } else if (o->peer && r->installed >= 0) {
            tw_record_number(j, "pytorch_installed_tokens_per_s", r->installed);
            tw_record_number(j, "ratio_installed", r->twist / r->installed);
        }
        if (o->peer && !r->skipped[0]) {
            tw_record_number(j, "pytorch_tuned_tokens_per_s", r->tuned);
            tw_record_number(j, "ratio_tuned", r->twist / r->tuned);
        }
        output_record(out, j);
    }
    if (!out->text) return;
    printf("%s: %s (%zu parameters: d=%d, %d layers, %d heads, MLP %d), B=%d, T=%d, V=%d, %s\n",
           o->device, PRESETS[o->preset], params, c->n_embd, c->n_layer, c->layers[0].heads,
           c->layers[0].mlp_hidden, o->batch, o->seq_len, o->vocab, tw_dtype_name(r->dtype));
    printf("  twist                                   %9.0f tokens/s   peak device memory "
           "%.1f MiB\n", r->twist, (double)r->peak_bytes / 1048576.0);
    if (o->peer && r->skipped[0]) {
        printf("  PyTorch peer skipped: %s\n", r->skipped);
        return;
    }
    if (o->peer && r->installed >= 0)
        printf("  PyTorch as installed                    %9.0f tokens/s   twist/PyTorch %.2f\n",
               r->installed, r->twist / r->installed);
    if (o->peer)
        printf("  PyTorch with twist's OpenBLAS settings  %9.0f tokens/s   twist/PyTorch %.2f\n",
               r->tuned, r->twist / r->tuned);
}

int cmd_bench_step(int argc, char **argv) {
    step_options o = {.preset = 1, .vocab = 4096, .batch = 16, .seq_len = 0, .steps = 10,
                      .warmup = 2, .rounds = 2};
    const char *profile = NULL;
    arg_spec specs[] = {
        {.name = "--device", .kind = ARG_STRING, .dest = &o.device, .metavar = "SPEC",
         .help = "device to train on", .required = true},
        {.name = "--preset", .kind = ARG_CHOICE, .dest = &o.preset, .metavar = "NAME",
         .help = "model preset: nano, tiny, small (default tiny)", .choices = PRESETS},
        {.name = "--vocab", .kind = ARG_INT, .dest = &o.vocab, .metavar = "V",
         .help = "vocabulary size (default 4096)", .min = 2, .max = 1 << 22},
        {.name = "--batch", .kind = ARG_INT, .dest = &o.batch, .metavar = "B",
         .help = "sequences per step (default 16)", .min = 1, .max = 1 << 16},
        {.name = "--seq-len", .kind = ARG_INT, .dest = &o.seq_len, .metavar = "T",
         .help = "sequence length (default: the preset's)", .min = 1, .max = 1 << 16},
        {.name = "--steps", .kind = ARG_INT, .dest = &o.steps, .metavar = "N",
         .help = "timed steps per round (default 10)", .min = 1, .max = 100000},
        {.name = "--warmup", .kind = ARG_INT, .dest = &o.warmup, .metavar = "N",
         .help = "untimed steps before each round (default 2)", .min = 0, .max = 100000},
        {.name = "--rounds", .kind = ARG_INT, .dest = &o.rounds, .metavar = "R",
         .help = "alternating twist/PyTorch rounds (default 2)", .min = 1, .max = 1000},
        {.name = "--peer", .kind = ARG_FLAG, .dest = &o.peer,
         .help = "also run PyTorch (/usr/bin/python3 with torch) on the same model and data"},
        {.name = "--layers", .kind = ARG_INT, .dest = &o.layers, .metavar = "N",
         .help = "transformer blocks (overrides the preset)", .min = 1, .max = TW_GPT_MAX_LAYERS},
        {.name = "--embd", .kind = ARG_INT, .dest = &o.embd, .metavar = "C",
         .help = "model width (overrides the preset)", .min = 1, .max = 65536},
        {.name = "--heads", .kind = ARG_INT, .dest = &o.heads, .metavar = "H",
         .help = "attention heads per block (overrides the preset)", .min = 1, .max = 4096},
        {.name = "--mlp", .kind = ARG_INT, .dest = &o.mlp, .metavar = "M",
         .help = "MLP hidden units per block (default 4 x embd)", .min = 1, .max = 1 << 18},
        precision_spec(&o.precision),
        output_json_spec(&o.json, "a record (JSON) on stdout instead of the text, or appended "
                                  "to FILE"),
        cli_profile_spec(&profile), /* read by cli_profile_run (twist.c) */
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist bench step --device SPEC [--preset NAME] [--peer] [options]",
        .summary = "Tokens per second of full training steps (forward, backward, AdamW) of a GPT "
                   "preset, optionally against PyTorch on the same model, batch and length.",
        .specs = specs, .count = (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    output out;
    int code = output_open(&out, PROG, "bench step", o.json);
    if (code != CLI_EXIT_OK) return code;

    tw_gpt_config config;
    if (tw_gpt_config_preset(PRESETS[o.preset], o.vocab, &config) != TW_OK)
        return output_close(&out, cli_library_error(PROG, TW_ERR_INVALID_ARGUMENT));
    if (o.seq_len == 0) o.seq_len = config.max_seq_len;
    /* The model flags over the preset, as twist train takes them. */
    const int layers = args_given(&command, "--layers") ? o.layers : config.n_layer;
    const int embd = args_given(&command, "--embd") ? o.embd : config.n_embd;
    const int heads = args_given(&command, "--heads") ? o.heads : config.layers[0].heads;
    if (embd % heads != 0)
        return output_close(&out, args_usage_error(PROG, "--embd %d must be a multiple of "
                                                   "--heads %d", embd, heads));
    if (tw_gpt_config_uniform(o.vocab, o.seq_len, layers, embd, heads, &config) != TW_OK)
        return output_close(&out, args_usage_error(PROG, "%s", tw_last_error()));
    if (args_given(&command, "--mlp"))
        for (int l = 0; l < config.n_layer; l++) config.layers[l].mlp_hidden = o.mlp;
    config.max_seq_len = o.seq_len;

    const int total = o.rounds * o.steps;
    char installed_env[512];
    installed_env_prefix(installed_env, sizeof installed_env);
    const bool two_peers = o.peer && installed_env[0];
    double *twist_ms = calloc((size_t)total, sizeof *twist_ms);
    double *tuned_ms = calloc((size_t)total, sizeof *tuned_ms);
    double *installed_ms = calloc((size_t)total, sizeof *installed_ms);
    twist_side side = {0};
    char dir[512] = "";
    tw_status status = twist_ms && tuned_ms && installed_ms ? twist_side_init(&side, &o, &config)
                                                            : TW_ERR_OUT_OF_MEMORY;
    if (status != TW_OK) code = cli_library_error(PROG, status);
    if (code == CLI_EXIT_OK && o.peer && !peer_setup(dir, sizeof dir))
        code = cli_runtime_error(PROG, "cannot write the PyTorch script to %s", dir);
    char skipped[256] = "";
    for (int r = 0; code == CLI_EXIT_OK && r < o.rounds; r++) {
        status = twist_round(&side, &o, twist_ms + r * o.steps);
        if (status != TW_OK) code = cli_library_error(PROG, status);
        else if (o.peer && !skipped[0] &&
                 !peer_round(dir, "", &o, &config, side.dtype, tuned_ms + r * o.steps, skipped,
                             sizeof skipped))
            code = CLI_EXIT_RUNTIME;
        else if (two_peers && !skipped[0] &&
                 !peer_round(dir, installed_env, &o, &config, side.dtype,
                             installed_ms + r * o.steps, skipped, sizeof skipped))
            code = CLI_EXIT_RUNTIME;
    }
    if (code == CLI_EXIT_OK) {
        const double tokens = (double)o.batch * o.seq_len;
        step_result result = {tokens / cli_median(twist_ms, total) * 1e3, -1.0, 0.0, side.dtype,
                              tw_device_peak_bytes(side.device), skipped};
        if (o.peer && !skipped[0]) result.tuned = tokens / cli_median(tuned_ms, total) * 1e3;
        if (two_peers && !skipped[0])
            result.installed = tokens / cli_median(installed_ms, total) * 1e3;
        print_result(&out, &o, &config, tw_gpt_param_count(side.model), &result,
                     tw_device_get_info(side.device));
    }
    if (dir[0]) remove_scripts(dir);
    twist_side_free(&side);
    free(twist_ms);
    free(tuned_ms);
    free(installed_ms);
    return output_close(&out, code);
}
