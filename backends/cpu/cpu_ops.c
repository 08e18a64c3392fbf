/* CPU reference ops other than attention (cpu_attention.c). Semantics: include/twist/backend.h.
 *
 * Parallel loops split work so that every output element is written by exactly one thread and
 * every sum runs in a fixed order (per row, per column, or over fixed-size chunks combined in
 * order), which keeps results bitwise reproducible whatever the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_math.h"

/* Column chunk width for column-wise reductions: one cache line of floats per row visited. */
enum { COLUMN_CHUNK = 64 };
/* Elements per partial sum in sum_sq; fixed so the reduction tree does not depend on threads. */
enum { SUM_CHUNK = 1 << 14 };
/* Below this many elements an elementwise loop is not worth waking the thread team. */
enum { PARALLEL_MIN = 1 << 15 };
/* Elementwise loops run over chunks of this many elements, each a call of a HOT_LOOP function
 * (OpenMP outlines a parallel body before target clones are made, so the body itself would
 * only get the baseline instruction set). */
enum { ELEMENT_CHUNK = 1 << 14 };

#define F32(mem) tw_cpu_f32(mem)
#define I32(mem) tw_cpu_i32(mem)

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* C (m, n) = beta * C without reading C when beta == 0 (so NaNs there do not propagate). */
static void scale_matrix(float *c, int m, int n, int64_t ldc, float beta) {
    for (int i = 0; i < m; i++) {
        float *row = c + (size_t)i * (size_t)ldc;
        for (int j = 0; j < n; j++) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
}

tw_status tw_cpu_gemm(void *context, const tw_gemm_args *args) {
    (void)context;
    float *a = F32(args->a), *b = F32(args->b), *c = F32(args->c);
    for (int p = 0; p < args->batch; p++) {
        float *c_p = c + (size_t)p * (size_t)args->stride_c;
        /* k == 0 or alpha == 0: BLAS would still touch A and B; only C = beta C is meant. */
        if (args->k == 0 || args->alpha == 0.0f) {
            scale_matrix(c_p, args->m, args->n, args->ldc, args->beta);
            continue;
        }
        /* OpenBLAS writes C without reading it when beta == 0, as twist requires. */
        bool entered = tw_cpu_blas_enter();
        cblas_sgemm(CblasRowMajor, args->trans_a ? CblasTrans : CblasNoTrans,
                    args->trans_b ? CblasTrans : CblasNoTrans, args->m, args->n, args->k,
                    args->alpha, a + (size_t)p * (size_t)args->stride_a, (int)args->lda,
                    b + (size_t)p * (size_t)args->stride_b, (int)args->ldb, args->beta, c_p,
                    (int)args->ldc);
        tw_cpu_blas_leave(entered);
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* One row of softmax: y (cols) from x, columns at and past `visible` get probability 0. */
HOT_LOOP static void softmax_row(const float *x, float *y, int visible, int cols) {
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int c = 0; c < visible; c++) max = x[c] > max ? x[c] : max;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < visible; c++) {
        y[c] = tw_cpu_exp(x[c] - max);
        sum += y[c];
    }
    const float inverse = 1.0f / sum;
#pragma omp simd
    for (int c = 0; c < visible; c++) y[c] *= inverse;
    for (int c = visible; c < cols; c++) y[c] = 0.0f;
}

tw_status tw_cpu_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                             tw_mem out) {
    (void)context;
    const float *x = F32(in);
    float *y = F32(out);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        /* Causal rows see columns 0 ..= r mod T; the rest get probability 0. */
        int visible = causal_t > 0 ? r % causal_t + 1 : cols;
        if (visible > cols) visible = cols;
        softmax_row(x + (size_t)r * (size_t)cols, y + (size_t)r * (size_t)cols, visible, cols);
    }
    return TW_OK;
}

tw_status tw_cpu_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx) {
    (void)context;
    const float *y_all = F32(y), *dy_all = F32(dy);
    float *dx_all = F32(dx);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        size_t base = (size_t)r * (size_t)cols;
        const float *y_row = y_all + base, *dy_row = dy_all + base;
        float *dx_row = dx_all + base;
        double dot = 0.0;
        for (int c = 0; c < cols; c++) dot += (double)y_row[c] * dy_row[c];
        for (int c = 0; c < cols; c++) dx_row[c] += y_row[c] * (dy_row[c] - (float)dot);
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNorm                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* One row of LayerNorm: y (cols) = (x - mean) * rstd * w + b; sums in double. */
HOT_LOOP static void layernorm_row(const float *x, const float *w, const float *b, int cols,
                                   float eps, float *y, float *mean, float *rstd) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < cols; c++) sum += x[c];
    const float mu = (float)(sum / cols);
    double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
    for (int c = 0; c < cols; c++) {
        const double d = (double)x[c] - mu;
        sum_sq += d * d;
    }
    const float s = (float)(1.0 / sqrt(sum_sq / cols + eps));
