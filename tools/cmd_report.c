/* `twist report RUN.jsonl|PROFILE.json... --out DIR`: one self-contained HTML page (inline SVG,
 * no script, no fetched resources) and each plot as a standalone .svg file in DIR.
 *
 * What each kind of input gives:
 *   - run records (metrics.jsonl of train, ist, dp; any --json output): training and validation
 *     loss against steps, tokens and wall time; for ist/dp the round timeline per worker (from
 *     the round records' phases and per-worker training and idle times);
 *   - `twist bench ... --json` records: a backend comparison chart (relative speed per
 *     benchmark, the fastest device = 1) and a table;
 *   - a Chrome trace from --profile: the per-op breakdown (time share, GFLOP/s, % of the
 *     device's peak; by op and by layer), and the IST worker tracks when the trace has them.
 * The inputs are all read before anything is written: a bad one leaves DIR untouched. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "report.h"
#include "svg.h"

/* ---- small containers ------------------------------------------------------------------- */

/* Grows *items (of `size`-byte elements) to hold at least need; false when out of memory. */
static bool grow(void **items, int *capacity, int need, size_t size) {
    if (need <= *capacity) return true;
    int capacity2 = *capacity ? *capacity * 2 : 16;
    while (capacity2 < need) capacity2 *= 2;
    void *bigger = realloc(*items, (size_t)capacity2 * size);
    if (!bigger) return false;
    *items = bigger;
    *capacity = capacity2;
    return true;
}
#define PUSH(array, count, capacity, item)                                                     \
    (grow((void **)&(array), &(capacity), (count) + 1, sizeof *(array))                         \
         ? ((array)[(count)++] = (item), true)                                                 \
         : false)

typedef struct dvec {
    double *v;
    int n, cap;
} dvec;

static bool dv_push(dvec *d, double x) { return PUSH(d->v, d->n, d->cap, x); }

/* ---- what the inputs hold --------------------------------------------------------------- */

/* Loss points of one run: x as steps, tokens and seconds of wall time. */
typedef struct curve {
    dvec step, tokens, time, loss;
} curve;

typedef struct run {
    char label[256];
    char command[16]; /* train, ist, dp */
    curve train, val;
} run;

/* Span kinds of the IST timeline, the legend's order. */
static const char *const SPAN_KINDS[] = {"compute", "idle", "send", "receive", "merge",
                                         "extract", "eval"};
enum { SPAN_KIND_COUNT = 7, KIND_COMPUTE = 0, KIND_IDLE, KIND_SEND, KIND_RECEIVE, KIND_MERGE,
       KIND_EXTRACT, KIND_EVAL };

typedef struct timeline {
    char label[256];
    char (*rows)[96];
    int row_count, row_cap;
    svg_span *spans;
    int span_count, span_cap;
} timeline;

typedef struct bench_row {
    char group[160];  /* "gemm 512x512x512" */
    char device[288]; /* "cpu (AMD EPYC)" */
    double value;
    char unit[24];
    bool higher_better;
} bench_row;

typedef struct agg_row {
    char key[160];
    long long calls;
    double seconds, flops, bytes;
    double peak_seconds; /* seconds the FLOPs take at peak; NAN if a peak is unknown */
} agg_row;

typedef struct profile {
    char label[256];
    char devices[1024]; /* "cpu (AMD EPYC), opencl:0 (...)" */
    double peak_mem; /* the largest device memory high-water mark of its ops (peak_mem_bytes) */
    long long calls;
    double device_s, span_s;
    agg_row *ops, *layers;
    int op_count, op_cap, layer_count, layer_cap;
} profile;

typedef struct report {
    const char *prog;
    run *runs;
    int run_count, run_cap;
    timeline *timelines;
    int timeline_count, timeline_cap;
    bench_row *bench;
    int bench_count, bench_cap;
    profile *profiles;
    int profile_count, profile_cap;
} report;

static void free_curve(curve *c) {
    free(c->step.v), free(c->tokens.v), free(c->time.v), free(c->loss.v);
}

static void report_free(report *r) {
    for (int i = 0; i < r->run_count; i++) free_curve(&r->runs[i].train), free_curve(&r->runs[i].val);
    for (int i = 0; i < r->timeline_count; i++) free(r->timelines[i].rows), free(r->timelines[i].spans);
    for (int i = 0; i < r->profile_count; i++) free(r->profiles[i].ops), free(r->profiles[i].layers);
    free(r->runs), free(r->timelines), free(r->bench), free(r->profiles);
}

/* ---- reading ---------------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *size_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t size = 0, cap = 1 << 16;
    char *text = malloc(cap);
    while (text) {
        size += fread(text + size, 1, cap - size - 1, f);
        if (size < cap - 1) break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) free(text);
        text = bigger;
        cap *= 2;
    }
    const bool bad = ferror(f) != 0;
    fclose(f);
    if (!text || bad) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    *size_out = size;
    return text;
}

static int line_of(const char *text, const char *at) {
    int line = 1;
    for (const char *p = text; p < at && *p; p++) line += *p == '\n';
    return line;
}

static double num(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

static const char *str(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static int oom(const report *r) { return cli_runtime_error(r->prog, "out of host memory"); }

/* A run's label: its path without a trailing "/metrics.jsonl". */
static void run_label(const char *path, char *out, size_t size) {
    snprintf(out, size, "%s", path);
    size_t n = strlen(out), tail = strlen("/metrics.jsonl");
    if (n > tail && strcmp(out + n - tail, "/metrics.jsonl") == 0) out[n - tail] = '\0';
}

static int timeline_row(timeline *t, const char *label) {
    for (int i = 0; i < t->row_count; i++)
        if (strcmp(t->rows[i], label) == 0) return i;
    if (!grow((void **)&t->rows, &t->row_cap, t->row_count + 1, sizeof *t->rows)) return -1;
    snprintf(t->rows[t->row_count], sizeof *t->rows, "%s", label);
    return t->row_count++;
}

