/* The `cuda:N` peer: cuBLAS called directly (cublasSgemm, or cublasSgemmStridedBatched for
 * batch > 1) with its own handle and stream on CUDA runtime device N, the numbering the CUDA
 * backend uses. Same row-major trick as the backend: C^T = op(B)^T op(A)^T in column-major.
 * The math mode is cuBLAS's default (fp32), or TF32 when TWIST_CUDA_TF32=1 asks the backend
 * for it too, so the two sides always compute the same thing. Compiled only when the CUDA
 * backend is (TWIST_HAVE_CUDA). */
#ifdef TWIST_HAVE_CUDA

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "bench_peer.h"
#include "cli.h"

typedef struct cublas_state {
    const char *prog;
    bench_gemm_shape shape;
    int index;
    cudaStream_t stream;
    cublasHandle_t handle;
    float *a, *b, *c;
} cublas_state;

static int check_cuda(const char *prog, cudaError_t err, const char *what) {
    if (err == cudaSuccess) return CLI_EXIT_OK;
    return cli_runtime_error(prog, "--peer: %s failed: %s", what, cudaGetErrorString(err));
}

static int check_cublas(const char *prog, cublasStatus_t status, const char *what) {
    if (status == CUBLAS_STATUS_SUCCESS) return CLI_EXIT_OK;
    return cli_runtime_error(prog, "--peer: %s failed: %s", what, cublasGetStatusString(status));
}

static void cublas_destroy(bench_peer *peer) {
    cublas_state *s = peer->state;
    if (!s) return;
    cudaSetDevice(s->index);
    if (s->stream) cudaStreamSynchronize(s->stream);
    cudaFree(s->a);
    cudaFree(s->b);
    cudaFree(s->c);
    if (s->handle) cublasDestroy(s->handle);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(s);
    peer->state = NULL;
}

static bool cublas_run(bench_peer *peer, double *ms) {
    cublas_state *s = peer->state;
    const bench_gemm_shape *sh = &s->shape;
    const cublasOperation_t op_a = sh->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = sh->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const float alpha = 1.0f, beta = 0.0f;
    if (check_cuda(s->prog, cudaSetDevice(s->index), "cudaSetDevice") != CLI_EXIT_OK) return false;
    cudaStreamSynchronize(s->stream);
    double start = cli_now_ms();
    cublasStatus_t status;
    if (sh->batch == 1)
        status = cublasSgemm(s->handle, op_b, op_a, sh->n, sh->m, sh->k, &alpha, s->b,
                             bench_gemm_ldb(sh), s->a, bench_gemm_lda(sh), &beta, s->c, sh->n);
    else
        status = cublasSgemmStridedBatched(
            s->handle, op_b, op_a, sh->n, sh->m, sh->k, &alpha, s->b, bench_gemm_ldb(sh),
            (long long)bench_gemm_b_elements(sh), s->a, bench_gemm_lda(sh),
            (long long)bench_gemm_a_elements(sh), &beta, s->c, sh->n,
            (long long)bench_gemm_c_elements(sh), sh->batch);
    cudaError_t finished = cudaStreamSynchronize(s->stream);
    *ms = cli_now_ms() - start;
    if (check_cublas(s->prog, status, sh->batch == 1 ? "cublasSgemm" : "cublasSgemmStridedBatched") !=
        CLI_EXIT_OK)
        return false;
    return check_cuda(s->prog, finished, "cudaStreamSynchronize after cuBLAS") == CLI_EXIT_OK;
}

static bool cublas_result(bench_peer *peer, float *c) {
    cublas_state *s = peer->state;
    size_t bytes = bench_gemm_c_elements(&s->shape) * (size_t)s->shape.batch * sizeof(float);
    cudaSetDevice(s->index);
    return check_cuda(s->prog, cudaMemcpy(c, s->c, bytes, cudaMemcpyDeviceToHost),
                      "reading cuBLAS's C") == CLI_EXIT_OK;
}

/* A device array of `count` floats, filled from host when `data` is given. */
static int make_array(cublas_state *s, size_t count, const float *data, float **out) {
    if (check_cuda(s->prog, cudaMalloc((void **)out, count * sizeof(float)), "cudaMalloc") !=
        CLI_EXIT_OK)
        return CLI_EXIT_RUNTIME;
    if (!data) return CLI_EXIT_OK;
    return check_cuda(s->prog, cudaMemcpy(*out, data, count * sizeof(float), cudaMemcpyHostToDevice),
                      "cudaMemcpy");
}

static bool env_flag(const char *name) {
    const char *value = getenv(name);
    return value && value[0] && strcmp(value, "0") != 0;
}

static int setup(cublas_state *s, const tw_device_info *info, const float *a, const float *b) {
    const char *colon = strchr(info->spec, ':');
    s->index = colon ? atoi(colon + 1) : 0;
    if (check_cuda(s->prog, cudaSetDevice(s->index), "cudaSetDevice") != CLI_EXIT_OK)
        return CLI_EXIT_RUNTIME;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, s->index) == cudaSuccess && strcmp(prop.name, info->name) != 0)
        fprintf(stderr, "%s: warning: --peer runs on CUDA device '%s', twist reports '%s'\n",
                s->prog, prop.name, info->name);
    if (check_cuda(s->prog, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
                   "cudaStreamCreate") != CLI_EXIT_OK ||
        check_cublas(s->prog, cublasCreate(&s->handle), "cublasCreate") != CLI_EXIT_OK ||
        check_cublas(s->prog, cublasSetStream(s->handle, s->stream), "cublasSetStream") !=
            CLI_EXIT_OK ||
        check_cublas(s->prog,
                     cublasSetMathMode(s->handle, env_flag("TWIST_CUDA_TF32")
                                                      ? CUBLAS_TF32_TENSOR_OP_MATH
                                                      : CUBLAS_DEFAULT_MATH),
                     "cublasSetMathMode") != CLI_EXIT_OK)
        return CLI_EXIT_RUNTIME;
    const bench_gemm_shape *sh = &s->shape;
    size_t batch = (size_t)sh->batch;
    if (make_array(s, bench_gemm_a_elements(sh) * batch, a, &s->a) != CLI_EXIT_OK ||
        make_array(s, bench_gemm_b_elements(sh) * batch, b, &s->b) != CLI_EXIT_OK ||
        make_array(s, bench_gemm_c_elements(sh) * batch, NULL, &s->c) != CLI_EXIT_OK)
        return CLI_EXIT_RUNTIME;
    return CLI_EXIT_OK;
}

int bench_peer_cublas_create(const char *prog, const tw_device_info *device,
                             const bench_gemm_shape *shape, const float *a, const float *b,
                             bench_peer *out) {
    cublas_state *s = calloc(1, sizeof *s);
    if (!s) return cli_runtime_error(prog, "--peer: out of host memory");
    s->prog = prog;
    s->shape = *shape;
    out->state = s;
    out->run = cublas_run;
    out->result = cublas_result;
    out->destroy = cublas_destroy;
    snprintf(out->name, sizeof out->name, "cuBLAS %s%s",
             shape->batch == 1 ? "cublasSgemm" : "cublasSgemmStridedBatched",
             env_flag("TWIST_CUDA_TF32") ? " (TF32)" : "");
    if (setup(s, device, a, b) != CLI_EXIT_OK) {
        cublas_destroy(out);
        return CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
}

#else
/* ISO C forbids an empty translation unit. */
typedef int bench_peer_cuda_unused;
#endif