#pragma omp simd
    for (int c = 0; c < cols; c++) y[c] = (x[c] - mu) * s * w[c] + b[c];
    *mean = mu;
    *rstd = s;
}

tw_status tw_cpu_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                               tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd) {
    (void)context;
    const float *x_all = F32(x), *w = F32(weight), *b = F32(bias);
    float *y_all = F32(out), *mean_all = F32(mean), *rstd_all = F32(rstd);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const size_t base = (size_t)r * (size_t)cols;
        layernorm_row(x_all + base, w, b, cols, eps, y_all + base, mean_all + r, rstd_all + r);
    }
    return TW_OK;
}

/* dx (cols) += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) for one row, with
 * xhat = (x - mean) * rstd and dnorm = dout * weight. */
HOT_LOOP static void layernorm_bwd_row(const float *dout, const float *x, const float *w,
                                       float mean, float rstd, int cols, float *dx) {
    double dnorm_sum = 0.0, dnorm_xhat_sum = 0.0;
#pragma omp simd reduction(+ : dnorm_sum, dnorm_xhat_sum)
    for (int c = 0; c < cols; c++) {
        const float xhat = (x[c] - mean) * rstd, dnorm = dout[c] * w[c];
        dnorm_sum += dnorm;
        dnorm_xhat_sum += (double)dnorm * xhat;
    }
    const float dnorm_mean = (float)(dnorm_sum / cols);
    const float dnorm_xhat_mean = (float)(dnorm_xhat_sum / cols);
#pragma omp simd
    for (int c = 0; c < cols; c++) {
        const float xhat = (x[c] - mean) * rstd, dnorm = dout[c] * w[c];
        dx[c] += (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * rstd;
    }
}

/* dweight[c0, c1) += sum_r dout * xhat and dbias[c0, c1) += sum_r dout, rows in order: a chunk
 * of columns is one thread's, so the sums have a fixed order. */
HOT_LOOP static void layernorm_bwd_columns(int rows, int cols, int c0, int c1, const float *dout,
                                           const float *x, const float *mean, const float *rstd,
                                           float *dweight, float *dbias) {
    double dw[COLUMN_CHUNK] = {0}, db[COLUMN_CHUNK] = {0};
    const int width = c1 - c0;
    for (int r = 0; r < rows; r++) {
        const float *dout_row = dout + (size_t)r * (size_t)cols + c0;
        const float *x_row = x + (size_t)r * (size_t)cols + c0;
        const float mu = mean[r], s = rstd[r];
#pragma omp simd
        for (int c = 0; c < width; c++) {
            dw[c] += (double)dout_row[c] * ((x_row[c] - mu) * s);
            db[c] += dout_row[c];
        }
    }
    for (int c = 0; c < width; c++) {
        dweight[c0 + c] += (float)dw[c];
        dbias[c0 + c] += (float)db[c];
    }
}

tw_status tw_cpu_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                               tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                               tw_mem dbias) {
    (void)context;
    const float *dy = F32(dout), *x_all = F32(x), *w = F32(weight);
    const float *mean_all = F32(mean), *rstd_all = F32(rstd);
    float *dx_all = F32(dx), *dw = F32(dweight), *db = F32(dbias);
    const bool parallel = (size_t)rows * (size_t)cols >= PARALLEL_MIN;
    const int chunks = (cols + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel if (parallel)
    {
#pragma omp for schedule(static) nowait
        for (int r = 0; r < rows; r++) {
            const size_t base = (size_t)r * (size_t)cols;
            layernorm_bwd_row(dy + base, x_all + base, w, mean_all[r], rstd_all[r], cols,
                              dx_all + base);
        }
#pragma omp for schedule(static)
        for (int chunk = 0; chunk < chunks; chunk++) {
            const int c0 = chunk * COLUMN_CHUNK;
            const int c1 = c0 + COLUMN_CHUNK < cols ? c0 + COLUMN_CHUNK : cols;
            layernorm_bwd_columns(rows, cols, c0, c1, dy, x_all, mean_all, rstd_all, dw, db);
        }
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* GELU (tanh approximation)                                                                  */
/* ------------------------------------------------------------------------------------------ */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_CUBIC 0.044715f


HOT_LOOP static void gelu_fwd_range(const float *x, float *y, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tw_cpu_tanh(GELU_SCALE * (v + GELU_CUBIC * v * v * v)));
    }
}

/* dx += gelu'(x) dy; d/dv tanh(u(v)) = (1 - t^2) u'(v). */
HOT_LOOP static void gelu_bwd_range(const float *x, const float *dy, float *dx, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        const float t = tw_cpu_tanh(GELU_SCALE * (v + GELU_CUBIC * v * v * v));
        const float local = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_SCALE *
                                                    (1.0f + 3.0f * GELU_CUBIC * v * v);
        dx[i] += local * dy[i];
    }
}

