/* twist OpenCL backend: device enumeration, contexts, buffers, events and the vtable.
 *
 * Enumeration order (see cl_internal.h): platforms in clGetPlatformIDs order, then each
 * platform's devices in clGetDeviceIDs(CL_DEVICE_TYPE_ALL) order; opencl:N is the N-th. No ICD
 * loader configuration or no platform simply means 0 devices. Each opened device gets its own
 * context and one in-order queue with profiling enabled (events read queue timestamps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------------------- */

const char *tw_cl_error_name(cl_int err) {
    switch (err) {
#define TW_CL_NAME(code) \
    case code: return #code;
        TW_CL_NAME(CL_SUCCESS)
        TW_CL_NAME(CL_DEVICE_NOT_FOUND)
        TW_CL_NAME(CL_DEVICE_NOT_AVAILABLE)
        TW_CL_NAME(CL_COMPILER_NOT_AVAILABLE)
        TW_CL_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        TW_CL_NAME(CL_OUT_OF_RESOURCES)
        TW_CL_NAME(CL_OUT_OF_HOST_MEMORY)
        TW_CL_NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        TW_CL_NAME(CL_MEM_COPY_OVERLAP)
        TW_CL_NAME(CL_IMAGE_FORMAT_MISMATCH)
        TW_CL_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        TW_CL_NAME(CL_BUILD_PROGRAM_FAILURE)
        TW_CL_NAME(CL_MAP_FAILURE)
        TW_CL_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        TW_CL_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        TW_CL_NAME(CL_COMPILE_PROGRAM_FAILURE)
        TW_CL_NAME(CL_LINKER_NOT_AVAILABLE)
        TW_CL_NAME(CL_LINK_PROGRAM_FAILURE)
        TW_CL_NAME(CL_DEVICE_PARTITION_FAILED)
        TW_CL_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        TW_CL_NAME(CL_INVALID_VALUE)
        TW_CL_NAME(CL_INVALID_DEVICE_TYPE)
        TW_CL_NAME(CL_INVALID_PLATFORM)
        TW_CL_NAME(CL_INVALID_DEVICE)
        TW_CL_NAME(CL_INVALID_CONTEXT)
        TW_CL_NAME(CL_INVALID_QUEUE_PROPERTIES)
        TW_CL_NAME(CL_INVALID_COMMAND_QUEUE)
        TW_CL_NAME(CL_INVALID_HOST_PTR)
        TW_CL_NAME(CL_INVALID_MEM_OBJECT)
        TW_CL_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        TW_CL_NAME(CL_INVALID_IMAGE_SIZE)
        TW_CL_NAME(CL_INVALID_SAMPLER)
        TW_CL_NAME(CL_INVALID_BINARY)
        TW_CL_NAME(CL_INVALID_BUILD_OPTIONS)
        TW_CL_NAME(CL_INVALID_PROGRAM)
        TW_CL_NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        TW_CL_NAME(CL_INVALID_KERNEL_NAME)
        TW_CL_NAME(CL_INVALID_KERNEL_DEFINITION)
        TW_CL_NAME(CL_INVALID_KERNEL)
        TW_CL_NAME(CL_INVALID_ARG_INDEX)
        TW_CL_NAME(CL_INVALID_ARG_VALUE)
        TW_CL_NAME(CL_INVALID_ARG_SIZE)
        TW_CL_NAME(CL_INVALID_KERNEL_ARGS)
        TW_CL_NAME(CL_INVALID_WORK_DIMENSION)
        TW_CL_NAME(CL_INVALID_WORK_GROUP_SIZE)
        TW_CL_NAME(CL_INVALID_WORK_ITEM_SIZE)
        TW_CL_NAME(CL_INVALID_GLOBAL_OFFSET)
        TW_CL_NAME(CL_INVALID_EVENT_WAIT_LIST)
        TW_CL_NAME(CL_INVALID_EVENT)
        TW_CL_NAME(CL_INVALID_OPERATION)
        TW_CL_NAME(CL_INVALID_GL_OBJECT)
        TW_CL_NAME(CL_INVALID_BUFFER_SIZE)
        TW_CL_NAME(CL_INVALID_MIP_LEVEL)
        TW_CL_NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        TW_CL_NAME(CL_INVALID_PROPERTY)
        TW_CL_NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        TW_CL_NAME(CL_INVALID_COMPILER_OPTIONS)
        TW_CL_NAME(CL_INVALID_LINKER_OPTIONS)
        TW_CL_NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef TW_CL_NAME
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

tw_status tw_cl_fail(cl_int err, const char *what) {
    const bool memory = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                        err == CL_OUT_OF_RESOURCES;
    return tw_error(memory ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND, "opencl: %s failed: %s (%d)",
                    what, tw_cl_error_name(err), (int)err);
}

void tw_cl_arg(cl_kernel kernel, cl_uint *index, size_t size, const void *value, cl_int *err) {
    cl_int result = clSetKernelArg(kernel, *index, size, value);
    if (*err == CL_SUCCESS) *err = result;
    (*index)++;
}

/* ------------------------------------------------------------------------------------------------
 * Enumeration
 * ---------------------------------------------------------------------------------------------- */

enum { MAX_PLATFORMS = 16, MAX_PLATFORM_DEVICES = 64 };

int tw_cl_find_device(int index, cl_platform_id *platform, cl_device_id *device) {
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint platform_count = 0;
    if (clGetPlatformIDs(MAX_PLATFORMS, platforms, &platform_count) != CL_SUCCESS) return 0;
    if (platform_count > MAX_PLATFORMS) platform_count = MAX_PLATFORMS;
    int found = 0;
    for (cl_uint p = 0; p < platform_count; p++) {
        cl_device_id devices[MAX_PLATFORM_DEVICES];
        cl_uint count = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_PLATFORM_DEVICES, devices,
                           &count) != CL_SUCCESS)
            continue; /* CL_DEVICE_NOT_FOUND: a platform without devices */
        if (count > MAX_PLATFORM_DEVICES) count = MAX_PLATFORM_DEVICES;
        for (cl_uint d = 0; d < count; d++, found++) {
            if (found == index) {
                if (platform) *platform = platforms[p];
                if (device) *device = devices[d];
            }
        }
    }
    return found;
}

