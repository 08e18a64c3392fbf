/* Output of the `twist` commands that report numbers: text lines for people, records
 * (twist/record.h) for programs, and for runs the log files of the output directory.
 *
 * Every such command takes --json[=FILE] (output_json_spec):
 *   --json         records on stdout instead of the text
 *   --json=FILE    records appended to FILE (also "--json FILE"); the text still prints
 * A run (train, ist, dp) also keeps metrics.jsonl (its records) and log.txt (its text lines) in
 * its output directory (output_open_run_log).
 *
 * A record that cannot be written (a full disk, /dev/full) is reported once on stderr; the
 * command goes on (a run's checkpoint matters more than its records) and exits 1 at the end. */
#ifndef TWIST_TOOLS_OUTPUT_H
#define TWIST_TOOLS_OUTPUT_H

#include <stdbool.h>

#include "args.h"
#include "twist/record.h"

typedef struct output {
    const char *prog;    /* "twist train": prefixes messages */
    const char *command; /* "train": the records' command field */
    tw_record_sink *sink;/* --json: NULL when not given */
    bool text;           /* text lines go to stdout (false when the records do) */
    tw_run_log *log;     /* a run's metrics.jsonl and log.txt, or NULL */
    bool failed;         /* a record or log write failed (reported once) */
    bool log_failed;
} output;

/* The --json[=FILE] option writing into *json (NULL when not given, "-" for stdout). */
arg_spec output_json_spec(const char **json, const char *what);

/* Opens the sink of --json (json as output_json_spec left it). Returns a CLI exit code. */
int output_open(output *out, const char *prog, const char *command, const char *json);

/* Keeps the run's log in dir (see tw_run_log_open); append for a resumed run. */
int output_open_run_log(output *out, const char *dir, bool append);

/* New record of this command; write it with output_record (which frees it). */
cJSON *output_new(const output *out, const char *event);
void output_record(output *out, cJSON *record);

/* A line of text (no newline): on stdout unless the records go there, and into log.txt. */
void output_line(output *out, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* After a checkpoint save into the run's directory: its log files now hold the whole log. */
void output_sync(output *out);

/* Closes everything; returns code, or CLI_EXIT_RUNTIME when code was OK but a write failed. */
int output_close(output *out, int code);

#endif
