/* Device peaks (twist/peak.h): spec values from the device info, else measured once and cached
 * in <twist cache dir>/peaks.json:
 *   {"devices": [{"name": "...", "driver": "...", "backend": "vulkan",
 *                 "gflops": 10.3, "gbps": 12.5}, ...]}
 * keyed by name + driver (+ backend: PoCL and lavapipe may name the same CPU), so a new driver
 * measures again. The file is replaced through a temporary file and rename; two processes that
 * measure at once each write a complete file (the last one wins). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/paths.h"
#include "twist/clock.h"
#include "twist/error.h"
#include "twist/peak.h"

const char *tw_peak_source_name(tw_peak_source source) {
    switch (source) {
    case TW_PEAK_SPEC: return "spec";
    case TW_PEAK_MEASURED: return "measured";
    default: return "unknown";
    }
}

static bool cache_path(char *out, size_t capacity) {
    char dir[3800];
    if (!tw_user_cache_dir(dir, sizeof dir)) return false;
    return snprintf(out, capacity, "%s/peaks.json", dir) < (int)capacity;
}

/* The parsed cache, or NULL when there is none or it cannot be read (then it is remeasured). */
static cJSON *read_cache(void) {
    char path[4096];
    char *text = NULL;
    size_t size = 0;
    if (!cache_path(path, sizeof path) || access(path, R_OK) != 0) return NULL;
    if (tw_read_file(path, &text, &size) != TW_OK) return NULL;
    cJSON *cache = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(cache, "devices"))) {
        cJSON_Delete(cache);
        return NULL;
    }
    return cache;
}

static bool same(const cJSON *entry, const char *key, const char *value) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    return cJSON_IsString(item) && strcmp(item->valuestring, value) == 0;
}

static cJSON *find_entry(const cJSON *cache, const tw_device_info *info) {
    cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(cache, "devices")) {
        if (same(entry, "name", info->name) && same(entry, "driver", info->driver) &&
            same(entry, "backend", tw_backend_name(info->backend)))
            return entry;
    }
    return NULL;
}

static double positive(const cJSON *entry, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    return cJSON_IsNumber(item) && item->valuedouble > 0 && isfinite(item->valuedouble)
               ? item->valuedouble
               : 0.0;
}

void tw_device_peak_get(const tw_device_info *info, tw_device_peak *out) {
    memset(out, 0, sizeof *out);
    if (!info) return;
    if (info->peak_gflops_f32 > 0) {
        out->gflops = info->peak_gflops_f32;
        out->gflops_source = TW_PEAK_SPEC;
    }
    if (info->peak_gbps > 0) {
        out->gbps = info->peak_gbps;
        out->gbps_source = TW_PEAK_SPEC;
    }
    if (out->gflops_source && out->gbps_source) return;
    cJSON *cache = read_cache();
    const cJSON *entry = find_entry(cache, info);
    if (!out->gflops_source && positive(entry, "gflops") > 0) {
        out->gflops = positive(entry, "gflops");
        out->gflops_source = TW_PEAK_MEASURED;
    }
    if (!out->gbps_source && positive(entry, "gbps") > 0) {
        out->gbps = positive(entry, "gbps");
        out->gbps_source = TW_PEAK_MEASURED;
    }
    cJSON_Delete(cache);
}

