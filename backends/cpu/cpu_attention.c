/* Fused causal multi-head attention on the CPU (semantics in include/twist/backend.h).
 *
 * Forward: each query row walks its visible keys in blocks of KEY_BLOCK with an online softmax
 * (running max m, running sum l, running output acc rescaled when m grows), so the only score
 * storage is one block per thread, never a (T, T) matrix. It saves lse = m + log(l).
 *
 * Backward recomputes P[i][j] = exp(scale q_i.k_j - lse_i) in two passes, each of which owns its
 * outputs so no two threads ever add into the same gradient row:
 *   dQ pass, per query row i:  dq_i += scale * sum_{j<=i} dS_ij k_j
 *   dKV pass, per key row j:   dv_j += sum_{i>=j} P_ij dO_i,  dk_j += scale * sum_{i>=j} dS_ij q_i
 * with dS_ij = P_ij (dO_i.v_j - delta_i) and delta_i = dO_i.O_i computed once into a (B, H, T)
 * scratch buffer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* Keys scored at a time in the forward pass: scores for one block stay in L1. */
enum { KEY_BLOCK = 64 };

/* Pointer to element (b, h, t, 0) of a (B, H, T, D) view. */
static inline float *row_at(tw_mem mem, tw_bhtd_stride stride, int b, int h, int t) {
    return tw_cpu_f32(mem) + (int64_t)b * stride.b + (int64_t)h * stride.h +
           (int64_t)t * stride.t;
}

static inline float dot(const float *x, const float *y, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int d = 0; d < n; d++) sum += x[d] * y[d];
    return sum;
}

/* y (n) += alpha * x (n) */
static inline void axpy(float alpha, const float *x, float *y, int n) {
#pragma omp simd
    for (int d = 0; d < n; d++) y[d] += alpha * x[d];
}

/* A flat row index r over (B, H, T), split back into its coordinates. */
typedef struct row_index {
    int b, h, t;
} row_index;

static inline row_index split_row(int64_t r, const tw_attention_args *args) {
    row_index index;
    index.t = (int)(r % args->seq_len);
    int64_t bh = r / args->seq_len;
    index.h = (int)(bh % args->heads);
    index.b = (int)(bh / args->heads);
    return index;
}

/* One query row of the forward pass; acc (D) and scores (KEY_BLOCK) are the thread's scratch. */
static void attention_row_fwd(const tw_attention_args *args, row_index at, float *acc,
                              float *scores) {
    const int D = args->head_dim, i = at.t;
    const float *q = row_at(args->q, args->qkv_stride, at.b, at.h, i);
    float running_max = -INFINITY, running_sum = 0.0f;
    memset(acc, 0, (size_t)D * sizeof *acc);
    for (int j0 = 0; j0 <= i; j0 += KEY_BLOCK) {
        int j1 = j0 + KEY_BLOCK <= i + 1 ? j0 + KEY_BLOCK : i + 1;
        float block_max = -INFINITY;
        for (int j = j0; j < j1; j++) {
            const float *k = row_at(args->k, args->qkv_stride, at.b, at.h, j);
            scores[j - j0] = args->scale * dot(q, k, D);
            block_max = fmaxf(block_max, scores[j - j0]);
        }
        float new_max = fmaxf(running_max, block_max);
        float correction = expf(running_max - new_max); /* 0 on the first block */
        running_sum *= correction;
        for (int d = 0; d < D; d++) acc[d] *= correction;
        for (int j = j0; j < j1; j++) {
            float p = expf(scores[j - j0] - new_max);
            running_sum += p;
            axpy(p, row_at(args->v, args->qkv_stride, at.b, at.h, j), acc, D);
        }
        running_max = new_max;
    }
    float *out = row_at(args->out, args->out_stride, at.b, at.h, i);
    float inverse = 1.0f / running_sum;
    for (int d = 0; d < D; d++) out[d] = acc[d] * inverse;
    int64_t r = ((int64_t)at.b * args->heads + at.h) * args->seq_len + i;
    tw_cpu_f32(args->lse)[r] = running_max + logf(running_sum);
}

