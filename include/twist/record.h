/* twist: records, the one machine-readable output of every command that reports numbers.
 *
 * A record is one JSON object on one line (JSON Lines), built with cJSON and written by one
 * writer, so every record of every command has the same shape:
 *
 *   {"event":"step","command":"train","step":10,"loss":5.61,...}
 *
 * - `event` says what the record is (device, backend, bench, step, eval, round, save, data) and
 *   `command` which command wrote it ("train", "bench gemm", "ist", ...);
 * - numbers are finite or null: a diverged run's loss or perplexity is written as null, never as
 *   inf or nan (which are not JSON);
 * - one key per quantity everywhere (README.md, "Records", lists them).
 *
 * Sinks write records: a file (appended) or stdout. Every write is checked; a failed write
 * (a full disk, /dev/full) is reported as TW_ERR_IO naming the path.
 *
 * A run log keeps a run's records and text lines in its output directory (metrics.jsonl and
 * log.txt). The directory may not exist until the run's first checkpoint, and a checkpoint save
 * may replace the whole directory: until then, and whenever that happens, the log's content is
 * kept in files it holds open and is written back by tw_run_log_sync, so the files in the
 * directory always hold the whole history (also across --resume, which appends). */
#ifndef TWIST_RECORD_H
#define TWIST_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new record {"event": event, "command": command}; NULL when out of memory (the add
 * functions below and the writers accept NULL and do nothing / report it). */
cJSON *tw_record_new(const char *command, const char *event);

/* "key": value. A non-finite number is written as null. */
void tw_record_number(cJSON *record, const char *key, double value);
void tw_record_int(cJSON *record, const char *key, long long value);
void tw_record_string(cJSON *record, const char *key, const char *value);
void tw_record_bool(cJSON *record, const char *key, bool value);
void tw_record_null(cJSON *record, const char *key);

/* The record as one line of JSON with its newline, NUL-terminated (free()); NULL when out of
 * memory. */
char *tw_record_format(const cJSON *record);

/* ---- sinks --------------------------------------------------------------------------------- */

typedef struct tw_record_sink tw_record_sink;

/* Opens a sink: path "-" or NULL is stdout; any other path is opened for appending (created if
 * absent), so several commands can collect their records in one file. */
tw_status tw_record_sink_open(const char *path, tw_record_sink **sink);

/* Writes one record and flushes it; TW_ERR_IO (naming the path and the system's reason) when the
 * write or the flush fails. */
tw_status tw_record_sink_write(tw_record_sink *sink, const cJSON *record);

/* Closes the sink (stdout is flushed, not closed); TW_ERR_IO when the last flush fails. NULL is
 * fine. */
tw_status tw_record_sink_close(tw_record_sink *sink);

/* ---- run logs (metrics.jsonl and log.txt of a run's output directory) ---------------------- */

typedef struct tw_run_log tw_run_log;

/* Starts the log of a run whose output directory is dir. With append (a resumed run), the
 * history already in dir/metrics.jsonl and dir/log.txt is kept and continued; otherwise the log
 * starts empty and replaces those files at the first sync. Nothing is written into dir until
 * tw_run_log_sync. */
tw_status tw_run_log_open(const char *dir, bool append, tw_run_log **log);

/* Appends a record to metrics.jsonl / a line of text (without its newline) to log.txt. */
tw_status tw_run_log_record(tw_run_log *log, const cJSON *record);
tw_status tw_run_log_line(tw_run_log *log, const char *line);

/* Makes dir/metrics.jsonl and dir/log.txt hold the whole log, after a checkpoint was saved into
 * dir: when dir does not exist nothing is done; when its files are not the ones the log writes
 * (a first save, or a save that replaced the directory) they are rewritten from the log's own
 * copy and the log continues in them. */
tw_status tw_run_log_sync(tw_run_log *log);

/* Closes the log (NULL is fine); does not sync. */
void tw_run_log_close(tw_run_log *log);

#ifdef __cplusplus
}
#endif

#endif
