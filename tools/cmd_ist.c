/* `twist ist` and `twist dp`: distributed training over several workers on any mix of devices
 * (twist/ist_run.h). `ist` trains independent subnetworks; `dp` runs the data parallel
 * (--mode allreduce) and local SGD (--mode localsgd) baselines with the same data, model and
 * round options, so the three compare at equal tokens processed. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "device_memory_flag.h"
#include "precision_flag.h"
#include "cli.h"
#include "cli_profile.h"
#include "model_flags.h"
#include "output.h"
#include "stop_signals.h"
#include "twist/ist_run.h"
#include "twist/train.h"

static const char *const BALANCES[] = {"equal", "speed", "data", NULL};
static const char *const TRANSPORTS[] = {"threads", "mpi", NULL};
static const char *const DP_MODES[] = {"allreduce", "localsgd", NULL};
static const char *const CODECS[] = {"fp32", "bf16", "bf16-delta", NULL};

enum { MAX_DEVICE_SPECS = 64 };

typedef struct dist_cli {
    const char *devices, *out, *json, *eval_device, *fault, *slow;
    bool overwrite;
    model_flags model;
    int workers_per_device, heads_per_worker, local_steps, rounds, balance, transport, mode;
    int batch, accum, warmup, seed, eval_every, eval_batches, save_every, peer_timeout;
    int codec, stop_after, precision;
    bool resume;
    char device_text[1024];
    const char *device_list[MAX_DEVICE_SPECS];
    int device_count;
    arg_string_list device_memory;
} dist_cli;

/* "cpu,opencl:0,vulkan:0" -> device_list. */
static int split_devices(dist_cli *c, const char *prog) {
    if (strlen(c->devices) >= sizeof c->device_text)
        return args_usage_error(prog, "--devices: the list is too long");
    strcpy(c->device_text, c->devices);
    c->device_count = 0;
    char *cursor = c->device_text;
    for (;;) {
        char *comma = strchr(cursor, ',');
        if (comma) *comma = '\0';
        if (!*cursor)
            return args_usage_error(prog, "--devices '%s': an empty device spec", c->devices);
        if (c->device_count == MAX_DEVICE_SPECS)
            return args_usage_error(prog, "--devices: at most %d devices", MAX_DEVICE_SPECS);
        c->device_list[c->device_count++] = cursor;
        if (!comma) break;
        cursor = comma + 1;
    }
    return CLI_EXIT_OK;
}

/* --inject-fault WORKER:ROUND */
static int parse_fault(const dist_cli *c, const char *prog, int workers, tw_dist_options *o) {
    if (!c->fault) return CLI_EXIT_OK;
    int worker = -1, round = -1, used = 0;
    if (sscanf(c->fault, "%d:%d%n", &worker, &round, &used) != 2 || c->fault[used] != '\0' ||
        worker < 0 || round < 0)
        return args_usage_error(prog, "--inject-fault '%s': expected WORKER:ROUND, e.g. 1:2",
                                c->fault);
    if (worker >= workers || round >= c->rounds)
        return args_usage_error(prog, "--inject-fault %s: worker must be < %d and round < %d",
                                c->fault, workers, c->rounds);
    o->fault_worker = worker;
    o->fault_round = round;
    return CLI_EXIT_OK;
}

/* --slow-worker WORKER:FACTOR */
static int parse_slow(const dist_cli *c, const char *prog, int workers, tw_dist_options *o) {
    if (!c->slow) return CLI_EXIT_OK;
    int worker = -1, used = 0;
    double factor = 0.0;
    if (sscanf(c->slow, "%d:%lf%n", &worker, &factor, &used) != 2 || c->slow[used] != '\0' ||
        worker < 0 || !(factor >= 1.0 && factor <= 100.0))
        return args_usage_error(prog, "--slow-worker '%s': expected WORKER:FACTOR with FACTOR "
                                "in [1, 100], e.g. 1:3", c->slow);
    if (worker >= workers)
        return args_usage_error(prog, "--slow-worker %s: worker must be < %d", c->slow, workers);
    o->slow_worker = worker;
    o->slow_factor = factor;
    return CLI_EXIT_OK;
}

