/* twist Vulkan backend: what the op files (vk_ops*.c, vk_gemm.c, vk_attention.c) need from the
 * host code (vulkan.c and friends).
 *
 * Conventions every shader follows (shaders/<name>.comp, compiled to SPIR-V by glslc and embedded):
 *   - set 0, bindings 0..n-1: the op's tensors as std430 storage buffers, in the order the op
 *     passes them to tw_vk_dispatch. Each binding covers one whole tw_buffer; the shader adds the
 *     tensor's element offset, which the op passes in its push constants. Two bindings may be the
 *     same buffer (an op whose output aliases its input), so shaders do not declare `restrict`.
 *   - push constants: one block per shader (at most 128 bytes, the minimum every device offers),
 *     holding sizes and element offsets as uint (32-bit: ops refuse tensors of 2^32 elements or
 *     more with TW_ERR_UNSUPPORTED) and float scalars.
 *   - specialization constant 0 is the workgroup size along x (local_size_x_id = 0) where the
 *     shader lets the host choose it; other constants are per shader (tile sizes, head_dim...).
 *     Such shaders read it as TW_LOCAL_X (TW_LOCAL_SIZE_X_SPEC in common.glsl), never as
 *     gl_WorkGroupSize.x: lavapipe (Mesa 22.3) leaves gl_WorkGroupSize at the SPIR-V default 1
 *     when the size is specialized.
 *   - float accumulation; deterministic: no float atomics, fixed reduction orders.
 *
 * Ops enqueue dispatches; the host batches them into a command buffer with a compute-to-compute
 * memory barrier between consecutive dispatches, and submits at sync, download, event record
 * or when the batch is full. */
#ifndef TW_VK_INTERNAL_H
#define TW_VK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "twist/backend_support.h"

typedef struct tw_vk_context tw_vk_context; /* the per-device context (vulkan.c) */
typedef struct tw_vk_kernel tw_vk_kernel;   /* a compute pipeline and its layout (cached) */

/* The pipeline of embedded shader `shader` (the .comp file's base name: "gelu" for
 * shaders/gelu.comp) with `buffer_count` storage-buffer bindings, `push_bytes` of push constants
 * and the given specialization constants (constant_id 0 .. spec_count-1; may be NULL/0). Built on
 * first use, cached in memory for the device's lifetime and in the on-disk pipeline cache. */
tw_status tw_vk_kernel_get(tw_vk_context *vk, const char *shader, int buffer_count,
                           uint32_t push_bytes, const uint32_t *spec, int spec_count,
                           tw_vk_kernel **out);

/* The same, with the bindings whose bit is set in `texel_mask` declared as uniform texel buffers
 * (`uniform samplerBuffer` in GLSL) instead of storage buffers: tw_vk_dispatch binds a view of the
 * whole tw_buffer as VK_FORMAT_R32G32B32A32_SFLOAT texels (element e of the buffer is component
 * e % 4 of texel e / 4; a trailing partial texel is not covered). Only where
 * tw_vk_get_limits()->texel_buffers, and for buffers of at most max_texel_elements texels.
 * Why: llvmpipe fetches texels for all SIMD lanes at once, while it loads storage buffers lane by
 * lane inside loops (vk_gemm.c). */
tw_status tw_vk_kernel_get_texel(tw_vk_context *vk, const char *shader, int buffer_count,
                                 uint32_t texel_mask, uint32_t push_bytes, const uint32_t *spec,
                                 int spec_count, tw_vk_kernel **out);

/* Records one dispatch of groups (x, y, z) of `kernel` with buffers[i] bound at binding i and the
 * push constants. Group counts above the device's maxComputeWorkGroupCount are an error
 * (TW_ERR_UNSUPPORTED naming the op): ops keep within them, e.g. by looping in the shader. */
tw_status tw_vk_dispatch(tw_vk_context *vk, tw_vk_kernel *kernel, tw_buffer *const *buffers,
                         int buffer_count, const void *push, uint32_t push_bytes,
                         uint32_t groups_x, uint32_t groups_y, uint32_t groups_z);

/* tw_vk_dispatch over `items` invocations in workgroups of `local` (the shader's workgroup size),
 * laid out the way tw_global_index() in shaders/common.glsl reads them: ceil(items / local)
 * groups along x up to maxComputeWorkGroupCount[0], continued in rows along y. The shader guards
 * with `if (tw_global_index() >= items) return;`. Nothing is recorded for items == 0. */
tw_status tw_vk_dispatch_1d(tw_vk_context *vk, tw_vk_kernel *kernel, tw_buffer *const *buffers,
                            int buffer_count, const void *push, uint32_t push_bytes,
                            uint64_t items, uint32_t local);

