/* twist CUDA backend: device enumeration, contexts, the caching allocator, buffers, events and
 * the vtable (see cuda_internal.h). Every CUDA and cuBLAS failure becomes a tw_status with the
 * runtime's own error text; nothing here aborts. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nvtx3/nvToolsExt.h>

#include "cuda_internal.h"
#include "cuda_kernels.h"
#include "twist/profile.h"

/* ------------------------------------------------------------------------------------------------
 * Errors, NVTX
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cuda_fail(cudaError_t err, const char *what) {
    /* A failed call also sets the runtime's per-thread "last error", which every kernel launcher
     * returns (cudaGetLastError): left there, it would fail the next, good op a second time.
     * Sticky errors (a kernel fault) stay with the context whatever is done here. */
    cudaGetLastError();
    const bool memory = err == cudaErrorMemoryAllocation;
    return tw_error(memory ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND, "cuda: %s failed: %s (%s)",
                    what, cudaGetErrorString(err), cudaGetErrorName(err));
}

tw_status tw_cublas_fail(cublasStatus_t status, const char *what) {
    const bool memory = status == CUBLAS_STATUS_ALLOC_FAILED;
    return tw_error(memory ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND, "cuda: %s failed: %s (%s)",
                    what, cublasGetStatusString(status), cublasGetStatusName(status));
}

tw_status tw_cuda_activate(tw_cuda_context *cu) {
    cudaError_t err = cudaSetDevice(cu->index);
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "cudaSetDevice");
}

/* Under a tool that collects NVTX (Nsight Systems sets NVTX_INJECTION64_PATH), or with
 * TWIST_NVTX_NAMES=1, a range is named like the profiler's ops, "twist:block3.attn.qkv_gemm"
 * (twist/profile.h); otherwise the name is the plain op ("twist:gemm"), so ops pay no
 * formatting when nothing listens. */
static pthread_once_t nvtx_once = PTHREAD_ONCE_INIT;
static bool nvtx_named;
static void nvtx_detect(void) {
    const char *force = getenv("TWIST_NVTX_NAMES");
    nvtx_named = getenv("NVTX_INJECTION64_PATH") != NULL || (force && strcmp(force, "1") == 0);
}

void tw_cuda_range_push(const char *op) {
    pthread_once(&nvtx_once, nvtx_detect);
    if (!nvtx_named) {
        nvtxRangePushA(op);
        return;
    }
    char name[192] = "twist:";
    const char *bare = strncmp(op, "twist:", 6) == 0 ? op + 6 : op;
    tw_profile_name(bare, name + 6, sizeof name - 6);
    nvtxRangePushA(name);
}
void tw_cuda_range_pop(void) { nvtxRangePop(); }

/* ------------------------------------------------------------------------------------------------
 * Enumeration
 * ---------------------------------------------------------------------------------------------- */

/* Why enumeration found nothing, for the "no device" message (written once, under the registry
 * lock, before anyone reads it). */
static char absence[256];

static const char *cuda_no_device_reason(void) { return absence; }

/* FP32 lanes per SM, by compute capability; 0 where unknown (peak then stays 0). */
static int fp32_lanes_per_sm(int major, int minor) {
    if (major == 7) return 64;                      /* Volta, Turing */
    if (major == 8) return minor == 0 ? 64 : 128;   /* A100: 64; GA10x, Ada, Orin: 128 */
    if (major == 9 || major == 10 || major == 12) return 128; /* Hopper, Blackwell */
    return 0;
}

static void fill_info(int index, tw_device_info *info) {
    memset(info, 0, sizeof *info);
    info->backend = TW_BACKEND_CUDA;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        snprintf(info->name, sizeof info->name, "CUDA device %d", index);
        info->type = TW_DEVICE_TYPE_GPU;
        return;
    }
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    snprintf(info->vendor, sizeof info->vendor, "NVIDIA");
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    snprintf(info->driver, sizeof info->driver, "CUDA driver %d.%d, runtime %d.%d, sm_%d%d",
             driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, prop.major,
             prop.minor);
    info->type = prop.integrated ? TW_DEVICE_TYPE_INTEGRATED_GPU : TW_DEVICE_TYPE_GPU;
    info->compute_units = prop.multiProcessorCount;
    info->memory_bytes = (uint64_t)prop.totalGlobalMem;
    int clock_khz = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, index) == cudaSuccess) {
        /* One FMA (2 flops) per lane per clock at the boost clock the driver reports. */
        info->peak_gflops_f32 = 2.0 * fp32_lanes_per_sm(prop.major, prop.minor) *
                                prop.multiProcessorCount * (double)clock_khz * 1e-6;
    }
    int memory_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, index) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index) == cudaSuccess) {
        /* Two transfers per memory clock (double data rate; the driver reports HBM's and
         * GDDR's clocks so that this holds) over a bus of bus_bits / 8 bytes. */
        info->peak_gbps = 2.0 * (double)memory_khz * 1e3 * (bus_bits / 8.0) * 1e-9;
    }
}