tw_status tw_cpu_attention_fwd(void *context, const tw_attention_args *args) {
    (void)context;
    const int64_t rows = (int64_t)args->batch * args->heads * args->seq_len;
    bool out_of_memory = false;
#pragma omp parallel
    {
        float *acc = malloc((size_t)args->head_dim * sizeof *acc);
        float *scores = malloc(KEY_BLOCK * sizeof *scores);
        if (!acc || !scores) {
#pragma omp atomic write
            out_of_memory = true;
        }
        /* Row cost grows with t: small dynamic chunks keep the threads balanced. */
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++)
            if (acc && scores) attention_row_fwd(args, split_row(r, args), acc, scores);
        free(acc);
        free(scores);
    }
    if (out_of_memory) return tw_error(TW_ERR_OUT_OF_MEMORY, "attention_fwd: out of host memory");
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Backward                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* P_ij and dS_ij for query row i and key row j. */
static inline void score_grad(const tw_attention_args *args, row_index qi, int j,
                              const float *delta, float *p_out, float *ds_out) {
    const int D = args->head_dim;
    int64_t r = ((int64_t)qi.b * args->heads + qi.h) * args->seq_len + qi.t;
    const float *q = row_at(args->q, args->qkv_stride, qi.b, qi.h, qi.t);
    const float *k = row_at(args->k, args->qkv_stride, qi.b, qi.h, j);
    const float *v = row_at(args->v, args->qkv_stride, qi.b, qi.h, j);
    const float *dout = row_at(args->dout, args->out_stride, qi.b, qi.h, qi.t);
    float p = expf(args->scale * dot(q, k, D) - tw_cpu_f32(args->lse)[r]);
    *p_out = p;
    *ds_out = p * (dot(dout, v, D) - delta[r]);
}

/* dq_i += scale * sum_{j <= i} dS_ij k_j; grad (D) is the thread's scratch. */
static void attention_row_dq(const tw_attention_args *args, row_index at, const float *delta,
                             float *grad) {
    const int D = args->head_dim;
    memset(grad, 0, (size_t)D * sizeof *grad);
    for (int j = 0; j <= at.t; j++) {
        float p, ds;
        score_grad(args, at, j, delta, &p, &ds);
        axpy(ds, row_at(args->k, args->qkv_stride, at.b, at.h, j), grad, D);
    }
    axpy(args->scale, grad, row_at(args->dq, args->qkv_stride, at.b, at.h, at.t), D);
}

/* For key row j = at.t: dv_j += sum_{i>=j} P_ij dO_i, dk_j += scale * sum_{i>=j} dS_ij q_i. */
static void attention_row_dkv(const tw_attention_args *args, row_index at, const float *delta,
                              float *grad_k, float *grad_v) {
    const int D = args->head_dim, j = at.t;
    memset(grad_k, 0, (size_t)D * sizeof *grad_k);
    memset(grad_v, 0, (size_t)D * sizeof *grad_v);
    for (int i = j; i < args->seq_len; i++) {
        row_index qi = {at.b, at.h, i};
        float p, ds;
        score_grad(args, qi, j, delta, &p, &ds);
        axpy(p, row_at(args->dout, args->out_stride, at.b, at.h, i), grad_v, D);
        axpy(ds, row_at(args->q, args->qkv_stride, at.b, at.h, i), grad_k, D);
    }
    axpy(args->scale, grad_k, row_at(args->dk, args->qkv_stride, at.b, at.h, j), D);
    axpy(1.0f, grad_v, row_at(args->dv, args->qkv_stride, at.b, at.h, j), D);
}

/* delta (B, H, T) = rowwise dO . O */
static void attention_delta(const tw_attention_args *args, int64_t rows, float *delta) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        row_index at = split_row(r, args);
        delta[r] = dot(row_at(args->dout, args->out_stride, at.b, at.h, at.t),
                       row_at(args->out, args->out_stride, at.b, at.h, at.t), args->head_dim);
    }
}

tw_status tw_cpu_attention_bwd(void *context, const tw_attention_args *args) {
    tw_cpu_context *cpu = context;
    const int64_t rows = (int64_t)args->batch * args->heads * args->seq_len;
    tw_buffer *delta_buffer = NULL;
    tw_status status = tw_buffer_alloc(cpu->device, (size_t)rows * sizeof(float), &delta_buffer);
    if (status != TW_OK) return status;
    float *delta = tw_cpu_f32(tw_at(delta_buffer, 0));
    attention_delta(args, rows, delta);

    bool out_of_memory = false;
#pragma omp parallel
    {
        float *grad = malloc(2 * (size_t)args->head_dim * sizeof *grad);
        if (!grad) {
#pragma omp atomic write
            out_of_memory = true;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++)
            if (grad) attention_row_dq(args, split_row(r, args), delta, grad);
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++)
            if (grad) attention_row_dkv(args, split_row(r, args), delta, grad, grad + args->head_dim);
        free(grad);
    }
    tw_buffer_free(delta_buffer);
    if (out_of_memory) return tw_error(TW_ERR_OUT_OF_MEMORY, "attention_bwd: out of host memory");
    return TW_OK;
}
