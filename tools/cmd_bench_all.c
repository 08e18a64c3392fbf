/* `twist bench all --out DIR`: the GEMM, attention and training-step benchmarks on every device
 * `twist devices` lists, through the same code as `twist bench gemm|attention|step` (their
 * records appended to DIR/bench.jsonl), then one table (DIR/bench.md), one chart
 * (DIR/bench.svg) and the report page (DIR/report.html) of them. The default sizes are modest so
 * that the whole run takes a couple of minutes on a small CPU; the flags make them larger. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "report.h"

static const char *const PROG = "twist bench all";
static const char *const PRESETS[] = {"nano", "tiny", "small", NULL};

typedef struct all_options {
    const char *out, *devices;
    bool overwrite, peer;
    int gemm, seq, batch, heads, head_dim, preset, step_batch, steps, repeat;
} all_options;

/* Runs one benchmark command with the arguments in `line` (split at spaces; no argument holds
 * one), its records appended to jsonl. Returns its exit code. */
static int run_one(int (*command)(int, char **), const char *line, const char *jsonl) {
    char buffer[4096], json[4300];
    char *argv[40];
    int argc = 0;
    snprintf(buffer, sizeof buffer, "%s", line);
    for (char *token = strtok(buffer, " "); token && argc < 38; token = strtok(NULL, " "))
        argv[argc++] = token;
    snprintf(json, sizeof json, "--json=%s", jsonl);
    argv[argc++] = json;
    argv[argc] = NULL;
    fflush(stdout);
    const int code = command(argc, argv);
    fflush(stdout);
    return code;
}

/* The device specs to run: --devices, or every device listed. */
static int device_specs(const all_options *o, char specs[][32], int capacity, int *count) {
    *count = 0;
    if (o->devices) {
        char list[1024];
        snprintf(list, sizeof list, "%s", o->devices);
        for (char *s = strtok(list, ","); s && *count < capacity; s = strtok(NULL, ","))
            snprintf(specs[(*count)++], 32, "%s", s);
        return CLI_EXIT_OK;
    }
    const int n = tw_device_count();
    for (int i = 0; i < n && *count < capacity; i++) {
        tw_device_info info;
        tw_status status = tw_device_info_at(i, &info);
        if (status != TW_OK) return cli_library_error(PROG, status);
        snprintf(specs[(*count)++], 32, "%s", info.spec);
    }
    if (*count == 0) return cli_runtime_error(PROG, "no devices listed ('twist devices')");
    return CLI_EXIT_OK;
}

static int bench_all(const all_options *o) {
    char specs[64][32];
    int count = 0;
    int code = device_specs(o, specs, 64, &count);
    if (code != CLI_EXIT_OK) return code;
    code = report_prepare_dir(PROG, o->out, o->overwrite);
    if (code != CLI_EXIT_OK) return code;
    char jsonl[4200], md_path[4200];
    snprintf(jsonl, sizeof jsonl, "%s/bench.jsonl", o->out);
    snprintf(md_path, sizeof md_path, "%s/bench.md", o->out);
    strbuf failures = {0};
    int failed = 0;
    for (int d = 0; d < count; d++) {
        char line[4096];
        struct {
            const char *name;
            int (*command)(int, char **);
        } benches[3] = {{"gemm", cmd_bench_gemm},
                        {"attention", cmd_bench_attention},
                        {"step", cmd_bench_step}};
        for (int b = 0; b < 3; b++) {
            if (b == 0)
                snprintf(line, sizeof line, "--device %.31s --m %d --n %d --k %d --repeat %d%s",
                         specs[d], o->gemm, o->gemm, o->gemm, o->repeat, o->peer ? " --peer" : "");
            else if (b == 1)
                snprintf(line, sizeof line,
                         "--device %.31s --batch %d --heads %d --seq %d --head-dim %d --repeat %d",
                         specs[d], o->batch, o->heads, o->seq, o->head_dim, o->repeat);
            else
                snprintf(line, sizeof line,
                         "--device %.31s --preset %s --batch %d --steps %d --warmup 1 --rounds 1",
                         specs[d], PRESETS[o->preset], o->step_batch, o->steps);
            printf("== twist bench %s %s\n", benches[b].name, line);
            const int rc = run_one(benches[b].command, line, jsonl);
            if (rc != CLI_EXIT_OK) {
                failed++;
                sb_printf(&failures, "- `twist bench %s %s` failed (exit %d; its message is in "
                                     "the command's output)\n", benches[b].name, line, rc);
            }
        }
    }
    strbuf md = {0};
    sb_printf(&md, "# twist bench all\n\n");
    if (failed < 3 * count) code = report_bench_markdown(PROG, jsonl, &md);
    if (failed) sb_printf(&md, "\nFailed:\n\n%s", failures.data ? failures.data : "");
    if (code == CLI_EXIT_OK && md.failed) code = cli_runtime_error(PROG, "out of host memory");
    if (code == CLI_EXIT_OK) code = report_write_file(PROG, md_path, md.data, md.length);
    if (code == CLI_EXIT_OK && failed < 3 * count) {
        const char *inputs[] = {jsonl};
        code = report_write(PROG, 1, inputs, o->out, "twist bench all", false, false);
    }
    if (code == CLI_EXIT_OK) {
        printf("\n%s", md.data + strlen("# twist bench all\n\n"));
        if (failed < 3 * count)
            printf("\n%s: table in %s, records in %s, chart in %s/bench.svg, page in "
                   "%s/report.html\n", PROG, md_path, jsonl, o->out, o->out);
    }
    sb_free(&md);
    sb_free(&failures);
    if (code == CLI_EXIT_OK && failed)
        code = cli_runtime_error(PROG, "%d of %d benchmarks failed (listed in %s)", failed,
                                 3 * count, md_path);
    return code;
}

