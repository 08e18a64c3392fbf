/* `twist devices [--ops] [--json[=FILE]]`: every device of every compiled-in backend, then the
 * backends that are built but found no device (no driver or runtime here, with the backend's own
 * reason where it gives one) and those not built at all. With --ops, every device is opened and
 * the op list follows: per op, the data types each device runs it in and its kernel variants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/backend_support.h" /* the op list: tw_op_name */
#include "twist/memory.h"
#include "twist/model.h"
#include "twist/peak.h"

static const char *const PROG = "twist devices";

typedef struct device_list {
    tw_device_info *infos;
    tw_device_peak *peaks; /* (count) spec, measured (cached) or unknown */
    int count;
    int per_backend[TW_BACKEND_COUNT];
} device_list;

static int load_devices(device_list *list) {
    memset(list, 0, sizeof *list);
    list->count = tw_device_count();
    list->infos = calloc((size_t)(list->count > 0 ? list->count : 1), sizeof *list->infos);
    list->peaks = calloc((size_t)(list->count > 0 ? list->count : 1), sizeof *list->peaks);
    if (!list->infos || !list->peaks) {
        free(list->infos), free(list->peaks);
        return cli_runtime_error(PROG, "out of host memory");
    }
    for (int i = 0; i < list->count; i++) {
        tw_status status = tw_device_info_at(i, &list->infos[i]);
        if (status != TW_OK) {
            free(list->infos), free(list->peaks);
            return cli_library_error(PROG, status);
        }
        tw_device_peak_get(&list->infos[i], &list->peaks[i]);
        list->per_backend[list->infos[i].backend]++;
    }
    return CLI_EXIT_OK;
}

/* Devices whose driver gives no peak are measured once (a short GEMM and a copy, twist/peak.h)
 * and the result cached; later listings read the cache. A device that cannot be measured (out
 * of memory under a limit, a driver error) keeps "?" and a note on stderr. */
static void measure_unknown(device_list *list) {
    for (int i = 0; i < list->count; i++) {
        const tw_device_peak *p = &list->peaks[i];
        if (p->gflops_source != TW_PEAK_UNKNOWN && p->gbps_source != TW_PEAK_UNKNOWN) continue;
        fprintf(stderr, "%s: measuring the peak GFLOP/s and GB/s of %s once (a short GEMM and a "
                        "copy; cached, see 'twist devices --help')\n",
                PROG, list->infos[i].spec);
        tw_device *device = NULL;
        tw_status status = tw_device_open(list->infos[i].spec, &device);
        if (status == TW_OK) status = tw_device_peak_measure(device, &list->peaks[i]);
        tw_device_close(device);
        if (status != TW_OK)
            fprintf(stderr, "%s: could not measure %s: %s\n", PROG, list->infos[i].spec,
                    tw_last_error());
    }
}

/* The precision `twist train` and the other training commands take without --precision
 * (tw_gpt_default_dtype): bf16 only where it is fast, a CUDA device of compute capability 8.0+
 * whose backend runs every model op in bf16. Only CUDA devices are opened to ask (the others
 * are fp32 by their backend alone, and opening them would load their drivers). */
static tw_dtype default_precision(const tw_device_info *info, const char **why) {
    if (info->backend != TW_BACKEND_CUDA) {
        /* the same words as tw_gpt_default_dtype's */
        *why = "bf16 is the default on CUDA compute capability 8.0+ only; ask for it with "
               "--precision bf16";
        return TW_DTYPE_F32;
    }
    tw_device *device = NULL;
    if (tw_device_open(info->spec, &device) != TW_OK) {
        tw_clear_error();
        *why = "the device could not be opened";
        return TW_DTYPE_F32;
    }
    tw_dtype dtype = tw_gpt_default_dtype(device, why);
    tw_device_close(device);
    tw_clear_error();
    return dtype;
}

/* ---- table ----------------------------------------------------------------------------- */

enum { COLUMNS = 10 };

/* The device's free memory as its backend reports it now (twist/memory.h), 0 when unknown. */
static uint64_t free_memory(const tw_device_info *info) {
    uint64_t bytes = 0;
    if (tw_device_spec_free_memory(info->spec, &bytes) != TW_OK) {
        tw_clear_error();
        bytes = 0;
    }
    return bytes;
}

/* "989 spec", "41.2 measured", "?" */
static void peak_cell(double value, tw_peak_source source, char *out, size_t size) {
    if (source == TW_PEAK_UNKNOWN || !(value > 0)) snprintf(out, size, "?");
    else snprintf(out, size, "%.*f %s", value < 100 ? 1 : 0, value, tw_peak_source_name(source));
}