static bool add_span(timeline *t, int row, double start, double end, int kind) {
    if (row < 0) return false;
    if (!(end > start)) return true; /* nothing to draw */
    svg_span s = {.row = row, .start = start, .end = end, .kind = kind};
    return PUSH(t->spans, t->span_count, t->span_cap, s);
}

/* A round record's spans: the round ends at elapsed_s (after its evaluation) and its phases run
 * back to back before that; each worker trains for train_s of the local-training phase and
 * waits for the slowest for the rest. */
static bool round_spans(timeline *t, const cJSON *record) {
    const cJSON *phases = cJSON_GetObjectItemCaseSensitive(record, "phases_s");
    const double end = num(record, "elapsed_s");
    const double p_partition = num(phases, "partition"), p_extract = num(phases, "extract"),
                 p_send = num(phases, "send"), p_train = num(phases, "local_training"),
                 p_receive = num(phases, "receive"), p_merge = num(phases, "merge"),
                 p_eval = num(phases, "eval");
    const double total = p_partition + p_extract + p_send + p_train + p_receive + p_merge + p_eval;
    if (!isfinite(end) || !isfinite(total)) return true; /* an older record: no timeline */
    const double t_extract = end - total, t_send = t_extract + p_partition + p_extract,
                 t_train = t_send + p_send, t_receive = t_train + p_train,
                 t_merge = t_receive + p_receive, t_eval = t_merge + p_merge;
    int master = timeline_row(t, "master");
    if (!add_span(t, master, t_extract, t_send, KIND_EXTRACT) ||
        !add_span(t, master, t_merge, t_eval, KIND_MERGE) ||
        !add_span(t, master, t_eval, end, KIND_EVAL))
        return false;
    const cJSON *worker;
    cJSON_ArrayForEach(worker, cJSON_GetObjectItemCaseSensitive(record, "per_worker")) {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(worker, "active"))) continue;
        char label[96];
        const char *device = str(worker, "device");
        snprintf(label, sizeof label, "worker %d (%s)", (int)num(worker, "worker"),
                 device ? device : "?");
        const int row = timeline_row(t, label);
        double train_s = num(worker, "train_s");
        if (!isfinite(train_s)) train_s = p_train;
        if (!add_span(t, row, t_send, t_train, KIND_SEND) ||
            !add_span(t, row, t_train, t_train + train_s, KIND_COMPUTE) ||
            !add_span(t, row, t_train + train_s, t_receive, KIND_IDLE) ||
            !add_span(t, row, t_receive, t_merge, KIND_RECEIVE) ||
            !add_span(t, row, t_merge, t_eval, KIND_MERGE))
            return false;
    }
    return true;
}

/* "bench" records of `twist bench gemm|attention|step`: one row per device (and the GEMM peer,
 * a bar of its own). */
static bool bench_rows(report *r, const cJSON *record, const char *command) {
    const char *spec = str(record, "device"), *name = str(record, "device_name");
    bench_row row = {0};
    snprintf(row.device, sizeof row.device, "%s%s%s%s", spec ? spec : "?", name ? " (" : "",
             name ? name : "", name ? ")" : "");
    if (strcmp(command, "bench gemm") == 0) {
        snprintf(row.group, sizeof row.group, "gemm %gx%gx%g%s", num(record, "m"),
                 num(record, "n"), num(record, "k"),
                 num(record, "batch") > 1 ? " batched" : "");
        row.value = num(cJSON_GetObjectItemCaseSensitive(record, "twist"), "gflops");
        snprintf(row.unit, sizeof row.unit, "GFLOP/s");
        row.higher_better = true;
        if (!PUSH(r->bench, r->bench_count, r->bench_cap, row)) return false;
        const cJSON *also = cJSON_GetObjectItemCaseSensitive(record, "also"); /* --also SPEC */
        if (cJSON_IsObject(also)) {
            const char *also_spec = str(also, "device"), *also_name = str(also, "device_name");
            snprintf(row.device, sizeof row.device, "%s%s%s%s", also_spec ? also_spec : "?",
                     also_name ? " (" : "", also_name ? also_name : "", also_name ? ")" : "");
            row.value = num(also, "gflops");
            if (!PUSH(r->bench, r->bench_count, r->bench_cap, row)) return false;
        }
        const cJSON *peer = cJSON_GetObjectItemCaseSensitive(record, "peer");
        if (cJSON_IsObject(peer)) {
            snprintf(row.device, sizeof row.device, "%s (peer on %s)",
                     str(peer, "name") ? str(peer, "name") : "peer", spec ? spec : "?");
            row.value = num(peer, "gflops");
            if (!PUSH(r->bench, r->bench_count, r->bench_cap, row)) return false;
        }
        return true;
    }
    if (strcmp(command, "bench attention") == 0) {
        const cJSON *fused = cJSON_GetObjectItemCaseSensitive(record, "fused");
        snprintf(row.group, sizeof row.group, "attention B%g H%g T%g D%g fwd+bwd",
                 num(record, "batch"), num(record, "heads"), num(record, "seq_len"),
                 num(record, "head_dim"));
        row.value = num(fused, "fwd_ms") + num(fused, "bwd_ms");
        snprintf(row.unit, sizeof row.unit, "ms");
        row.higher_better = false;
        return PUSH(r->bench, r->bench_count, r->bench_cap, row);
    }
    if (strcmp(command, "bench step") == 0) {
        const char *preset = str(record, "preset");
        snprintf(row.group, sizeof row.group, "training step %s B%g T%g",
                 preset ? preset : "?", num(record, "batch"), num(record, "seq_len"));
        row.value = num(record, "tokens_per_s");
        snprintf(row.unit, sizeof row.unit, "tokens/s");
        row.higher_better = true;
        return PUSH(r->bench, r->bench_count, r->bench_cap, row);
    }
    return true;
}

