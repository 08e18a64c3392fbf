/* The per-op profiler: a session of tracks (one per device opened during it), each a growing
 * array of op records, timed with the device's own events.
 *
 * Per op the hot path records two tw_events (start, end) and reads the host clock twice; the
 * events' times are read back in batches of BATCH ops (when the batch fills, at tw_device_sync,
 * at device close), so a GPU queue is not drained op by op. A record's device time is its events'
 * offset from the track's origin event (recorded when the device opened), placed on the session's
 * host time line at the origin's host time. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/device.h"
#include "prof/profile_internal.h"
#include "twist/peak.h"

#define BATCH 1024 /* ops whose events wait to be read; 2 * BATCH events per track */

static const char *const op_names[TW_PROF_OP_COUNT] = {
#define TW_PROF_OP_NAME_(prefix, name, params) #name,
    TW_BACKEND_OPS(TW_PROF_OP_NAME_, unused)
#undef TW_PROF_OP_NAME_
};

typedef struct prof_record {
    const char *part, *role; /* tw_profile_where at the call */
    int layer;
    tw_prof_op op;
    double host_start, host_end; /* tw_now_seconds() around the call */
    double dev_start, dev_end;   /* session seconds; NAN until resolved or when timers failed */
    double flops, bytes;
    size_t mem, peak; /* device bytes in use and high-water mark after the call */
} prof_record;

struct tw_prof_track {
    tw_device *device; /* NULL once closed or the session stopped */
    tw_device_info info;
    tw_device_peak peak; /* spec or measured (twist/peak.h): "% of peak" */
    int tid;
    tw_event *origin;
    double origin_session; /* session seconds when origin was recorded */
    tw_event *events[2 * BATCH];
    size_t resolved; /* records [0, resolved) have device times */
    prof_record *records;
    size_t count, capacity;
    bool full;   /* out of host memory: later ops are not recorded */
    int depth;   /* ops in progress: an op a backend issues inside another is part of it */
    tw_status error; /* first timer failure */
    char message[256];
};

/* A span of a named host track (tw_profile_span): IST workers' compute, idle, send, ... */
typedef struct prof_span {
    int track; /* index into span_tracks */
    char name[32];
    double start, end; /* session seconds */
    int round;
} prof_span;

typedef struct prof_session {
    bool active;
    double origin; /* tw_now_seconds() at start */
    tw_prof_track **tracks;
    int track_count;
    prof_span *spans;
    size_t span_count, span_capacity;
    char (*span_tracks)[96];
    int span_track_count;
} prof_session;

static pthread_mutex_t session_lock = PTHREAD_MUTEX_INITIALIZER;
static prof_session session;

typedef struct prof_where {
    int layer;
    const char *part, *role;
} prof_where;
static _Thread_local prof_where where = {-1, NULL, NULL};

void tw_profile_where(int layer, const char *part, const char *role) {
    where.layer = layer;
    where.part = part;
    where.role = role;
}

void tw_profile_clear(void) { tw_profile_where(-1, NULL, NULL); }

/* Keeps the first timer failure; the op itself still counts as done. */
static void track_fail(tw_prof_track *track, tw_status status) {
    if (track->error != TW_OK) return;
    track->error = status;
    snprintf(track->message, sizeof track->message, "%s", tw_last_error());
}

/* Reads the device times of records [resolved, count): the events are complete once the device
 * has run them, so this waits for the device at most once. */
static void track_resolve(tw_prof_track *track) {
    for (size_t i = track->resolved; i < track->count; i++) {
        prof_record *r = &track->records[i];
        size_t slot = 2 * (i - track->resolved);
        double start_ms = NAN, end_ms = NAN;
        if (track->error == TW_OK) {
            tw_status status = tw_event_elapsed_ms(track->origin, track->events[slot], &start_ms);
            if (status == TW_OK)
                status = tw_event_elapsed_ms(track->origin, track->events[slot + 1], &end_ms);
            if (status != TW_OK) track_fail(track, status);
        }
        if (track->error == TW_OK) {
            r->dev_start = track->origin_session + start_ms * 1e-3;
            r->dev_end = track->origin_session + end_ms * 1e-3;
        }
    }
    track->resolved = track->count;
}

