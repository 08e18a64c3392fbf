/* The device registry: every device of every compiled-in backend, enumerated once per process,
 * and device specs ("cpu", "opencl:0", ...) resolved against it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "core/registry.h"

enum { MAX_DEVICES_PER_BACKEND = 64 };

typedef struct registry_entry {
    tw_device_info info;
    const tw_backend_vtable *vtable;
    int local_index; /* index within its backend */
} registry_entry;

static registry_entry entries[TW_BACKEND_COUNT * MAX_DEVICES_PER_BACKEND];
static int entry_count;
static int backend_device_counts[TW_BACKEND_COUNT];
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static const char *const backend_names[TW_BACKEND_COUNT] = {"cpu", "opencl", "vulkan", "cuda"};

const char *tw_backend_name(tw_backend_kind kind) {
    return (kind >= 0 && kind < TW_BACKEND_COUNT) ? backend_names[kind] : "unknown";
}

const char *tw_device_type_name(tw_device_type type) {
    switch (type) {
    case TW_DEVICE_TYPE_CPU: return "cpu";
    case TW_DEVICE_TYPE_GPU: return "gpu";
    case TW_DEVICE_TYPE_INTEGRATED_GPU: return "integrated-gpu";
    case TW_DEVICE_TYPE_ACCELERATOR: return "accelerator";
    case TW_DEVICE_TYPE_OTHER: return "other";
    }
    return "other";
}

/* Backends absent from this build have no vtable. */
static const tw_backend_vtable *backend_vtable(tw_backend_kind kind) {
    switch (kind) {
    case TW_BACKEND_CPU: return tw_cpu_backend();
#ifdef TWIST_HAVE_OPENCL
    case TW_BACKEND_OPENCL: return tw_opencl_backend();
#endif
#ifdef TWIST_HAVE_VULKAN
    case TW_BACKEND_VULKAN: return tw_vulkan_backend();
#endif
#ifdef TWIST_HAVE_CUDA
    case TW_BACKEND_CUDA: return tw_cuda_backend();
#endif
    default: return NULL;
    }
}

bool tw_backend_compiled(tw_backend_kind kind) { return backend_vtable(kind) != NULL; }

static void enumerate_backend(tw_backend_kind kind) {
    const tw_backend_vtable *vtable = backend_vtable(kind);
    if (!vtable) return;
    tw_device_info found[MAX_DEVICES_PER_BACKEND];
    memset(found, 0, sizeof found);
    int count = vtable->enumerate(found, MAX_DEVICES_PER_BACKEND);
    if (count < 0) count = 0;
    if (count > MAX_DEVICES_PER_BACKEND) count = MAX_DEVICES_PER_BACKEND;
    for (int i = 0; i < count; i++) {
        registry_entry *entry = &entries[entry_count++];
        entry->info = found[i];
        entry->info.backend = kind;
        if (kind == TW_BACKEND_CPU)
            snprintf(entry->info.spec, sizeof entry->info.spec, "cpu");
        else
            snprintf(entry->info.spec, sizeof entry->info.spec, "%s:%d", backend_names[kind], i);
        entry->vtable = vtable;
        entry->local_index = i;
    }
    backend_device_counts[kind] = count;
}

static void build_registry(void) {
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++) enumerate_backend((tw_backend_kind)kind);
    /* Enumeration may leave driver messages behind; they are not errors of the caller. */
    tw_clear_error();
}

int tw_device_count(void) {
    pthread_once(&registry_once, build_registry);
    return entry_count;
}

int tw_backend_device_count(tw_backend_kind kind) {
    pthread_once(&registry_once, build_registry);
    return (kind >= 0 && kind < TW_BACKEND_COUNT) ? backend_device_counts[kind] : 0;
}

const char *tw_backend_no_device_reason(tw_backend_kind kind) {
    if (tw_backend_device_count(kind) > 0) return "";
    const tw_backend_vtable *vtable = backend_vtable(kind);
    const char *why = vtable && vtable->no_device_reason ? vtable->no_device_reason() : NULL;
    return why ? why : "";
}

tw_status tw_device_info_at(int index, tw_device_info *out) {
    int count = tw_device_count();
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_info_at: out is NULL");
    if (index < 0 || index >= count)
        return tw_error(TW_ERR_NOT_FOUND, "device index %d out of range: %d device(s)", index,
                        count);
    *out = entries[index].info;
    return TW_OK;
}