/* Per invocation, tokens_per_s * elapsed_s is the tokens trained so far; two step records of
 * one invocation give the tokens per step. Converts each point's step into tokens. */
static void tokens_from_steps(curve *c, double tokens_per_step) {
    for (int i = 0; i < c->step.n; i++) c->tokens.v[i] = c->step.v[i] * tokens_per_step;
}

static int read_records(report *r, const char *path, char *text) {
    run one = {0};
    run_label(path, one.label, sizeof one.label);
    timeline t = {0};
    snprintf(t.label, sizeof t.label, "%s", one.label);
    double offset = 0, last_elapsed = -1, tokens_per_step = NAN, ist_tokens = 0;
    double first_step = NAN, first_done = NAN; /* the invocation's first step record */
    int code = CLI_EXIT_OK, line = 0;
    for (char *p = text; *p && code == CLI_EXIT_OK;) {
        char *end = strchr(p, '\n');
        if (end) *end = '\0';
        line++;
        const char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        p = end ? end + 1 : p + strlen(p);
        if (!*q) continue;
        cJSON *record = cJSON_Parse(q);
        const char *event = str(record, "event"), *command = str(record, "command");
        if (!record) {
            code = cli_runtime_error(r->prog, "%s:%d: not valid JSON", path, line);
            break;
        }
        if (!cJSON_IsObject(record) || !event || !command) {
            cJSON_Delete(record);
            code = cli_runtime_error(r->prog,
                                     "%s:%d: not a twist record (a JSON object with \"event\" "
                                     "and \"command\")",
                                     path, line);
            break;
        }
        const bool is_run = strcmp(command, "train") == 0 || strcmp(command, "ist") == 0 ||
                            strcmp(command, "dp") == 0;
        double elapsed = num(record, "elapsed_s");
        if (is_run && isfinite(elapsed)) {
            if (elapsed < last_elapsed) { /* a resumed run: its clock starts again */
                offset += last_elapsed;
                first_step = NAN;
            }
            last_elapsed = elapsed;
            elapsed += offset;
        }
        bool ok = true;
        if (is_run && strcmp(event, "step") == 0) {
            const double step = num(record, "step");
            const double done = num(record, "tokens_per_s") * num(record, "elapsed_s");
            if (isfinite(first_step) && step > first_step && !isfinite(tokens_per_step))
                tokens_per_step = (done - first_done) / (step - first_step);
            if (!isfinite(first_step)) first_step = step, first_done = done;
            snprintf(one.command, sizeof one.command, "%s", command);
            ok = dv_push(&one.train.step, step) && dv_push(&one.train.tokens, done) &&
                 dv_push(&one.train.time, elapsed) && dv_push(&one.train.loss, num(record, "loss"));
        } else if (is_run && strcmp(event, "round") == 0) {
            const cJSON *w;
            cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(record, "per_worker")) {
                double tokens = num(w, "tokens_per_s") * num(w, "train_s");
                if (isfinite(tokens)) ist_tokens += tokens;
            }
            snprintf(one.command, sizeof one.command, "%s", command);
            ok = dv_push(&one.train.step, num(record, "step")) &&
                 dv_push(&one.train.tokens, ist_tokens) && dv_push(&one.train.time, elapsed) &&
                 dv_push(&one.train.loss, num(record, "loss")) && round_spans(&t, record);
        } else if (is_run && strcmp(event, "eval") == 0 && isfinite(num(record, "step"))) {
            ok = dv_push(&one.val.step, num(record, "step")) &&
                 dv_push(&one.val.tokens, ist_tokens) && dv_push(&one.val.time, elapsed) &&
                 dv_push(&one.val.loss, num(record, "loss"));
        } else if (strcmp(event, "bench") == 0) {
            ok = bench_rows(r, record, command);
        }
        cJSON_Delete(record);
        if (!ok) code = oom(r);
    }
    if (code == CLI_EXIT_OK && strcmp(one.command, "train") == 0) {
        /* one step record only: it was the invocation's first, counted from step 0 */
        if (!isfinite(tokens_per_step) && one.train.step.n > 0 && one.train.step.v[0] > 0)
            tokens_per_step = one.train.tokens.v[0] / one.train.step.v[0];
        tokens_from_steps(&one.train, tokens_per_step);
        tokens_from_steps(&one.val, tokens_per_step);
    }
    bool kept_run = false, kept_timeline = false;
    if (code == CLI_EXIT_OK && (one.train.step.n > 0 || one.val.step.n > 0)) {
        if (!PUSH(r->runs, r->run_count, r->run_cap, one)) code = oom(r);
        else kept_run = true;
    }
    if (code == CLI_EXIT_OK && t.span_count > 0) {
        if (!PUSH(r->timelines, r->timeline_count, r->timeline_cap, t)) code = oom(r);
        else kept_timeline = true;
    }
    if (!kept_run) free_curve(&one.train), free_curve(&one.val);
    if (!kept_timeline) free(t.rows), free(t.spans);
    return code;
}

static agg_row *agg(agg_row **rows, int *count, int *cap, const char *key) {
    for (int i = 0; i < *count; i++)
        if (strcmp((*rows)[i].key, key) == 0) return &(*rows)[i];
    if (!grow((void **)rows, cap, *count + 1, sizeof **rows)) return NULL;
    agg_row *row = &(*rows)[(*count)++];
    memset(row, 0, sizeof *row);
    snprintf(row->key, sizeof row->key, "%s", key);
    return row;
}

static void agg_add(agg_row *row, double seconds, double flops, double bytes, double peak) {
    row->calls++;
    row->seconds += seconds;
    row->flops += isfinite(flops) ? flops : 0;
    row->bytes += isfinite(bytes) ? bytes : 0;
    row->peak_seconds += peak > 0 ? (isfinite(flops) ? flops : 0) / (peak * 1e9) : NAN;
}

