/* The device registry: every device of every built backend, reached through the constructor
 * table tw_backend_constructors (backends/backends.c) and enumerated once per process, and device
 * specs ("cpu", "opencl:0", ...) resolved against it. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/registry.h"
#include "twist/backend_support.h"

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

/* Each backend's vtable, resolved through tw_backend_constructors under registry_once; NULL for a
 * backend not built or whose module did not load (then module_failure says why). */
static const tw_backend_vtable *vtables[TW_BACKEND_COUNT];
static char module_failure[TW_BACKEND_COUNT][512]; /* or why it was skipped */

/* What a backend module calls in the library. A module is resolved against the program that
 * loads it (executables linking libtwist export their symbols: CMake ENABLE_EXPORTS); naming the
 * functions here makes every program that can load a module carry them. */
typedef void (*any_function)(void);
__attribute__((used)) static const any_function module_imports[] = {
    (any_function)tw_error,         (any_function)tw_buffer_alloc, (any_function)tw_buffer_free,
    (any_function)tw_device_get_info, (any_function)tw_now_seconds, (any_function)tw_make_dirs,
    (any_function)tw_user_cache_dir,  (any_function)tw_fnv1a64,
};

/* A message that may be cut short to fit: its start names the module and the cause. */
static void say_why(char *why, size_t capacity, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void say_why(char *why, size_t capacity, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(why, capacity, format, args);
    va_end(args);
}

#ifndef TWIST_MODULE_INSTALL_SUBDIR
#define TWIST_MODULE_INSTALL_SUBDIR "lib/twist"
#endif

/* Loads `directory`/`name` when that file exists: true with *handle set (NULL, and the reason in
 * `why`, when it exists but does not load); false when there is no such file. */
static bool open_module_in(const char *directory, const char *name, void **handle, char *why,
                           size_t capacity) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", directory, name);
    if (n < 0 || (size_t)n >= sizeof path || access(path, F_OK) != 0) return false;
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) say_why(why, capacity, "cannot load %s: %s", path, dlerror());
    return true;
}

/* Looks, in order, beside the running program (build/ for an in-tree run), in
 * <program dir>/../lib/twist (installed), in the build tree the library was built in (tests in
 * build/tests/), then through the dynamic linker's search (LD_LIBRARY_PATH, the program's
 * RUNPATH; AddressSanitizer's dlopen interceptor loses the latter, hence the explicit
 * directories). RTLD_NOW: a module that cannot resolve everything fails here, not at its first
 * call. */
void *tw_module_open(const char *name, char *why, size_t capacity) {
    void *handle = NULL;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            if (open_module_in(self, name, &handle, why, capacity)) return handle;
            char installed[4096 + 64];
            snprintf(installed, sizeof installed, "%s/../%s", self, TWIST_MODULE_INSTALL_SUBDIR);
            if (open_module_in(installed, name, &handle, why, capacity)) return handle;
        }
    }
#ifdef TWIST_MODULE_BUILD_DIR
    if (open_module_in(TWIST_MODULE_BUILD_DIR, name, &handle, why, capacity)) return handle;
#endif
    handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle) say_why(why, capacity, "cannot load %s: %s", name, dlerror());
    return handle;
}

/* The module stays loaded for the life of the process: its vtable and device contexts live in it. */
static const tw_backend_vtable *load_module(tw_backend_kind kind, const tw_backend_entry *backend) {
    char *why = module_failure[kind];
    void *handle = tw_module_open(backend->module, why, sizeof module_failure[kind]);
    if (!handle) return NULL;
    tw_backend_constructor construct;
    void *symbol = dlsym(handle, backend->symbol);
    memcpy(&construct, &symbol, sizeof construct); /* POSIX: dlsym gives functions as void * */
    const tw_backend_vtable *vtable = construct ? construct() : NULL;
    if (!vtable) {
        say_why(why, sizeof module_failure[kind], "%s has no backend constructor %s",
                backend->module, backend->symbol);
        dlclose(handle);
    }
    return vtable;
}

bool tw_backend_compiled(tw_backend_kind kind) {
    if (kind < 0 || kind >= TW_BACKEND_COUNT) return false;
    return tw_backend_constructors[kind].construct || tw_backend_constructors[kind].module;
}

static void build_registry(void);

static const tw_backend_vtable *backend_vtable(tw_backend_kind kind) {
    pthread_once(&registry_once, build_registry);
    return (kind >= 0 && kind < TW_BACKEND_COUNT) ? vtables[kind] : NULL;
}

/* Address space left under RLIMIT_AS, in MiB; false when there is no limit or it cannot be
 * told (then nothing is skipped). */
static bool address_space_left_mib(double *mib) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
    FILE *statm = fopen("/proc/self/statm", "r");
    long pages = 0;
    bool known = statm && fscanf(statm, "%ld", &pages) == 1;
    if (statm) fclose(statm);
    if (!known) return false;
    double used = (double)pages * (double)sysconf(_SC_PAGESIZE);
    *mib = ((double)limit.rlim_cur - used) / 1048576.0;
    return true;
}

static void enumerate_backend(tw_backend_kind kind) {
    const tw_backend_entry *backend = &tw_backend_constructors[kind];
    double left_mib;
    if ((backend->construct || backend->module) && backend->driver_mib &&
        address_space_left_mib(&left_mib) && left_mib < backend->driver_mib) {
        say_why(module_failure[kind], sizeof module_failure[kind],
                "skipped: the address-space limit (ulimit -v) leaves %.0f MiB, less than the "
                "%u MiB its driver may map",
                left_mib < 0 ? 0.0 : left_mib, backend->driver_mib);
        return;
    }
    const tw_backend_vtable *vtable = backend->construct ? backend->construct()
                                      : backend->module  ? load_module(kind, backend)
                                                         : NULL;
    vtables[kind] = vtable;
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
    if (tw_backend_compiled(kind) && module_failure[kind][0]) return module_failure[kind];
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