static void device_string(cl_device_id device, cl_device_info what, char *out, size_t size) {
    out[0] = '\0';
    if (clGetDeviceInfo(device, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

static tw_device_type device_type(cl_device_id device) {
    cl_device_type type = 0;
    cl_bool unified = CL_FALSE;
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    if (type & CL_DEVICE_TYPE_CPU) return TW_DEVICE_TYPE_CPU;
    if (type & CL_DEVICE_TYPE_GPU)
        return unified ? TW_DEVICE_TYPE_INTEGRATED_GPU : TW_DEVICE_TYPE_GPU;
    if (type & CL_DEVICE_TYPE_ACCELERATOR) return TW_DEVICE_TYPE_ACCELERATOR;
    return TW_DEVICE_TYPE_OTHER;
}

/* FP32 lanes per compute unit where the device says enough to know it, 0 otherwise. OpenCL gives
 * compute units and a clock but not the lanes per unit, so only these are assumed:
 *   - NVIDIA (cl_nv_device_attribute_query's compute capability): the CUDA backend's table;
 *   - AMD GPUs: 64 lanes per CU (GCN, CDNA, RDNA; RDNA3's dual issue, which doubles it on
 *     paper, is not counted);
 *   - Intel GPUs: a compute unit is an EU (Gen9 to Xe) with 8 FP32 lanes.
 * CPU devices (PoCL) and the rest stay unknown: `twist devices` measures them (twist/peak.h). */
#define TW_CL_CC_MAJOR_NV 0x4000 /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV */
#define TW_CL_CC_MINOR_NV 0x4001
static int fp32_lanes_per_unit(cl_device_id device, const tw_device_info *info) {
    if (info->type != TW_DEVICE_TYPE_GPU && info->type != TW_DEVICE_TYPE_INTEGRATED_GPU) return 0;
    cl_uint major = 0, minor = 0;
    if (strstr(info->vendor, "NVIDIA") &&
        clGetDeviceInfo(device, TW_CL_CC_MAJOR_NV, sizeof major, &major, NULL) == CL_SUCCESS &&
        clGetDeviceInfo(device, TW_CL_CC_MINOR_NV, sizeof minor, &minor, NULL) == CL_SUCCESS) {
        if (major == 7) return 64;
        if (major == 8) return minor == 0 ? 64 : 128;
        if (major == 9 || major == 10 || major == 12) return 128;
        return 0;
    }
    if (strstr(info->vendor, "Advanced Micro Devices") || strstr(info->vendor, "AMD")) return 64;
    if (strstr(info->vendor, "Intel")) return 8;
    return 0;
}

static void fill_info(cl_device_id device, tw_device_info *info) {
    memset(info, 0, sizeof *info);
    device_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
    device_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    device_string(device, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    info->backend = TW_BACKEND_OPENCL;
    info->type = device_type(device);
    cl_uint units = 0;
    cl_ulong memory = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL) ==
        CL_SUCCESS)
        info->compute_units = (int)units;
    if (clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof memory, &memory, NULL) ==
        CL_SUCCESS)
        info->memory_bytes = memory;
    cl_uint clock_mhz = 0;
    const int lanes = fp32_lanes_per_unit(device, info);
    if (lanes > 0 &&
        clGetDeviceInfo(device, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock_mhz, &clock_mhz,
                        NULL) == CL_SUCCESS)
        /* one FMA (2 FLOPs) per lane per clock */
        info->peak_gflops_f32 = 2.0 * lanes * info->compute_units * (double)clock_mhz * 1e-3;
}

static int cl_enumerate(tw_device_info *out, int capacity) {
    int count = tw_cl_find_device(-1, NULL, NULL);
    if (count > capacity) count = capacity;
    for (int i = 0; i < count; i++) {
        cl_device_id device = NULL;
        tw_cl_find_device(i, NULL, &device);
        fill_info(device, &out[i]);
    }
    return count;
}

/* ------------------------------------------------------------------------------------------------
 * Open / close / sync
 * ---------------------------------------------------------------------------------------------- */

static void cl_close(void *context) {
    tw_cl_context *cl = context;
    if (!cl) return;
    if (cl->queue) clFinish(cl->queue);
    tw_cl_gemm_own_destroy(cl->gemm_own);
    tw_cl_gemm_release(cl);
    tw_cl_attention_release(cl);
    tw_cl_gpu16_release(cl);
    tw_cl_release_programs(cl);
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->context) clReleaseContext(cl->context);
    free(cl);
}

