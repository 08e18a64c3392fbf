/* twist OpenCL backend: state shared by its files (opencl.c: devices, buffers, events, vtable;
 * cl_program_cache.c: program builds with an on-disk binary cache; cl_ops.c: op launches;
 * cl_attention.c: fused attention; cl_gemm.c: CLBlast or own GEMM variants, tuned per shape
 * class; cl_tune.c: kernel variants and tuning by op name).
 *
 * Device order: opencl:N is the N-th device when walking the platforms in clGetPlatformIDs order
 * and, within each platform, clGetDeviceIDs(CL_DEVICE_TYPE_ALL) order. Anything else that names
 * OpenCL devices by index (the CLI's CLBlast peer benchmark) enumerates the same way, through
 * tw_cl_find_device(). */
#ifndef TW_CL_INTERNAL_H
#define TW_CL_INTERNAL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "twist/backend_support.h"
#include "gemm_own.h"

/* One program per kernel file (kernels/<family>.cl) and data type (f32, f16, bf16: the file is
 * built after kernels/dtype.cl with -DTW_DTYPE=<tw_dtype>); attention is built per head
 * dimension. */
typedef enum tw_cl_family {
    TW_CL_ELEMENTWISE = 0,
    TW_CL_REDUCE,
    TW_CL_LAYERNORM,
    TW_CL_SOFTMAX,
    TW_CL_XENT,
    TW_CL_EMBEDDING,
    TW_CL_ADAMW,
    TW_CL_GATHER,
    TW_CL_CONVERT,     /* kernels/convert.cl: dtype conversions (built once, as bf16) */
    TW_CL_GEMM16,      /* kernels/gemm16.cl: f16/bf16 GEMM, fp32 accumulation */
    TW_CL_FAMILY_COUNT
} tw_cl_family;

enum { TW_CL_MAX_KERNELS = 192, TW_CL_DTYPES = 3, TW_CL_MAX_ATTENTION_PROGRAMS = 16 };

typedef struct tw_cl_kernel_entry {
    tw_cl_family family;
    tw_dtype dtype;
    const char *name; /* a string literal */
    cl_kernel kernel;
} tw_cl_kernel_entry;

/* Attention kernels of one head dimension (built with -DHD=<D>). */
typedef struct tw_cl_attention_program {
    int head_dim;
    cl_program program;
    cl_kernel fwd, delta, dq, dkdv;
    /* The tiled variant (kernels/attention_tiled.cl), built on its first use: block sizes of
     * the forward, dQ and dK/dV kernels, and the kernels. */
    int tiled_blk[3];
    cl_program tiled;
    cl_kernel fwd_tiled, dq_tiled, dkdv_tiled;
} tw_cl_attention_program;

/* GEMM variants: the own ones (tw_cl_own_variant) and then CLBlast ("vendor"). */
enum { TW_CL_GEMM_VENDOR_VARIANT = TW_CL_OWN_COUNT, TW_CL_GEMM_VARIANTS };

typedef struct tw_cl_context {
    tw_device *device; /* front-end device: scratch goes through tw_buffer_alloc on it */
    cl_platform_id platform;
    cl_device_id device_id;
    cl_context context;
    cl_command_queue queue;
    bool is_cpu;
    size_t max_group; /* CL_DEVICE_MAX_WORK_GROUP_SIZE */

    /* Program cache: identity of the device and driver, and the directory (may be unusable). */
    char identity[1024];
    char cache_dir[4096];
    bool cache_usable;

    cl_program programs[TW_CL_FAMILY_COUNT][TW_CL_DTYPES];
    /* 16-bit storage (cl_gpu16.c): whether half loads/stores build and run here (probed once),
     * and the 16-bit attention programs, one per (dtype, head dimension). */
    int half_probe; /* 0 not probed, 1 works, -1 does not */
    tw_cl_attention_program attention16[2][TW_CL_MAX_ATTENTION_PROGRAMS];
    int attention16_count[2];
    tw_cl_kernel_entry kernels[TW_CL_MAX_KERNELS];
    int kernel_count;
    tw_cl_attention_program attention[TW_CL_MAX_ATTENTION_PROGRAMS];
    int attention_count;
    /* Attention variants (cl_attention.c): forced per op (0 fwd, 1 bwd; -1: the choice; valid
     * once attention_forced_set). Their measured choices live in tune_cache (below). */
    int attention_forced[2];
    bool attention_forced_set;

    /* GEMM (cl_gemm.c). */
    tw_cl_gemm_own *gemm_own;
    tw_gemm_impl gemm_impl;   /* forced by set_gemm_impl, or AUTO */
    int gemm_forced;          /* variant forced by force_variant, or -1 */
    bool gemm_ready;          /* tune_cache opened, faults parsed */
    tw_tune_cache *tune_cache; /* shared tuning cache (NULL when out of memory) */
    bool gemm_fault_wrong[TW_CL_GEMM_VARIANTS]; /* test-only TWIST_CL_TUNE_FAULT */
    bool gemm_fault_vendor_build;
} tw_cl_context;

/* "CL_OUT_OF_RESOURCES" etc. */
const char *tw_cl_error_name(cl_int err);
/* tw_error(TW_ERR_BACKEND or TW_ERR_OUT_OF_MEMORY, "opencl: <what> failed: <name> (<code>)"). */
tw_status tw_cl_fail(cl_int err, const char *what);

