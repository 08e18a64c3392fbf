/* `--profile FILE` on train, eval, ist, dp and bench step, and `twist profile summary FILE`.
 *
 * The flag is handled around the command (cli_profile_run): the session opens before the command
 * runs, so every device it opens (an IST worker's included) is profiled, and the trace is written
 * after it returns. The command's own option table lists the flag (cli_profile_spec) so --help
 * shows it and the parser checks its value. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_profile.h"
#include "output.h"
#include "twist/profile.h"

arg_spec cli_profile_spec(const char **path) {
    arg_spec spec = {.name = "--profile", .kind = ARG_STRING, .dest = path, .metavar = "FILE",
                     .help = "profile every op (device and host time, FLOPs, bytes, memory) and "
                             "write a Chrome trace JSON to FILE (Perfetto, chrome://tracing; "
                             "'twist profile summary FILE' prints the table)"};
    return spec;
}

/* The value of --profile in argv ("--profile FILE" or "--profile=FILE"), or NULL. */
static const char *profile_path(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0) return i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(argv[i], "--profile=", 10) == 0) return argv[i] + 10;
    }
    return NULL;
}

/* Under mpirun (ist/dp --transport mpi) every rank profiles its own worker: rank 0 writes FILE,
 * rank r > 0 writes FILE.rank<r>. The rank comes from the launcher's environment (Open MPI,
 * PMIx, MPICH), as in cmd_ist.c; -1 outside a launcher. */
static int launcher_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *rank = getenv(names[i]);
        if (rank) return atoi(rank);
    }
    return -1;
}

int cli_profile_run(const char *prog, int argc, char **argv, int (*run)(int, char **)) {
    const char *given = profile_path(argc, argv);
    if (!given || !*given) return run(argc, argv); /* the parser reports a missing value */
    char path[4096];
    const int rank = launcher_rank();
    if (rank > 0) snprintf(path, sizeof path, "%s.rank%d", given, rank);
    else snprintf(path, sizeof path, "%s", given);
    tw_status status = tw_profile_start();
    if (status != TW_OK) return cli_library_error(prog, status);
    int code = run(argc, argv);
    status = tw_profile_stop();
    if (status != TW_OK) /* a timer failed: the trace still has host times */
        fprintf(stderr, "%s: warning: %s; the trace uses host times there\n", prog,
                tw_last_error());
    tw_profile_totals totals;
    status = tw_profile_totals_get(&totals);
    /* A rank > 0 that stopped on a usage error exits 0 (rank 0 reports it): no trace then. */
    if (code != CLI_EXIT_USAGE && (rank <= 0 || totals.calls > 0)) {
        if (status == TW_OK) status = tw_profile_write_trace(path);
        if (status != TW_OK) {
            int failed = cli_library_error(prog, status);
            if (code == CLI_EXIT_OK) code = failed;
        } else {
            fprintf(stderr,
                    "%s: profile of %lld op calls (%.1f ms on the devices) written to %s; "
                    "'twist profile summary %s' prints the table\n",
                    prog, totals.calls, totals.device_seconds * 1e3, path, path);
        }
    }
    tw_profile_release();
    return code;
}

/* ------------------------------------------------------------------------------------------ */
/* twist profile summary                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct row {
    char key[160];
    long long calls;
    double seconds, flops, bytes;
    double peak_seconds; /* seconds the FLOPs take at the device's peak; NAN if unknown */
} row;

typedef struct table {
    row *rows;
    int count, capacity;
} table;

static row *table_row(table *t, const char *key) {
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->rows[i].key, key) == 0) return &t->rows[i];
    if (t->count == t->capacity) {
        int capacity = t->capacity ? 2 * t->capacity : 64;
        row *rows = realloc(t->rows, (size_t)capacity * sizeof *rows);
        if (!rows) return NULL;
        t->rows = rows;
        t->capacity = capacity;
    }
    row *r = &t->rows[t->count++];
    memset(r, 0, sizeof *r);
    snprintf(r->key, sizeof r->key, "%s", key);
    return r;
}