static void device_cells(const tw_device_info *info, const tw_device_peak *peak,
                         char cells[COLUMNS][288]) {
    char memory[32], free_text[32];
    const uint64_t free_bytes = free_memory(info);
    snprintf(cells[0], 288, "%s", info->spec);
    snprintf(cells[1], 288, "%s", tw_device_type_name(info->type));
    snprintf(cells[2], 288, "%s", info->name);
    snprintf(cells[3], 288, "%s", info->vendor);
    snprintf(cells[4], 288, "%s", info->driver[0] ? info->driver : "-");
    if (info->compute_units > 0)
        snprintf(cells[5], 288, "%d", info->compute_units);
    else
        snprintf(cells[5], 288, "?");
    snprintf(cells[6], 288, "%s",
             info->memory_bytes ? cli_format_bytes((double)info->memory_bytes, memory, sizeof memory)
                                : "?");
    snprintf(cells[7], 288, "%s",
             free_bytes ? cli_format_bytes((double)free_bytes, free_text, sizeof free_text) : "?");
    peak_cell(peak->gflops, peak->gflops_source, cells[8], 288);
    peak_cell(peak->gbps, peak->gbps_source, cells[9], 288);
}

static void print_row(char cells[COLUMNS][288], const int *widths) {
    for (int c = 0; c < COLUMNS; c++)
        printf("%-*s%s", c == COLUMNS - 1 ? 0 : widths[c], cells[c], c == COLUMNS - 1 ? "\n" : "  ");
}

static void print_table(const device_list *list) {
    static const char *const headers[COLUMNS] = {"SPEC",    "TYPE", "NAME",   "VENDOR",
                                                 "DRIVER",  "CUS",  "MEMORY", "FREE",
                                                 "PEAK GFLOP/S", "PEAK GB/S"};
    char cells[COLUMNS][288];
    int widths[COLUMNS];
    for (int c = 0; c < COLUMNS; c++) widths[c] = (int)strlen(headers[c]);
    for (int i = 0; i < list->count; i++) {
        device_cells(&list->infos[i], &list->peaks[i], cells);
        for (int c = 0; c < COLUMNS; c++)
            if ((int)strlen(cells[c]) > widths[c]) widths[c] = (int)strlen(cells[c]);
    }
    for (int c = 0; c < COLUMNS; c++) snprintf(cells[c], 288, "%s", headers[c]);
    print_row(cells, widths);
    for (int i = 0; i < list->count; i++) {
        device_cells(&list->infos[i], &list->peaks[i], cells);
        print_row(cells, widths);
    }
    if (list->count == 0) printf("(no devices)\n");
    printf("\n");
    for (int i = 0; i < list->count; i++) {
        const char *why = "";
        const tw_dtype dtype = default_precision(&list->infos[i], &why);
        /* Led by words, not the spec: scripts read the table's rows by their first field. */
        printf("default precision on %s: %s (%s)\n", list->infos[i].spec,
               dtype == TW_DTYPE_BF16 ? "bf16" : "fp32", why);
    }
    if (list->count > 0) printf("\n");
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++) {
        const char *name = tw_backend_name((tw_backend_kind)kind);
        const char *why = tw_backend_no_device_reason((tw_backend_kind)kind);
        if (!tw_backend_compiled((tw_backend_kind)kind))
            printf("backend %-7s not built (disabled, or its SDK was not found at configure time)\n", name);
        else if (list->per_backend[kind] == 0 && *why)
            printf("backend %-7s built, but found no devices: %s\n", name, why);
        else if (list->per_backend[kind] == 0)
            printf("backend %-7s built, but found no devices (no driver or runtime)\n", name);
        else
            printf("backend %-7s built, %d device(s)\n", name, list->per_backend[kind]);
    }
}

/* ---- the op list (--ops) ---------------------------------------------------------------- */

static const tw_dtype OP_DTYPES[] = {TW_DTYPE_F32, TW_DTYPE_BF16, TW_DTYPE_F16};
enum { OP_DTYPE_COUNT = 3, MAX_VARIANTS = 16 };

/* What one device says about every op: the data types (a bit per OP_DTYPES entry) and the
 * kernel variants; `open_error` when the device could not be opened. */
typedef struct device_ops {
    unsigned dtypes[TW_OP_COUNT];
    const char *variants[TW_OP_COUNT][MAX_VARIANTS];
    int variant_count[TW_OP_COUNT];
    char open_error[256];
} device_ops;

static void query_ops(const tw_device_info *info, device_ops *ops) {
    memset(ops, 0, sizeof *ops);
    tw_device *device = NULL;
    if (tw_device_open(info->spec, &device) != TW_OK) {
        snprintf(ops->open_error, sizeof ops->open_error, "%s", tw_last_error());
        tw_clear_error();
        return;
    }
    for (int op = 0; op < TW_OP_COUNT; op++) {
        const char *name = tw_op_name((tw_op_id)op);
        for (int d = 0; d < OP_DTYPE_COUNT; d++)
            if (tw_device_supports_dtype(device, name, OP_DTYPES[d])) ops->dtypes[op] |= 1u << d;
        int count = tw_device_kernel_variants(device, name, ops->variants[op], MAX_VARIANTS);
        ops->variant_count[op] = count < MAX_VARIANTS ? count : MAX_VARIANTS;
    }
    tw_device_close(device);
}

