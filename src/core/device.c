/* Devices, buffers and events: the front end that checks arguments, keeps the per-device byte
 * accounting, and forwards to the backend's vtable. A tw_device and its buffers are used from one
 * thread at a time (IST gives each worker thread its own device). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/registry.h"
#include "prof/profile_internal.h"
#include "twist/memory.h"

/* Bytes twist holds on each device over all of its contexts in this process: OpenCL cannot
 * report free memory, so the front end subtracts these from the device's global memory. One
 * slot per device spec, found once per open under the lock, then updated atomically. */
enum { SPEC_SLOTS = 256 };
static struct {
    char spec[32];
    uint64_t bytes;
} spec_slots[SPEC_SLOTS];
static int spec_slot_count;
static pthread_mutex_t spec_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t *spec_bytes_of(const char *spec) {
    uint64_t *found = NULL;
    pthread_mutex_lock(&spec_lock);
    for (int i = 0; i < spec_slot_count && !found; i++)
        if (strcmp(spec_slots[i].spec, spec) == 0) found = &spec_slots[i].bytes;
    if (!found && spec_slot_count < SPEC_SLOTS) {
        snprintf(spec_slots[spec_slot_count].spec, sizeof spec_slots[0].spec, "%s", spec);
        found = &spec_slots[spec_slot_count++].bytes;
    }
    pthread_mutex_unlock(&spec_lock);
    return found;
}

static uint64_t spec_bytes_now(const char *spec) {
    uint64_t bytes = 0;
    pthread_mutex_lock(&spec_lock);
    for (int i = 0; i < spec_slot_count; i++)
        if (strcmp(spec_slots[i].spec, spec) == 0)
            bytes = __atomic_load_n(&spec_slots[i].bytes, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&spec_lock);
    return bytes;
}

tw_status tw_device_open(const char *spec, tw_device **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_open: out is NULL");
    *out = NULL;
    const tw_backend_vtable *vtable;
    int local_index;
    tw_device_info info;
    tw_status status = tw_registry_find(spec, &vtable, &local_index, &info);
    if (status != TW_OK) return status;

    tw_device *device = calloc(1, sizeof *device);
    if (!device) return tw_error(TW_ERR_OUT_OF_MEMORY, "out of host memory opening %s", spec);
    device->vtable = vtable;
    device->info = info;
    device->spec_bytes = spec_bytes_of(info.spec);
    status = vtable->open(local_index, device, &device->context);
    if (status != TW_OK) {
        free(device);
        return status;
    }
    status = tw_prof_attach(device); /* nothing unless a profiling session is open */
    if (status != TW_OK) {
        tw_device_close(device);
        return status;
    }
    *out = device;
    return TW_OK;
}

void tw_device_close(tw_device *device) {
    if (!device) return;
    if (device->profile) tw_prof_detach(device);
    device->vtable->close(device->context);
    free(device);
}

const tw_device_info *tw_device_get_info(const tw_device *device) { return &device->info; }

tw_status tw_device_sync(tw_device *device) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_sync: device is NULL");
    tw_status status = device->vtable->sync(device->context);
    if (status == TW_OK && device->profile) tw_prof_sync(device);
    return status;
}

size_t tw_device_bytes_in_use(const tw_device *device) { return device->bytes_in_use; }
size_t tw_device_peak_bytes(const tw_device *device) { return device->peak_bytes; }
void tw_device_reset_peak(tw_device *device) { device->peak_bytes = device->bytes_in_use; }

/* ------------------------------------------------------------------------------------------ */
/* Memory: caps and free bytes (twist/memory.h)                                               */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_device_set_memory_cap(tw_device *device, uint64_t bytes) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_set_memory_cap: no device");
    if (bytes && device->bytes_in_use > bytes) {
        char used[32], cap[32];
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "--device-memory %s=%llu: %s already holds %s, more than the cap of %s",
                        device->info.spec, (unsigned long long)bytes, device->info.spec,
                        tw_format_bytes(device->bytes_in_use, used, sizeof used),
                        tw_format_bytes(bytes, cap, sizeof cap));
    }
    device->memory_cap = bytes;
    return TW_OK;
}

uint64_t tw_device_memory_cap(const tw_device *device) { return device ? device->memory_cap : 0; }

tw_status tw_device_spec_free_memory(const char *spec, uint64_t *free_bytes) {
    if (!free_bytes)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_spec_free_memory: NULL argument");
    *free_bytes = 0;
    const tw_backend_vtable *vtable;
    int local_index;
    tw_device_info info;
    TW_TRY(tw_registry_find(spec, &vtable, &local_index, &info));
    if (vtable->free_memory) {
        uint64_t reported = 0;
        tw_status status = vtable->free_memory(local_index, &reported);
        if (status == TW_OK) {
            *free_bytes = reported;
            return TW_OK;
        }
        if (status != TW_ERR_UNSUPPORTED) return status;
        tw_clear_error();
    }
    /* The device's memory less what twist holds on it (other programs' use is not known). */
    const uint64_t held = spec_bytes_now(info.spec);
    *free_bytes = info.memory_bytes > held ? info.memory_bytes - held : 0;
    return TW_OK;
}