/* Splits "name[:index]"; a missing index means 0. */
static tw_status parse_spec(const char *spec, tw_backend_kind *kind, int *index) {
    if (!spec || !*spec) return tw_error(TW_ERR_INVALID_ARGUMENT, "empty device spec");
    const char *colon = strchr(spec, ':');
    size_t name_length = colon ? (size_t)(colon - spec) : strlen(spec);
    int found = -1;
    for (int k = 0; k < TW_BACKEND_COUNT; k++)
        if (strlen(backend_names[k]) == name_length && !strncmp(spec, backend_names[k], name_length))
            found = k;
    if (found < 0)
        return tw_error(TW_ERR_NOT_FOUND,
                        "unknown device spec '%s': expected auto, cpu, opencl:N, vulkan:N or cuda:N",
                        spec);
    *kind = (tw_backend_kind)found;
    *index = 0;
    if (colon) {
        char *end = NULL;
        errno = 0;
        long value = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || errno || value < 0 || value > 1000000)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "device spec '%s': the index after ':' must be a number >= 0", spec);
        *index = (int)value;
    }
    return TW_OK;
}

/* GPUs first, by backend (CUDA, Vulkan, OpenCL: the order of their expected speed for the same
 * GPU), then every other device in the same backend order, then the cpu. */
static int auto_rank(const tw_device_info *info) {
    static const int backend_rank[TW_BACKEND_COUNT] = {
        [TW_BACKEND_CUDA] = 0, [TW_BACKEND_VULKAN] = 1, [TW_BACKEND_OPENCL] = 2,
        [TW_BACKEND_CPU] = 3};
    const bool gpu = info->type == TW_DEVICE_TYPE_GPU ||
                     info->type == TW_DEVICE_TYPE_INTEGRATED_GPU;
    if (info->backend == TW_BACKEND_CPU) return 100;
    return (gpu ? 0 : 10) + backend_rank[info->backend];
}

tw_status tw_best_device(tw_device_info *out) {
    int count = tw_device_count(), best = 0;
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_best_device: out is NULL");
    /* A CPU-type OpenCL or Vulkan device (PoCL, lavapipe) runs on the same cores as the cpu
     * backend, more slowly: only accelerators beat the cpu. */
    for (int i = 1; i < count; i++)
        if (entries[i].info.type != TW_DEVICE_TYPE_CPU &&
            auto_rank(&entries[i].info) < auto_rank(&entries[best].info))
            best = i;
    *out = entries[best].info;
    return TW_OK;
}

tw_status tw_registry_find(const char *spec, const tw_backend_vtable **vtable, int *local_index,
                           tw_device_info *info) {
    tw_backend_kind kind = TW_BACKEND_CPU;
    int index = 0;
    tw_device_info best;
    if (spec && strcmp(spec, "auto") == 0 && tw_best_device(&best) == TW_OK) spec = best.spec;
    tw_status status = parse_spec(spec, &kind, &index);
    if (status != TW_OK) return status;
    if (!tw_backend_compiled(kind))
        return tw_error(TW_ERR_UNSUPPORTED,
                        "device spec '%s': the %s backend is not built into this twist "
                        "(its SDK was not found at configure time)",
                        spec, backend_names[kind]);
    int count = tw_backend_device_count(kind);
    if (index >= count) {
        const char *why = tw_backend_no_device_reason(kind);
        if (count == 0 && *why)
            return tw_error(TW_ERR_NOT_FOUND, "device spec '%s': no %s device: %s", spec,
                            backend_names[kind], why);
        if (count == 0)
            return tw_error(TW_ERR_NOT_FOUND,
                            "device spec '%s': the %s backend found no devices "
                            "(no driver or runtime on this machine)",
                            spec, backend_names[kind]);
        return tw_error(TW_ERR_NOT_FOUND, "device spec '%s': %s has %d device(s), %s:0 to %s:%d",
                        spec, backend_names[kind], count, backend_names[kind],
                        backend_names[kind], count - 1);
    }
    for (int i = 0; i < entry_count; i++) {
        if (entries[i].info.backend == kind && entries[i].local_index == index) {
            *vtable = entries[i].vtable;
            *local_index = index;
            *info = entries[i].info;
            return TW_OK;
        }
    }
    return tw_error(TW_ERR_NOT_FOUND, "device spec '%s' not found", spec);
}
