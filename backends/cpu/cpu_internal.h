/* The CPU backend, shared between its files: the device context and the op entry points.
 *
 * This backend is the reference every other backend is tested against, so its code favours
 * plain loops whose meaning is obvious over cleverness. GEMM goes to OpenBLAS; everything else is
 * C with OpenMP. Every reduction has a fixed order that does not depend on the number of threads,
 * so results are the same bits run after run and on machines with other core counts. */
#ifndef TWIST_BACKENDS_CPU_INTERNAL_H
#define TWIST_BACKENDS_CPU_INTERNAL_H

#include "core/backend_impl.h"

typedef struct tw_cpu_context {
    tw_device *device; /* the front-end device, for scratch buffers counted in its bytes */
} tw_cpu_context;

/* cpu_ops.c */
tw_status tw_cpu_gemm(void *context, const tw_gemm_args *args);
tw_status tw_cpu_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                             tw_mem out);
tw_status tw_cpu_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx);
tw_status tw_cpu_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                               tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd);
tw_status tw_cpu_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                               tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                               tw_mem dbias);
tw_status tw_cpu_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_cpu_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx);
tw_status tw_cpu_embedding_fwd(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out);
tw_status tw_cpu_embedding_bwd(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe);
tw_status tw_cpu_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                                  tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct);
tw_status tw_cpu_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                                  tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits);
tw_status tw_cpu_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out);
tw_status tw_cpu_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias);
tw_status tw_cpu_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out);
tw_status tw_cpu_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out);
tw_status tw_cpu_sum_sq(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_cpu_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                            tw_mem grad, tw_mem m, tw_mem v);
tw_status tw_cpu_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst);
tw_status tw_cpu_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate);
tw_status tw_cpu_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst);
tw_status tw_cpu_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate);

/* cpu_addr_limit.c: OpenBLAS under an address-space limit (ulimit -v); see that file. */
/* The OPENBLAS_NUM_THREADS value whose buffers fit the limit, or NULL (no limit, or it fits). */
const char *tw_cpu_blas_threads_for_limit(void);
/* Under a limit: checks that OpenBLAS's buffer for this thread fits and maps it now. */
tw_status tw_cpu_blas_reserve(void);
/* Around each BLAS call: under a limit, one at a time; enter returns what leave takes. */
bool tw_cpu_blas_enter(void);
void tw_cpu_blas_leave(bool entered);

/* cpu_attention.c */
tw_status tw_cpu_attention_fwd(void *context, const tw_attention_args *args);
tw_status tw_cpu_attention_bwd(void *context, const tw_attention_args *args);

#endif