tw_status tw_cpu_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    (void)context;
    const float *in = F32(x);
    float *y = F32(out);
    const size_t chunks = (n + ELEMENT_CHUNK - 1) / ELEMENT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * ELEMENT_CHUNK;
        const size_t count = n - begin < ELEMENT_CHUNK ? n - begin : ELEMENT_CHUNK;
        gelu_fwd_range(in + begin, y + begin, count);
    }
    return TW_OK;
}

tw_status tw_cpu_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    (void)context;
    const float *in = F32(x), *dy = F32(dout);
    float *d = F32(dx);
    const size_t chunks = (n + ELEMENT_CHUNK - 1) / ELEMENT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * ELEMENT_CHUNK;
        const size_t count = n - begin < ELEMENT_CHUNK ? n - begin : ELEMENT_CHUNK;
        gelu_bwd_range(in + begin, dy + begin, d + begin, count);
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Embedding                                                                                  */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_cpu_embedding_fwd(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out) {
    (void)context;
    (void)vocab;
    const int32_t *tok = I32(tokens);
    const float *te = F32(wte), *pe = F32(wpe);
    float *y = F32(out);
    int rows = batch * seq_len;
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)channels >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *te_row = te + (size_t)tok[r] * (size_t)channels;
        const float *pe_row = pe + (size_t)(r % seq_len) * (size_t)channels;
        float *y_row = y + (size_t)r * (size_t)channels;
        for (int c = 0; c < channels; c++) y_row[c] = te_row[c] + pe_row[c];
    }
    return TW_OK;
}

/* Tokens repeat, so rows of dwte receive several contributions: each thread owns a chunk of
 * channels and adds the (b, t) rows in order, which fixes the summation order. */
tw_status tw_cpu_embedding_bwd(void *context, int batch, int seq_len, int channels, int vocab,
                               tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe) {
    (void)context;
    (void)vocab;
    const int32_t *tok = I32(tokens);
    const float *dy = F32(dout);
    float *dte = F32(dwte), *dpe = F32(dwpe);
    int rows = batch * seq_len;
    int chunks = (channels + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)channels >= PARALLEL_MIN)
    for (int chunk = 0; chunk < chunks; chunk++) {
        int c0 = chunk * COLUMN_CHUNK;
        int c1 = c0 + COLUMN_CHUNK < channels ? c0 + COLUMN_CHUNK : channels;
        for (int r = 0; r < rows; r++) {
            const float *dy_row = dy + (size_t)r * (size_t)channels;
            float *dte_row = dte + (size_t)tok[r] * (size_t)channels;
            float *dpe_row = dpe + (size_t)(r % seq_len) * (size_t)channels;
            for (int c = c0; c < c1; c++) {
                dte_row[c] += dy_row[c];
                dpe_row[c] += dy_row[c];
            }
        }
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax + cross-entropy                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* One row of logits (vocab): returns the log-sum-exp and the first index of the maximum. */
HOT_LOOP static float logsumexp_row(const float *row, int vocab, int *argmax) {
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int c = 0; c < vocab; c++) max = row[c] > max ? row[c] : max;
    int first = 0;
    while (first < vocab - 1 && !(row[first] == max)) first++; /* first maximum on ties */
    *argmax = first;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < vocab; c++) sum += tw_cpu_exp(row[c] - max);
    return max + logf(sum);
}

/* d_row (vocab) += grad_scale * softmax(row) (the one-hot part is the caller's). */
HOT_LOOP static void softmax_grad_row(const float *row, float lse, float grad_scale, int vocab,
                                      float *d_row) {
#pragma omp simd
    for (int c = 0; c < vocab; c++) d_row[c] += grad_scale * tw_cpu_exp(row[c] - lse);
}

