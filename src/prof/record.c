/* Records, record sinks and run logs (twist/record.h): the one JSON writer of twist. */
#include "twist/record.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend_impl.h"

/* ------------------------------------------------------------------------------------------ */
/* Records                                                                                    */
/* ------------------------------------------------------------------------------------------ */

cJSON *tw_record_new(const char *command, const char *event) {
    cJSON *record = cJSON_CreateObject();
    if (!record) return NULL;
    /* event first, then command: the two fields every record has, at the start of the line */
    if (!cJSON_AddStringToObject(record, "event", event ? event : "") ||
        !cJSON_AddStringToObject(record, "command", command ? command : "")) {
        cJSON_Delete(record);
        return NULL;
    }
    return record;
}

void tw_record_number(cJSON *record, const char *key, double value) {
    if (!record) return;
    /* JSON has no inf or nan: a diverged loss is null, never a token a parser refuses */
    if (isfinite(value)) cJSON_AddNumberToObject(record, key, value);
    else cJSON_AddNullToObject(record, key);
}

void tw_record_int(cJSON *record, const char *key, long long value) {
    if (record) cJSON_AddNumberToObject(record, key, (double)value);
}

void tw_record_string(cJSON *record, const char *key, const char *value) {
    if (!record) return;
    if (value) cJSON_AddStringToObject(record, key, value);
    else cJSON_AddNullToObject(record, key);
}

void tw_record_bool(cJSON *record, const char *key, bool value) {
    if (record) cJSON_AddBoolToObject(record, key, value);
}

void tw_record_null(cJSON *record, const char *key) {
    if (record) cJSON_AddNullToObject(record, key);
}

