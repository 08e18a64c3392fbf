/* `twist tune --device SPEC[,SPEC...]|all [--retune] [--json[=FILE]]`: runs the tuner of each
 * device now (tw_device_tune, twist/backend.h) for every shape class of every op that has kernel
 * variants there, with a progress bar on stderr (a bar redrawn in place on a terminal, one plain
 * line per shape class otherwise), then prints the variant chosen for each class, as the tuner
 * left it in the device's tuning cache: "tuned" when timed by this command, "cached" when an
 * earlier run's choice was kept. A device whose ops all have a single kernel says so; that is
 * not an error.
 *
 * The command knows no backend: the ops come from the op list (tw_op_name), their variants
 * from tw_device_kernel_variants and the choices from tw_tune_request.choice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/backend_support.h" /* the op list: tw_op_name, TW_OP_COUNT */
#include "twist/clock.h"

static const char *const PROG = "twist tune";

enum { MAX_VARIANTS = 64, MAX_SPECS = 64 };

typedef struct tune_choice {
    char op[96], shape_class[96], variant[96];
    bool measured;
} tune_choice;

/* What one device's tune left: the choices in the order met; and the progress line. Both
 * callbacks of tw_tune_request get this (its one `user` pointer). */
typedef struct tune_session {
    tune_choice *choices;
    int count, capacity;
    bool out_of_memory;
    const char *spec;
    bool terminal; /* stderr is a terminal: one bar redrawn in place */
    bool drawn;    /* a bar is on screen without its newline */
    double start;
} tune_session;

static void collect_choice(const char *op, const char *shape_class, const char *variant,
                           bool measured, void *user) {
    tune_session *r = user;
    if (r->count == r->capacity) {
        int capacity = r->capacity ? 2 * r->capacity : 64;
        tune_choice *grown = realloc(r->choices, (size_t)capacity * sizeof *grown);
        if (!grown) {
            r->out_of_memory = true;
            return;
        }
        r->choices = grown;
        r->capacity = capacity;
    }
    tune_choice *c = &r->choices[r->count++];
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->shape_class, sizeof c->shape_class, "%s", shape_class);
    snprintf(c->variant, sizeof c->variant, "%s", variant);
    c->measured = measured;
}

/* ---- progress on stderr ------------------------------------------------------------------ */

static void show_progress(int done, int total, const char *label, void *user) {
    tune_session *p = user;
    const double seconds = tw_now_seconds() - p->start;
    if (!label) label = "";
    if (!p->terminal) {
        fprintf(stderr, "%s: %s: %d/%d %s (%.1f s)\n", PROG, p->spec, done, total, label,
                seconds);
        return;
    }
    enum { WIDTH = 24 };
    int filled = total > 0 ? (int)((double)WIDTH * done / total) : 0;
    if (filled > WIDTH) filled = WIDTH;
    if (filled < 0) filled = 0;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[WIDTH] = '\0';
    /* \r and "erase to the end of the line": the label's length changes from class to class. */
    fprintf(stderr, "\r%s [%s] %d/%d %5.1fs %.60s\033[K", p->spec, bar, done, total, seconds,
            label);
    fflush(stderr);
    p->drawn = true;
}

static void end_progress(tune_session *p) {
    if (p->drawn) fprintf(stderr, "\n");
    p->drawn = false;
}

/* ---- one device ---------------------------------------------------------------------------- */

typedef struct tune_options {
    arg_string_list devices;
    bool retune;
    const char *json;
} tune_options;

/* The ops with kernel variants on the device. With a record: their names into it as
 * {"gemm": ["v1", ...], ...}; with text: one line per op. Returns how many ops have variants. */
static int list_variants(tw_device *device, cJSON *record, output *text) {
    int tunable = 0;
    cJSON *variants = record ? cJSON_AddObjectToObject(record, "variants") : NULL;
    for (int id = 0; id < TW_OP_COUNT; id++) {
        const char *op = tw_op_name((tw_op_id)id);
        const char *names[MAX_VARIANTS];
        int n = tw_device_kernel_variants(device, op, names, MAX_VARIANTS);
        if (n <= 0) continue;
        tunable++;
        if (n > MAX_VARIANTS) n = MAX_VARIANTS;
        if (text) {
            char line[2048];
            size_t length = (size_t)snprintf(line, sizeof line, "  %-16s %d variant(s):", op,
                                             n);
            for (int v = 0; v < n && length < sizeof line; v++)
                length += (size_t)snprintf(line + length, sizeof line - length, " %s", names[v]);
            output_line(text, "%s", line);
        }
        cJSON *list = variants ? cJSON_AddArrayToObject(variants, op) : NULL;
        for (int v = 0; list && v < n; v++) cJSON_AddItemToArray(list, cJSON_CreateString(names[v]));
    }
    return tunable;
}

