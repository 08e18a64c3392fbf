/* twist OpenCL backend: state shared by its files (opencl.c: devices, buffers, events, vtable;
 * cl_program_cache.c: program builds with an on-disk binary cache; cl_ops.c: op launches;
 * cl_attention.c: fused attention; cl_gemm.c: CLBlast or own GEMM, chosen per shape class).
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

enum { TW_CL_MAX_KERNELS = 192, TW_CL_DTYPES = 3, TW_CL_MAX_ATTENTION_PROGRAMS = 16, TW_CL_MAX_GEMM_CLASSES = 256 };

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
} tw_cl_attention_program;

/* A GEMM shape class and the implementation measured fastest for it. */
typedef struct tw_cl_gemm_choice {
    char key[48];
    tw_gemm_impl impl; /* TW_GEMM_VENDOR or TW_GEMM_OWN */
} tw_cl_gemm_choice;

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

    /* GEMM. */
    tw_cl_gemm_own *gemm_own;
    tw_gemm_impl gemm_impl; /* forced by set_gemm_impl, or AUTO */
    tw_cl_gemm_choice gemm_choices[TW_CL_MAX_GEMM_CLASSES];
    int gemm_choice_count;
    bool gemm_choices_loaded;
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
void tw_cl_attention_release(tw_cl_context *cl);

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