/* The front-end device, for scratch buffers (tw_buffer_alloc counts them in the device's bytes). */
tw_device *tw_vk_device(tw_vk_context *vk);

/* Device facts for choosing tiles and workgroup sizes. */
typedef struct tw_vk_limits {
    uint32_t max_workgroup_size;        /* maxComputeWorkGroupInvocations */
    uint32_t max_workgroup_count[3];    /* maxComputeWorkGroupCount */
    uint32_t shared_memory_bytes;       /* maxComputeSharedMemorySize */
    uint32_t subgroup_size;             /* 0 if unknown */
    uint64_t max_storage_buffer_range;  /* bytes one binding may cover */
    bool texel_buffers;                 /* tw_vk_kernel_get_texel works on this device */
    uint64_t max_texel_elements;        /* maxTexelBufferElements (texels of 16 bytes) */
    bool is_cpu;                        /* VK_PHYSICAL_DEVICE_TYPE_CPU (lavapipe) */
    bool cooperative_matrix;            /* VK_KHR_cooperative_matrix with an f16 x f16 -> f32
                                           shape the GEMM can use */
    uint32_t coopmat_m, coopmat_n, coopmat_k; /* that shape */
    bool storage16;                     /* storageBuffer16BitAccess enabled: f16/bf16 data
                                           (vk_gpu16.c) */
} tw_vk_limits;

const tw_vk_limits *tw_vk_get_limits(const tw_vk_context *vk);

/* Per-device settings that op files keep in the context: the host zeroes them at open and never
 * reads them, except that it calls tw_vk_tune_release and tw_vk_attention_release at close. gemm_impl: the tw_gemm_impl set
 * by tw_vk_set_gemm_impl (vk_gemm.c); gemm_forced: 1 + the index of the variant
 * tw_device_force_kernel_variant forced, 0 for the tuner's choice; tune_cache: the device's
 * tuning cache (vk_tune.c, opened on first use). */
typedef struct tw_vk_attention_state tw_vk_attention_state; /* vk_attention.c */
typedef struct tw_vk_op_settings {
    int gemm_impl;
    int gemm_forced;
    tw_tune_cache *tune_cache;
    bool tune_cache_opened;
    tw_vk_attention_state *attention; /* forced attention variants (vk_attention.c) */
} tw_vk_op_settings;

tw_vk_op_settings *tw_vk_op_settings_of(tw_vk_context *vk);

/* Tuning (vk_tune.c): the device's tuning cache (tw_tune_cache in twist/backend_support.h),
 * keyed by the device's name, vendor and device ids and pipeline-cache UUID, checked against its
 * driver version; opened on first use. NULL when out of memory (then nothing is cached: every
 * get misses and every put is dropped). */
tw_tune_cache *tw_vk_tune_cache(tw_vk_context *vk);
/* Closes the tuning cache (the host calls it when the device closes). */
void tw_vk_tune_release(tw_vk_context *vk);

/* GEMM variants (vk_gemm.c), reached through vk_tune.c's dispatch by op name. */
int tw_vk_gemm_variants(tw_vk_context *vk, const char **names, int capacity);
tw_status tw_vk_gemm_force(tw_vk_context *vk, const char *name);
/* How many shape classes tw_vk_gemm_tune visits, and the visit: each class is timed unless
 * cached, *done counts up and request->progress is called per class out of `total`. */
int tw_vk_gemm_tune_count(tw_vk_context *vk);
tw_status tw_vk_gemm_tune(tw_vk_context *vk, const tw_tune_request *request, int *done,
                          int total);

/* Attention variants (vk_attention.c): "rows" and "tiled" of "attention_fwd" and
 * "attention_bwd" (the vtable's `variants` / `force_variant` reach them through vk_tune.c);
 * tw_vk_attention_release frees their state at close. */
int tw_vk_attention_variants(tw_vk_context *vk, const char *op, const char **names,
                             int capacity);
tw_status tw_vk_attention_force_variant(tw_vk_context *vk, const char *op, const char *name);
void tw_vk_attention_release(tw_vk_context *vk);
/* Shader name of the variant for data type `dtype` (cmake/vulkan_shaders.cmake builds
 * <name>, <name>_f16, <name>_bf16 of a shader that includes dtype.glsl), written into `out`
 * (at least 48 bytes); TW_VK_TYPED uses a temporary buffer that lives for the statement. */
const char *tw_vk_shader_variant(char *out, size_t size, const char *shader, tw_dtype dtype);
#define TW_VK_TYPED(shader, dtype) tw_vk_shader_variant((char[48]){0}, 48, (shader), (dtype))

/* Largest element count a uint32 push-constant offset or size can name. */
#define TW_VK_MAX_ELEMENTS 0xFFFFFFFFull

#endif