static int by_time(const void *a, const void *b) {
    double x = ((const row *)a)->seconds, y = ((const row *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : strcmp(((const row *)a)->key, ((const row *)b)->key);
}

static char *read_text(const char *path, char *why, size_t capacity) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, capacity, "cannot open %s", path);
        return NULL;
    }
    size_t size = 0, cap = 1 << 16;
    char *text = malloc(cap);
    for (;;) {
        if (!text) break;
        size += fread(text + size, 1, cap - size - 1, f);
        if (size < cap - 1) break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        cap *= 2;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!text || bad) {
        free(text);
        snprintf(why, capacity, "cannot read %s", path);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

static double number_or_nan(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

/* The entry of the track (pid, tid) in the trace's twistDevices, or NULL. */
static const cJSON *track_device(const cJSON *devices, int pid, int tid) {
    const cJSON *d;
    cJSON_ArrayForEach(d, devices) {
        if (number_or_nan(d, "pid") == pid && number_or_nan(d, "tid") == tid) return d;
    }
    return NULL;
}

/* The device peak (GFLOP/s) of the track (pid, tid); NAN when unknown. */
static double track_peak(const cJSON *devices, int pid, int tid) {
    return number_or_nan(track_device(devices, pid, tid), "peak_gflops");
}

static void add_to(row *r, double seconds, double flops, double bytes, double peak) {
    r->calls++;
    r->seconds += seconds;
    r->flops += isfinite(flops) ? flops : 0;
    r->bytes += isfinite(bytes) ? bytes : 0;
    if (r->calls == 1) r->peak_seconds = 0;
    r->peak_seconds += peak > 0 && isfinite(flops) ? flops / (peak * 1e9) : NAN;
}

static void print_table(output *out, const char *group, table *t, double total, int top) {
    qsort(t->rows, (size_t)t->count, sizeof *t->rows, by_time);
    output_line(out, "by %s:", group);
    output_line(out, "  %-36s %7s %10s %7s %10s %10s %9s %7s", group, "calls", "time ms", "share",
                "mean us", "GFLOP/s", "GB/s", "% peak");
    for (int i = 0; i < t->count; i++) {
        const row *r = &t->rows[i];
        double gflops = r->seconds > 0 ? r->flops / r->seconds * 1e-9 : NAN;
        double gbps = r->seconds > 0 ? r->bytes / r->seconds * 1e-9 : NAN;
        double peak = r->seconds > 0 ? r->peak_seconds / r->seconds : NAN;
        double share = total > 0 ? r->seconds / total : NAN;
        if (i < top) {
            char peak_text[16] = "-";
            if (isfinite(peak)) snprintf(peak_text, sizeof peak_text, "%.1f", 100.0 * peak);
            output_line(out, "  %-36s %7lld %10.3f %6.1f%% %10.2f %10.3f %9.3f %7s", r->key,
                        r->calls, r->seconds * 1e3, 100.0 * share, r->seconds / r->calls * 1e6,
                        gflops, gbps, peak_text);
        }
        cJSON *record = output_new(out, "profile_row");
        tw_record_string(record, "group", group);
        tw_record_string(record, "key", r->key);
        tw_record_int(record, "calls", r->calls);
        tw_record_number(record, "time_ms", r->seconds * 1e3);
        tw_record_number(record, "share", share);
        tw_record_number(record, "mean_us", r->seconds / r->calls * 1e6);
        tw_record_number(record, "flops", r->flops);
        tw_record_number(record, "bytes", r->bytes);
        tw_record_number(record, "gflops", gflops);
        tw_record_number(record, "gbps", gbps);
        tw_record_number(record, "peak_fraction", peak); /* NaN (unknown peak) becomes null */
        output_record(out, record);
    }
    if (t->count > top) output_line(out, "  ... %d more (--top)", t->count - top);
}

static int cmd_profile_summary(int argc, char **argv) {
    const char *json = NULL, *path = NULL;
    int top = 25;
    arg_spec specs[] = {
        {.name = "--top", .kind = ARG_INT, .dest = &top, .metavar = "N",
         .help = "rows printed per table (default 25; the records have all)", .min = 1,
         .max = 1000000},
        output_json_spec(&json, "records (JSON lines: one profile_row per table row and a "
                                "profile_summary) on stdout instead of the tables, or appended "
                                "to FILE"),
    };
    args_command command = {.name = "twist profile summary",
                            .synopsis = "twist profile summary FILE [--top N] [--json[=FILE]]",
                            .summary = "per-op table of a trace written by --profile: time share, "
                                       "calls, mean time, FLOP/s, GB/s and % of the device's "
                                       "peak, by op, by layer and by name",
                            .specs = specs,
                            .count = (int)(sizeof specs / sizeof specs[0])};
    /* The trace comes first, before the options. */
    if (argc > 0 && argv[0][0] != '-') {
        path = argv[0];
        argc--;
        argv++;
    }
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (!path) return args_usage_error(command.name, "give the trace FILE");

    char why[4200];
    char *text = read_text(path, why, sizeof why);
    if (!text) return cli_runtime_error(command.name, "%s", why);
    cJSON *trace = cJSON_Parse(text);
    free(text);
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(trace, "traceEvents");
    if (!cJSON_IsArray(events)) {
        cJSON_Delete(trace);
        return cli_runtime_error(command.name,
                                 "%s is not a twist trace: no \"traceEvents\" array (is it JSON "
                                 "written by --profile?)",
                                 path);
    }
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(trace, "twistDevices");

    table ops = {0}, layers = {0}, names = {0};
    /* The device memory high-water mark per track (pid, tid), from the ops' peak_mem_bytes. */
    enum { MAX_TRACKS = 256 };
    typedef struct track_peak_mem { int pid, tid; double peak; } track_peak_mem;
    track_peak_mem tracks[MAX_TRACKS];
    int track_count = 0;
    double total = 0, first = INFINITY, last = -INFINITY;
    long long calls = 0;
    int code = CLI_EXIT_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
        if (!cJSON_IsString(ph) || strcmp(ph->valuestring, "X") != 0) continue;
        /* host spans of IST workers (compute, idle, send, ...) are not ops */
        const cJSON *cat = cJSON_GetObjectItemCaseSensitive(e, "cat");
        if (cJSON_IsString(cat) && strcmp(cat->valuestring, "ist") == 0) continue;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(args, "op");
        double ts = number_or_nan(e, "ts"), dur = number_or_nan(e, "dur");
        if (!cJSON_IsString(name) || !cJSON_IsString(op) || !isfinite(ts) || !isfinite(dur)) {
            code = cli_runtime_error(command.name, "%s: an \"X\" event lacks name, args.op, ts "
                                                   "or dur", path);
            break;
        }
        double seconds = dur * 1e-6, flops = number_or_nan(args, "flops"),
               bytes = number_or_nan(args, "bytes");
        double peak =
            track_peak(devices, (int)number_or_nan(e, "pid"), (int)number_or_nan(e, "tid"));
        /* Layer: the name up to its first dot ("block3", "lm_head", "adamw"); the op itself
         * outside any named scope. */
        char layer[160];
        snprintf(layer, sizeof layer, "%s", name->valuestring);
        char *dot = strchr(layer, '.');
        if (dot) *dot = '\0';
        row *r[3] = {table_row(&ops, op->valuestring), table_row(&layers, layer),
                     table_row(&names, name->valuestring)};
        if (!r[0] || !r[1] || !r[2]) {
            code = cli_runtime_error(command.name, "out of host memory");
            break;
        }
        for (int i = 0; i < 3; i++) add_to(r[i], seconds, flops, bytes, peak);
        int pid = (int)number_or_nan(e, "pid"), tid = (int)number_or_nan(e, "tid"), t = 0;
        while (t < track_count && (tracks[t].pid != pid || tracks[t].tid != tid)) t++;
        if (t == track_count && t < MAX_TRACKS)
            tracks[track_count++] = (track_peak_mem){pid, tid, 0};
        double mem = number_or_nan(args, "peak_mem_bytes");
        if (t < track_count && isfinite(mem) && mem > tracks[t].peak) tracks[t].peak = mem;
        total += seconds;
        calls++;
        if (ts < first) first = ts;
        if (ts + dur > last) last = ts + dur;
    }
    char track_specs[MAX_TRACKS][40]; /* each track's device spec (the trace is freed next) */
    for (int t = 0; t < track_count; t++) {
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(
            track_device(devices, tracks[t].pid, tracks[t].tid), "spec");
        snprintf(track_specs[t], sizeof track_specs[t], "%s",
                 cJSON_IsString(spec) ? spec->valuestring : "?");
    }
    cJSON_Delete(trace);

    output out;
    if (code == CLI_EXIT_OK) code = output_open(&out, command.name, "profile", json);
    else {
        free(ops.rows), free(layers.rows), free(names.rows);
        return code;
    }
    if (code == CLI_EXIT_OK) {
        double span = calls ? (last - first) * 1e-6 : 0;
        output_line(&out, "%s: %lld op calls, %.3f ms of device time over a %.3f ms span", path,
                    calls, total * 1e3, span * 1e3);
        cJSON *record = output_new(&out, "profile_summary");
        tw_record_string(record, "trace", path);
        tw_record_int(record, "calls", calls);
        tw_record_number(record, "device_ms", total * 1e3);
        tw_record_number(record, "span_ms", span * 1e3);
        output_record(&out, record);
        for (int t = 0; t < track_count; t++) {
            char size[32];
            output_line(&out, "device memory: %s (track %d) peaked at %s", track_specs[t],
                        tracks[t].tid, cli_format_bytes(tracks[t].peak, size, sizeof size));
            record = output_new(&out, "profile_memory");
            tw_record_string(record, "device", track_specs[t]);
            tw_record_int(record, "pid", tracks[t].pid);
            tw_record_int(record, "tid", tracks[t].tid);
            tw_record_number(record, "peak_bytes", tracks[t].peak);
            output_record(&out, record);
        }
        print_table(&out, "op", &ops, total, top);
        print_table(&out, "layer", &layers, total, top);
        print_table(&out, "name", &names, total, top);
    }
    free(ops.rows), free(layers.rows), free(names.rows);
    return output_close(&out, code);
}

int cmd_profile(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *to = argc < 1 ? stderr : stdout;
        fprintf(to, "usage: twist profile summary FILE [--top N] [--json[=FILE]]\n\n"
                    "Traces come from --profile FILE on train, eval, ist, dp and bench step.\n");
        return argc < 1 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[0], "summary") == 0) return cmd_profile_summary(argc - 1, argv + 1);
    fprintf(stderr, "twist profile: unknown subcommand '%s'; available: summary\n", argv[0]);
    return CLI_EXIT_USAGE;
}