char *tw_record_format(const cJSON *record) {
    if (!record) return NULL;
    char *text = cJSON_PrintUnformatted(record);
    if (!text) return NULL;
    size_t length = strlen(text);
    char *line = realloc(text, length + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[length] = '\n';
    line[length + 1] = '\0';
    return line;
}

/* Writes text to out and flushes it; the failure, if any, names path. */
static tw_status write_text(FILE *out, const char *path, const char *text) {
    errno = 0;
    if (fputs(text, out) == EOF || fflush(out) == EOF || ferror(out)) {
        int code = errno;
        clearerr(out);
        return tw_error(TW_ERR_IO, "%s: cannot write: %s", path,
                        code ? strerror(code) : "write error");
    }
    return TW_OK;
}

static tw_status write_record(FILE *out, const char *path, const cJSON *record) {
    char *line = tw_record_format(record);
    if (!line) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of host memory for a record", path);
    tw_status status = write_text(out, path, line);
    free(line);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Sinks                                                                                      */
/* ------------------------------------------------------------------------------------------ */

struct tw_record_sink {
    FILE *out;
    bool is_stdout;
    char *path;
};

tw_status tw_record_sink_open(const char *path, tw_record_sink **sink) {
    *sink = NULL;
    tw_record_sink *s = calloc(1, sizeof *s);
    const bool is_stdout = !path || strcmp(path, "-") == 0;
    if (s) s->path = strdup(is_stdout ? "standard output" : path);
    if (!s || !s->path) {
        free(s);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "records: out of host memory");
    }
    s->is_stdout = is_stdout;
    s->out = is_stdout ? stdout : fopen(path, "a");
    if (!s->out) {
        tw_status status = tw_error(TW_ERR_IO, "%s: cannot open for writing records: %s", path,
                                    strerror(errno));
        free(s->path);
        free(s);
        return status;
    }
    *sink = s;
    return TW_OK;
}

tw_status tw_record_sink_write(tw_record_sink *sink, const cJSON *record) {
    if (!sink) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_record_sink_write: sink is NULL");
    return write_record(sink->out, sink->path, record);
}

tw_status tw_record_sink_close(tw_record_sink *sink) {
    if (!sink) return TW_OK;
    tw_status status = TW_OK;
    errno = 0;
    int failed = sink->is_stdout ? fflush(sink->out) == EOF || ferror(sink->out)
                                 : fclose(sink->out) == EOF;
    if (failed)
        status = tw_error(TW_ERR_IO, "%s: cannot write: %s", sink->path,
                          errno ? strerror(errno) : "write error");
    free(sink->path);
    free(sink);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Run logs                                                                                   */
/* ------------------------------------------------------------------------------------------ */

enum { LOG_METRICS = 0, LOG_TEXT = 1, LOG_FILES = 2 };
static const char *const LOG_NAMES[LOG_FILES] = {"metrics.jsonl", "log.txt"};

struct tw_run_log {
    char *dir;
    /* The log's own copy of each file: the file in dir itself once synced (or when resuming),
     * else an anonymous temporary file. Both are opened for reading and appending. */
    FILE *files[LOG_FILES];
    char *paths[LOG_FILES]; /* dir/name, for messages and sync */
};

static char *join_path(const char *dir, const char *name) {
    size_t length = strlen(dir) + strlen(name) + 2;
    char *path = malloc(length);
    if (path) snprintf(path, length, "%s/%s", dir, name);
    return path;
}

tw_status tw_run_log_open(const char *dir, bool append, tw_run_log **log) {
    *log = NULL;
    if (!dir) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_run_log_open: dir is NULL");
    tw_run_log *l = calloc(1, sizeof *l);
    if (!l || !(l->dir = strdup(dir))) {
        free(l);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "run log: out of host memory");
    }
    for (int i = 0; i < LOG_FILES; i++) {
        l->paths[i] = join_path(dir, LOG_NAMES[i]);
        if (!l->paths[i]) {
            tw_run_log_close(l);
            return tw_error(TW_ERR_OUT_OF_MEMORY, "run log: out of host memory");
        }
        struct stat st;
        if (append && lstat(l->paths[i], &st) == 0 && S_ISREG(st.st_mode))
            l->files[i] = fopen(l->paths[i], "a+");
        else
            l->files[i] = tmpfile();
        if (!l->files[i]) {
            tw_status status = tw_error(TW_ERR_IO, "%s: cannot open the run log: %s",
                                        l->paths[i], strerror(errno));
            tw_run_log_close(l);
            return status;
        }
    }
    *log = l;
    return TW_OK;
}

tw_status tw_run_log_record(tw_run_log *log, const cJSON *record) {
    if (!log) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_run_log_record: log is NULL");
    return write_record(log->files[LOG_METRICS], log->paths[LOG_METRICS], record);
}

tw_status tw_run_log_line(tw_run_log *log, const char *line) {
    if (!log) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_run_log_line: log is NULL");
    FILE *out = log->files[LOG_TEXT];
    tw_status status = write_text(out, log->paths[LOG_TEXT], line ? line : "");
    return status == TW_OK ? write_text(out, log->paths[LOG_TEXT], "\n") : status;
}

/* Writes the whole content of `from` (read through its descriptor, from offset 0) to a new file
 * beside path, then renames it over path: readers never see a half-written log. */
static tw_status copy_into(FILE *from, const char *path) {
    const int fd = fileno(from);
    char *tmp = malloc(strlen(path) + 32);
    if (!tmp) return tw_error(TW_ERR_OUT_OF_MEMORY, "run log: out of host memory");
    snprintf(tmp, strlen(path) + 32, "%s.tmp-%ld", path, (long)getpid());
    FILE *to = fopen(tmp, "w");
    tw_status status = to ? TW_OK
                          : tw_error(TW_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    char buf[65536];
    for (off_t offset = 0; status == TW_OK;) {
        ssize_t got = pread(fd, buf, sizeof buf, offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            status = tw_error(TW_ERR_IO, "%s: cannot read the run log back: %s", path,
                              strerror(errno));
            break;
        }
        if (got == 0) break;
        if (fwrite(buf, 1, (size_t)got, to) != (size_t)got)
            status = tw_error(TW_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        offset += got;
    }
    if (to && fclose(to) != 0 && status == TW_OK)
        status = tw_error(TW_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    if (status == TW_OK && rename(tmp, path) != 0)
        status = tw_error(TW_ERR_IO, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
    if (status != TW_OK && to) unlink(tmp);
    free(tmp);
    return status;
}

tw_status tw_run_log_sync(tw_run_log *log) {
    if (!log) return TW_OK;
    struct stat dir;
    if (stat(log->dir, &dir) != 0 || !S_ISDIR(dir.st_mode)) return TW_OK; /* nothing saved yet */
    for (int i = 0; i < LOG_FILES; i++) {
        struct stat mine, there;
        if (fflush(log->files[i]) == EOF)
            return tw_error(TW_ERR_IO, "%s: cannot write: %s", log->paths[i], strerror(errno));
        if (fstat(fileno(log->files[i]), &mine) != 0)
            return tw_error(TW_ERR_IO, "%s: %s", log->paths[i], strerror(errno));
        if (lstat(log->paths[i], &there) == 0 && there.st_dev == mine.st_dev &&
            there.st_ino == mine.st_ino)
            continue; /* the log already writes into the directory's file */
        TW_TRY(copy_into(log->files[i], log->paths[i]));
        FILE *reopened = fopen(log->paths[i], "a+");
        if (!reopened)
            return tw_error(TW_ERR_IO, "%s: cannot open the run log: %s", log->paths[i],
                            strerror(errno));
        fclose(log->files[i]);
        log->files[i] = reopened;
    }
    return TW_OK;
}

void tw_run_log_close(tw_run_log *log) {
    if (!log) return;
    for (int i = 0; i < LOG_FILES; i++) {
        if (log->files[i]) fclose(log->files[i]);
        free(log->paths[i]);
    }
    free(log->dir);
    free(log);
}
