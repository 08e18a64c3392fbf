/* twist OpenCL backend: twist's own tiled SGEMM (kernels/gemm.cl).
 *
 * Each work-group computes a (TM, TN) tile of C; each work-item a (WM, WN) register tile. The
 * tile configuration is chosen from the device (type, work-group size, local memory), and
 * kernel variants (one per transpose combination) are built lazily through the backend's build
 * callback, which caches binaries on disk. */
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

tw_status tw_cl_gemm_own_create(cl_context context, cl_device_id device, cl_command_queue queue,
                                tw_cl_build_fn build, void *build_context, tw_cl_gemm_own **out);
void tw_cl_gemm_own_destroy(tw_cl_gemm_own *gemm);

/* Enqueues, for p in [0, batch): C_p = alpha op(A_p) op(B_p) + beta C_p (row-major, semantics of
 * tw_gemm_args in twist/backend.h, arguments already validated by the front end); a, b, c are the
 * cl_mem objects of args->a/b/c buffers; args->x.offset are element offsets. */
tw_status tw_cl_gemm_own_enqueue(tw_cl_gemm_own *gemm, const tw_gemm_args *args, cl_mem a,
                                 cl_mem b, cl_mem c);

#endif