static void print_choices(output *out, const tune_session *r) {
    int op_width = 2, class_width = 5, variant_width = 7;
    for (int i = 0; i < r->count; i++) {
        const tune_choice *c = &r->choices[i];
        if ((int)strlen(c->op) > op_width) op_width = (int)strlen(c->op);
        if ((int)strlen(c->shape_class) > class_width) class_width = (int)strlen(c->shape_class);
        if ((int)strlen(c->variant) > variant_width) variant_width = (int)strlen(c->variant);
    }
    output_line(out, "  %-*s  %-*s  %-*s  %s", op_width, "OP", class_width, "CLASS",
                variant_width, "VARIANT", "SOURCE");
    for (int i = 0; i < r->count; i++) {
        const tune_choice *c = &r->choices[i];
        output_line(out, "  %-*s  %-*s  %-*s  %s", op_width, c->op, class_width, c->shape_class,
                    variant_width, c->variant, c->measured ? "tuned" : "cached");
    }
}

static void write_tune_record(output *out, tw_device *device, const tune_options *o,
                              const tune_session *r, bool tunable, double seconds) {
    const tw_device_info *info = tw_device_get_info(device);
    cJSON *j = output_new(out, "tune");
    tw_record_string(j, "device", info->spec);
    tw_record_string(j, "device_name", info->name);
    tw_record_string(j, "driver", info->driver);
    tw_record_bool(j, "retune", o->retune);
    tw_record_bool(j, "tunable", tunable);
    tw_record_number(j, "tune_s", seconds);
    if (j) list_variants(device, j, NULL);
    int measured = 0;
    cJSON *choices = j ? cJSON_AddArrayToObject(j, "choices") : NULL;
    for (int i = 0; i < r->count; i++) {
        const tune_choice *c = &r->choices[i];
        measured += c->measured;
        cJSON *item = choices ? cJSON_CreateObject() : NULL;
        if (!item) continue;
        tw_record_string(item, "op", c->op);
        tw_record_string(item, "shape_class", c->shape_class);
        tw_record_string(item, "variant", c->variant);
        tw_record_bool(item, "measured", c->measured);
        cJSON_AddItemToArray(choices, item);
    }
    tw_record_int(j, "classes", r->count);
    tw_record_int(j, "classes_tuned", measured);
    output_record(out, j);
}

static int tune_one(const char *spec, const tune_options *o, output *out) {
    tw_device *device = NULL;
    tw_status status = tw_device_open(spec, &device);
    if (status != TW_OK) return cli_library_error(PROG, status);
    const tw_device_info *info = tw_device_get_info(device);
    const int tunable = list_variants(device, NULL, NULL);
    tune_session r = {.spec = info->spec, .terminal = isatty(STDERR_FILENO) != 0,
                      .start = tw_now_seconds()};
    if (!tunable) {
        output_line(out, "%s (%s): nothing to tune: every op has a single kernel on this device",
                    info->spec, info->name);
    } else {
        output_line(out, "%s (%s%s%s): %s %d op(s) with kernel variants", info->spec, info->name,
                    info->driver[0] ? ", driver " : "", info->driver,
                    o->retune ? "forgetting the cached choices, tuning" : "tuning", tunable);
        list_variants(device, NULL, out);
        tw_tune_request request = {.retune = o->retune, .progress = show_progress, .user = &r,
                                   .choice = collect_choice};
        status = tw_device_tune(device, &request);
        end_progress(&r);
    }
    const double seconds = tw_now_seconds() - r.start;
    int rc = CLI_EXIT_OK;
    if (status != TW_OK) rc = cli_library_error(PROG, status);
    else if (r.out_of_memory) rc = cli_runtime_error(PROG, "out of host memory for the choices");
    if (rc == CLI_EXIT_OK && tunable) {
        int measured = 0;
        for (int i = 0; i < r.count; i++) measured += r.choices[i].measured;
        output_line(out, "%s: %d shape class(es) in %.1f s: %d tuned now, %d from the cache",
                    info->spec, r.count, seconds, measured, r.count - measured);
        if (r.count) print_choices(out, &r);
    }
    if (rc == CLI_EXIT_OK && out->sink) write_tune_record(out, device, o, &r, tunable > 0, seconds);
    free(r.choices);
    tw_device_close(device);
    return rc;
}

