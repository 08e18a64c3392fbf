/* The table of natural peers, by backend (see bench_peer.h). A backend without an entry has no
 * peer yet and `--peer` says so. */
#include "bench_peer.h"

#include "cli.h"

#ifdef TWIST_HAVE_CUDA
#include <dlfcn.h>
#include <string.h>

#include "twist/backend_support.h" /* tw_module_open */

/* The cuBLAS peer lives in libtwist_cuda_peer.so (tools/bench_peer_cuda.c), loaded on first use
 * so that twist does not link cuBLAS. */
static int cublas_peer_create(const char *prog, const tw_device_info *device,
                              const bench_gemm_shape *shape, const float *a, const float *b,
                              bench_peer *out) {
    char why[512] = "";
    void *module = tw_module_open("libtwist_cuda_peer.so", why, sizeof why);
    if (!module) return cli_runtime_error(prog, "--peer: %s", why);
    bench_peer_factory factory;
    void *symbol = dlsym(module, "bench_peer_cublas_create");
    memcpy(&factory, &symbol, sizeof factory); /* POSIX: dlsym gives functions as void * */
    if (!factory)
        return cli_runtime_error(prog, "--peer: libtwist_cuda_peer.so has no "
                                       "bench_peer_cublas_create");
    return factory(prog, device, shape, a, b, out);
}
#endif

static bench_peer_factory peer_factory(tw_backend_kind backend) {
    switch (backend) {
    case TW_BACKEND_CPU: return bench_peer_openblas_create;
#ifdef TWIST_HAVE_OPENCL
    case TW_BACKEND_OPENCL: return bench_peer_clblast_create;
#endif
#ifdef TWIST_HAVE_CUDA
    case TW_BACKEND_CUDA: return cublas_peer_create;
#endif
    /* Vulkan has no vendor BLAS: its peer is OpenBLAS on the host CPU, the same cores that
     * lavapipe runs on (on a GPU the ratio is then GPU against host CPU). */
    case TW_BACKEND_VULKAN: return bench_peer_openblas_create;
    default: return NULL;
    }
}

int bench_peer_create(const char *prog, const tw_device_info *device,
                      const bench_gemm_shape *shape, const float *a, const float *b,
                      bench_peer *out) {
    bench_peer_factory factory = peer_factory(device->backend);
    if (!factory)
        return cli_runtime_error(prog, "--peer: no peer GEMM for the %s backend in this build",
                                 tw_backend_name(device->backend));
    return factory(prog, device, shape, a, b, out);
}