tw_status tw_prof_attach(tw_device *device) {
    pthread_mutex_lock(&session_lock);
    if (!session.active) {
        pthread_mutex_unlock(&session_lock);
        return TW_OK;
    }
    tw_prof_track *track = calloc(1, sizeof *track);
    tw_prof_track **tracks =
        track ? realloc(session.tracks, (size_t)(session.track_count + 1) * sizeof *tracks) : NULL;
    if (!tracks) {
        free(track);
        pthread_mutex_unlock(&session_lock);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "profiler: out of host memory opening %s",
                        device->info.spec);
    }
    session.tracks = tracks;
    track->device = device;
    track->info = device->info;
    track->tid = session.track_count + 1;
    tracks[session.track_count++] = track;
    double origin = session.origin;
    pthread_mutex_unlock(&session_lock);

    tw_device_peak_get(&device->info, &track->peak); /* reads the cache; never measures */
    /* Events are created once here, so the op path only records them. */
    tw_status status = tw_event_create(device, &track->origin);
    for (int i = 0; status == TW_OK && i < 2 * BATCH; i++)
        status = tw_event_create(device, &track->events[i]);
    if (status == TW_OK) status = tw_device_sync(device);
    if (status == TW_OK) status = tw_event_record(track->origin);
    if (status == TW_OK) status = tw_device_sync(device);
    track->origin_session = tw_now_seconds() - origin;
    if (status != TW_OK) {
        tw_prof_detach(device);
        return status;
    }
    device->profile = track;
    return TW_OK;
}

static void track_release_events(tw_prof_track *track) {
    for (int i = 0; i < 2 * BATCH; i++) {
        tw_event_destroy(track->events[i]);
        track->events[i] = NULL;
    }
    tw_event_destroy(track->origin);
    track->origin = NULL;
}

void tw_prof_detach(tw_device *device) {
    pthread_mutex_lock(&session_lock);
    for (int i = 0; i < session.track_count; i++) {
        tw_prof_track *track = session.tracks[i];
        if (track->device != device) continue;
        if (track->origin) track_resolve(track);
        track_release_events(track);
        track->device = NULL;
    }
    device->profile = NULL;
    pthread_mutex_unlock(&session_lock);
}

void tw_prof_sync(tw_device *device) {
    if (device->profile->depth == 0) track_resolve(device->profile);
}

size_t tw_prof_op_begin(tw_device *device, tw_prof_op op) {
    tw_prof_track *track = device->profile;
    if (track->depth++ > 0 || track->full) return SIZE_MAX;
    if (track->count - track->resolved == BATCH) track_resolve(track);
    if (track->count == track->capacity) {
        size_t capacity = track->capacity ? 2 * track->capacity : 4096;
        prof_record *records = realloc(track->records, capacity * sizeof *records);
        if (!records) {
            track->full = true;
            return SIZE_MAX;
        }
        track->records = records;
        track->capacity = capacity;
    }
    size_t index = track->count;
    prof_record *r = &track->records[index];
    r->part = where.part;
    r->role = where.role;
    r->layer = where.layer;
    r->op = op;
    r->dev_start = r->dev_end = NAN;
    r->host_start = tw_now_seconds();
    if (track->error == TW_OK) {
        tw_status status = tw_event_record(track->events[2 * (index - track->resolved)]);
        if (status != TW_OK) track_fail(track, status);
    }
    track->count++;
    return index;
}