tw_status tw_cpu_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                                  tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct) {
    (void)context;
    const float *z = F32(logits);
    const int32_t *target = I32(targets);
    float *loss = F32(losses), *lse_out = F32(lse), *hit = F32(correct);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)vocab >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *row = z + (size_t)r * (size_t)ld;
        int argmax;
        const float row_lse = logsumexp_row(row, vocab, &argmax);
        lse_out[r] = row_lse;
        const int t = target[r];
        loss[r] = t < 0 ? 0.0f : row_lse - row[t];
        hit[r] = t >= 0 && t == argmax ? 1.0f : 0.0f;
    }
    return TW_OK;
}

tw_status tw_cpu_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                                  tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits) {
    (void)context;
    const float *z = F32(logits), *lse_in = F32(lse);
    const int32_t *target = I32(targets);
    float *dz = F32(dlogits);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)vocab >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const int t = target[r];
        if (t < 0) continue; /* ignored row: no gradient */
        float *d_row = dz + (size_t)r * (size_t)ld;
        softmax_grad_row(z + (size_t)r * (size_t)ld, lse_in[r], grad_scale, vocab, d_row);
        d_row[t] -= grad_scale;
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Bias, elementwise, reductions, AdamW                                                       */
/* ------------------------------------------------------------------------------------------ */

HOT_LOOP static void bias_add_row(const float *bias, int cols, float *row) {
#pragma omp simd
    for (int c = 0; c < cols; c++) row[c] += bias[c];
}

tw_status tw_cpu_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    (void)context;
    const float *b = F32(bias);
    float *y = F32(out);
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) bias_add_row(b, cols, y + (size_t)r * (size_t)cols);
    return TW_OK;
}

/* dbias[c0, c1) += column sums of dout, rows in order (fixed summation order). */
HOT_LOOP static void bias_bwd_columns(int rows, int cols, int c0, int c1, const float *dout,
                                      float *dbias) {
    double sum[COLUMN_CHUNK] = {0};
    const int width = c1 - c0;
    for (int r = 0; r < rows; r++) {
        const float *row = dout + (size_t)r * (size_t)cols + c0;
#pragma omp simd
        for (int c = 0; c < width; c++) sum[c] += row[c];
    }
    for (int c = 0; c < width; c++) dbias[c0 + c] += (float)sum[c];
}

tw_status tw_cpu_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    (void)context;
    const float *dy = F32(dout);
    float *db = F32(dbias);
    const int chunks = (cols + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols >= PARALLEL_MIN)
    for (int chunk = 0; chunk < chunks; chunk++) {
        const int c0 = chunk * COLUMN_CHUNK;
        bias_bwd_columns(rows, cols, c0, c0 + COLUMN_CHUNK < cols ? c0 + COLUMN_CHUNK : cols, dy,
                         db);
    }
    return TW_OK;
}

tw_status tw_cpu_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    (void)context;
    const float *x = F32(a), *y = F32(b);
    float *z = F32(out);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) z[i] = x[i] + y[i];
    return TW_OK;
}

tw_status tw_cpu_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    (void)context;
    const float *in = F32(x);
    float *y = F32(out);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] = alpha * in[i];
    return TW_OK;
}

HOT_LOOP static double sum_sq_range(const float *x, size_t n) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

/* Partial sums of SUM_CHUNK elements in double, added in chunk order. */
tw_status tw_cpu_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    (void)context;
    const float *in = F32(x);
    size_t chunks = (n + SUM_CHUNK - 1) / SUM_CHUNK;
    double *partial = malloc((chunks ? chunks : 1) * sizeof *partial);
    if (!partial) return tw_error(TW_ERR_OUT_OF_MEMORY, "sum_sq: out of host memory");
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        size_t begin = chunk * SUM_CHUNK, end = begin + SUM_CHUNK < n ? begin + SUM_CHUNK : n;
        partial[chunk] = sum_sq_range(in + begin, end - begin);
    }
    double total = 0.0;
    for (size_t chunk = 0; chunk < chunks; chunk++) total += partial[chunk];
    free(partial);
    F32(out)[0] = (float)total;
    return TW_OK;
}

/* AdamW over n parameters (twist/backend.h has the update). */
HOT_LOOP static void adamw_range(const tw_adamw_args *args, float correction1, float correction2,
                                 size_t n, float *p, const float *grad, float *m, float *v) {
    const float beta1 = args->beta1, beta2 = args->beta2, lr = args->lr, eps = args->eps;
    const float decay = args->weight_decay, scale = args->grad_scale;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float g = scale * grad[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        const float m_hat = m[i] / correction1, v_hat = v[i] / correction2;
        p[i] -= lr * (m_hat / (sqrtf(v_hat) + eps) + decay * p[i]);
    }
}

