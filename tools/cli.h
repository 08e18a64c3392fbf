/* Pieces shared by the `twist` commands: exit codes, the command entry points, library error
 * reporting and timing helpers. */
#ifndef TWIST_TOOLS_CLI_H
#define TWIST_TOOLS_CLI_H

#include "twist/backend.h"
#include "twist/error.h" /* TW_TRY for library calls inside commands */

/* 0 success; 1 a runtime failure (no such device, out of memory, driver error); 2 bad usage
 * (unknown command or flag, a value that cannot be right). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_RUNTIME = 1, CLI_EXIT_USAGE = 2 };

/* Commands: argv holds the command's own arguments (command words removed). */
int cmd_devices(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_gemm(int argc, char **argv);
int cmd_bench_attention(int argc, char **argv);
int cmd_bench_step(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_ist(int argc, char **argv);
int cmd_dp(int argc, char **argv);
int cmd_grow(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_bench_all(int argc, char **argv);
int cmd_tune(int argc, char **argv);

/* Prints "<prog>: <library message>" for a failed library call and returns CLI_EXIT_RUNTIME. */
int cli_library_error(const char *prog, tw_status status);

/* Prints "<prog>: <message>" to stderr and returns CLI_EXIT_RUNTIME. */
int cli_runtime_error(const char *prog, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* tw_now_seconds() (twist/clock.h) in milliseconds, the unit of the bench commands. */
double cli_now_ms(void);

/* Median of count values (sorts them in place); 0 for an empty array. */
double cli_median(double *values, int count);

/* "1.50 GiB", "312.0 MiB", "4.0 KiB", "12 B" into buf. */
const char *cli_format_bytes(double bytes, char *buf, size_t size);

#endif
