/* --profile FILE on train, eval, ist, dp and bench step (tools/cmd_profile.c). */
#ifndef TWIST_TOOLS_CLI_PROFILE_H
#define TWIST_TOOLS_CLI_PROFILE_H

#include "args.h"

/* The --profile FILE entry of a command's option table (the value is read by cli_profile_run;
 * the table entry lists the flag in --help and checks it has a value). */
arg_spec cli_profile_spec(const char **path);

/* Runs the command; with --profile FILE in argv, inside a profiling session whose Chrome trace
 * is written to FILE afterwards (unless the command failed on its usage). Returns the command's
 * exit code, or CLI_EXIT_RUNTIME when it succeeded but the trace could not be written. */
int cli_profile_run(const char *prog, int argc, char **argv, int (*run)(int, char **));

/* `twist profile summary FILE`. */
int cmd_profile(int argc, char **argv);

#endif
