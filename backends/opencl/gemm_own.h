/* twist OpenCL backend: twist's own SGEMM kernels (kernels/gemm.cl) as named variants.
 *
 *   cpu      barrier-free register-tiled micro-kernels for CPU devices (PoCL)
 *   tiled    the first local-memory tiling (64x64 per work-group, 4x4 per work-item, scalar)
 *   large    128x128, 8x8 per work-item, BK 16, float4 loads, double buffered (NVIDIA-sized)
 *   large32  128x128, 8x8, BK 32, float4, single buffered
 *   wide     128x64, 8x4, BK 16, float4, double buffered (256 work-items: AMD wave64)
 *   medium   64x64, 4x4, BK 16, float4, double buffered
 *   small    32x32, 4x4, BK 16, float4 (64 work-items: Intel, small shapes)
 *   splitk   64x64, 4x4, BK 16, split along k into scratch for skinny shapes (few output
 *            tiles, long k), partial sums added in a fixed order by a second kernel
 * Each (variant, transpose case) program is built lazily through the backend's build callback,
 * which caches binaries on disk. */
#ifndef TW_CL_GEMM_OWN_H
#define TW_CL_GEMM_OWN_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "twist/backend.h"

/* Builds an OpenCL program (the backend's implementation caches binaries on disk). */
typedef tw_status (*tw_cl_build_fn)(void *build_context, const char *source, size_t length,
                                    const char *options, cl_program *out);

typedef struct tw_cl_gemm_own tw_cl_gemm_own;

/* The own variants, in the order above. */
typedef enum tw_cl_own_variant {
    TW_CL_OWN_CPU = 0,
    TW_CL_OWN_TILED,
    TW_CL_OWN_LARGE,
    TW_CL_OWN_LARGE32,
    TW_CL_OWN_WIDE,
    TW_CL_OWN_MEDIUM,
    TW_CL_OWN_SMALL,
    TW_CL_OWN_SPLITK,
    TW_CL_OWN_COUNT
} tw_cl_own_variant;

/* `device` is the front-end device: split-K scratch goes through tw_buffer_alloc on it. */
tw_status tw_cl_gemm_own_create(cl_context context, cl_device_id device_id,
                                cl_command_queue queue, tw_device *device, tw_cl_build_fn build,
                                void *build_context, tw_cl_gemm_own **out);
void tw_cl_gemm_own_destroy(tw_cl_gemm_own *gemm);

/* Enqueues, for p in [0, batch): C_p = alpha op(A_p) op(B_p) + beta C_p (row-major, semantics of
 * tw_gemm_args in twist/backend.h, arguments already validated by the front end); a, b, c are the
 * cl_mem objects of args->a/b/c buffers; args->x.offset are element offsets. */
tw_status tw_cl_gemm_own_enqueue(tw_cl_gemm_own *gemm, tw_cl_own_variant variant,
                                 const tw_gemm_args *args, cl_mem a, cl_mem b, cl_mem c);

/* "cpu", "tiled", ...; tw_cl_own_variant_find gives -1 for an unknown name. */
const char *tw_cl_own_variant_name(tw_cl_own_variant variant);
int tw_cl_own_variant_find(const char *name);

/* Whether the variant's work-group and local memory fit the device's limits. */
bool tw_cl_own_variant_fits(const tw_cl_gemm_own *gemm, tw_cl_own_variant variant);

/* The variant used untuned (TWIST_TUNE=off, k == 0, the tuner's reference): cpu on CPU
 * devices, tiled elsewhere. */
tw_cl_own_variant tw_cl_own_default_variant(const tw_cl_gemm_own *gemm);

/* Whether the tuner should time the variant for this shape (a fitting variant of the device's
 * kind whose tile suits m, n, k: large tiles need large outputs, split-K long k and few tiles). */
bool tw_cl_own_variant_suits(const tw_cl_gemm_own *gemm, tw_cl_own_variant variant,
                             const tw_gemm_args *args);

/* Test-only fault injection: the variant's programs are built with -DTW_FAULT_BUILD, which
 * gemm.cl turns into a compile error. */
void tw_cl_own_inject_build_fault(tw_cl_gemm_own *gemm, tw_cl_own_variant variant);

#endif