/* "f32 bf16 f16" */
static void dtypes_cell(unsigned mask, char *out, size_t size) {
    out[0] = '\0';
    for (int d = 0; d < OP_DTYPE_COUNT; d++)
        if (mask & (1u << d))
            snprintf(out + strlen(out), size - strlen(out), "%s%s", out[0] ? " " : "",
                     tw_dtype_name(OP_DTYPES[d]));
}

/* One row per op, one column per device: the data types; then the ops with kernel variants. */
static void print_ops(const device_list *list, const device_ops *ops) {
    printf("\nData types per op (every device runs every op in f32):\n");
    int widths[64 + 1];
    const int devices = list->count < 64 ? list->count : 64;
    widths[0] = (int)strlen("OP");
    for (int op = 0; op < TW_OP_COUNT; op++)
        if ((int)strlen(tw_op_name((tw_op_id)op)) > widths[0])
            widths[0] = (int)strlen(tw_op_name((tw_op_id)op));
    for (int i = 0; i < devices; i++) {
        widths[i + 1] = (int)strlen(list->infos[i].spec);
        if (ops[i].open_error[0] && widths[i + 1] < 14) widths[i + 1] = 14;
        for (int op = 0; op < TW_OP_COUNT; op++) {
            char cell[32];
            dtypes_cell(ops[i].dtypes[op], cell, sizeof cell);
            if ((int)strlen(cell) > widths[i + 1]) widths[i + 1] = (int)strlen(cell);
        }
    }
    printf("%-*s", widths[0], "OP");
    for (int i = 0; i < devices; i++)
        printf("  %-*s", i == devices - 1 ? 0 : widths[i + 1], list->infos[i].spec);
    printf("\n");
    for (int op = 0; op < TW_OP_COUNT; op++) {
        printf("%-*s", widths[0], tw_op_name((tw_op_id)op));
        for (int i = 0; i < devices; i++) {
            char cell[32];
            if (ops[i].open_error[0]) snprintf(cell, sizeof cell, "(cannot open)");
            else dtypes_cell(ops[i].dtypes[op], cell, sizeof cell);
            printf("  %-*s", i == devices - 1 ? 0 : widths[i + 1], cell);
        }
        printf("\n");
    }
    for (int i = 0; i < devices; i++) {
        if (ops[i].open_error[0]) {
            printf("%s: cannot open: %s\n", list->infos[i].spec, ops[i].open_error);
            continue;
        }
        for (int op = 0; op < TW_OP_COUNT; op++) {
            if (ops[i].variant_count[op] == 0) continue;
            printf("%s %s kernel variants:", list->infos[i].spec, tw_op_name((tw_op_id)op));
            for (int v = 0; v < ops[i].variant_count[op]; v++) printf(" %s", ops[i].variants[op][v]);
            printf("\n");
        }
    }
}

/* "ops": {"gemm": {"dtypes": ["f32", "bf16"], "variants": [...]}, ...} in a device record. */
static void record_ops(cJSON *record, const device_ops *ops) {
    if (!record) return;
    if (ops->open_error[0]) {
        tw_record_string(record, "ops_error", ops->open_error);
        return;
    }
    cJSON *all = cJSON_AddObjectToObject(record, "ops");
    for (int op = 0; all && op < TW_OP_COUNT; op++) {
        cJSON *entry = cJSON_AddObjectToObject(all, tw_op_name((tw_op_id)op));
        cJSON *dtypes = cJSON_AddArrayToObject(entry, "dtypes");
        for (int d = 0; d < OP_DTYPE_COUNT; d++)
            if (ops->dtypes[op] & (1u << d))
                cJSON_AddItemToArray(dtypes, cJSON_CreateString(tw_dtype_name(OP_DTYPES[d])));
        cJSON *variants = cJSON_AddArrayToObject(entry, "variants");
        for (int v = 0; v < ops->variant_count[op]; v++)
            cJSON_AddItemToArray(variants, cJSON_CreateString(ops->variants[op][v]));
    }
}

/* ---- records --------------------------------------------------------------------------- */

/* One "device" record per device (with "ops" when --ops gave `ops`), then one "backend" record
 * per backend. */
