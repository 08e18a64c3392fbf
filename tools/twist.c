/* twist: the command-line tool. This file holds only the command table, the top-level usage and
 * the dispatch; each command lives in its own cmd_*.c file.
 *
 * Commands arrive with their issues: one joins the table below when the library can do it.
 * Until then naming it is an error like any other unknown command, never a stub that pretends
 * to work. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "cli_profile.h"
#include "twist/cpu.h"
#include "twist/ist_run.h"
#include "twist_version.h"

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

static const cli_command commands[] = {
    {"devices", "list every device of every backend built into this twist", cmd_devices},
    {"bench", "measure GEMM, attention and training-step throughput (gemm, attention, step)",
     cmd_bench},
    {"train", "train a GPT model and save a checkpoint", cmd_train},
    {"eval", "validation loss, perplexity and accuracy of a checkpoint on a corpus", cmd_eval},
    {"sample", "generate text from a checkpoint", cmd_sample},
    {"ist", "independent subnetwork training over several devices (threads or MPI)", cmd_ist},
    {"dp", "data parallel and local SGD baselines of ist, in the same engine", cmd_dp},
    {"grow", "grow a larger model from trained checkpoints (depth, combine, double)", cmd_grow},
    {"extract", "cut a smaller dense model (the most important heads and units) from a checkpoint",
     cmd_extract},
    {"data", "prepare data: train a tokenizer, write graded synthetic text", cmd_data},
    {"profile", "per-op table of a trace written by --profile (summary)", cmd_profile},
    {"report", "HTML page and SVG plots of runs, profiles and benchmarks", cmd_report},
    {"tune", "time each device's kernel variants now and cache the fastest per shape class",
     cmd_tune},
};
enum { COMMAND_COUNT = sizeof commands / sizeof commands[0] };

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: twist <command> [options]\n\n"
            "twist trains transformers on CPU, OpenCL, Vulkan and CUDA devices.\n\n"
            "commands:\n");
    for (int i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-10s %s\n", "version", "version, git description and backends of this twist (also --version)");
    fprintf(out, "\nRun 'twist <command> --help' for the options of a command.\n");
}

/* `twist --version`: the version, the git description of the tree it was built from, and the
 * backends compiled into this binary (whether a device is present is `twist devices`' job). */
static int print_version(void) {
    printf("twist %s", TWIST_VERSION);
    if (TWIST_GIT_DESCRIBE[0]) printf(" (git %s)", TWIST_GIT_DESCRIBE);
    printf("\nbackends built:");
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++)
        if (tw_backend_compiled((tw_backend_kind)kind))
            printf(" %s", tw_backend_name((tw_backend_kind)kind));
    printf("\nbackends not built:");
    int missing = 0;
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++)
        if (!tw_backend_compiled((tw_backend_kind)kind)) {
            printf(" %s", tw_backend_name((tw_backend_kind)kind));
            missing++;
        }
    printf("%s\nMPI transport: %s\n", missing ? "" : " none", tw_dist_have_mpi() ? "built" : "not built");
    return CLI_EXIT_OK;
}

static void list_commands(char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; i < COMMAND_COUNT; i++) {
        if (i) strncat(buf, ", ", size - strlen(buf) - 1);
        strncat(buf, commands[i].name, size - strlen(buf) - 1);
    }
}

/* Under an address-space limit (ulimit -v) an OpenBLAS thread that could not map its buffer
 * retries forever, and exit() would wait for it in OpenBLAS's shutdown
 * (backends/cpu/cpu_addr_limit.c): there twist flushes its output and leaves without running
 * the libraries' destructors (twist registers none of its own). */
static int leave(int code) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        fflush(NULL);
        _exit(code);
    }
    return code;
}

int main(int argc, char **argv) {
    /* OpenBLAS and OpenMP read their tuning (kernel family for this CPU, idle-wait policy) only
     * when they load: restart once with it set, so the cpu backend and the OpenBLAS peer both run
     * at full speed (see twist/cpu.h). Returns at once when nothing needs doing. */
    tw_cpu_restart_tuned(argv);
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        if (argc > 2) {
            fprintf(stderr, "twist %s: takes no arguments, got '%s'\n", name, argv[2]);
            return CLI_EXIT_USAGE;
        }
        return print_version();
    }
    /* --profile FILE: these commands run inside a profiling session (tools/cmd_profile.c). */
    static const char *const profiled[] = {"train", "eval", "ist", "dp"};
    for (int i = 0; i < (int)(sizeof profiled / sizeof *profiled); i++)
        if (strcmp(name, profiled[i]) == 0)
            for (int k = 0; k < COMMAND_COUNT; k++)
                if (strcmp(name, commands[k].name) == 0) {
                    char prog[32];
                    snprintf(prog, sizeof prog, "twist %s", name);
                    return leave(cli_profile_run(prog, argc - 2, argv + 2, commands[k].run));
                }
    if (strcmp(name, "bench") == 0 && argc > 2 && strcmp(argv[2], "step") == 0)
        return leave(cli_profile_run("twist bench step", argc - 3, argv + 3, cmd_bench_step));
    for (int i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(name, commands[i].name) == 0) return leave(commands[i].run(argc - 2, argv + 2));
    char available[256];
    list_commands(available, sizeof available);
    fprintf(stderr, "twist: unknown command '%s'; available commands: %s\n(run 'twist --help')\n",
            name, available);
    return CLI_EXIT_USAGE;
}