int cmd_bench_all(int argc, char **argv) {
    all_options o = {.gemm = 512, .seq = 256, .batch = 2, .heads = 4, .head_dim = 64,
                     .preset = 0, .step_batch = 4, .steps = 3, .repeat = 3};
    arg_spec specs[] = {
        {.name = "--out", .kind = ARG_STRING, .dest = &o.out, .metavar = "DIR",
         .help = "directory for bench.jsonl, bench.md, bench.svg and report.html (new or empty, "
                 "or --overwrite)", .required = true},
        {.name = "--overwrite", .kind = ARG_FLAG, .dest = &o.overwrite,
         .help = "replace an earlier bench all or report in DIR (only their own files)"},
        {.name = "--devices", .kind = ARG_STRING, .dest = &o.devices, .metavar = "SPEC[,SPEC...]",
         .help = "devices to run (default: every device 'twist devices' lists)"},
        {.name = "--gemm-size", .kind = ARG_INT, .dest = &o.gemm, .metavar = "N",
         .help = "GEMM m = n = k (default 512)", .min = 1, .max = 65536},
        {.name = "--peer", .kind = ARG_FLAG, .dest = &o.peer,
         .help = "also run each device's GEMM peer library (OpenBLAS, CLBlast, cuBLAS)"},
        {.name = "--seq", .kind = ARG_INT, .dest = &o.seq, .metavar = "T",
         .help = "attention sequence length (default 256; batch 2, 4 heads of 64)", .min = 1,
         .max = 65536},
        {.name = "--preset", .kind = ARG_CHOICE, .dest = &o.preset, .metavar = "NAME",
         .help = "training-step preset: nano, tiny, small (default nano)", .choices = PRESETS},
        {.name = "--step-batch", .kind = ARG_INT, .dest = &o.step_batch, .metavar = "B",
         .help = "training-step batch (default 4)", .min = 1, .max = 65536},
        {.name = "--steps", .kind = ARG_INT, .dest = &o.steps, .metavar = "N",
         .help = "timed training steps after one warm-up (default 3)", .min = 1, .max = 100000},
        {.name = "--repeat", .kind = ARG_INT, .dest = &o.repeat, .metavar = "R",
         .help = "timed GEMM and attention runs; medians reported (default 3)", .min = 1,
         .max = 10000},
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist bench all --out DIR [--overwrite] [--devices SPEC,...] [sizes]",
        .summary = "GEMM, attention and training-step benchmarks on every device (the code of\n"
                   "bench gemm, attention and step), then one table (bench.md; records in\n"
                   "bench.jsonl), one chart (bench.svg) and the report page (report.html) in DIR.",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    return bench_all(&o);
}
