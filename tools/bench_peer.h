/* Peers for `twist bench gemm --peer`: the same GEMM shape through the library a user would call
 * directly instead of twist (OpenBLAS for `cpu` and `vulkan:N`, CLBlast for `opencl:N`, cuBLAS
 * for `cuda:N`), in the same process, on the same hardware, with the same input data.
 *
 * Adding a peer: write a factory with the signature of bench_peer_factory in its own file,
 * compiled only when its backend is, and name it in the table in bench_peer.c. Nothing else
 * changes. */
#ifndef TWIST_TOOLS_BENCH_PEER_H
#define TWIST_TOOLS_BENCH_PEER_H

#include <stdbool.h>
#include <stddef.h>

#include "twist/backend.h"

/* batch matrices, each row-major and contiguous: A (m, k) or (k, m) when trans_a, B (k, n) or
 * (n, k) when trans_b, C (m, n); matrix p starts at p * (elements of one matrix). */
typedef struct bench_gemm_shape {
    bool trans_a, trans_b;
    int m, n, k, batch;
} bench_gemm_shape;

typedef struct bench_peer bench_peer;

struct bench_peer {
    char name[128]; /* "OpenBLAS cblas_sgemm", "CLBlast CLBlastSgemm" */
    void *state;
    /* Runs C = A B for the whole batch once and waits for the result; *ms is its wall time.
     * Returns false after printing a message. */
    bool (*run)(bench_peer *peer, double *ms);
    /* Copies C (batch * m * n floats) to host memory. */
    bool (*result)(bench_peer *peer, float *c);
    void (*destroy)(bench_peer *peer);
};

/* Builds a peer for `device` and the shape, uploading the host inputs a and b (they stay owned
 * by the caller and must outlive the peer). Returns CLI_EXIT_OK, or prints a message prefixed
 * with `prog` and returns CLI_EXIT_RUNTIME. */
typedef int (*bench_peer_factory)(const char *prog, const tw_device_info *device,
                                  const bench_gemm_shape *shape, const float *a, const float *b,
                                  bench_peer *out);

/* Chooses the natural peer of the device's backend. */
int bench_peer_create(const char *prog, const tw_device_info *device,
                      const bench_gemm_shape *shape, const float *a, const float *b,
                      bench_peer *out);

int bench_peer_openblas_create(const char *prog, const tw_device_info *device,
                               const bench_gemm_shape *shape, const float *a, const float *b,
                               bench_peer *out);
#ifdef TWIST_HAVE_CUDA
/* In the module libtwist_cuda_peer.so, which bench_peer.c loads on first use. */
int bench_peer_cublas_create(const char *prog, const tw_device_info *device,
                             const bench_gemm_shape *shape, const float *a, const float *b,
                             bench_peer *out);
#endif
#ifdef TWIST_HAVE_OPENCL
int bench_peer_clblast_create(const char *prog, const tw_device_info *device,
                              const bench_gemm_shape *shape, const float *a, const float *b,
                              bench_peer *out);
#endif

/* Elements of one matrix of each operand. */
static inline size_t bench_gemm_a_elements(const bench_gemm_shape *s) {
    return (size_t)s->m * (size_t)s->k;
}
static inline size_t bench_gemm_b_elements(const bench_gemm_shape *s) {
    return (size_t)s->k * (size_t)s->n;
}
static inline size_t bench_gemm_c_elements(const bench_gemm_shape *s) {
    return (size_t)s->m * (size_t)s->n;
}
/* Row strides of the stored matrices (row-major). */
static inline int bench_gemm_lda(const bench_gemm_shape *s) { return s->trans_a ? s->m : s->k; }
static inline int bench_gemm_ldb(const bench_gemm_shape *s) { return s->trans_b ? s->k : s->n; }

#endif
