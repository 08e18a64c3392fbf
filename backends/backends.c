/* The constructor table through which the registry (src/core/registry.c) reaches the backends,
 * in tw_backend_kind order. Built-in backends are linked constructors; the CUDA backend is a
 * module (libtwist_cuda.so, loaded on first enumeration) when TWIST_CUDA_MODULE is defined, so a
 * machine without cuBLAS, or a process whose address space cannot map it, loses only cuda. */
#include "twist/backend_support.h"

const tw_backend_vtable *tw_cpu_backend(void);
#ifdef TWIST_HAVE_OPENCL
const tw_backend_vtable *tw_opencl_backend(void);
#endif
#ifdef TWIST_HAVE_VULKAN
const tw_backend_vtable *tw_vulkan_backend(void);
#endif
#if defined(TWIST_HAVE_CUDA) && !defined(TWIST_CUDA_MODULE)
const tw_backend_vtable *tw_cuda_backend(void);
#endif

const tw_backend_entry tw_backend_constructors[TW_BACKEND_COUNT] = {
    [TW_BACKEND_CPU] = {.construct = tw_cpu_backend},
#ifdef TWIST_HAVE_OPENCL
    /* PoCL maps about 380 MiB (LLVM, its threads' heaps) and aborts when it cannot start its
     * threads; 256 MiB free is where it still came up under ulimit -v in tests. */
    [TW_BACKEND_OPENCL] = {.construct = tw_opencl_backend, .driver_mib = 256},
#endif
#ifdef TWIST_HAVE_VULKAN
    [TW_BACKEND_VULKAN] = {.construct = tw_vulkan_backend},
#endif
#if defined(TWIST_HAVE_CUDA) && defined(TWIST_CUDA_MODULE)
    [TW_BACKEND_CUDA] = {.module = TWIST_CUDA_MODULE, .symbol = "tw_cuda_backend"},
#elif defined(TWIST_HAVE_CUDA)
    [TW_BACKEND_CUDA] = {.construct = tw_cuda_backend},
#endif
};