static void write_records(output *out, const device_list *list, const device_ops *ops) {
    for (int i = 0; i < list->count; i++) {
        const tw_device_info *info = &list->infos[i];
        cJSON *r = output_new(out, "device");
        tw_record_string(r, "device", info->spec);
        tw_record_string(r, "backend", tw_backend_name(info->backend));
        tw_record_string(r, "type", tw_device_type_name(info->type));
        tw_record_string(r, "device_name", info->name);
        tw_record_string(r, "vendor", info->vendor);
        tw_record_string(r, "driver", info->driver);
        if (info->compute_units > 0) tw_record_int(r, "compute_units", info->compute_units);
        else tw_record_null(r, "compute_units");
        if (info->memory_bytes) tw_record_number(r, "memory_bytes", (double)info->memory_bytes);
        else tw_record_null(r, "memory_bytes");
        const uint64_t free_bytes = free_memory(info);
        if (free_bytes) tw_record_number(r, "free_memory_bytes", (double)free_bytes);
        else tw_record_null(r, "free_memory_bytes");
        const tw_device_peak *peak = &list->peaks[i];
        if (peak->gflops > 0) tw_record_number(r, "peak_gflops", peak->gflops);
        else tw_record_null(r, "peak_gflops");
        tw_record_string(r, "peak_gflops_source", tw_peak_source_name(peak->gflops_source));
        if (peak->gbps > 0) tw_record_number(r, "peak_gbps", peak->gbps);
        else tw_record_null(r, "peak_gbps");
        tw_record_string(r, "peak_gbps_source", tw_peak_source_name(peak->gbps_source));
        if (ops) record_ops(r, &ops[i]);
        const char *why = "";
        const tw_dtype dtype = default_precision(info, &why);
        tw_record_string(r, "default_precision", dtype == TW_DTYPE_BF16 ? "bf16" : "fp32");
        tw_record_string(r, "default_precision_reason", why);
        output_record(out, r);
    }
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++) {
        cJSON *r = output_new(out, "backend");
        tw_record_string(r, "backend", tw_backend_name((tw_backend_kind)kind));
        tw_record_bool(r, "built", tw_backend_compiled((tw_backend_kind)kind));
        tw_record_int(r, "devices", list->per_backend[kind]);
        const char *why = tw_backend_no_device_reason((tw_backend_kind)kind);
        if (list->per_backend[kind] == 0 && *why) tw_record_string(r, "no_device_reason", why);
        output_record(out, r);
    }
}

int cmd_devices(int argc, char **argv) {
    const char *json = NULL;
    bool no_measure = false, list_ops = false;
    arg_spec specs[] = {
        output_json_spec(&json, "records (JSON lines) on stdout instead of the table, or "
                                "appended to FILE"),
        {.name = "--no-measure", .kind = ARG_FLAG, .dest = &no_measure,
         .help = "do not measure the peaks the driver does not give (they show as '?' until "
                 "measured)"},
        {.name = "--ops", .kind = ARG_FLAG, .dest = &list_ops,
         .help = "also open every device and list, per op, the data types it runs (f32, bf16, "
                 "f16) and its kernel variants"},
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist devices [--ops] [--no-measure] [--json[=FILE]]",
        .summary = "Lists every device of every backend built into this twist (spec, type, name,\n"
                   "vendor, driver, compute units, memory, free memory, peak FP32 GFLOP/s and\n"
                   "memory GB/s), and the backends that are built but found no device or are not\n"
                   "built at all.\n"
                   "A peak is 'spec' when it comes from the driver's clocks and unit counts, or\n"
                   "'measured': a short GEMM and a copy, timed once per device and driver and\n"
                   "cached in the twist cache directory ($TWIST_CACHE_DIR, $XDG_CACHE_HOME/twist\n"
                   "or ~/.cache/twist: peaks.json; delete it to measure again).\n"
                   "--ops adds the op list: per op, the data types each device runs it in (every\n"
                   "op runs in f32 everywhere; bf16 and f16 where the backend has them) and the\n"
                   "kernel variants it chooses between.",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;

    output out;
    int rc = output_open(&out, PROG, "devices", json);
    if (rc != CLI_EXIT_OK) return rc;
    device_list list;
    rc = load_devices(&list);
    if (rc != CLI_EXIT_OK) return output_close(&out, rc);
    if (!no_measure) measure_unknown(&list);
    device_ops *ops = NULL;
    if (list_ops) {
        ops = calloc((size_t)(list.count > 0 ? list.count : 1), sizeof *ops);
        if (!ops) {
            free(list.infos);
            free(list.peaks);
            return output_close(&out, cli_runtime_error(PROG, "out of host memory"));
        }
        for (int i = 0; i < list.count; i++) query_ops(&list.infos[i], &ops[i]);
    }
    if (out.text) print_table(&list);
    if (out.text && ops) print_ops(&list, ops);
    if (out.sink) write_records(&out, &list, ops);
    free(ops);
    free(list.infos);
    free(list.peaks);
    return output_close(&out, CLI_EXIT_OK);
}