static int by_seconds(const void *a, const void *b) {
    const double x = ((const agg_row *)a)->seconds, y = ((const agg_row *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : strcmp(((const agg_row *)a)->key, ((const agg_row *)b)->key);
}

/* The thread names of a trace's metadata ("thread_name" events), looked up by (pid, tid). */
typedef struct track_name {
    double pid, tid;
    const char *name;
} track_name;

static const char *thread_name(const track_name *names, int count, double pid, double tid) {
    for (int i = 0; i < count; i++)
        if (names[i].pid == pid && names[i].tid == tid) return names[i].name;
    return NULL;
}

static int read_trace(report *r, const char *path, const cJSON *trace) {
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(trace, "traceEvents");
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(trace, "twistDevices");
    profile p = {0};
    timeline t = {0};
    snprintf(p.label, sizeof p.label, "%s", path);
    snprintf(t.label, sizeof t.label, "%s", path);
    const cJSON *d;
    cJSON_ArrayForEach(d, devices) {
        const char *spec = str(d, "spec"), *name = str(d, "name");
        size_t n = strlen(p.devices);
        const char *source = str(d, "peak_gflops_source");
        char peak[64] = "peak unknown";
        if (num(d, "peak_gflops") > 0)
            snprintf(peak, sizeof peak, "peak %.4g GFLOP/s, %s", num(d, "peak_gflops"),
                     source ? source : "spec");
        if (spec && !strstr(p.devices, spec) && n + 8 < sizeof p.devices)
            snprintf(p.devices + n, sizeof p.devices - n, "%s%s (%s, %s)", n ? ", " : "", spec,
                     name ? name : "?", peak);
    }
    double first = INFINITY, last = -INFINITY;
    int code = CLI_EXIT_OK, index = 0, name_count = 0, name_cap = 0;
    track_name *names = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        const char *ph = str(e, "ph"), *name = str(e, "name");
        const char *label = str(cJSON_GetObjectItemCaseSensitive(e, "args"), "name");
        track_name t_name = {num(e, "pid"), num(e, "tid"), label};
        if (ph && name && label && strcmp(ph, "M") == 0 && strcmp(name, "thread_name") == 0 &&
            !PUSH(names, name_count, name_cap, t_name))
            code = oom(r);
    }
    cJSON_ArrayForEach(e, events) {
        if (code != CLI_EXIT_OK) break;
        index++;
        const char *ph = str(e, "ph"), *name = str(e, "name"), *cat = str(e, "cat");
        if (!ph || strcmp(ph, "X") != 0) continue;
        const double ts = num(e, "ts") * 1e-6, dur = num(e, "dur") * 1e-6;
        const double pid = num(e, "pid"), tid = num(e, "tid");
        if (!name || !isfinite(ts) || !isfinite(dur)) {
            code = cli_runtime_error(r->prog, "%s: trace event %d (\"ph\":\"X\") lacks name, ts "
                                              "or dur", path, index);
            break;
        }
        if (cat && strcmp(cat, "ist") == 0) { /* an IST worker's span (src/ist/round_trace.c) */
            const char *track = thread_name(names, name_count, pid, tid);
            int kind = 0;
            while (kind < SPAN_KIND_COUNT && strcmp(SPAN_KINDS[kind], name) != 0) kind++;
            if (kind < SPAN_KIND_COUNT &&
                !add_span(&t, timeline_row(&t, track ? track : "?"), ts, ts + dur, kind)) {
                code = oom(r);
                break;
            }
            continue;
        }
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
        const char *op = str(args, "op");
        if (!op) {
            code = cli_runtime_error(r->prog, "%s: trace event %d (\"%s\") has no args.op: not "
                                              "a trace written by twist --profile",
                                     path, index, name);
            break;
        }
        double peak = NAN;
        cJSON_ArrayForEach(d, devices) {
            if (num(d, "pid") == pid && num(d, "tid") == tid) peak = num(d, "peak_gflops");
        }
        char layer[160];
        snprintf(layer, sizeof layer, "%s", name);
        char *dot = strchr(layer, '.');
        if (dot) *dot = '\0';
        agg_row *a = agg(&p.ops, &p.op_count, &p.op_cap, op);
        agg_row *b = agg(&p.layers, &p.layer_count, &p.layer_cap, layer);
        if (!a || !b) {
            code = oom(r);
            break;
        }
        agg_add(a, dur, num(args, "flops"), num(args, "bytes"), peak);
        agg_add(b, dur, num(args, "flops"), num(args, "bytes"), peak);
        p.calls++;
        if (num(args, "peak_mem_bytes") > p.peak_mem) p.peak_mem = num(args, "peak_mem_bytes");
        p.device_s += dur;
        first = fmin(first, ts);
        last = fmax(last, ts + dur);
    }
    p.span_s = p.calls ? last - first : 0;
    if (code == CLI_EXIT_OK && p.calls == 0 && t.span_count == 0)
        code = cli_runtime_error(r->prog, "%s: the trace holds no op events", path);
    if (code == CLI_EXIT_OK && p.calls > 0) {
        qsort(p.ops, (size_t)p.op_count, sizeof *p.ops, by_seconds);
        qsort(p.layers, (size_t)p.layer_count, sizeof *p.layers, by_seconds);
        if (PUSH(r->profiles, r->profile_count, r->profile_cap, p)) p.ops = p.layers = NULL;
        else code = oom(r);
    }
    if (code == CLI_EXIT_OK && t.span_count > 0) {
        if (PUSH(r->timelines, r->timeline_count, r->timeline_cap, t)) t.rows = NULL, t.spans = NULL;
        else code = oom(r);
    }
    free(p.ops), free(p.layers), free(t.rows), free(t.spans), free(names);
    return code;
}

/* A trace is one JSON object holding "traceEvents"; anything else is read as JSON lines. A
 * trace's first line ('{"displayTimeUnit":"ms","traceEvents":[') is not a JSON value alone,
 * unless the whole trace is on one line. */
static int read_input(report *r, const char *path) {
    size_t size = 0;
    char *text = read_all(path, &size);
    if (!text) return cli_runtime_error(r->prog, "cannot read %s: %s", path, strerror(errno));
    if (strlen(text) != size) {
        free(text);
        return cli_runtime_error(r->prog, "%s:1: a NUL byte: not a JSON text file", path);
    }
    const char *first = text;
    while (*first == ' ' || *first == '\n' || *first == '\r' || *first == '\t') first++;
    const char *eol = strchr(first, '\n');
    char *line1 = strndup(first, eol ? (size_t)(eol - first) : strlen(first));
    cJSON *head = line1 ? cJSON_Parse(line1) : NULL;
    /* a trace written on one line is still a trace */
    const bool lines = head != NULL && !cJSON_HasObjectItem(head, "traceEvents");
    cJSON_Delete(head);
    free(line1);
    int code;
    if (!*first) {
        code = cli_runtime_error(r->prog, "%s: empty: neither run records nor a trace", path);
    } else if (lines) {
        code = read_records(r, path, text);
    } else {
        const char *end = NULL;
        cJSON *trace = cJSON_ParseWithOpts(text, &end, 1);
        if (!trace) {
            const char *at = cJSON_GetErrorPtr();
            code = cli_runtime_error(r->prog, "%s:%d: not valid JSON (neither run records nor a "
                                              "trace)", path, at ? line_of(text, at) : 1);
        } else if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(trace, "traceEvents"))) {
            code = cli_runtime_error(r->prog, "%s:1: a JSON object without \"traceEvents\": not "
                                              "a trace written by --profile", path);
        } else {
            code = read_trace(r, path, trace);
        }
        cJSON_Delete(trace);
    }
    free(text);
    return code;
}