/* Under mpirun every rank parses the same command line and would print the same usage error:
 * ranks other than 0 (named by the launcher's environment: Open MPI, PMIx, MPICH) keep quiet
 * until the run starts, where the library names the rank of each error. */
static int g_saved_stderr = -1;
static bool g_quiet_rank;

static void quiet_usage_begin(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *rank = getenv(names[i]);
        if (!rank) continue;
        if (atoi(rank) == 0) return;
        g_quiet_rank = true;
        fflush(stderr);
        const int null = open("/dev/null", O_WRONLY);
        g_saved_stderr = null >= 0 ? dup(STDERR_FILENO) : -1;
        if (g_saved_stderr >= 0) dup2(null, STDERR_FILENO);
        if (null >= 0) close(null);
        return;
    }
}

static void quiet_usage_end(void) {
    if (g_saved_stderr < 0) return;
    fflush(stderr);
    dup2(g_saved_stderr, STDERR_FILENO);
    close(g_saved_stderr);
    g_saved_stderr = -1;
}

typedef struct dist_progress {
    output *out;
    bool saved;
} dist_progress;

static void show(void *context, const tw_dist_report *report) {
    dist_progress *p = context;
    if (report->record) output_record(p->out, cJSON_Duplicate(report->record, true));
    if (report->message) output_line(p->out, "%s", report->message);
    const char *event = report->record ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                                             report->record, "event"))
                                       : NULL;
    if (event && strcmp(event, "save") == 0) {
        p->saved = true;
        output_sync(p->out);
    }
}