tw_status tw_device_free_memory(tw_device *device, uint64_t *free_bytes, bool *capped) {
    if (!device || !free_bytes)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_free_memory: NULL argument");
    TW_TRY(tw_device_spec_free_memory(device->info.spec, free_bytes));
    if (capped) *capped = false;
    if (device->memory_cap) {
        const uint64_t left = device->memory_cap > device->bytes_in_use
                                  ? device->memory_cap - device->bytes_in_use : 0;
        if (*free_bytes == 0 || left <= *free_bytes) {
            *free_bytes = left;
            if (capped) *capped = true;
        }
    }
    return TW_OK;
}

tw_status tw_device_set_gemm_impl(tw_device *device, tw_gemm_impl impl) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_set_gemm_impl: no device");
    if (impl != TW_GEMM_AUTO && impl != TW_GEMM_VENDOR && impl != TW_GEMM_OWN)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "unknown GEMM implementation %d", (int)impl);
    if (device->vtable->set_gemm_impl) return device->vtable->set_gemm_impl(device->context, impl);
    if (impl == TW_GEMM_AUTO) return TW_OK;
    return tw_error(TW_ERR_UNSUPPORTED, "%s has a single GEMM implementation",
                    device->info.spec);
}

tw_status tw_device_tune(tw_device *device, const tw_tune_request *request) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_tune: no device");
    tw_tune_request none = {0};
    if (!device->vtable->tune) return TW_OK; /* nothing to tune on this backend */
    return device->vtable->tune(device->context, request ? request : &none);
}

int tw_device_kernel_variants(tw_device *device, const char *op, const char **names,
                              int capacity) {
    if (!device || !op || capacity < 0 || (capacity > 0 && !names)) return 0;
    if (!device->vtable->variants) return 0;
    return device->vtable->variants(device->context, op, names, capacity);
}

tw_status tw_device_force_kernel_variant(tw_device *device, const char *op, const char *name) {
    if (!device || !op)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_device_force_kernel_variant: NULL argument");
    if (!device->vtable->force_variant) {
        if (!name) return TW_OK;
        return tw_error(TW_ERR_NOT_FOUND, "%s has a single %s kernel: no variant \"%s\"",
                        device->info.spec, op, name);
    }
    return device->vtable->force_variant(device->context, op, name);
}

/* ------------------------------------------------------------------------------------------ */
/* Buffers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_buffer_alloc(tw_device *device, size_t bytes, tw_buffer **out) {
    if (!device || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_buffer_alloc: NULL argument");
    *out = NULL;
    if (device->info.memory_bytes && bytes > device->info.memory_bytes)
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "cannot allocate %zu bytes on %s: the device has %llu bytes", bytes,
                        device->info.spec, (unsigned long long)device->info.memory_bytes);
    /* --device-memory: the cap is enforced here, where every device buffer (the model's, the
     * optimizer's, backend scratch) is allocated, so an emulated small device fails where a
     * real one would. */
    if (device->memory_cap && (bytes > device->memory_cap ||
                               device->bytes_in_use > device->memory_cap - bytes)) {
        char want[32], used[32], cap[32];
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "out of memory on %s: allocating %s with %s in use exceeds its cap of %s "
                        "(--device-memory %s=%llu)",
                        device->info.spec, tw_format_bytes(bytes, want, sizeof want),
                        tw_format_bytes(device->bytes_in_use, used, sizeof used),
                        tw_format_bytes(device->memory_cap, cap, sizeof cap), device->info.spec,
                        (unsigned long long)device->memory_cap);
    }
    tw_buffer *buffer = calloc(1, sizeof *buffer);
    if (!buffer) return tw_error(TW_ERR_OUT_OF_MEMORY, "out of host memory");
    tw_status status = device->vtable->buffer_alloc(device->context, bytes, &buffer->handle);
    if (status != TW_OK) {
        free(buffer);
        return status;
    }
    buffer->device = device;
    buffer->bytes = bytes;
    device->bytes_in_use += bytes;
    if (device->spec_bytes) __atomic_fetch_add(device->spec_bytes, bytes, __ATOMIC_RELAXED);
    if (device->bytes_in_use > device->peak_bytes) device->peak_bytes = device->bytes_in_use;
    *out = buffer;
    return TW_OK;
}