/* ---- plots and the page ----------------------------------------------------------------- */

typedef struct figure {
    char file[64];
    strbuf svg;
} figure;

typedef struct page {
    figure *figures;
    int count, cap;
    strbuf html;
} page;

/* A new figure named <base><-k>.svg (k > 1 for the second and later of a kind). */
static strbuf *new_figure(page *g, const char *base, int k) {
    figure f = {0};
    if (k > 1) snprintf(f.file, sizeof f.file, "%s-%d.svg", base, k);
    else snprintf(f.file, sizeof f.file, "%s.svg", base);
    if (!PUSH(g->figures, g->count, g->cap, f)) return NULL;
    return &g->figures[g->count - 1].svg;
}

/* Inlines the last figure into the page, with a link to its file. */
static void place_figure(page *g) {
    const figure *f = &g->figures[g->count - 1];
    sb_printf(&g->html, "<figure>\n%s<figcaption><a href=\"%s\">%s</a></figcaption></figure>\n",
              f->svg.data ? f->svg.data : "", f->file, f->file);
}

static bool figure_failed(const page *g) {
    for (int i = 0; i < g->count; i++)
        if (g->figures[i].svg.failed) return true;
    return g->html.failed;
}

static void loss_section(page *g, const report *r) {
    if (r->run_count == 0) return;
    sb_printf(&g->html, "<h2>Loss curves</h2>\n<p>Training loss of each step (train) or the "
                        "workers' mean of each round (ist, dp), and validation loss.</p>\n");
    static const char *const axes[3][3] = {{"loss_steps", "loss against optimizer steps", "step"},
                                           {"loss_tokens", "loss against training tokens",
                                            "tokens"},
                                           {"loss_time", "loss against wall time",
                                            "seconds since the run started"}};
    svg_series *series = calloc((size_t)r->run_count * 2, sizeof *series);
    char (*labels)[300] = calloc((size_t)r->run_count * 2, sizeof *labels);
    if (!series || !labels) {
        g->html.failed = true;
        free(series), free(labels);
        return;
    }
    for (int a = 0; a < 3; a++) {
        int n = 0;
        for (int i = 0; i < r->run_count; i++) {
            const run *u = &r->runs[i];
            const curve *c[2] = {&u->train, &u->val};
            for (int v = 0; v < 2; v++) {
                if (c[v]->step.n == 0) continue;
                const dvec *x = a == 0 ? &c[v]->step : a == 1 ? &c[v]->tokens : &c[v]->time;
                snprintf(labels[n], sizeof labels[n], "%s%s%s", r->run_count > 1 ? u->label : "",
                         r->run_count > 1 ? " " : "", v ? "validation" : "train");
                series[n] = (svg_series){.label = labels[n], .x = x->v, .y = c[v]->loss.v,
                                         .count = c[v]->step.n, .markers = v == 1,
                                         .color = 2 * i + v};
                n++;
            }
        }
        svg_line_chart chart = {.title = axes[a][1], .x_label = axes[a][2], .y_label = "loss",
                                .series = series, .count = n, .width = 640, .height = 340};
        strbuf *svg = new_figure(g, axes[a][0], 1);
        if (!svg) {
            g->html.failed = true;
            break;
        }
        svg_lines(svg, &chart);
        place_figure(g);
    }
    free(series), free(labels);
}