static tw_status cl_open(int index, tw_device *device, void **context) {
    *context = NULL;
    tw_cl_context *cl = calloc(1, sizeof *cl);
    if (!cl) return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl: out of host memory");
    cl->device = device;
    if (index >= tw_cl_find_device(index, &cl->platform, &cl->device_id)) {
        free(cl);
        return tw_error(TW_ERR_NOT_FOUND, "opencl:%d is no longer present", index);
    }
    cl_device_type type = 0;
    clGetDeviceInfo(cl->device_id, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    cl->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    if (clGetDeviceInfo(cl->device_id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof cl->max_group,
                        &cl->max_group, NULL) != CL_SUCCESS || cl->max_group == 0)
        cl->max_group = 1;

    cl_int err = CL_SUCCESS;
    cl_context_properties properties[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)cl->platform,
                                          0};
    cl->context = clCreateContext(properties, 1, &cl->device_id, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        free(cl);
        return tw_cl_fail(err, "clCreateContext");
    }
    /* clCreateCommandQueue is deprecated in 2.0 but is the 1.2 entry point every ICD has. */
    cl->queue = clCreateCommandQueue(cl->context, cl->device_id, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        cl_close(cl);
        return tw_cl_fail(err, "clCreateCommandQueue");
    }
    tw_cl_cache_init(cl);
    cl->gemm_impl = TW_GEMM_AUTO;
    cl->gemm_forced = -1;
    tw_status status = tw_cl_gemm_own_create(cl->context, cl->device_id, cl->queue, device,
                                              tw_cl_build_program, cl, &cl->gemm_own);
    if (status != TW_OK) {
        cl_close(cl);
        return status;
    }
    *context = cl;
    return TW_OK;
}

static tw_status cl_sync(void *context) {
    tw_cl_context *cl = context;
    cl_int err = clFinish(cl->queue);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clFinish");
}

/* ------------------------------------------------------------------------------------------------
 * Buffers
 * ---------------------------------------------------------------------------------------------- */

static tw_status cl_buffer_alloc(void *context, size_t bytes, void **handle) {
    tw_cl_context *cl = context;
    cl_int err = CL_SUCCESS;
    /* Zero-byte buffers are invalid in OpenCL; a 4-byte one keeps tw_buffer uniform. */
    cl_mem mem = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clCreateBuffer");
    *handle = mem;
    return TW_OK;
}

static void cl_buffer_free(void *context, void *handle) {
    (void)context;
    /* Safe with commands still queued: OpenCL keeps the object until they finish. */
    if (handle) clReleaseMemObject((cl_mem)handle);
}