/* Options common to both commands, then the command's own; parses and runs. */
static int run_command(int argc, char **argv, bool ist) {
    dist_cli c = {.devices = "cpu", .model = model_flags_defaults(), .workers_per_device = 1,
                  .heads_per_worker = 0, .local_steps = 10, .rounds = 10,
                  .batch = TW_TRAIN_DEFAULT_BATCH, .accum = TW_TRAIN_DEFAULT_ACCUM, .warmup = -1,
                  .seed = TW_TRAIN_DEFAULT_SEED, .eval_every = 1,
                  .eval_batches = TW_TRAIN_DEFAULT_EVAL_BATCHES,
                  .mode = -1, .save_every = 1, .peer_timeout = 600};
    const char *profile = NULL;
    arg_spec own[] = {
        {.name = "--devices", .kind = ARG_STRING, .dest = &c.devices, .metavar = "SPEC[,SPEC...]",
         .help = "devices of the workers: cpu, opencl:N, vulkan:N, cuda:N (default cpu)"},
        {.name = "--workers-per-device", .kind = ARG_INT, .dest = &c.workers_per_device,
         .metavar = "N", .help = "workers on each device (default 1)", .min = 1, .max = 256},
        {.name = "--local-steps", .kind = ARG_INT, .dest = &c.local_steps, .metavar = "K",
         .help = "steps per round (default 10)", .min = 1, .max = 1 << 24},
        {.name = "--rounds", .kind = ARG_INT, .dest = &c.rounds, .metavar = "R",
         .help = "rounds (default 10)", .min = 1, .max = 1 << 24},
        {.name = "--transport", .kind = ARG_CHOICE, .dest = &c.transport, .metavar = "NAME",
         .help = "threads (one process) or mpi (one rank per worker, under mpirun)",
         .choices = TRANSPORTS},
        {.name = "--batch", .kind = ARG_INT, .dest = &c.batch, .metavar = "B",
         .help = "sequences per micro-batch and worker (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_BATCH) ")", .min = 1, .max = 1 << 20},
        {.name = "--accum", .kind = ARG_INT, .dest = &c.accum, .metavar = "N",
         .help = "micro-batches per step (default " TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_ACCUM) ")", .min = 1, .max = 1 << 16},
        {.name = "--warmup", .kind = ARG_INT, .dest = &c.warmup, .metavar = "N",
         .help = "warmup steps (default min("
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_WARMUP_MAX) ", rounds x K / 10))", .min = 0, .max = 1 << 30},
        {.name = "--seed", .kind = ARG_INT, .dest = &c.seed, .metavar = "S",
         .help = "seed of initialisation, partitions and batches (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_SEED) ")", .min = 0,
         .max = 2147483647},
        {.name = "--eval-every", .kind = ARG_INT, .dest = &c.eval_every, .metavar = "N",
         .help = "rounds between validation passes, 0 for the last only (default 1)", .min = 0,
         .max = 1 << 24},
        {.name = "--eval-batches", .kind = ARG_INT, .dest = &c.eval_batches, .metavar = "N",
         .help = "validation batches per pass, 0 for all (default "
                 TW_DEFAULT_TEXT(TW_TRAIN_DEFAULT_EVAL_BATCHES) ")", .min = 0, .max = 1 << 30},
        {.name = "--eval-device", .kind = ARG_STRING, .dest = &c.eval_device, .metavar = "SPEC",
         .help = "device of the validation passes and the save (default cpu)"},
        output_json_spec(&c.json, "records (JSON lines: one per round with bytes, phase times, "
                                  "losses, idle time; validation passes; the save) on stdout "
                                  "instead of the text, or appended to FILE"),
        cli_profile_spec(&profile), /* read by cli_profile_run (twist.c) */
        device_memory_spec(&c.device_memory),
        {.name = "--out", .kind = ARG_STRING, .dest = &c.out, .metavar = "DIR",
         .help = "save the merged model there as a twist checkpoint (a new or empty directory)"},
        {.name = "--overwrite", .kind = ARG_FLAG, .dest = &c.overwrite,
         .help = "--out may hold a twist checkpoint, which is replaced (twist's files only)"},
        {.name = "--save-every", .kind = ARG_INT, .dest = &c.save_every, .metavar = "R",
         .help = "with --out: save the merged model every R rounds, 0 for the end only "
                 "(default 1)", .min = 0, .max = 1 << 24},
        {.name = "--peer-timeout", .kind = ARG_INT, .dest = &c.peer_timeout, .metavar = "S",
         .help = "mpi: a rank that waits S seconds for ranks on other hosts ends the job, 0 "
                 "never (default 600; ranks on one host are watched directly)", .min = 0,
         .max = 1 << 24},
        {.name = "--inject-fault", .kind = ARG_STRING, .dest = &c.fault, .metavar = "W:R",
         .help = "for tests: worker W fails in round R (0-based)"},
        {.name = "--slow-worker", .kind = ARG_STRING, .dest = &c.slow, .metavar = "W:F",
         .help = "for balance experiments: worker W runs F times slower (waits after each "
                 "step)"},
        {.name = "--codec", .kind = ARG_CHOICE, .dest = &c.codec, .metavar = "NAME",
         .help = "exchange codec: fp32 (default), bf16 (rounded), bf16-delta (bf16 of the "
                 "change since the last value both ends know, with error feedback)",
         .choices = CODECS},
        {.name = "--resume", .kind = ARG_FLAG, .dest = &c.resume,
         .help = "continue the run saved in --out (same options; --rounds may be larger)"},
        {.name = "--stop-after", .kind = ARG_INT, .dest = &c.stop_after, .metavar = "R",
         .help = "stop (and save, with --out) after R rounds of this invocation", .min = 1,
         .max = 1 << 24},
        precision_spec(&c.precision), /* of every worker; merge and exchange stay fp32 */
        /* The command's own options follow. */
        {.name = "--heads-per-worker", .kind = ARG_INT, .dest = &c.heads_per_worker,
         .metavar = "M", .help = "heads of each layer per worker (workers x M >= heads)",
         .required = true, .min = 1, .max = 4096},
        {.name = "--balance", .kind = ARG_CHOICE, .dest = &c.balance, .metavar = "NAME",
         .help = "equal; speed (ist): heads and units by each worker's measured FLOP/s; data: "
                 "each worker's batch by its measured time per sequence (default equal)",
         .choices = BALANCES},
        {.name = "--mode", .kind = ARG_CHOICE, .dest = &c.mode, .metavar = "MODE",
         .help = "allreduce (gradients averaged every step) or localsgd (replicas averaged "
                 "every K steps)", .required = true, .choices = DP_MODES},
    };
    const int common = (int)(sizeof own / sizeof own[0]) - 3;
    /* ist: common + --heads-per-worker + --balance; dp: common + --mode (moved into place) +
     * --balance. */
    if (!ist) own[common] = own[common + 2];
    arg_spec specs[MODEL_FLAG_COUNT + sizeof own / sizeof own[0]];
    model_flag_specs(&c.model, specs);
    memcpy(specs + MODEL_FLAG_COUNT, own, sizeof own);
    args_command command = {
        ist ? "twist ist" : "twist dp",
        ist ? "twist ist --heads-per-worker M [--devices SPEC[,SPEC...]] "
              "[--workers-per-device N] [--local-steps K] [--rounds R] [--data FILE] "
              "[--preset NAME] [--balance speed|data] [--transport threads|mpi] [--json[=FILE]] "
              "[--out DIR]"
            : "twist dp --mode allreduce|localsgd [--devices SPEC[,SPEC...]] "
              "[--workers-per-device N] [--local-steps K] [--rounds R] [--balance data] "
              "[options]",
        ist ? "Independent subnetwork training: each worker trains a subnetwork (some heads, "
              "some MLP units of every layer) for K steps on its own data shard; the host "
              "merges them and deals new ones every round."
            : "Baselines of `twist ist` in the same engine: data parallel (every step's "
              "gradients averaged over the workers) or local SGD (full replicas averaged every "
              "K steps).",
        specs, MODEL_FLAG_COUNT + common + 2};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    int code = split_devices(&c, command.name);
    if (code != CLI_EXIT_OK) return code;
    /* The run counts global steps in an int: rounds x K must fit (computed in 64 bits). */
    const long long total = (long long)c.rounds * c.local_steps;
    if (total > 2147483647LL)
        return args_usage_error(command.name, "--rounds %d x --local-steps %d = %lld steps, "
                                "more than the 2147483647 a run can count", c.rounds,
                                c.local_steps, total);

    tw_dist_options o = tw_dist_defaults();
    code = model_flags_config(&c.model, &command, &o.model);
    if (code == CLI_EXIT_OK)
        code = model_flags_optimizer(&c.model, command.name, &o.lr, &o.min_lr, &o.adamw);
    if (code != CLI_EXIT_OK) return code;
    const int workers = c.device_count * c.workers_per_device;
    if (workers > TW_DIST_MAX_WORKERS)
        return args_usage_error(command.name, "--workers-per-device %d: %d workers in all, at "
                                "most %d", c.workers_per_device, workers, TW_DIST_MAX_WORKERS);
    o.mode = ist ? TW_DIST_IST : (c.mode == 0 ? TW_DIST_ALLREDUCE : TW_DIST_LOCALSGD);
    if (ist) {
        const int H = o.model.layers[0].heads;
        if (c.heads_per_worker > H)
            return args_usage_error(command.name, "--heads-per-worker %d exceeds the %d heads "
                                    "of a layer", c.heads_per_worker, H);
        if ((long)workers * c.heads_per_worker < H)
            return args_usage_error(command.name, "--heads-per-worker %d is too small: %d "
                                    "workers x %d heads cannot cover the %d heads of a layer",
                                    c.heads_per_worker, workers, c.heads_per_worker, H);
    }
    o.devices = c.device_list;
    o.device_count = c.device_count;
    code = device_memory_caps(command.name, &c.device_memory, c.device_list, c.device_count,
                              &o.device_memory);
    if (code != CLI_EXIT_OK) return code;
    o.workers_per_device = c.workers_per_device;
    o.heads_per_worker = c.heads_per_worker;
    o.local_steps = c.local_steps;
    o.rounds = c.rounds;
    o.balance = c.balance == 1   ? TW_BALANCE_SPEED
                : c.balance == 2 ? TW_BALANCE_DATA
                                 : TW_BALANCE_EQUAL;
    if (!ist && o.balance == TW_BALANCE_SPEED)
        return args_usage_error(command.name, "--balance speed: dp workers hold the whole "
                                "model, there are no heads or units to balance; --balance data "
                                "balances their batches");
    o.transport = c.transport == 1 ? TW_TRANSPORT_MPI : TW_TRANSPORT_THREADS;
    o.precision_set = precision_dtype(c.precision, &o.precision);
    o.data_path = c.model.data;
    o.tokenizer_path = c.model.tokenizer;
    o.vocab_size = c.model.vocab;
    o.batch = c.batch;
    o.grad_accum = c.accum;
    o.warmup = c.warmup >= 0 ? c.warmup : tw_train_default_warmup((int)total);
    o.seed = (uint64_t)c.seed;
    o.eval_every = c.eval_every;
    o.eval_batches = c.eval_batches;
    o.eval_device = c.eval_device;
    o.out_dir = c.out;
    o.save_every = c.save_every;
    o.peer_timeout_s = c.peer_timeout;
    o.overwrite = c.overwrite;
    o.codec = (tw_dist_codec)c.codec;
    o.resume = c.resume;
    o.stop_after = c.stop_after;
    if (c.resume && c.overwrite)
        return args_usage_error(command.name, "--resume and --overwrite exclude each other");
    if (c.resume && !c.out)
        return args_usage_error(command.name, "--resume needs --out DIR (the run to continue)");
    if (c.resume && c.model.tokenizer)
        return args_usage_error(command.name, "--resume: --tokenizer cannot be given: a "
                                "resumed run uses the tokenizer saved in %s/tokenizer.json; "
                                "drop --tokenizer", c.out);
    code = parse_fault(&c, command.name, workers, &o);
    if (code == CLI_EXIT_OK) code = parse_slow(&c, command.name, workers, &o);
    if (code != CLI_EXIT_OK) return code;
    if (o.transport == TW_TRANSPORT_MPI && !tw_dist_have_mpi())
        return args_usage_error(command.name, "--transport mpi: this twist was built without "
                                "MPI (install libopenmpi-dev and openmpi-bin, then rebuild)");
    quiet_usage_end();
    output out;
    code = output_open(&out, command.name, ist ? "ist" : "dp", c.json);
    if (code == CLI_EXIT_OK && c.out) code = output_open_run_log(&out, c.out, c.resume);
    if (code != CLI_EXIT_OK) return output_close(&out, code);
    dist_progress progress = {.out = &out};
    /* One process (threads): a signal stops after the current round, with a save. Under
     * mpirun the ranks end by the transport's failure rules instead. */
    if (o.transport == TW_TRANSPORT_THREADS) o.stop = stop_signals_catch(command.name, "round");
    tw_status status = tw_dist_run(&o, show, &progress);
    /* Under MPI one rank prints a failure; the others stay quiet. */
    if (status != TW_OK && !tw_dist_error_reported_elsewhere())
        code = cli_library_error(command.name, status);
    else if (status != TW_OK)
        code = CLI_EXIT_RUNTIME;
    const int sig = stop_signals_received();
    if (sig && status == TW_OK) {
        char line[2048];
        if (progress.saved)
            snprintf(line, sizeof line, "stopped by %s: the merged model is saved in %s",
                     stop_signal_name(sig), c.out);
        else
            snprintf(line, sizeof line, "stopped by %s%s", stop_signal_name(sig),
                     c.out ? " before the first round: nothing saved" : " (no --out: nothing saved)");
        fprintf(stderr, "%s: %s\n", command.name, line);
        if (out.log) tw_run_log_line(out.log, line);
    }
    if (progress.saved) output_sync(&out);
    code = output_close(&out, code);
    if (sig && status == TW_OK) return 128 + sig;
    if (status != TW_OK) {
        /* Then every rank ends: the others may be waiting in a collective for this one. */
        fflush(stdout);
        fflush(stderr);
        tw_dist_end_job(code);
    }
    return code;
}

static int run_quiet_usage(int argc, char **argv, bool ist) {
    quiet_usage_begin();
    const int code = run_command(argc, argv, ist);
    quiet_usage_end();
    /* The line is the same on every rank, so rank 0 finds the same error, prints it and gives
     * the job its exit status; a quiet rank that exited 2 first would make mpirun kill rank 0
     * before it could say why. */
    return g_quiet_rank && code == CLI_EXIT_USAGE ? CLI_EXIT_OK : code;
}

int cmd_ist(int argc, char **argv) { return run_quiet_usage(argc, argv, true); }
int cmd_dp(int argc, char **argv) { return run_quiet_usage(argc, argv, false); }