static void timeline_section(page *g, const report *r) {
    if (r->timeline_count == 0) return;
    sb_printf(&g->html, "<h2>IST round timeline</h2>\n<p>Per worker: sending the subnet, "
                        "local training (compute), waiting for the slowest worker (idle), "
                        "receiving, merging; the master extracts the subnets and evaluates "
                        "the merged model.</p>\n");
    for (int i = 0; i < r->timeline_count; i++) {
        const timeline *t = &r->timelines[i];
        const char **rows = malloc((size_t)t->row_count * sizeof *rows);
        strbuf *svg = rows ? new_figure(g, "ist_timeline", i + 1) : NULL;
        if (!svg) {
            free(rows);
            g->html.failed = true;
            return;
        }
        for (int k = 0; k < t->row_count; k++) rows[k] = t->rows[k];
        char title[320];
        snprintf(title, sizeof title, "rounds of %s", t->label);
        svg_timeline chart = {.title = title, .x_label = "seconds", .rows = rows,
                              .row_count = t->row_count, .kinds = SPAN_KINDS,
                              .kind_count = SPAN_KIND_COUNT, .spans = t->spans,
                              .span_count = t->span_count, .width = 900};
        svg_timeline_chart(svg, &chart);
        free(rows);
        place_figure(g);
    }
}

static void format_rate(double value, const char *unit, char *out, size_t size) {
    if (isfinite(value)) snprintf(out, size, "%.4g %s", value, unit);
    else snprintf(out, size, "-");
}

static void agg_table(page *g, const agg_row *rows, int count, double total, const char *what) {
    sb_printf(&g->html, "<table>\n<tr><th>%s</th><th>calls</th><th>time ms</th><th>share</th>"
                        "<th>GFLOP/s</th><th>GB/s</th><th>%% of peak</th></tr>\n", what);
    for (int i = 0; i < count && i < 40; i++) {
        const agg_row *a = &rows[i];
        const double s = a->seconds;
        sb_printf(&g->html, "<tr><td>");
        sb_escaped(&g->html, a->key);
        sb_printf(&g->html, "</td><td>%lld</td><td>%.3f</td><td>%.1f%%</td>", a->calls, s * 1e3,
                  total > 0 ? 100 * s / total : 0);
        if (s > 0) sb_printf(&g->html, "<td>%.3f</td><td>%.3f</td>", a->flops / s * 1e-9,
                             a->bytes / s * 1e-9);
        else sb_printf(&g->html, "<td>-</td><td>-</td>");
        if (s > 0 && isfinite(a->peak_seconds))
            sb_printf(&g->html, "<td>%.1f</td></tr>\n", 100 * a->peak_seconds / s);
        else sb_printf(&g->html, "<td>-</td></tr>\n");
    }
    if (count > 40) sb_printf(&g->html, "<tr><td colspan=\"7\">... %d more</td></tr>\n", count - 40);
    sb_printf(&g->html, "</table>\n");
}

static void agg_chart(page *g, const agg_row *rows, int count, double total, const char *base,
                      int k, const char *title) {
    const int shown = count < 24 ? count : 24;
    svg_bar *bars = calloc((size_t)shown + 1, sizeof *bars);
    char (*notes)[96] = calloc((size_t)shown + 1, sizeof *notes);
    strbuf *svg = bars && notes ? new_figure(g, base, k) : NULL;
    if (!svg) {
        g->html.failed = true;
        free(bars), free(notes);
        return;
    }
    for (int i = 0; i < shown; i++) {
        const agg_row *a = &rows[i];
        char rate[32], peak[32] = "";
        format_rate(a->seconds > 0 ? a->flops / a->seconds * 1e-9 : NAN, "GFLOP/s", rate,
                    sizeof rate);
        if (a->seconds > 0 && isfinite(a->peak_seconds))
            snprintf(peak, sizeof peak, ", %.1f%% of peak", 100 * a->peak_seconds / a->seconds);
        snprintf(notes[i], sizeof notes[i], "%.1f%%, %s%s", 100 * a->seconds / total, rate, peak);
        bars[i] = (svg_bar){.label = a->key, .value = 100 * a->seconds / total, .note = notes[i],
                            .color = 0};
    }
    svg_bar_chart chart = {.title = title, .value_label = "% of the device time", .bars = bars,
                           .count = shown, .width = 860};
    svg_bars(svg, &chart);
    free(bars), free(notes);
    place_figure(g);
}

static void profile_section(page *g, const report *r) {
    for (int i = 0; i < r->profile_count; i++) {
        const profile *p = &r->profiles[i];
        sb_printf(&g->html, "<h2>Per-op profile: ");
        sb_escaped(&g->html, p->label);
        sb_printf(&g->html, "</h2>\n<p>%lld op calls, %.3f ms of device time over a %.3f ms "
                            "span. Devices: ", p->calls, p->device_s * 1e3, p->span_s * 1e3);
        sb_escaped(&g->html, p->devices);
        char memory[32];
        sb_printf(&g->html, ". Device memory peaked at %s (the largest high-water mark of one "
                            "device)", cli_format_bytes(p->peak_mem, memory, sizeof memory));
        sb_printf(&g->html, ". %% of peak is against the peak FP32 GFLOP/s 'twist devices' "
                            "gives, from the driver's specification or measured (a '-' where "
                            "it is unknown).</p>\n");
        char title[320];
        snprintf(title, sizeof title, "device time by op: %s", p->label);
        agg_chart(g, p->ops, p->op_count, p->device_s, "ops_by_op", i + 1, title);
        agg_table(g, p->ops, p->op_count, p->device_s, "op");
        snprintf(title, sizeof title, "device time by layer: %s", p->label);
        agg_chart(g, p->layers, p->layer_count, p->device_s, "ops_by_layer", i + 1, title);
        agg_table(g, p->layers, p->layer_count, p->device_s, "layer");
    }
}

