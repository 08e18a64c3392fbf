/* The `cpu` peer: OpenBLAS's cblas_sgemm called directly on host arrays, one call per matrix of
 * the batch (OpenBLAS 0.3.21, Debian 12's, has no batched SGEMM). */
#include <stdio.h>
#include <stdlib.h>

#include <cblas.h>

#include "bench_peer.h"
#include "cli.h"

typedef struct openblas_state {
    bench_gemm_shape shape;
    const float *a, *b; /* the caller's inputs */
    float *c;
} openblas_state;

static bool openblas_run(bench_peer *peer, double *ms) {
    openblas_state *s = peer->state;
    const bench_gemm_shape *sh = &s->shape;
    size_t a_size = bench_gemm_a_elements(sh), b_size = bench_gemm_b_elements(sh),
           c_size = bench_gemm_c_elements(sh);
    double start = cli_now_ms();
    for (int p = 0; p < sh->batch; p++)
        cblas_sgemm(CblasRowMajor, sh->trans_a ? CblasTrans : CblasNoTrans,
                    sh->trans_b ? CblasTrans : CblasNoTrans, sh->m, sh->n, sh->k, 1.0f,
                    s->a + (size_t)p * a_size, bench_gemm_lda(sh), s->b + (size_t)p * b_size,
                    bench_gemm_ldb(sh), 0.0f, s->c + (size_t)p * c_size, sh->n);
    *ms = cli_now_ms() - start;
    return true;
}

static bool openblas_result(bench_peer *peer, float *c) {
    openblas_state *s = peer->state;
    size_t count = bench_gemm_c_elements(&s->shape) * (size_t)s->shape.batch;
    for (size_t i = 0; i < count; i++) c[i] = s->c[i];
    return true;
}

static void openblas_destroy(bench_peer *peer) {
    openblas_state *s = peer->state;
    if (!s) return;
    free(s->c);
    free(s);
    peer->state = NULL;
}

int bench_peer_openblas_create(const char *prog, const tw_device_info *device,
                               const bench_gemm_shape *shape, const float *a, const float *b,
                               bench_peer *out) {
    (void)device;
    openblas_state *s = calloc(1, sizeof *s);
    size_t count = bench_gemm_c_elements(shape) * (size_t)shape->batch;
    if (s) s->c = malloc(count * sizeof(float));
    if (!s || !s->c) {
        free(s);
        return cli_runtime_error(prog, "--peer: out of host memory for OpenBLAS's C (%zu floats)",
                                 count);
    }
    s->shape = *shape;
    s->a = a;
    s->b = b;
    snprintf(out->name, sizeof out->name, "OpenBLAS cblas_sgemm");
    out->state = s;
    out->run = openblas_run;
    out->result = openblas_result;
    out->destroy = openblas_destroy;
    return CLI_EXIT_OK;
}