static int cuda_enumerate(tw_device_info *out, int capacity) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        /* Without libcuda.so.1 the runtime reports an insufficient driver: say what that means. */
        snprintf(absence, sizeof absence, "cudaGetDeviceCount: %s%s", cudaGetErrorString(err),
                 err == cudaErrorInsufficientDriver
                     ? " (no NVIDIA driver on this machine, or one older than this CUDA runtime)"
                     : "");
        cudaGetLastError(); /* not sticky, but leave nothing behind */
        return 0;
    }
    if (count == 0) snprintf(absence, sizeof absence, "cudaGetDeviceCount reports 0 devices");
    if (count > capacity) count = capacity;
    for (int i = 0; i < count; i++) fill_info(i, &out[i]);
    /* fill_info tolerates failed queries; their errors must not reach this thread's first op. */
    cudaGetLastError();
    return count;
}

/* ------------------------------------------------------------------------------------------------
 * Caching allocator: sizes rounded up to a class (512 B minimum, then four classes per power of
 * two, so at most 25% is wasted), freed blocks kept per context and handed out again for the same
 * class. Reuse is safe without synchronisation: every use of a block is on the context's single
 * in-order stream, so work enqueued after the reuse runs after work enqueued before the free. On
 * cudaMalloc failure the cache is returned to the driver and the allocation tried once more.
 * ---------------------------------------------------------------------------------------------- */

static size_t size_class(size_t bytes) {
    if (bytes <= 512) return 512;
    size_t power = 512;
    while (power <= bytes / 2) power *= 2; /* now power <= bytes < 2 power */
    size_t rounded = power;
    while (rounded < bytes) rounded += power / 4;
    return rounded;
}

static void release_cache(tw_cuda_context *cu) {
    while (cu->cache) {
        tw_cuda_block *block = cu->cache;
        cu->cache = block->next;
        cudaFree(block->ptr);
        cu->reserved_bytes -= block->bytes;
        cu->cached_bytes -= block->bytes;
        free(block);
    }
}