static void bench_section(page *g, const report *r) {
    if (r->bench_count == 0) return;
    sb_printf(&g->html, "<h2>Backend comparison</h2>\n<p>Relative speed per benchmark: the "
                        "fastest device is 1 (higher is faster); the absolute figure is beside "
                        "each bar.</p>\n");
    svg_bar *bars = calloc((size_t)r->bench_count * 2, sizeof *bars);
    char (*notes)[96] = calloc((size_t)r->bench_count * 2, sizeof *notes);
    strbuf *svg = bars && notes ? new_figure(g, "bench", 1) : NULL;
    if (!svg) {
        g->html.failed = true;
        free(bars), free(notes);
        return;
    }
    int n = 0;
    sb_printf(&g->html, "<table>\n<tr><th>benchmark</th><th>device</th><th>result</th>"
                        "<th>relative speed</th></tr>\n");
    for (int i = 0; i < r->bench_count; i++) {
        bool seen = false; /* groups in first-seen order */
        for (int j = 0; j < i; j++) seen = seen || strcmp(r->bench[j].group, r->bench[i].group) == 0;
        if (seen) continue;
        double best = NAN;
        for (int j = i; j < r->bench_count; j++) {
            const bench_row *b = &r->bench[j];
            if (strcmp(b->group, r->bench[i].group) != 0 || !(b->value > 0)) continue;
            if (!isfinite(best) || (b->higher_better ? b->value > best : b->value < best))
                best = b->value;
        }
        bars[n++] = (svg_bar){.label = r->bench[i].group, .value = NAN};
        int color = 0;
        for (int j = i; j < r->bench_count; j++) {
            const bench_row *b = &r->bench[j];
            if (strcmp(b->group, r->bench[i].group) != 0) continue;
            const double rel = b->value > 0 ? (b->higher_better ? b->value / best : best / b->value)
                                            : 0;
            snprintf(notes[n], sizeof notes[n], "%.4g %s (%.2fx)", b->value, b->unit, rel);
            bars[n] = (svg_bar){.label = b->device, .value = rel, .note = notes[n], .color = color++};
            n++;
            sb_printf(&g->html, "<tr><td>");
            sb_escaped(&g->html, b->group);
            sb_printf(&g->html, "</td><td>");
            sb_escaped(&g->html, b->device);
            sb_printf(&g->html, "</td><td>%.4g %s</td><td>%.3f</td></tr>\n", b->value, b->unit, rel);
        }
    }
    sb_printf(&g->html, "</table>\n");
    svg_bar_chart chart = {.title = "backend comparison (fastest = 1)",
                           .value_label = "relative speed", .bars = bars, .count = n,
                           .width = 900};
    svg_bars(svg, &chart);
    free(bars), free(notes);
    place_figure(g);
}

static void render(page *g, const report *r, int count, const char *const *inputs,
                   const char *title) {
    sb_printf(&g->html,
              "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    sb_escaped(&g->html, title);
    sb_printf(&g->html,
              "</title>\n<style>\nbody { font-family: DejaVu Sans, Arial, sans-serif; margin: 2em; "
              "color: #222; background: #fff; }\nfigure { margin: 1em 0; }\n"
              "table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }\n"
              "td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }\n"
              "td:first-child, th:first-child { text-align: left; }\n</style>\n</head>\n<body>\n"
              "<h1>");
    sb_escaped(&g->html, title);
    sb_printf(&g->html, "</h1>\n<p>Written by <code>twist report</code> from:</p>\n<ul>\n");
    for (int i = 0; i < count; i++) {
        sb_printf(&g->html, "<li><code>");
        sb_escaped(&g->html, inputs[i]);
        sb_printf(&g->html, "</code></li>\n");
    }
    sb_printf(&g->html, "</ul>\n");
    bench_section(g, r);
    loss_section(g, r);
    timeline_section(g, r);
    profile_section(g, r);
    if (r->run_count + r->timeline_count + r->profile_count + r->bench_count == 0)
        sb_printf(&g->html, "<p>The inputs hold no training, round, benchmark or op records.</p>\n");
    sb_printf(&g->html, "</body>\n</html>\n");
}

/* ---- the output directory --------------------------------------------------------------- */

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }
static bool ends(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The files a report or `bench all` writes (see report.h). */
static bool owned(const char *name) {
    if (strcmp(name, "report.html") == 0 || strcmp(name, "bench.jsonl") == 0 ||
        strcmp(name, "bench.md") == 0)
        return true;
    return ends(name, ".svg") && (starts(name, "loss_") || starts(name, "ist_timeline") ||
                                  starts(name, "ops_") || starts(name, "bench"));
}

int report_prepare_dir(const char *prog, const char *dir, bool overwrite) {
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT) return cli_runtime_error(prog, "--out %s: %s", dir, strerror(errno));
        if (mkdir(dir, 0777) != 0)
            return cli_runtime_error(prog, "--out %s: cannot create it: %s", dir, strerror(errno));
        return CLI_EXIT_OK;
    }
    if (!S_ISDIR(st.st_mode))
        return cli_runtime_error(prog, "--out %s exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (!d) return cli_runtime_error(prog, "--out %s: cannot read it: %s", dir, strerror(errno));
    int code = CLI_EXIT_OK;
    for (struct dirent *e; code == CLI_EXIT_OK && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!overwrite) {
            code = cli_runtime_error(prog, "--out %s is not empty; pass --overwrite to replace "
                                           "the report there (only its report.html, .svg plots, "
                                           "bench.jsonl and bench.md are replaced; other files "
                                           "stay), or choose another directory", dir);
        } else if (owned(e->d_name)) {
            char path[4352];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) != 0)
                code = cli_runtime_error(prog, "cannot remove %s: %s", path, strerror(errno));
        }
    }
    closedir(d);
    if (code == CLI_EXIT_OK && access(dir, W_OK) != 0)
        code = cli_runtime_error(prog, "--out %s: not writable: %s", dir, strerror(errno));
    return code;
}

