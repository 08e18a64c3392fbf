/* Text, records and run logs of the `twist` commands (see output.h). */
#include "output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

arg_spec output_json_spec(const char **json, const char *what) {
    return (arg_spec){.name = "--json", .kind = ARG_OPTIONAL_STRING, .dest = json,
                      .metavar = "FILE", .implicit = "-", .help = what};
}

int output_open(output *out, const char *prog, const char *command, const char *json) {
    memset(out, 0, sizeof *out);
    out->prog = prog;
    out->command = command;
    out->text = !json || strcmp(json, "-") != 0;
    if (!json) return CLI_EXIT_OK;
    tw_status status = tw_record_sink_open(json, &out->sink);
    return status == TW_OK ? CLI_EXIT_OK : cli_library_error(prog, status);
}

int output_open_run_log(output *out, const char *dir, bool append) {
    tw_status status = tw_run_log_open(dir, append, &out->log);
    return status == TW_OK ? CLI_EXIT_OK : cli_library_error(out->prog, status);
}

/* Reports the first failed write on stderr: the message names the file and the reason. */
static void write_failed(output *out, bool *flag, const char *what) {
    if (*flag) return;
    *flag = true;
    fprintf(stderr, "%s: %s; %s\n", out->prog, tw_last_error(), what);
}

cJSON *output_new(const output *out, const char *event) {
    return tw_record_new(out->command, event);
}

void output_record(output *out, cJSON *record) {
    if (!record) {
        fprintf(stderr, "%s: out of host memory for a record\n", out->prog);
        out->failed = true;
        return;
    }
    if (out->sink && !out->failed && tw_record_sink_write(out->sink, record) != TW_OK)
        write_failed(out, &out->failed, "the records that follow are lost");
    if (out->log && !out->log_failed && tw_run_log_record(out->log, record) != TW_OK)
        write_failed(out, &out->log_failed, "the run log is incomplete");
    cJSON_Delete(record);
}

void output_line(output *out, const char *format, ...) {
    char line[4096];
    va_list list;
    va_start(list, format);
    vsnprintf(line, sizeof line, format, list);
    va_end(list);
    if (out->text) {
        printf("%s\n", line);
        fflush(stdout);
    }
    if (out->log && !out->log_failed && tw_run_log_line(out->log, line) != TW_OK)
        write_failed(out, &out->log_failed, "the run log is incomplete");
}

void output_sync(output *out) {
    if (out->log && !out->log_failed && tw_run_log_sync(out->log) != TW_OK)
        write_failed(out, &out->log_failed, "the run log is incomplete");
}

int output_close(output *out, int code) {
    if (out->sink && tw_record_sink_close(out->sink) != TW_OK && !out->failed)
        write_failed(out, &out->failed, "records were lost");
    out->sink = NULL;
    /* the text too: `twist devices > /dev/full` must not pass for a success */
    if (out->text && (fflush(stdout) == EOF || ferror(stdout)) && !out->failed) {
        fprintf(stderr, "%s: standard output: cannot write: %s\n", out->prog, strerror(errno));
        out->failed = true;
    }
    tw_run_log_close(out->log);
    out->log = NULL;
    return code == CLI_EXIT_OK && (out->failed || out->log_failed) ? CLI_EXIT_RUNTIME : code;
}