static tw_status cuda_buffer_alloc(void *context, size_t bytes, void **handle) {
    tw_cuda_context *cu = context;
    const size_t rounded = size_class(bytes);
    for (tw_cuda_block **link = &cu->cache; *link; link = &(*link)->next) {
        if ((*link)->bytes == rounded) {
            tw_cuda_block *block = *link;
            *link = block->next;
            block->next = NULL;
            cu->cached_bytes -= rounded;
            *handle = block;
            return TW_OK;
        }
    }
    TW_TRY(tw_cuda_activate(cu));
    tw_cuda_block *block = calloc(1, sizeof *block);
    if (!block) return tw_error(TW_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    cudaError_t err = cudaMalloc(&block->ptr, rounded);
    if (err == cudaErrorMemoryAllocation && cu->cache) {
        cudaGetLastError();
        cudaStreamSynchronize(cu->stream); /* cudaFree waits anyway; make it explicit */
        release_cache(cu);
        cudaGetLastError(); /* what the sync or a cudaFree left must not fail a later launch */
        err = cudaMalloc(&block->ptr, rounded);
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        free(block);
        return tw_error(err == cudaErrorMemoryAllocation ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND,
                        "cuda: cudaMalloc of %zu bytes on cuda:%d failed: %s (%s)", rounded,
                        cu->index, cudaGetErrorString(err), cudaGetErrorName(err));
    }
    block->bytes = rounded;
    cu->reserved_bytes += rounded;
    *handle = block;
    return TW_OK;
}

static void cuda_buffer_free(void *context, void *handle) {
    tw_cuda_context *cu = context;
    tw_cuda_block *block = handle;
    if (!block) return;
    block->next = cu->cache;
    cu->cache = block;
    cu->cached_bytes += block->bytes;
}

/* ------------------------------------------------------------------------------------------------
 * Open / close / sync
 * ---------------------------------------------------------------------------------------------- */

static void cuda_close(void *context) {
    tw_cuda_context *cu = context;
    if (!cu) return;
    if (cudaSetDevice(cu->index) == cudaSuccess && cu->stream) cudaStreamSynchronize(cu->stream);
    release_cache(cu);
    tw_tune_cache_close(cu->attention_cache);
    if (cu->cublas) cublasDestroy(cu->cublas);
    if (cu->stream) cudaStreamDestroy(cu->stream);
    cudaGetLastError();
    free(cu);
}

static bool env_flag(const char *name) {
    const char *value = getenv(name);
    return value && value[0] && strcmp(value, "0") != 0;
}

static tw_status cuda_open(int index, tw_device *device, void **context) {
    *context = NULL;
    tw_cuda_context *cu = calloc(1, sizeof *cu);
    if (!cu) return tw_error(TW_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    cu->device = device;
    cu->index = index;
    tw_status status = tw_cuda_activate(cu);
    cudaError_t err = cudaSuccess;
    if (status == TW_OK) {
        err = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
        if (err != cudaSuccess) status = tw_cuda_fail(err, "cudaStreamCreateWithFlags");
    }
    if (status == TW_OK) {
        cublasStatus_t cs = cublasCreate(&cu->cublas);
        if (cs != CUBLAS_STATUS_SUCCESS) {
            cu->cublas = NULL;
            status = tw_cublas_fail(cs, "cublasCreate");
        }
    }
    if (status == TW_OK) {
        cublasStatus_t cs = cublasSetStream(cu->cublas, cu->stream);
        /* Plain fp32 unless asked: results stay comparable with the other backends. bf16/f16
         * GEMMs use tensor cores in either mode; DISALLOW_REDUCED_PRECISION_REDUCTION keeps
         * their split-K reductions in fp32 (the compute type) rather than in C's 16-bit type,
         * as twist's "fp32 accumulation" requires (no effect on fp32 GEMMs). */
        cu->tf32 = env_flag("TWIST_CUDA_TF32");
        if (cs == CUBLAS_STATUS_SUCCESS)
            cs = cublasSetMathMode(cu->cublas,
                                   (cublasMath_t)((cu->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                            : CUBLAS_DEFAULT_MATH) |
                                                  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
        if (cs != CUBLAS_STATUS_SUCCESS) status = tw_cublas_fail(cs, "cublasSetStream/MathMode");
    }
    if (status == TW_OK) {
        /* For supports_dtype: bf16 needs sm_80, f16 sm_60 (cuda_ops.c). */
        err = cudaDeviceGetAttribute(&cu->cc_major, cudaDevAttrComputeCapabilityMajor, index);
        if (err == cudaSuccess)
            err = cudaDeviceGetAttribute(&cu->cc_minor, cudaDevAttrComputeCapabilityMinor, index);
        if (err != cudaSuccess) status = tw_cuda_fail(err, "cudaDeviceGetAttribute");
    }
    if (status != TW_OK) {
        cuda_close(cu);
        return status;
    }
    *context = cu;
    return TW_OK;
}

static tw_status cuda_sync(void *context) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    cudaError_t err = cudaStreamSynchronize(cu->stream);
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "cudaStreamSynchronize");
}

/* ------------------------------------------------------------------------------------------------
 * Transfers: on the context's stream, so they are ordered with the ops; upload and download wait,
 * so the caller's host memory is free (upload) or filled (download) on return.
 * ---------------------------------------------------------------------------------------------- */

static char *block_bytes(void *handle) { return (char *)((tw_cuda_block *)handle)->ptr; }

static tw_status transfer(tw_cuda_context *cu, void *dst, const void *src, size_t bytes,
                          enum cudaMemcpyKind kind, bool wait, const char *what) {
    TW_TRY(tw_cuda_activate(cu));
    cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, cu->stream);
    if (err == cudaSuccess && wait) err = cudaStreamSynchronize(cu->stream);
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, what);
}