int report_write_file(const char *prog, const char *path, const char *data, size_t size) {
    char temp[4400];
    snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(temp, "wb");
    if (!f) return cli_runtime_error(prog, "cannot write %s: %s", temp, strerror(errno));
    const bool wrote = fwrite(data, 1, size, f) == size;
    const int saved = errno;
    if (fclose(f) != 0 || !wrote) {
        remove(temp);
        return cli_runtime_error(prog, "cannot write %s: %s", path, strerror(wrote ? errno : saved));
    }
    if (rename(temp, path) != 0) {
        const int why = errno;
        remove(temp);
        return cli_runtime_error(prog, "cannot rename %s to %s: %s", temp, path, strerror(why));
    }
    return CLI_EXIT_OK;
}

int report_write(const char *prog, int count, const char *const *inputs, const char *dir,
                 const char *title, bool prepare, bool overwrite) {
    report r = {.prog = prog};
    int code = CLI_EXIT_OK;
    for (int i = 0; i < count && code == CLI_EXIT_OK; i++) code = read_input(&r, inputs[i]);
    page g = {0};
    if (code == CLI_EXIT_OK) {
        render(&g, &r, count, inputs, title);
        if (figure_failed(&g)) code = oom(&r);
    }
    if (code == CLI_EXIT_OK && prepare) code = report_prepare_dir(prog, dir, overwrite);
    char path[4352];
    for (int i = 0; i < g.count && code == CLI_EXIT_OK; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, g.figures[i].file);
        code = report_write_file(prog, path, g.figures[i].svg.data, g.figures[i].svg.length);
    }
    if (code == CLI_EXIT_OK) {
        snprintf(path, sizeof path, "%s/report.html", dir);
        code = report_write_file(prog, path, g.html.data, g.html.length);
        if (code == CLI_EXIT_OK)
            printf("%s: wrote %s and %d plot(s) (.svg) from %d input(s): %d run(s), %d "
                   "timeline(s), %d profile(s), %d benchmark result(s)\n",
                   prog, path, g.count, count, r.run_count, r.timeline_count, r.profile_count,
                   r.bench_count);
    }
    for (int i = 0; i < g.count; i++) sb_free(&g.figures[i].svg);
    free(g.figures);
    sb_free(&g.html);
    report_free(&r);
    return code;
}

/* ---- twist report ----------------------------------------------------------------------- */

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *title = "twist report";
    bool overwrite = false;
    arg_spec specs[] = {
        {.name = "--out", .kind = ARG_STRING, .dest = &out, .metavar = "DIR",
         .help = "directory for report.html and the .svg plots (new or empty, or --overwrite)",
         .required = true},
        {.name = "--overwrite", .kind = ARG_FLAG, .dest = &overwrite,
         .help = "replace an earlier report in DIR (only the report's own files)"},
        {.name = "--title", .kind = ARG_STRING, .dest = &title, .metavar = "TEXT",
         .help = "the page's title (default 'twist report')"},
    };
    args_command command = {
        .name = "twist report",
        .synopsis = "twist report RUN.jsonl|PROFILE.json|BENCH.jsonl... --out DIR [--overwrite] "
                    "[--title TEXT]",
        .summary = "One self-contained HTML page (inline SVG, no script) and each plot as an .svg\n"
                   "file: loss curves of runs (metrics.jsonl of train, ist, dp) against steps,\n"
                   "tokens and wall time; the IST round timeline per worker; the per-op breakdown\n"
                   "of a --profile trace (time share, GFLOP/s, % of peak, by op and by layer);\n"
                   "and a backend comparison of 'twist bench ... --json' records.",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    /* The inputs are the arguments that are neither options nor their values. */
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    char **options = calloc((size_t)argc + 1, sizeof *options);
    if (!inputs || !options) {
        free(inputs), free(options);
        return cli_runtime_error(command.name, "out of host memory");
    }
    int n_inputs = 0, n_options = 0;
    for (int i = 0; i < argc; i++) {
        const bool takes_value = strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "--title") == 0;
        if (argv[i][0] == '-' && argv[i][1]) {
            options[n_options++] = argv[i];
            if (takes_value && i + 1 < argc) options[n_options++] = argv[++i];
        } else {
            inputs[n_inputs++] = argv[i];
        }
    }
    args_result parsed = args_parse(&command, n_options, options);
    int code = parsed == ARGS_OK ? CLI_EXIT_OK : parsed == ARGS_HELP ? -1 : CLI_EXIT_USAGE;
    if (code == CLI_EXIT_OK && n_inputs == 0)
        code = args_usage_error(command.name, "give at least one input: a run's metrics.jsonl, "
                                              "a --profile trace or 'twist bench --json' records");
    if (code == CLI_EXIT_OK)
        code = report_write(command.name, n_inputs, inputs, out, title, true, overwrite);
    free(inputs), free(options);
    return code < 0 ? CLI_EXIT_OK : code;
}

/* ---- the table of `twist bench all` ----------------------------------------------------- */

int report_bench_markdown(const char *prog, const char *jsonl, strbuf *md) {
    report r = {.prog = prog};
    int code = read_input(&r, jsonl);
    if (code == CLI_EXIT_OK) {
        sb_printf(md, "| benchmark | device | result | relative speed (fastest = 1) |\n"
                      "| --- | --- | --- | --- |\n");
        for (int i = 0; i < r.bench_count; i++) {
            const bench_row *b = &r.bench[i];
            double best = NAN;
            for (int j = 0; j < r.bench_count; j++) {
                const bench_row *o = &r.bench[j];
                if (strcmp(o->group, b->group) != 0 || !(o->value > 0)) continue;
                if (!isfinite(best) || (o->higher_better ? o->value > best : o->value < best))
                    best = o->value;
            }
            const double rel = b->value > 0 ? (b->higher_better ? b->value / best : best / b->value)
                                            : NAN;
            sb_printf(md, "| %s | %s | %.4g %s | %.3f |\n", b->group, b->device, b->value, b->unit,
                      rel);
        }
        if (md->failed) code = oom(&r);
    }
    report_free(&r);
    return code;
}