/* ---- the command --------------------------------------------------------------------------- */

/* --device values, each "all" or a comma-separated list of specs, into specs (duplicates
 * dropped, order kept). */
static int expand_specs(const tune_options *o, char specs[][32], int *count) {
    *count = 0;
    for (int i = 0; i < o->devices.count; i++) {
        char list[1024];
        if (snprintf(list, sizeof list, "%s", o->devices.values[i]) >= (int)sizeof list)
            return args_usage_error(PROG, "--device: the list is too long");
        char *save = NULL;
        for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            char one[MAX_SPECS][32];
            int n = 0;
            if (strcmp(s, "all") == 0) {
                const int listed = tw_device_count();
                for (int d = 0; d < listed && n < MAX_SPECS; d++) {
                    tw_device_info info;
                    tw_status status = tw_device_info_at(d, &info);
                    if (status != TW_OK) return cli_library_error(PROG, status);
                    snprintf(one[n++], 32, "%s", info.spec);
                }
            } else if (strlen(s) >= 32) {
                return args_usage_error(PROG, "--device: '%s' is not a device spec", s);
            } else {
                snprintf(one[n++], 32, "%.31s", s);
            }
            for (int k = 0; k < n; k++) {
                bool seen = false;
                for (int j = 0; j < *count && !seen; j++) seen = strcmp(specs[j], one[k]) == 0;
                if (seen) continue;
                if (*count == MAX_SPECS)
                    return args_usage_error(PROG, "--device: more than %d devices", MAX_SPECS);
                snprintf(specs[(*count)++], 32, "%.31s", one[k]);
            }
        }
    }
    if (*count == 0) return args_usage_error(PROG, "--device: no device named");
    /* Every spec is checked before any device is tuned: one not listed gets the library's
     * reason from tw_device_open (a spec it accepts, such as "auto", is fine). */
    const int listed = tw_device_count();
    for (int i = 0; i < *count; i++) {
        bool found = false;
        for (int d = 0; d < listed && !found; d++) {
            tw_device_info info;
            found = tw_device_info_at(d, &info) == TW_OK && strcmp(info.spec, specs[i]) == 0;
        }
        if (found) continue;
        tw_device *device = NULL;
        tw_status status = tw_device_open(specs[i], &device);
        if (status != TW_OK) return cli_library_error(PROG, status);
        tw_device_close(device);
    }
    return CLI_EXIT_OK;
}

int cmd_tune(int argc, char **argv) {
    tune_options o = {0};
    arg_spec specs[] = {
        {.name = "--device", .kind = ARG_STRING_LIST, .dest = &o.devices,
         .metavar = "SPEC[,SPEC...]|all",
         .help = "devices to tune: specs (see 'twist devices'), comma-separated or repeated, "
                 "or all", .required = true},
        {.name = "--retune", .kind = ARG_FLAG, .dest = &o.retune,
         .help = "forget the cached choices first and time every shape class again"},
        output_json_spec(&o.json, "one record (JSON) per device on stdout instead of the text, "
                                  "or appended to FILE"),
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist tune --device SPEC[,SPEC...]|all [--retune] [--json[=FILE]]",
        .summary = "Runs each device's kernel tuner now: every shape class of every op with\n"
                   "kernel variants there is timed (or kept from the tuning cache of an earlier\n"
                   "run, unless --retune), the fastest correct variant cached per device and\n"
                   "driver, and the choice per class printed. Progress goes to stderr. Without\n"
                   "this command the same tuning happens on first use of each shape class.\n"
                   "A device whose ops have a single kernel each has nothing to tune (exit 0).",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    char device_specs[MAX_SPECS][32];
    int count = 0;
    int rc = expand_specs(&o, device_specs, &count);
    if (rc != CLI_EXIT_OK) return rc;
    output out;
    rc = output_open(&out, PROG, "tune", o.json);
    for (int i = 0; i < count && rc == CLI_EXIT_OK; i++) rc = tune_one(device_specs[i], &o, &out);
    return output_close(&out, rc);
}