/* Blocking write: the caller may reuse `src` as soon as this returns. */
static tw_status cl_upload(void *context, void *handle, size_t offset, const void *src,
                           size_t bytes) {
    tw_cl_context *cl = context;
    cl_int err = clEnqueueWriteBuffer(cl->queue, (cl_mem)handle, CL_TRUE, offset, bytes, src, 0,
                                      NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueWriteBuffer");
}

static tw_status cl_download(void *context, void *handle, size_t offset, void *dst,
                             size_t bytes) {
    tw_cl_context *cl = context;
    cl_int err = clEnqueueReadBuffer(cl->queue, (cl_mem)handle, CL_TRUE, offset, bytes, dst, 0,
                                     NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueReadBuffer");
}

static tw_status cl_copy(void *context, void *dst, size_t dst_offset, void *src,
                         size_t src_offset, size_t bytes) {
    tw_cl_context *cl = context;
    cl_int err = clEnqueueCopyBuffer(cl->queue, (cl_mem)src, (cl_mem)dst, src_offset, dst_offset,
                                     bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueCopyBuffer");
}

static tw_status cl_fill_f32(void *context, void *handle, size_t offset, size_t count,
                             float value) {
    tw_cl_context *cl = context;
    cl_int err = clEnqueueFillBuffer(cl->queue, (cl_mem)handle, &value, sizeof value,
                                     offset * sizeof(float), count * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueFillBuffer");
}

/* ------------------------------------------------------------------------------------------------
 * Events: a handle holds the marker of its last record (NULL before the first).
 * ---------------------------------------------------------------------------------------------- */

static tw_status cl_event_create(void *context, void **handle) {
    (void)context;
    cl_event *slot = calloc(1, sizeof *slot);
    if (!slot) return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl: out of host memory");
    *handle = slot;
    return TW_OK;
}

static void cl_event_destroy(void *context, void *handle) {
    (void)context;
    cl_event *slot = handle;
    if (!slot) return;
    if (*slot) clReleaseEvent(*slot);
    free(slot);
}

/* A marker completes when everything enqueued before it has; its END time is the timestamp. */
static tw_status cl_event_record(void *context, void *handle) {
    tw_cl_context *cl = context;
    cl_event *slot = handle;
    cl_event marker = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(cl->queue, 0, NULL, &marker);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clEnqueueMarkerWithWaitList");
    if (*slot) clReleaseEvent(*slot);
    *slot = marker;
    return TW_OK;
}

static tw_status marker_time(cl_event event, cl_ulong *ns) {
    cl_int err = clWaitForEvents(1, &event);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clWaitForEvents");
    err = clGetEventProfilingInfo(event, CL_PROFILING_COMMAND_END, sizeof *ns, ns, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clGetEventProfilingInfo");
}

static tw_status cl_event_elapsed_ms(void *context, void *start, void *end, double *ms) {
    (void)context;
    cl_ulong t0 = 0, t1 = 0;
    tw_status status = marker_time(*(cl_event *)start, &t0);
    if (status == TW_OK) status = marker_time(*(cl_event *)end, &t1);
    if (status != TW_OK) return status;
    *ms = ((double)t1 - (double)t0) * 1e-6;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Vtable
 * ---------------------------------------------------------------------------------------------- */

/* Later designated initialisers override the op list's (see .gemm below), on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const tw_backend_vtable opencl_vtable = {
    .kind = TW_BACKEND_OPENCL,
    TW_BACKEND_DEVICE_INITIALISERS(cl) /* cl_enumerate, cl_open, ... */
    TW_BACKEND_OP_INITIALISERS(tw_cl) /* every op, from the list in twist/backend_support.h */
    .set_gemm_impl = tw_cl_set_gemm_impl,
    .variants = tw_cl_variants,
    .force_variant = tw_cl_force_variant,
    .tune = tw_cl_tune,
    .supports_dtype = tw_cl_supports_dtype,
    .convert = tw_cl_convert,
    /* GEMM and attention by data type (cl_gpu16.c): these replace the list's .gemm,
     * .attention_fwd and .attention_bwd, which stay the fp32 paths they call. */
    .gemm = tw_cl_gemm_typed,
    .attention_fwd = tw_cl_attention_fwd_typed,
    .attention_bwd = tw_cl_attention_bwd_typed,
};
#pragma GCC diagnostic pop

const tw_backend_vtable *tw_opencl_backend(void) { return &opencl_vtable; }