/* Walks platforms and devices in the documented order; returns the device count and, when
 * index >= 0 and found, its platform and id. */
int tw_cl_find_device(int index, cl_platform_id *platform, cl_device_id *device);

/* Program cache (cl_program_cache.c). */
void tw_cl_cache_init(tw_cl_context *cl);
/* Same signature as tw_cl_build_fn; build_context is the tw_cl_context. */
tw_status tw_cl_build_program(void *build_context, const char *source, size_t length,
                              const char *options, cl_program *out);
/* Reads/writes a small named file in the cache directory (GEMM choices). */
bool tw_cl_cache_read(const tw_cl_context *cl, const char *name, char *data, size_t capacity,
                      size_t *length);
void tw_cl_cache_write(const tw_cl_context *cl, const char *name, const void *data,
                       size_t length);

/* Kernel of a family, built and created on first use (fp32 variant). */
tw_status tw_cl_kernel(tw_cl_context *cl, tw_cl_family family, const char *name,
                       cl_kernel *out);
/* The same for data type `dtype` (F32, F16, BF16): the family's file after kernels/dtype.cl. */
tw_status tw_cl_kernel_typed(tw_cl_context *cl, tw_cl_family family, tw_dtype dtype,
                             const char *name, cl_kernel *out);
/* Builds kernels/dtype.cl + `source` for `dtype` with `extra_options` (cached like any build). */
tw_status tw_cl_build_typed(tw_cl_context *cl, const char *source, size_t length, tw_dtype dtype,
                            const char *extra_options, cl_program *out);
void tw_cl_release_programs(tw_cl_context *cl);

/* Enqueues a 1-D launch over `items` work-items (rounded up to the work-group size; kernels
 * check their bounds). */
tw_status tw_cl_launch_1d(tw_cl_context *cl, cl_kernel kernel, size_t items, const char *what);

/* Argument setting: the first failure is kept in *err. */
void tw_cl_arg(cl_kernel kernel, cl_uint *index, size_t size, const void *value, cl_int *err);
#define TW_CL_ARG(kernel, index, value, err) \
    tw_cl_arg((kernel), (index), sizeof(value), &(value), (err))

/* Ops (cl_ops.c, cl_attention.c, cl_gemm.c): tw_cl_gemm, tw_cl_attention_fwd, ... */
TW_BACKEND_OP_PROTOTYPES(tw_cl)
tw_status tw_cl_set_gemm_impl(void *context, tw_gemm_impl impl);

/* GEMM variants and tuning (cl_gemm.c), reached through cl_tune.c's vtable entries. */
int tw_cl_gemm_variants(tw_cl_context *cl, const char **names, int capacity);
tw_status tw_cl_gemm_force_variant(tw_cl_context *cl, const char *name);
/* Number of shape classes tw_cl_gemm_tune times. */
int tw_cl_gemm_tune_count(void);
/* Tunes them; *done counts finished classes across ops, `total` is the count over all ops. */
tw_status tw_cl_gemm_tune(tw_cl_context *cl, const tw_tune_request *request, int *done,
                          int total);
void tw_cl_gemm_release(tw_cl_context *cl);

/* The vtable's `variants`, `force_variant` and `tune` (cl_tune.c): dispatch by op name. */
int tw_cl_variants(void *context, const char *op, const char **names, int capacity);
tw_status tw_cl_force_variant(void *context, const char *op, const char *name);
tw_status tw_cl_tune(void *context, const tw_tune_request *request);
/* The device's shared tuning cache (cl_gemm.c opens it on first need; NULL when out of memory). */
tw_tune_cache *tw_cl_tune_cache(tw_cl_context *cl);
void tw_cl_attention_release(tw_cl_context *cl);
/* Variants "rows" and "tiled" of "attention_fwd" / "attention_bwd" (cl_tune.c dispatches the
 * vtable's `variants` / `force_variant` here). */
int tw_cl_attention_variants(tw_cl_context *cl, const char *op, const char **names, int capacity);
tw_status tw_cl_attention_force_variant(tw_cl_context *cl, const char *op, const char *name);

/* 16-bit data types (cl_gpu16.c): supports_dtype and convert entries, the f16/bf16 GEMM and
 * attention, and the release of their programs. */
bool tw_cl_supports_dtype(void *context, tw_op_id op, tw_dtype dtype);
tw_status tw_cl_convert(void *context, size_t n, tw_mem src, tw_mem dst);
tw_status tw_cl_gemm16(tw_cl_context *cl, const tw_gemm_args *args);
tw_status tw_cl_attention16_fwd(tw_cl_context *cl, const tw_attention_args *args);
tw_status tw_cl_attention16_bwd(tw_cl_context *cl, const tw_attention_args *args);
void tw_cl_gpu16_release(tw_cl_context *cl);
/* The vtable's gemm / attention entries: 16-bit types here, fp32 to tw_cl_gemm etc. */
tw_status tw_cl_gemm_typed(void *context, const tw_gemm_args *args);
tw_status tw_cl_attention_fwd_typed(void *context, const tw_attention_args *args);
tw_status tw_cl_attention_bwd_typed(void *context, const tw_attention_args *args);

/* The cl_mem of a tensor argument. */
static inline cl_mem tw_cl_mem(tw_mem mem) { return (cl_mem)mem.buffer->handle; }

#endif
