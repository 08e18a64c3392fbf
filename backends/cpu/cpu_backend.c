/* The CPU backend: one device ("cpu") whose buffers are aligned host memory and whose ops run at
 * once on the calling thread (OpenMP and OpenBLAS fan them out over the cores). Events are
 * wall-clock timestamps, which are exact here because nothing is queued. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu_internal.h"
#include "twist/clock.h"
#include "twist/cpu.h"

/* Host buffers are aligned to a cache line, which also suits every SIMD width. */
enum { CPU_ALIGNMENT = 64 };

/* ------------------------------------------------------------------------------------------ */
/* Device info                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Copies the value of the first "key : value" line of /proc/cpuinfo into out, or leaves it. */
static void read_cpuinfo_field(const char *key, char *out, size_t size) {
    FILE *file = fopen("/proc/cpuinfo", "r");
    if (!file) return;
    char line[512];
    size_t key_length = strlen(key);
    while (fgets(line, sizeof line, file)) {
        if (strncmp(line, key, key_length) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(out, size, "%s", colon);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(file);
}

static int cpu_enumerate(tw_device_info *out, int capacity) {
    if (capacity < 1) return 0;
    tw_device_info *info = &out[0];
    snprintf(info->name, sizeof info->name, "host CPU");
    snprintf(info->vendor, sizeof info->vendor, "unknown");
    read_cpuinfo_field("model name", info->name, sizeof info->name);
    read_cpuinfo_field("vendor_id", info->vendor, sizeof info->vendor);
    snprintf(info->driver, sizeof info->driver, "OpenBLAS (%s kernels) + OpenMP%s",
             tw_cpu_blas_core(), tw_cpu_has_avx512_bf16() ? " + AVX512-BF16" : "");
    info->type = TW_DEVICE_TYPE_CPU;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    info->compute_units = cores > 0 ? (int)cores : 1;
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    info->memory_bytes = pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size : 0;
    /* A CPU's peak depends on its vector units and clocks, which the OS does not report. */
    info->peak_gflops_f32 = 0.0;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Device, buffers, events                                                                    */
/* ------------------------------------------------------------------------------------------ */

static tw_status cpu_open(int index, tw_device *device, void **context) {
    (void)index;
    TW_TRY(tw_cpu_blas_reserve()); /* under ulimit -v: OpenBLAS's buffer first, or a message */
    tw_cpu_context *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return tw_error(TW_ERR_OUT_OF_MEMORY, "cpu: out of host memory opening the device");
    cpu->device = device;
    cpu->avx512_bf16 = tw_cpu_has_avx512_bf16();
    *context = cpu;
    return TW_OK;
}

static void cpu_close(void *context) { free(context); }

static tw_status cpu_sync(void *context) {
    (void)context;
    return TW_OK;
}

static tw_status cpu_buffer_alloc(void *context, size_t bytes, void **handle) {
    (void)context;
    size_t rounded = (bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT;
    if (rounded < bytes) return tw_error(TW_ERR_OUT_OF_MEMORY, "cpu: %zu bytes overflow", bytes);
    void *memory = aligned_alloc(CPU_ALIGNMENT, rounded ? rounded : CPU_ALIGNMENT);
    if (!memory)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes of host memory",
                        bytes);
    *handle = memory;
    return TW_OK;
}

static void cpu_buffer_free(void *context, void *handle) {
    (void)context;
    free(handle);
}

static tw_status cpu_upload(void *context, void *handle, size_t offset, const void *src,
                            size_t bytes) {
    (void)context;
    memcpy((char *)handle + offset, src, bytes);
    return TW_OK;
}

static tw_status cpu_download(void *context, void *handle, size_t offset, void *dst,
                              size_t bytes) {
    (void)context;
    memcpy(dst, (const char *)handle + offset, bytes);
    return TW_OK;
}

static tw_status cpu_copy(void *context, void *dst, size_t dst_offset, void *src,
                          size_t src_offset, size_t bytes) {
    (void)context;
    memcpy((char *)dst + dst_offset, (const char *)src + src_offset, bytes);
    return TW_OK;
}

static tw_status cpu_fill_f32(void *context, void *handle, size_t offset, size_t count,
                              float value) {
    (void)context;
    float *data = (float *)handle + offset;
    for (size_t i = 0; i < count; i++) data[i] = value;
    return TW_OK;
}

/* An event is the time it was recorded, in nanoseconds of the monotonic clock. */
static tw_status cpu_event_create(void *context, void **handle) {
    (void)context;
    double *stamp = calloc(1, sizeof *stamp); /* tw_now_seconds() when recorded */
    if (!stamp) return tw_error(TW_ERR_OUT_OF_MEMORY, "cpu: out of host memory for an event");
    *handle = stamp;
    return TW_OK;
}

static void cpu_event_destroy(void *context, void *handle) {
    (void)context;
    free(handle);
}

static tw_status cpu_event_record(void *context, void *handle) {
    (void)context;
    *(double *)handle = tw_now_seconds();
    return TW_OK;
}

static tw_status cpu_event_elapsed_ms(void *context, void *start, void *end, double *ms) {
    (void)context;
    *ms = (*(double *)end - *(double *)start) * 1e3;
    return TW_OK;
}

/* Free memory: the kernel's estimate of what can be allocated without swapping (MemAvailable
 * in /proc/meminfo, which counts reclaimable caches as free). */
static tw_status cpu_free_memory(int index, uint64_t *free_bytes) {
    (void)index;
    FILE *file = fopen("/proc/meminfo", "r");
    if (!file) return tw_error(TW_ERR_UNSUPPORTED, "cpu: /proc/meminfo cannot be read");
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, file))
        found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(file);
    if (!found) return tw_error(TW_ERR_UNSUPPORTED, "cpu: /proc/meminfo has no MemAvailable");
    *free_bytes = (uint64_t)kib * 1024u;
    return TW_OK;
}

static const tw_backend_vtable cpu_vtable = {
    .kind = TW_BACKEND_CPU,
    TW_BACKEND_DEVICE_INITIALISERS(cpu) /* cpu_enumerate, cpu_open, ... */
    /* every op, from the list in twist/backend_support.h, in every data type (cpu_dtype.c) */
    TW_BACKEND_OP_INITIALISERS(tw_cpu_typed)
    .set_gemm_impl = NULL, /* OpenBLAS is the only GEMM here */
    .free_memory = cpu_free_memory,
    .supports_dtype = tw_cpu_supports_dtype,
    .convert = tw_cpu_convert,
    .variants = tw_cpu_variants,
    .force_variant = tw_cpu_force_variant,
};

const tw_backend_vtable *tw_cpu_backend(void) { return &cpu_vtable; }
