/* What a backend implements: a table of function pointers plus a per-device context, filled once
 * per backend (in the manner of ggml's ggml-backend-impl.h).
 *
 * The front end (src/core/device.c, src/core/ops.c) has already checked every argument before an
 * entry is called: specs parsed, shapes positive, every tw_mem extent inside its buffer, dtype
 * F32. A backend therefore trusts its arguments and only reports driver failures, through
 * tw_error(). Buffers arrive as tw_buffer*, whose `handle` is the backend's own object (a host
 * pointer for cpu, a cl_mem for opencl, ...). Offsets in tw_mem are in elements.
 *
 * Entries marked OPTIONAL may be NULL. */
#ifndef TWIST_CORE_BACKEND_IMPL_H
#define TWIST_CORE_BACKEND_IMPL_H

#include "twist/backend.h"
#include "twist/error.h"

struct tw_buffer {
    tw_device *device;
    void *handle; /* backend object */
    size_t bytes;
};

struct tw_event {
    tw_device *device;
    void *handle; /* backend object */
    bool recorded;
};

typedef struct tw_backend_vtable {
    tw_backend_kind kind;

    /* Registry: called once per process, under the registry lock. Fill `out` with up to
     * `capacity` device infos (spec left empty: the front end writes "name:index"); return the
     * number found. A missing runtime gives 0, never an error. */
    int (*enumerate)(tw_device_info *out, int capacity);

    /* Device lifetime: `index` is the backend-local index; `device` is the front-end object being
     * opened (info filled in). A backend keeps `device` to allocate its own scratch buffers with
     * tw_buffer_alloc(), so scratch counts in the device's current and peak bytes. */
    tw_status (*open)(int index, tw_device *device, void **context);
    void (*close)(void *context);
    tw_status (*sync)(void *context);

    /* Buffers. alloc stores the backend object in *handle. */
    tw_status (*buffer_alloc)(void *context, size_t bytes, void **handle);
    void (*buffer_free)(void *context, void *handle);
    tw_status (*upload)(void *context, void *handle, size_t offset, const void *src, size_t bytes);
    tw_status (*download)(void *context, void *handle, size_t offset, void *dst, size_t bytes);
    tw_status (*copy)(void *context, void *dst, size_t dst_offset, void *src, size_t src_offset,
                      size_t bytes);
    tw_status (*fill_f32)(void *context, void *handle, size_t offset, size_t count, float value);

    /* Events. */
    tw_status (*event_create)(void *context, void **handle);
    void (*event_destroy)(void *context, void *handle);
    tw_status (*event_record)(void *context, void *handle);
    tw_status (*event_elapsed_ms)(void *context, void *start, void *end, double *ms);

    /* Ops: arguments as in twist/backend.h, already validated. */
    tw_status (*gemm)(void *context, const tw_gemm_args *args);
    tw_status (*attention_fwd)(void *context, const tw_attention_args *args);
    tw_status (*attention_bwd)(void *context, const tw_attention_args *args);
    tw_status (*softmax_fwd)(void *context, int rows, int cols, int causal_t, tw_mem in,
                             tw_mem out);
    tw_status (*softmax_bwd)(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx);
    tw_status (*layernorm_fwd)(void *context, int rows, int cols, float eps, tw_mem x,
                               tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd);
    tw_status (*layernorm_bwd)(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                               tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx,
                               tw_mem dweight, tw_mem dbias);
    tw_status (*gelu_fwd)(void *context, size_t n, tw_mem x, tw_mem out);
    tw_status (*gelu_bwd)(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx);
    tw_status (*embedding_fwd)(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out);
    tw_status (*embedding_bwd)(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe);
    tw_status (*softmax_xent_fwd)(void *context, int rows, int vocab, int ld, tw_mem logits,
                                  tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct);
    tw_status (*softmax_xent_bwd)(void *context, int rows, int vocab, int ld, float grad_scale,
                                  tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits);
    tw_status (*bias_add)(void *context, int rows, int cols, tw_mem bias, tw_mem out);
    tw_status (*bias_bwd)(void *context, int rows, int cols, tw_mem dout, tw_mem dbias);
    tw_status (*add)(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out);
    tw_status (*scale)(void *context, size_t n, float alpha, tw_mem x, tw_mem out);
    tw_status (*sum_sq)(void *context, size_t n, tw_mem x, tw_mem out);
    tw_status (*adamw_step)(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                            tw_mem grad, tw_mem m, tw_mem v);
    tw_status (*gather_rows)(void *context, int src_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst);
    tw_status (*scatter_rows)(void *context, int dst_rows, int cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate);
    tw_status (*gather_cols)(void *context, int rows, int src_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst);
    tw_status (*scatter_cols)(void *context, int rows, int dst_cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate);

    /* OPTIONAL: choose the GEMM implementation (NULL: only TW_GEMM_AUTO is accepted). */
    tw_status (*set_gemm_impl)(void *context, tw_gemm_impl impl);

    /* OPTIONAL: after enumerate found no devices, why (e.g. "cudaGetDeviceCount: no
     * CUDA-capable device is detected"), for the message of a spec that names one; "" or NULL
     * when unknown. */
    const char *(*no_device_reason)(void);
} tw_backend_vtable;

struct tw_device {
    const tw_backend_vtable *vtable;
    void *context;
    tw_device_info info;
    size_t bytes_in_use;
    size_t peak_bytes;
};

/* Backends compiled into this library; each is defined in backends/<name>/ and returns NULL
 * when not built (see src/core/registry.c). */
const tw_backend_vtable *tw_cpu_backend(void);
const tw_backend_vtable *tw_opencl_backend(void);
const tw_backend_vtable *tw_vulkan_backend(void);
const tw_backend_vtable *tw_cuda_backend(void);

/* Host pointer of a tw_mem on the CPU backend (handle is the host allocation). */
static inline float *tw_cpu_f32(tw_mem mem) {
    return (float *)mem.buffer->handle + mem.offset;
}
static inline int32_t *tw_cpu_i32(tw_mem mem) {
    return (int32_t *)mem.buffer->handle + mem.offset;
}

#endif