tw_status tw_cpu_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                            tw_mem grad, tw_mem m, tw_mem v) {
    (void)context;
    float *p = F32(param), *first = F32(m), *second = F32(v);
    const float *g = F32(grad);
    const float correction1 = 1.0f - powf(args->beta1, (float)args->step);
    const float correction2 = 1.0f - powf(args->beta2, (float)args->step);
    const size_t chunks = (n + ELEMENT_CHUNK - 1) / ELEMENT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        const size_t begin = chunk * ELEMENT_CHUNK;
        const size_t count = n - begin < ELEMENT_CHUNK ? n - begin : ELEMENT_CHUNK;
        adamw_range(args, correction1, correction2, count, p + begin, g + begin, first + begin,
                    second + begin);
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Gather / scatter                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Gathers and overwriting scatters copy elements, so they run on any element size as they are
 * (bf16 and f16 need no widening); an accumulating scatter adds in fp32 (cpu_dtype.c widens its
 * 16-bit tensors first). ELEMENT_COPY instantiates a loop for 2- and 4-byte elements. */
#define ELEMENT_COPY(size, body)                                                                  \
    do {                                                                                          \
        if ((size) == 2) {                                                                        \
            typedef uint16_t element;                                                             \
            body;                                                                                 \
        } else {                                                                                  \
            typedef uint32_t element;                                                             \
            body;                                                                                 \
        }                                                                                         \
    } while (0)

/* Host pointer of a tensor of any element type. */
static char *bytes_of(tw_mem mem) {
    return (char *)mem.buffer->handle + mem.offset * tw_dtype_size(mem.dtype);
}

tw_status tw_cpu_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst) {
    (void)context;
    (void)src_rows;
    const int32_t *index = I32(idx);
    const size_t row_bytes = (size_t)cols * tw_dtype_size(src.dtype);
    const char *s = bytes_of(src);
    char *d = bytes_of(dst);
    for (int i = 0; i < count; i++)
        memcpy(d + (size_t)i * row_bytes, s + (size_t)index[i] * row_bytes, row_bytes);
    return TW_OK;
}

tw_status tw_cpu_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate) {
    (void)context;
    (void)dst_rows;
    const int32_t *index = I32(idx);
    if (!accumulate) {
        const size_t row_bytes = (size_t)cols * tw_dtype_size(src.dtype);
        const char *s = bytes_of(src);
        char *d = bytes_of(dst);
        for (int i = 0; i < count; i++)
            memcpy(d + (size_t)index[i] * row_bytes, s + (size_t)i * row_bytes, row_bytes);
        return TW_OK;
    }
    const float *s = F32(src);
    float *d = F32(dst);
    for (int i = 0; i < count; i++) {
        const float *s_row = s + (size_t)i * (size_t)cols;
        float *d_row = d + (size_t)index[i] * (size_t)cols;
        for (int c = 0; c < cols; c++) d_row[c] += s_row[c];
    }
    return TW_OK;
}

tw_status tw_cpu_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst) {
    (void)context;
    const int32_t *index = I32(idx);
    ELEMENT_COPY(tw_dtype_size(src.dtype), {
        const element *s = (const element *)bytes_of(src);
        element *d = (element *)bytes_of(dst);
        for (int r = 0; r < rows; r++) {
            const element *s_row = s + (size_t)r * (size_t)src_cols;
            element *d_row = d + (size_t)r * (size_t)count;
            for (int i = 0; i < count; i++) d_row[i] = s_row[index[i]];
        }
    });
    return TW_OK;
}

tw_status tw_cpu_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                              tw_mem src, tw_mem dst, bool accumulate) {
    (void)context;
    const int32_t *index = I32(idx);
    if (!accumulate) {
        ELEMENT_COPY(tw_dtype_size(src.dtype), {
            const element *s = (const element *)bytes_of(src);
            element *d = (element *)bytes_of(dst);
            for (int r = 0; r < rows; r++) {
                const element *s_row = s + (size_t)r * (size_t)count;
                element *d_row = d + (size_t)r * (size_t)dst_cols;
                for (int i = 0; i < count; i++) d_row[index[i]] = s_row[i];
            }
        });
        return TW_OK;
    }
    const float *s = F32(src);
    float *d = F32(dst);
    for (int r = 0; r < rows; r++) {
        const float *s_row = s + (size_t)r * (size_t)count;
        float *d_row = d + (size_t)r * (size_t)dst_cols;
        for (int i = 0; i < count; i++) d_row[index[i]] += s_row[i];
    }
    return TW_OK;
}