static tw_status cuda_upload(void *context, void *handle, size_t offset, const void *src,
                             size_t bytes) {
    return transfer(context, block_bytes(handle) + offset, src, bytes, cudaMemcpyHostToDevice,
                    true, "upload (cudaMemcpyAsync)");
}

static tw_status cuda_download(void *context, void *handle, size_t offset, void *dst,
                               size_t bytes) {
    return transfer(context, dst, block_bytes(handle) + offset, bytes, cudaMemcpyDeviceToHost,
                    true, "download (cudaMemcpyAsync)");
}

static tw_status cuda_copy(void *context, void *dst, size_t dst_offset, void *src,
                           size_t src_offset, size_t bytes) {
    return transfer(context, block_bytes(dst) + dst_offset, block_bytes(src) + src_offset, bytes,
                    cudaMemcpyDeviceToDevice, false, "copy (cudaMemcpyAsync)");
}

static tw_status cuda_fill_f32(void *context, void *handle, size_t offset, size_t count,
                               float value) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    float *dst = (float *)block_bytes(handle) + offset;
    cudaError_t err = tw_cuda_launch_fill(cu->stream, dst, count, value);
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "fill");
}

/* ------------------------------------------------------------------------------------------------
 * Events: one cudaEvent_t per handle, recorded on the context's stream.
 * ---------------------------------------------------------------------------------------------- */

static tw_status cuda_event_create(void *context, void **handle) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    cudaEvent_t event = NULL;
    cudaError_t err = cudaEventCreate(&event);
    if (err != cudaSuccess) return tw_cuda_fail(err, "cudaEventCreate");
    *handle = event;
    return TW_OK;
}

static void cuda_event_destroy(void *context, void *handle) {
    tw_cuda_context *cu = context;
    if (!handle) return;
    /* Without a current device a thread's first runtime call would set up device 0's context. */
    cudaSetDevice(cu->index);
    cudaEventDestroy((cudaEvent_t)handle);
    cudaGetLastError();
}

static tw_status cuda_event_record(void *context, void *handle) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    cudaError_t err = cudaEventRecord((cudaEvent_t)handle, cu->stream);
    return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "cudaEventRecord");
}

static tw_status cuda_event_elapsed_ms(void *context, void *start, void *end, double *ms) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    cudaError_t err = cudaEventSynchronize((cudaEvent_t)end);
    if (err == cudaSuccess) err = cudaEventSynchronize((cudaEvent_t)start);
    float elapsed = 0.0f;
    if (err == cudaSuccess) err = cudaEventElapsedTime(&elapsed, (cudaEvent_t)start, (cudaEvent_t)end);
    if (err != cudaSuccess) return tw_cuda_fail(err, "cudaEventElapsedTime");
    *ms = elapsed;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Vtable
 * ---------------------------------------------------------------------------------------------- */

/* Free memory as the driver counts it on the device (every process's use included; blocks in
 * twist's own caches count as used). The calling thread's current device is restored. */
static tw_status cuda_free_memory(int index, uint64_t *free_bytes) {
    int previous = 0;
    const bool had_device = cudaGetDevice(&previous) == cudaSuccess;
    cudaError_t err = cudaSetDevice(index);
    size_t free_now = 0, total = 0;
    if (err == cudaSuccess) err = cudaMemGetInfo(&free_now, &total);
    if (had_device) cudaSetDevice(previous);
    if (err != cudaSuccess) return tw_cuda_fail(err, "cudaMemGetInfo");
    *free_bytes = (uint64_t)free_now;
    return TW_OK;
}

static const tw_backend_vtable cuda_vtable = {
    .kind = TW_BACKEND_CUDA,
    TW_BACKEND_DEVICE_INITIALISERS(cuda) /* cuda_enumerate, cuda_open, ... */
    TW_BACKEND_OP_INITIALISERS(tw_cuda) /* every op, from the list in twist/backend_support.h */
    .set_gemm_impl = tw_cuda_set_gemm_impl,
    .variants = tw_cuda_variants,
    .force_variant = tw_cuda_force_variant,
    .no_device_reason = cuda_no_device_reason,
    .free_memory = cuda_free_memory,
    .supports_dtype = tw_cuda_supports_dtype,
    .convert = tw_cuda_convert,
};

const tw_backend_vtable *tw_cuda_backend(void) { return &cuda_vtable; }
