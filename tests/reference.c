/* Double-precision reference ops: the definitions of twist/backend.h, written as plain loops. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element (row, col) of op(X) where X is stored row-major with row stride ld. */
static double op_at(const double *x, int64_t ld, bool trans, int row, int col) {
    return trans ? x[(int64_t)col * ld + row] : x[(int64_t)row * ld + col];
}

void ref_gemm(bool trans_a, bool trans_b, int m, int n, int k, int batch, double alpha,
              const double *a, int64_t lda, int64_t stride_a, const double *b, int64_t ldb,
              int64_t stride_b, double beta, double *c, int64_t ldc, int64_t stride_c) {
    for (int p = 0; p < batch; p++) {
        const double *ap = a + p * stride_a, *bp = b + p * stride_b;
        double *cp = c + p * stride_c;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = 0.0;
                for (int l = 0; l < k; l++)
                    sum += op_at(ap, lda, trans_a, i, l) * op_at(bp, ldb, trans_b, l, j);
                double *cij = &cp[(int64_t)i * ldc + j];
                /* beta == 0 must not read C: NaN there would survive 0 * NaN. */
                *cij = alpha * sum + (beta == 0.0 ? 0.0 : beta * *cij);
            }
        }
    }
}

static int64_t bhtd(tw_bhtd_stride s, int b, int h, int t) {
    return (int64_t)b * s.b + (int64_t)h * s.h + (int64_t)t * s.t;
}

/* One query row i of one (b, h): the full causal softmax over j <= i, then P V. */
static void attention_row(int i, int head_dim, double scale, const double *q, const double *k,
                          const double *v, int64_t t_stride, double *scores, double *out_row,
                          double *lse) {
    double max = -INFINITY;
    for (int j = 0; j <= i; j++) {
        double s = 0.0;
        for (int d = 0; d < head_dim; d++) s += q[(int64_t)i * t_stride + d] * k[(int64_t)j * t_stride + d];
        scores[j] = scale * s;
        if (scores[j] > max) max = scores[j];
    }
    double sum = 0.0;
    for (int j = 0; j <= i; j++) sum += exp(scores[j] - max);
    *lse = max + log(sum);
    for (int d = 0; d < head_dim; d++) {
        double o = 0.0;
        for (int j = 0; j <= i; j++) o += exp(scores[j] - *lse) * v[(int64_t)j * t_stride + d];
        out_row[d] = o;
    }
}

void ref_attention_fwd(int batch, int heads, int seq_len, int head_dim, double scale,
                       tw_bhtd_stride qkv_stride, tw_bhtd_stride out_stride, const double *q,
                       const double *k, const double *v, double *out, double *lse) {
    double *scores = malloc((size_t)seq_len * sizeof *scores);
    for (int b = 0; b < batch; b++) {
        for (int h = 0; h < heads; h++) {
            int64_t base = bhtd(qkv_stride, b, h, 0);
            for (int i = 0; i < seq_len; i++)
                attention_row(i, head_dim, scale, q + base, k + base, v + base, qkv_stride.t,
                              scores, out + bhtd(out_stride, b, h, i),
                              &lse[((int64_t)b * heads + h) * seq_len + i]);
        }
    }
    free(scores);
}

void ref_softmax_fwd(int rows, int cols, int causal_t, const double *in, double *out) {
    double *row = malloc((size_t)cols * sizeof *row);
    for (int r = 0; r < rows; r++) {
        int valid = causal_t > 0 ? r % causal_t + 1 : cols;
        if (valid > cols) valid = cols;
        double max = -INFINITY, sum = 0.0;
        for (int c = 0; c < valid; c++) max = fmax(max, in[(int64_t)r * cols + c]);
        for (int c = 0; c < valid; c++) sum += row[c] = exp(in[(int64_t)r * cols + c] - max);
        for (int c = 0; c < cols; c++) out[(int64_t)r * cols + c] = c < valid ? row[c] / sum : 0.0;
    }
    free(row);
}