/* Adds or replaces the device's entry and writes the cache back. */
static tw_status write_cache(const tw_device_info *info, double gflops, double gbps) {
    char path[4096], temp[4200], dir[3800];
    if (!tw_user_cache_dir(dir, sizeof dir) || !cache_path(path, sizeof path))
        return tw_error(TW_ERR_IO, "device peaks: no cache directory (set TWIST_CACHE_DIR or "
                                   "HOME)");
    if (!tw_make_dirs(dir)) return tw_error(TW_ERR_IO, "device peaks: cannot create %s", dir);
    cJSON *cache = read_cache();
    if (!cache) cache = cJSON_CreateObject();
    cJSON *devices = cJSON_GetObjectItemCaseSensitive(cache, "devices");
    if (cache && !devices) devices = cJSON_AddArrayToObject(cache, "devices");
    cJSON *entry = find_entry(cache, info);
    if (entry) cJSON_DetachItemViaPointer(devices, entry), cJSON_Delete(entry);
    entry = cJSON_CreateObject();
    if (entry) {
        cJSON_AddStringToObject(entry, "name", info->name);
        cJSON_AddStringToObject(entry, "driver", info->driver);
        cJSON_AddStringToObject(entry, "backend", tw_backend_name(info->backend));
        cJSON_AddNumberToObject(entry, "gflops", gflops);
        cJSON_AddNumberToObject(entry, "gbps", gbps);
        cJSON_AddItemToArray(devices, entry);
    }
    char *text = cache && devices && entry ? cJSON_Print(cache) : NULL;
    cJSON_Delete(cache);
    if (!text) return tw_error(TW_ERR_OUT_OF_MEMORY, "device peaks: out of host memory");
    snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(temp, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    if (ok) ok = rename(temp, path) == 0;
    if (!ok) {
        remove(temp);
        return tw_error(TW_ERR_IO, "device peaks: cannot write %s", path);
    }
    return TW_OK;
}

/* Best GFLOP/s of three (n, n) x (n, n) GEMMs after a warm-up (the best, because a machine shared
 * with other work only ever slows a run down). */
static tw_status measure_gemm(tw_device *device, int n, double *gflops) {
    const size_t bytes = (size_t)n * (size_t)n * sizeof(float);
    tw_buffer *a = NULL, *b = NULL, *c = NULL;
    tw_status status = tw_buffer_alloc(device, bytes, &a);
    if (status == TW_OK) status = tw_buffer_alloc(device, bytes, &b);
    if (status == TW_OK) status = tw_buffer_alloc(device, bytes, &c);
    if (status == TW_OK) status = tw_buffer_fill_f32(a, 0, (size_t)n * n, 0.5f);
    if (status == TW_OK) status = tw_buffer_fill_f32(b, 0, (size_t)n * n, 0.25f);
    tw_gemm_args args = {.dtype = TW_DTYPE_F32, .m = n, .n = n, .k = n, .batch = 1,
                         .alpha = 1.0f, .beta = 0.0f,
                         .a = tw_at(a, 0), .lda = n, .stride_a = (int64_t)n * n,
                         .b = tw_at(b, 0), .ldb = n, .stride_b = (int64_t)n * n,
                         .c = tw_at(c, 0), .ldc = n, .stride_c = (int64_t)n * n};
    double best = INFINITY;
    for (int i = 0; status == TW_OK && i < 4; i++) {
        status = tw_device_sync(device);
        const double start = tw_now_seconds();
        if (status == TW_OK) status = tw_gemm(device, &args);
        if (status == TW_OK) status = tw_device_sync(device);
        const double seconds = tw_now_seconds() - start;
        if (i > 0 && seconds < best) best = seconds; /* the first is the warm-up */
    }
    tw_buffer_free(a), tw_buffer_free(b), tw_buffer_free(c);
    *gflops = status == TW_OK && best > 0 ? 2.0 * n * (double)n * n / best * 1e-9 : 0.0;
    return status;
}

/* Best GB/s of three device-to-device copies of `bytes` (each reads and writes them). */
static tw_status measure_copy(tw_device *device, size_t bytes, double *gbps) {
    tw_buffer *src = NULL, *dst = NULL;
    tw_status status = tw_buffer_alloc(device, bytes, &src);
    if (status == TW_OK) status = tw_buffer_alloc(device, bytes, &dst);
    if (status == TW_OK) status = tw_buffer_fill_f32(src, 0, bytes / sizeof(float), 1.0f);
    double best = INFINITY;
    for (int i = 0; status == TW_OK && i < 4; i++) {
        status = tw_device_sync(device);
        const double start = tw_now_seconds();
        if (status == TW_OK) status = tw_buffer_copy(dst, 0, src, 0, bytes);
        if (status == TW_OK) status = tw_device_sync(device);
        const double seconds = tw_now_seconds() - start;
        if (i > 0 && seconds < best) best = seconds;
    }
    tw_buffer_free(src), tw_buffer_free(dst);
    *gbps = status == TW_OK && best > 0 ? 2.0 * (double)bytes / best * 1e-9 : 0.0;
    return status;
}

tw_status tw_device_peak_measure(tw_device *device, tw_device_peak *out) {
    if (!device || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_peak_measure: device and out needed");
    const tw_device_info *info = tw_device_get_info(device);
    tw_device_peak_get(info, out);
    if (out->gflops_source == TW_PEAK_SPEC && out->gbps_source == TW_PEAK_SPEC) return TW_OK;
    const bool cpu_like = info->type == TW_DEVICE_TYPE_CPU;
    double gflops = 0, gbps = 0;
    TW_TRY(measure_gemm(device, cpu_like ? 1024 : 2048, &gflops));
    TW_TRY(measure_copy(device, (size_t)64 << 20, &gbps));
    if (out->gflops_source != TW_PEAK_SPEC) {
        out->gflops = gflops;
        out->gflops_source = TW_PEAK_MEASURED;
    }
    if (out->gbps_source != TW_PEAK_SPEC) {
        out->gbps = gbps;
        out->gbps_source = TW_PEAK_MEASURED;
    }
    return write_cache(info, gflops, gbps);
}