tw_status tw_prof_op_end(tw_device *device, size_t index, tw_status status, double flops,
                         double bytes) {
    tw_prof_track *track = device->profile;
    track->depth--;
    if (index == SIZE_MAX) return status;
    prof_record *r = &track->records[index];
    if (track->error == TW_OK) {
        tw_status record = tw_event_record(track->events[2 * (index - track->resolved) + 1]);
        if (record != TW_OK) track_fail(track, record);
    }
    r->host_end = tw_now_seconds();
    r->flops = flops;
    r->bytes = bytes;
    r->mem = device->bytes_in_use;
    r->peak = device->peak_bytes;
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Session                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void release_tracks(void) {
    for (int i = 0; i < session.track_count; i++) {
        free(session.tracks[i]->records);
        free(session.tracks[i]);
    }
    free(session.tracks);
    session.tracks = NULL;
    session.track_count = 0;
    free(session.spans);
    free(session.span_tracks);
    session.spans = NULL;
    session.span_tracks = NULL;
    session.span_count = session.span_capacity = 0;
    session.span_track_count = 0;
}

/* The index of the span track named `track`, added if new; -1 when out of memory. */
static int span_track(const char *track) {
    for (int i = 0; i < session.span_track_count; i++)
        if (strcmp(session.span_tracks[i], track) == 0) return i;
    char(*tracks)[96] = realloc(session.span_tracks,
                                (size_t)(session.span_track_count + 1) * sizeof *tracks);
    if (!tracks) return -1;
    session.span_tracks = tracks;
    snprintf(tracks[session.span_track_count], sizeof *tracks, "%s", track);
    return session.span_track_count++;
}

tw_status tw_profile_span(const char *track, const char *name, double start, double end,
                          int round) {
    if (!track || !name)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_profile_span: track and name are needed");
    pthread_mutex_lock(&session_lock);
    tw_status status = TW_OK;
    if (session.active && session.span_count == session.span_capacity) {
        size_t capacity = session.span_capacity ? 2 * session.span_capacity : 256;
        prof_span *spans = realloc(session.spans, capacity * sizeof *spans);
        if (spans) {
            session.spans = spans;
            session.span_capacity = capacity;
        } else {
            status = tw_error(TW_ERR_OUT_OF_MEMORY, "profiler: out of host memory for spans");
        }
    }
    const int index = session.active && status == TW_OK ? span_track(track) : -2;
    if (index == -1) status = tw_error(TW_ERR_OUT_OF_MEMORY, "profiler: out of host memory");
    if (index >= 0) {
        prof_span *s = &session.spans[session.span_count++];
        s->track = index;
        snprintf(s->name, sizeof s->name, "%s", name);
        s->start = start - session.origin;
        s->end = end - session.origin;
        s->round = round;
    }
    pthread_mutex_unlock(&session_lock);
    return status;
}

tw_status tw_profile_start(void) {
    pthread_mutex_lock(&session_lock);
    if (session.active) {
        pthread_mutex_unlock(&session_lock);
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_profile_start: a session is already open");
    }
    release_tracks();
    session.active = true;
    session.origin = tw_now_seconds();
    pthread_mutex_unlock(&session_lock);
    return TW_OK;
}

bool tw_profile_active(void) {
    pthread_mutex_lock(&session_lock);
    bool active = session.active;
    pthread_mutex_unlock(&session_lock);
    return active;
}

tw_status tw_profile_stop(void) {
    pthread_mutex_lock(&session_lock);
    session.active = false;
    tw_status status = TW_OK;
    for (int i = 0; i < session.track_count; i++) {
        tw_prof_track *track = session.tracks[i];
        if (track->device) {
            track_resolve(track);
            track_release_events(track);
            track->device->profile = NULL;
            track->device = NULL;
        }
    }
    for (int i = 0; i < session.track_count && status == TW_OK; i++) {
        const tw_prof_track *track = session.tracks[i];
        if (track->error != TW_OK)
            status = tw_error(track->error, "profiler: the timers of %s failed: %s",
                              track->info.spec, track->message);
    }
    pthread_mutex_unlock(&session_lock);
    return status;
}

void tw_profile_release(void) {
    pthread_mutex_lock(&session_lock);
    if (!session.active) release_tracks();
    pthread_mutex_unlock(&session_lock);
}

static tw_status require_stopped(const char *what) {
    if (session.active)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: stop the profiling session first", what);
    return TW_OK;
}

tw_status tw_profile_totals_get(tw_profile_totals *out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_profile_totals_get: out is NULL");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&session_lock);
    for (int i = 0; i < session.track_count; i++) {
        const tw_prof_track *track = session.tracks[i];
        for (size_t k = 0; k < track->count; k++) {
            const prof_record *r = &track->records[k];
            out->calls++;
            if (k >= track->resolved || !isfinite(r->dev_end - r->dev_start)) {
                out->unresolved++;
                continue;
            }
            out->device_seconds += r->dev_end - r->dev_start;
            out->host_seconds += r->host_end - r->host_start;
            out->flops += r->flops;
            out->bytes += r->bytes;
        }
    }
    pthread_mutex_unlock(&session_lock);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Chrome trace                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* JSON has no NaN or infinity: those become null. */
static void write_number(FILE *f, const char *format, double value) {
    if (isfinite(value)) fprintf(f, format, value);
    else fputs("null", f);
}

/* [block<layer>.]<part>.[<role>_]<op>: "block3.attn.qkv_gemm", "block3.mlp.gelu_bwd",
 * "lm_head.gemm", "adamw.adamw_step"; the bare op name outside any tw_profile_where. */
static void compose_name(const char *part, const char *role, int layer, const char *op, char *out,
                         size_t capacity) {
    if (!part) snprintf(out, capacity, "%s", op);
    else if (layer >= 0)
        snprintf(out, capacity, "block%d.%s.%s%s%s", layer, part, role ? role : "",
                 role ? "_" : "", op);
    else
        snprintf(out, capacity, "%s.%s%s%s", part, role ? role : "", role ? "_" : "", op);
}

static void record_name(const prof_record *r, char *out, size_t capacity) {
    compose_name(r->part, r->role, r->layer, op_names[r->op], out, capacity);
}

char *tw_profile_name(const char *op, char *out, size_t capacity) {
    if (out && capacity)
        compose_name(where.part, where.role, where.layer, op ? op : "", out, capacity);
    return out;
}

/* pid: one per device spec (first seen order), so Perfetto groups the tracks of one device. */
static int spec_pid(int track_index) {
    int pid = 0;
    for (int i = 0; i <= track_index; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || strcmp(session.tracks[j]->info.spec, session.tracks[i]->info.spec) == 0;
        if (!seen) pid++;
        if (i == track_index) {
            if (!seen) return pid;
            for (int j = 0; j < i; j++)
                if (strcmp(session.tracks[j]->info.spec, session.tracks[i]->info.spec) == 0)
                    return spec_pid(j);
        }
    }
    return pid;
}

static void write_trace(FILE *f) {
    fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
    bool first = true;
    for (int i = 0; i < session.track_count; i++) {
        const tw_prof_track *t = session.tracks[i];
        int pid = spec_pid(i);
        char label[320];
        snprintf(label, sizeof label, "%s (%s)", t->info.spec, t->info.name);
        fprintf(
            f,
            "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":",
            first ? "" : ",\n", pid, t->tid);
        write_string(f, label);
        fputs("}}", f);
        snprintf(label, sizeof label, "%s #%d", t->info.spec, t->tid);
        fprintf(
            f,
            ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":",
            pid, t->tid);
        write_string(f, label);
        fputs("}}", f);
        first = false;
        for (size_t k = 0; k < t->count; k++) {
            const prof_record *r = &t->records[k];
            char name[160];
            record_name(r, name, sizeof name);
            double dev = r->dev_end - r->dev_start, host = r->host_end - r->host_start;
            /* Without device times (a timer failed) the host times place the event. */
            double start = isfinite(dev) ? r->dev_start : r->host_start - session.origin;
            double dur = isfinite(dev) ? dev : host;
            fputs(",\n{\"ph\":\"X\",\"cat\":\"op\",\"name\":", f);
            write_string(f, name);
            fprintf(f, ",\"pid\":%d,\"tid\":%d,\"ts\":", pid, t->tid);
            write_number(f, "%.3f", start * 1e6);
            fputs(",\"dur\":", f);
            write_number(f, "%.3f", dur * 1e6);
            fprintf(f, ",\"args\":{\"op\":\"%s\",\"layer\":%d,\"flops\":", op_names[r->op],
                    r->layer);
            write_number(f, "%.17g", r->flops);
            fputs(",\"bytes\":", f);
            write_number(f, "%.17g", r->bytes);
            fputs(",\"device_us\":", f);
            write_number(f, "%.3f", dev * 1e6);
            fputs(",\"host_us\":", f);
            write_number(f, "%.3f", host * 1e6);
            fputs(",\"gflops\":", f);
            write_number(f, "%.6g", dev > 0 ? r->flops / dev * 1e-9 : NAN);
            fputs(",\"gbps\":", f);
            write_number(f, "%.6g", dev > 0 ? r->bytes / dev * 1e-9 : NAN);
            fputs(",\"peak_fraction\":", f);
            write_number(f, "%.6g", dev > 0 && t->peak.gflops > 0
                                        ? r->flops / dev * 1e-9 / t->peak.gflops
                                        : NAN);
            fprintf(f, ",\"mem_bytes\":%zu,\"peak_mem_bytes\":%zu}}", r->mem, r->peak);
        }
    }
    /* Host tracks (tw_profile_span), one thread each under a process of their own after the
     * devices' ("cat":"ist": not ops; `twist profile summary` leaves them out). */
    int span_pid = 0;
    for (int i = 0; i < session.track_count; i++)
        if (spec_pid(i) > span_pid) span_pid = spec_pid(i);
    span_pid++;
    for (int i = 0; i < session.span_track_count; i++) {
        if (i == 0)
            fprintf(f, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"tid\":1,"
                       "\"args\":{\"name\":\"IST workers\"}}",
                    first ? "" : ",\n", span_pid);
        first = false;
        fprintf(f, ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%d,"
                   "\"args\":{\"name\":", span_pid, i + 1);
        write_string(f, session.span_tracks[i]);
        fputs("}}", f);
    }
    for (size_t k = 0; k < session.span_count; k++) {
        const prof_span *s = &session.spans[k];
        fputs(",\n{\"ph\":\"X\",\"cat\":\"ist\",\"name\":", f);
        write_string(f, s->name);
        fprintf(f, ",\"pid\":%d,\"tid\":%d,\"ts\":", span_pid, s->track + 1);
        write_number(f, "%.3f", s->start * 1e6);
        fputs(",\"dur\":", f);
        write_number(f, "%.3f", (s->end - s->start) * 1e6);
        fprintf(f, ",\"args\":{\"round\":%d}}", s->round);
    }
    /* twist's own description of the tracks (Perfetto ignores keys it does not know): what
     * `twist profile summary` needs for "% of peak". */
    fputs("\n],\"twistDevices\":[", f);
    for (int i = 0; i < session.track_count; i++) {
        const tw_prof_track *t = session.tracks[i];
        fprintf(f, "%s{\"pid\":%d,\"tid\":%d,\"spec\":", i ? "," : "", spec_pid(i), t->tid);
        write_string(f, t->info.spec);
        fputs(",\"name\":", f);
        write_string(f, t->info.name);
        fputs(",\"peak_gflops\":", f);
        write_number(f, "%.6g", t->peak.gflops > 0 ? t->peak.gflops : NAN);
        fprintf(f, ",\"peak_gflops_source\":\"%s\",\"peak_gbps\":",
                tw_peak_source_name(t->peak.gflops_source));
        write_number(f, "%.6g", t->peak.gbps > 0 ? t->peak.gbps : NAN);
        fprintf(f, ",\"peak_gbps_source\":\"%s\"", tw_peak_source_name(t->peak.gbps_source));
        fprintf(f, ",\"memory_bytes\":%llu}", (unsigned long long)t->info.memory_bytes);
    }
    fputs("]}\n", f);
}

tw_status tw_profile_write_trace(const char *path) {
    if (!path || !*path) return tw_error(TW_ERR_INVALID_ARGUMENT, "profile trace: no path given");
    pthread_mutex_lock(&session_lock);
    tw_status status = require_stopped("tw_profile_write_trace");
    char temp[4096];
    if (status == TW_OK &&
        snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof temp)
        status = tw_error(TW_ERR_INVALID_ARGUMENT, "profile trace: path too long: %s", path);
    FILE *f = status == TW_OK ? fopen(temp, "w") : NULL;
    if (status == TW_OK && !f)
        status =
            tw_error(TW_ERR_IO, "cannot write the profile trace %s: %s", temp, strerror(errno));
    if (f) {
        write_trace(f);
        bool bad = ferror(f) != 0;
        if (fclose(f) != 0 || bad) {
            status = tw_error(TW_ERR_IO, "cannot write the profile trace %s: %s", path,
                              strerror(errno));
            remove(temp);
        } else if (rename(temp, path) != 0) {
            status = tw_error(TW_ERR_IO, "cannot rename %s to %s: %s", temp, path, strerror(errno));
            remove(temp);
        }
    }
    pthread_mutex_unlock(&session_lock);
    return status;
}