void ref_layernorm_fwd(int rows, int cols, double eps, const double *x, const double *weight,
                       const double *bias, double *out, double *mean, double *rstd) {
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (int64_t)r * cols;
        double mu = 0.0, var = 0.0;
        for (int c = 0; c < cols; c++) mu += xr[c];
        mu /= cols;
        for (int c = 0; c < cols; c++) var += (xr[c] - mu) * (xr[c] - mu);
        var /= cols;
        double rs = 1.0 / sqrt(var + eps);
        for (int c = 0; c < cols; c++)
            out[(int64_t)r * cols + c] = (xr[c] - mu) * rs * weight[c] + bias[c];
        mean[r] = mu;
        rstd[r] = rs;
    }
}

double ref_gelu(double x) {
    const double sqrt_2_over_pi = 0.79788456080286535588; /* sqrt(2 / pi) */
    return 0.5 * x * (1.0 + tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
}

void ref_gelu_fwd(size_t n, const double *x, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = ref_gelu(x[i]);
}

void ref_embedding_fwd(int batch, int seq_len, int channels, const int32_t *tokens,
                       const double *wte, const double *wpe, double *out) {
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq_len; t++) {
            int64_t row = (int64_t)b * seq_len + t;
            const double *e = wte + (int64_t)tokens[row] * channels, *p = wpe + (int64_t)t * channels;
            for (int c = 0; c < channels; c++) out[row * channels + c] = e[c] + p[c];
        }
}

void ref_softmax_xent_fwd(int rows, int vocab, int ld, const double *logits,
                          const int32_t *targets, double *losses, double *lse, double *correct) {
    for (int r = 0; r < rows; r++) {
        const double *x = logits + (int64_t)r * ld;
        int argmax = 0;
        for (int c = 1; c < vocab; c++)
            if (x[c] > x[argmax]) argmax = c; /* strict: the first maximum wins ties */
        double sum = 0.0;
        for (int c = 0; c < vocab; c++) sum += exp(x[c] - x[argmax]);
        lse[r] = x[argmax] + log(sum);
        int target = targets[r];
        losses[r] = target < 0 ? 0.0 : lse[r] - x[target];
        correct[r] = target >= 0 && target == argmax ? 1.0 : 0.0;
    }
}

void ref_bias_add(int rows, int cols, const double *bias, double *out) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) out[(int64_t)r * cols + c] += bias[c];
}

void ref_add(size_t n, const double *a, const double *b, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ref_scale(size_t n, double alpha, const double *x, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = alpha * x[i];
}

double ref_sum_sq(size_t n, const double *x) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}

void ref_adamw_step(size_t n, const tw_adamw_args *args, double *param, const double *grad,
                    double *m, double *v) {
    double beta1 = args->beta1, beta2 = args->beta2;
    double correction1 = 1.0 - pow(beta1, args->step), correction2 = 1.0 - pow(beta2, args->step);
    for (size_t i = 0; i < n; i++) {
        double g = (double)args->grad_scale * grad[i];
        m[i] = beta1 * m[i] + (1.0 - beta1) * g;
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        double m_hat = m[i] / correction1, v_hat = v[i] / correction2;
        param[i] -= (double)args->lr *
                    (m_hat / (sqrt(v_hat) + (double)args->eps) + (double)args->weight_decay * param[i]);
    }
}

void ref_gather_rows(int cols, int count, const int32_t *idx, const double *src, double *dst) {
    for (int i = 0; i < count; i++)
        memcpy(dst + (int64_t)i * cols, src + (int64_t)idx[i] * cols, (size_t)cols * sizeof *dst);
}

void ref_scatter_rows(int cols, int count, const int32_t *idx, const double *src, double *dst,
                      bool accumulate) {
    for (int i = 0; i < count; i++)
        for (int c = 0; c < cols; c++) {
            double *d = &dst[(int64_t)idx[i] * cols + c];
            *d = (accumulate ? *d : 0.0) + src[(int64_t)i * cols + c];
        }
}

void ref_gather_cols(int rows, int src_cols, int count, const int32_t *idx, const double *src,
                     double *dst) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < count; i++)
            dst[(int64_t)r * count + i] = src[(int64_t)r * src_cols + idx[i]];
}

void ref_scatter_cols(int rows, int dst_cols, int count, const int32_t *idx, const double *src,
                      double *dst, bool accumulate) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < count; i++) {
            double *d = &dst[(int64_t)r * dst_cols + idx[i]];
            *d = (accumulate ? *d : 0.0) + src[(int64_t)r * count + i];
        }
}
