/* Naive double-precision host implementations of every forward op in twist/backend.h.
 *
 * They are written to be obviously correct, not fast: plain loops straight from the definitions in
 * backend.h, accumulating in double. The conformance suite checks the CPU backend against them
 * (and every other backend against the CPU backend); the gradient check differentiates them by
 * central finite differences.
 *
 * Pointers are already offset to the tensor's first element (the tw_mem offset applied). Index
 * data (tokens, targets, gather/scatter indices) are int32, as on the device. */
#ifndef TWIST_TEST_REFERENCE_H
#define TWIST_TEST_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/backend.h"

/* For p in [0, batch): C_p (m, n) = alpha op(A_p) op(B_p) + beta C_p.
 * A_p is (m, k) with row stride lda, or (k, m) when trans_a; B_p is (k, n) with ldb, or (n, k)
 * when trans_b; C_p is (m, n) with ldc. beta == 0: C is not read. k == 0: C = beta C. */
void ref_gemm(bool trans_a, bool trans_b, int m, int n, int k, int batch, double alpha,
              const double *a, int64_t lda, int64_t stride_a, const double *b, int64_t ldb,
              int64_t stride_b, double beta, double *c, int64_t ldc, int64_t stride_c);

/* Causal attention: q, k, v (B, H, T, D) at qkv_stride; out (B, H, T, D) at out_stride;
 * lse (B, H, T) contiguous = log sum_{j <= i} exp(scale q_i . k_j). */
void ref_attention_fwd(int batch, int heads, int seq_len, int head_dim, double scale,
                       tw_bhtd_stride qkv_stride, tw_bhtd_stride out_stride, const double *q,
                       const double *k, const double *v, double *out, double *lse);

/* Row softmax of in (rows, cols) into out (may alias in). causal_t > 0: row r keeps only columns
 * c <= r mod causal_t, the others get probability 0. */
void ref_softmax_fwd(int rows, int cols, int causal_t, const double *in, double *out);

/* LayerNorm: x (rows, cols), weight and bias (cols), out (rows, cols), mean and rstd (rows);
 * rstd = 1 / sqrt(biased variance + eps). */
void ref_layernorm_fwd(int rows, int cols, double eps, const double *x, const double *weight,
                       const double *bias, double *out, double *mean, double *rstd);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
double ref_gelu(double x);
void ref_gelu_fwd(size_t n, const double *x, double *out);

/* tokens (B, T), wte (vocab, C), wpe (>= T, C), out (B, T, C) = wte[tokens] + wpe[t]. */
void ref_embedding_fwd(int batch, int seq_len, int channels, const int32_t *tokens,
                       const double *wte, const double *wpe, double *out);

/* logits (rows, ld) of which the first vocab columns are classes; targets (rows), < 0 ignored.
 * lse (rows) for every row; losses (rows) = lse - logit[target] (0 when ignored);
 * correct (rows) = 1 when target is the first maximum, else 0 (0 when ignored). */
void ref_softmax_xent_fwd(int rows, int vocab, int ld, const double *logits,
                          const int32_t *targets, double *losses, double *lse, double *correct);

/* out (rows, cols) += bias (cols) on every row. */
void ref_bias_add(int rows, int cols, const double *bias, double *out);

/* out = a + b; out = alpha x (n elements; out may alias an input). */
void ref_add(size_t n, const double *a, const double *b, double *out);
void ref_scale(size_t n, double alpha, const double *x, double *out);

/* sum_i x[i]^2. */
double ref_sum_sq(size_t n, const double *x);

/* One AdamW step in double, as documented in backend.h (the hyperparameters are the float ones
 * the device gets, widened). */
void ref_adamw_step(size_t n, const tw_adamw_args *args, double *param, const double *grad,
                    double *m, double *v);

/* dst (count, cols)[i] = src (src_rows, cols)[idx[i]]. */
void ref_gather_rows(int cols, int count, const int32_t *idx, const double *src, double *dst);
/* dst (dst_rows, cols)[idx[i]] (+)= src (count, cols)[i]. */
void ref_scatter_rows(int cols, int count, const int32_t *idx, const double *src, double *dst,
                      bool accumulate);
/* dst (rows, count)[r][i] = src (rows, src_cols)[r][idx[i]]. */
void ref_gather_cols(int rows, int src_cols, int count, const int32_t *idx, const double *src,
                     double *dst);
/* dst (rows, dst_cols)[r][idx[i]] (+)= src (rows, count)[r][i]. */
void ref_scatter_cols(int rows, int dst_cols, int count, const int32_t *idx, const double *src,
                      double *dst, bool accumulate);

#endif
