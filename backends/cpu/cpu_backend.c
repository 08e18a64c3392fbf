/* The CPU backend: one device ("cpu") whose buffers are aligned host memory and whose ops run at
 * once on the calling thread (OpenMP and OpenBLAS fan them out over the cores). Events are
 * wall-clock timestamps, which are exact here because nothing is queued. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu_internal.h"
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
    snprintf(info->driver, sizeof info->driver, "OpenBLAS (%s kernels) + OpenMP",
             tw_cpu_blas_core());
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
    int64_t *stamp = calloc(1, sizeof *stamp);
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
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    *(int64_t *)handle = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    return TW_OK;
}

static tw_status cpu_event_elapsed_ms(void *context, void *start, void *end, double *ms) {
    (void)context;
    *ms = (double)(*(int64_t *)end - *(int64_t *)start) / 1e6;
    return TW_OK;
}

static const tw_backend_vtable cpu_vtable = {
    .kind = TW_BACKEND_CPU,
    .enumerate = cpu_enumerate,
    .open = cpu_open,
    .close = cpu_close,
    .sync = cpu_sync,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .fill_f32 = cpu_fill_f32,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .event_elapsed_ms = cpu_event_elapsed_ms,
    .gemm = tw_cpu_gemm,
    .attention_fwd = tw_cpu_attention_fwd,
    .attention_bwd = tw_cpu_attention_bwd,
    .softmax_fwd = tw_cpu_softmax_fwd,
    .softmax_bwd = tw_cpu_softmax_bwd,
    .layernorm_fwd = tw_cpu_layernorm_fwd,
    .layernorm_bwd = tw_cpu_layernorm_bwd,
    .gelu_fwd = tw_cpu_gelu_fwd,
    .gelu_bwd = tw_cpu_gelu_bwd,
    .embedding_fwd = tw_cpu_embedding_fwd,
    .embedding_bwd = tw_cpu_embedding_bwd,
    .softmax_xent_fwd = tw_cpu_softmax_xent_fwd,
    .softmax_xent_bwd = tw_cpu_softmax_xent_bwd,
    .bias_add = tw_cpu_bias_add,
    .bias_bwd = tw_cpu_bias_bwd,
    .add = tw_cpu_add,
    .scale = tw_cpu_scale,
    .sum_sq = tw_cpu_sum_sq,
    .adamw_step = tw_cpu_adamw_step,
    .gather_rows = tw_cpu_gather_rows,
    .scatter_rows = tw_cpu_scatter_rows,
    .gather_cols = tw_cpu_gather_cols,
    .scatter_cols = tw_cpu_scatter_cols,
    .set_gemm_impl = NULL, /* OpenBLAS is the only GEMM here */
};

const tw_backend_vtable *tw_cpu_backend(void) { return &cpu_vtable; }