void tw_buffer_free(tw_buffer *buffer) {
    if (!buffer) return;
    tw_device *device = buffer->device;
    device->vtable->buffer_free(device->context, buffer->handle);
    device->bytes_in_use -= buffer->bytes;
    if (device->spec_bytes) __atomic_fetch_sub(device->spec_bytes, buffer->bytes, __ATOMIC_RELAXED);
    free(buffer);
}

size_t tw_buffer_size(const tw_buffer *buffer) { return buffer ? buffer->bytes : 0; }
tw_device *tw_buffer_device(const tw_buffer *buffer) { return buffer ? buffer->device : NULL; }

/* Byte range [offset, offset + bytes) inside the buffer, without overflow. */
static tw_status check_byte_range(const char *what, const tw_buffer *buffer, size_t offset,
                                  size_t bytes) {
    if (!buffer) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: buffer is NULL", what);
    if (offset > buffer->bytes || bytes > buffer->bytes - offset)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: bytes [%zu, %zu + %zu) lie outside a buffer of %zu bytes", what,
                        offset, offset, bytes, buffer->bytes);
    return TW_OK;
}

tw_status tw_buffer_upload(tw_buffer *dst, size_t dst_offset, const void *src, size_t bytes) {
    tw_status status = check_byte_range("upload", dst, dst_offset, bytes);
    if (status != TW_OK) return status;
    if (bytes == 0) return TW_OK;
    if (!src) return tw_error(TW_ERR_INVALID_ARGUMENT, "upload: source pointer is NULL");
    tw_device *device = dst->device;
    return device->vtable->upload(device->context, dst->handle, dst_offset, src, bytes);
}

tw_status tw_buffer_download(const tw_buffer *src, size_t src_offset, void *dst, size_t bytes) {
    tw_status status = check_byte_range("download", src, src_offset, bytes);
    if (status != TW_OK) return status;
    if (bytes == 0) return TW_OK;
    if (!dst) return tw_error(TW_ERR_INVALID_ARGUMENT, "download: destination pointer is NULL");
    tw_device *device = src->device;
    return device->vtable->download(device->context, src->handle, src_offset, dst, bytes);
}

tw_status tw_buffer_copy(tw_buffer *dst, size_t dst_offset, const tw_buffer *src,
                         size_t src_offset, size_t bytes) {
    tw_status status = check_byte_range("copy destination", dst, dst_offset, bytes);
    if (status == TW_OK) status = check_byte_range("copy source", src, src_offset, bytes);
    if (status != TW_OK) return status;
    if (src->device != dst->device)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "copy: buffers live on different devices (%s and %s); download and "
                        "upload through the host instead",
                        src->device->info.spec, dst->device->info.spec);
    if (src == dst && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "copy: source and destination ranges overlap");
    if (bytes == 0) return TW_OK;
    tw_device *device = dst->device;
    return device->vtable->copy(device->context, dst->handle, dst_offset, src->handle, src_offset,
                                bytes);
}

tw_status tw_buffer_fill_f32(tw_buffer *dst, size_t offset, size_t count, float value) {
    const size_t element = tw_dtype_size(TW_DTYPE_F32);
    if (offset > SIZE_MAX / element || count > SIZE_MAX / element)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "fill: offset or count too large");
    tw_status status = check_byte_range("fill", dst, offset * element, count * element);
    if (status != TW_OK) return status;
    if (count == 0) return TW_OK;
    tw_device *device = dst->device;
    return device->vtable->fill_f32(device->context, dst->handle, offset, count, value);
}

/* ------------------------------------------------------------------------------------------ */
/* Events                                                                                     */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_event_create(tw_device *device, tw_event **out) {
    if (!device || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_event_create: NULL argument");
    *out = NULL;
    tw_event *event = calloc(1, sizeof *event);
    if (!event) return tw_error(TW_ERR_OUT_OF_MEMORY, "out of host memory");
    tw_status status = device->vtable->event_create(device->context, &event->handle);
    if (status != TW_OK) {
        free(event);
        return status;
    }
    event->device = device;
    *out = event;
    return TW_OK;
}

void tw_event_destroy(tw_event *event) {
    if (!event) return;
    event->device->vtable->event_destroy(event->device->context, event->handle);
    free(event);
}

tw_status tw_event_record(tw_event *event) {
    if (!event) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_event_record: event is NULL");
    tw_status status = event->device->vtable->event_record(event->device->context, event->handle);
    if (status == TW_OK) event->recorded = true;
    return status;
}

tw_status tw_event_elapsed_ms(tw_event *start, tw_event *end, double *ms) {
    if (!start || !end || !ms)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_event_elapsed_ms: NULL argument");
    if (start->device != end->device)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "events belong to different devices");
    if (!start->recorded || !end->recorded)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "event elapsed time asked before both were recorded");
    tw_device *device = start->device;
    return device->vtable->event_elapsed_ms(device->context, start->handle, end->handle, ms);
}
