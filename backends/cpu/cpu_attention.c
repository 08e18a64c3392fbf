/* Fused causal multi-head attention on the CPU (semantics in include/twist/backend.h).
 *
 * Work is tiled per (batch, head) into blocks of QUERY_BLOCK query rows or KEY_BLOCK key rows.
 * A key block is transposed once into a (D, KEY_BLOCK) scratch tile, so a row of scores
 * s_j = scale q.k_j over the block is a sum of D vector updates along j with no horizontal
 * sums; exponentials use a polynomial exp that vectorises. The hot functions are compiled for
 * AVX-512 and AVX2 as well as the baseline (HOT_LOOP in cpu_math.h).
 *
 * Forward: each query row walks its visible keys block by block with an online softmax
 * (running max m, running sum l, output accumulator rescaled when m grows). The only score
 * storage is one (KEY_BLOCK) row per thread, never a (T, T) matrix. lse = m + log(l).
 *
 * Backward recomputes P_ij = exp(scale q_i.k_j - lse_i) in two passes, each of which owns its
 * outputs, so no two threads add into the same gradient row and the summation order is fixed:
 *   dQ pass, per query block:  dq_i += scale * sum_{j<=i} dS_ij k_j
 *   dKV pass, per key block:   dv_j += sum_{i>=j} P_ij dO_i,  dk_j += scale * sum_{i>=j} dS_ij q_i
 * with dS_ij = P_ij (dO_i.v_j - delta_i) and delta_i = dO_i.O_i computed once into a (B, H, T)
 * scratch buffer counted in the device's bytes. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_math.h"

enum { KEY_BLOCK = 64, QUERY_BLOCK = 32 };

/* Element (b, h, t, 0) of a (B, H, T, D) view with the given strides. */
INLINE float *row_at(tw_mem mem, tw_bhtd_stride stride, int b, int h, int t) {
    return tw_cpu_f32(mem) + (int64_t)b * stride.b + (int64_t)h * stride.h +
           (int64_t)t * stride.t;
}

INLINE float dot(const float *x, const float *y, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int d = 0; d < n; d++) sum += x[d] * y[d];
    return sum;
}

/* y (n) += alpha * x (n) */
INLINE void axpy(float alpha, const float *x, float *y, int n) {
#pragma omp simd
    for (int d = 0; d < n; d++) y[d] += alpha * x[d];
}

/* tile (D, KEY_BLOCK)[d][jj] = rows[j0 + jj][d] for jj < count: key or value rows of one head
 * turned so that loops over a block of keys run along contiguous memory. */
INLINE void transpose_rows(tw_mem mem, tw_bhtd_stride stride, int b, int h, int j0, int count,
                           int D, float *tile) {
    for (int jj = 0; jj < count; jj++) {
        const float *row = row_at(mem, stride, b, h, j0 + jj);
        for (int d = 0; d < D; d++) tile[(size_t)d * KEY_BLOCK + jj] = row[d];
    }
}

/* out (KEY_BLOCK) = alpha * x (D) . tile (D, KEY_BLOCK); all KEY_BLOCK lanes are computed (the
 * unused ones from stale but finite tile data) so the inner loop has a fixed trip count. Four
 * tile rows per pass over out quarter the loads and stores of out. */
INLINE void row_times_tile(const float *x, float alpha, const float *tile, int D,
                                  float *out) {
    for (int jj = 0; jj < KEY_BLOCK; jj++) out[jj] = 0.0f;
    int d = 0;
    for (; d + 4 <= D; d += 4) {
        const float x0 = alpha * x[d], x1 = alpha * x[d + 1], x2 = alpha * x[d + 2],
                    x3 = alpha * x[d + 3];
        const float *t0 = tile + (size_t)d * KEY_BLOCK, *t1 = t0 + KEY_BLOCK,
                    *t2 = t1 + KEY_BLOCK, *t3 = t2 + KEY_BLOCK;
#pragma omp simd
        for (int jj = 0; jj < KEY_BLOCK; jj++)
            out[jj] += x0 * t0[jj] + x1 * t1[jj] + x2 * t2[jj] + x3 * t3[jj];
    }
    for (; d < D; d++) {
        const float xd = alpha * x[d];
        const float *t0 = tile + (size_t)d * KEY_BLOCK;
#pragma omp simd
        for (int jj = 0; jj < KEY_BLOCK; jj++) out[jj] += xd * t0[jj];
    }
}

/* acc (D) += sum_{c < count} weight[c * weight_stride] * rows[first + c] (D): the rows of one
 * head from `first` on, four per pass over acc so acc is loaded and stored a quarter as often. */
INLINE void weighted_rows_sum(const float *weight, int weight_stride, tw_mem mem,
                              tw_bhtd_stride stride, int b, int h, int first, int count, int D,
                              float *acc) {
    int c = 0;
    for (; c + 4 <= count; c += 4) {
        const float *r0 = row_at(mem, stride, b, h, first + c), *r1 = r0 + stride.t,
                    *r2 = r1 + stride.t, *r3 = r2 + stride.t;
        const float w0 = weight[c * weight_stride], w1 = weight[(c + 1) * weight_stride],
                    w2 = weight[(c + 2) * weight_stride], w3 = weight[(c + 3) * weight_stride];
#pragma omp simd
        for (int d = 0; d < D; d++) acc[d] += w0 * r0[d] + w1 * r1[d] + w2 * r2[d] + w3 * r3[d];
    }
    for (; c < count; c++)
        axpy(weight[c * weight_stride], row_at(mem, stride, b, h, first + c), acc, D);
}

/* Rows of one (batch, head) pair: the unit of the task lists below. */
typedef struct head_view {
    const tw_attention_args *args;
    int b, h;
    const float *lse;   /* (T) of this head */
    const float *delta; /* (T) of this head, backward only */
} head_view;

static head_view view_of(const tw_attention_args *args, int64_t bh, const float *delta_all) {
    head_view view = {args, (int)(bh / args->heads), (int)(bh % args->heads), NULL, NULL};
    view.lse = tw_cpu_f32(args->lse) + bh * args->seq_len;
    if (delta_all) view.delta = delta_all + bh * args->seq_len;
    return view;
}

/* Per-thread scratch: two (D, KEY_BLOCK) tiles of transposed keys and values, two (KEY_BLOCK)
 * rows, two (KEY_BLOCK, D) accumulators, two (QUERY_BLOCK) row statistics and two
 * (QUERY_BLOCK, KEY_BLOCK) tiles of probabilities and score gradients. */
typedef struct scratch {
    float *tile_a, *tile_b, *row_a, *row_b, *acc, *acc2, *stat_a, *stat_b, *p_tile, *ds_tile;
} scratch;

static float *scratch_alloc(int D) {
    size_t floats = 2 * (size_t)D * KEY_BLOCK + 2 * KEY_BLOCK + 2 * (size_t)KEY_BLOCK * D +
                    2 * QUERY_BLOCK + 2 * QUERY_BLOCK * KEY_BLOCK;
    /* Zeroed so that tile lanes past a short block hold finite values (row_times_tile reads
     * all KEY_BLOCK lanes and ignores the unused ones). */
    return calloc(floats, sizeof(float));
}

static scratch scratch_split(float *base, int D) {
    scratch s;
    s.tile_a = base;
    s.tile_b = s.tile_a + (size_t)D * KEY_BLOCK;
    s.row_a = s.tile_b + (size_t)D * KEY_BLOCK;
    s.row_b = s.row_a + KEY_BLOCK;
    s.acc = s.row_b + KEY_BLOCK;
    s.acc2 = s.acc + (size_t)KEY_BLOCK * D;
    s.stat_a = s.acc2 + (size_t)KEY_BLOCK * D;
    s.stat_b = s.stat_a + QUERY_BLOCK;
    s.p_tile = s.stat_b + QUERY_BLOCK;
    s.ds_tile = s.p_tile + QUERY_BLOCK * KEY_BLOCK;
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Query rows [i0, i1) of one head. acc (QUERY_BLOCK, D) accumulates P V; stat_a holds the
 * running max and stat_b the running sum of each row. */
HOT_LOOP static void forward_query_block(head_view hv, int i0, int i1, scratch s) {
    const tw_attention_args *args = hv.args;
    const int D = args->head_dim;
    for (int i = i0; i < i1; i++) {
        s.stat_a[i - i0] = -INFINITY;
        s.stat_b[i - i0] = 0.0f;
        memset(s.acc + (size_t)(i - i0) * D, 0, (size_t)D * sizeof(float));
    }
    for (int j0 = 0; j0 < i1; j0 += KEY_BLOCK) {
        const int j1 = j0 + KEY_BLOCK < i1 ? j0 + KEY_BLOCK : i1; /* later keys: masked */
        transpose_rows(args->k, args->qkv_stride, hv.b, hv.h, j0, j1 - j0, D, s.tile_a);
        for (int i = i0 > j0 ? i0 : j0; i < i1; i++) {
            const int visible = (i + 1 < j1 ? i + 1 : j1) - j0;
            float *scores = s.row_a, *acc = s.acc + (size_t)(i - i0) * D;
            row_times_tile(row_at(args->q, args->qkv_stride, hv.b, hv.h, i), args->scale,
                           s.tile_a, D, scores);
            float block_max = -INFINITY;
            for (int jj = 0; jj < visible; jj++) block_max = fmaxf(block_max, scores[jj]);
            const float old_max = s.stat_a[i - i0];
            const float new_max = fmaxf(old_max, block_max);
            const float correction = expf(old_max - new_max); /* 0 on the first block */
            float block_sum = 0.0f;
#pragma omp simd reduction(+ : block_sum)
            for (int jj = 0; jj < visible; jj++) {
                scores[jj] = tw_cpu_exp(scores[jj] - new_max);
                block_sum += scores[jj];
            }
            s.stat_b[i - i0] = s.stat_b[i - i0] * correction + block_sum;
            s.stat_a[i - i0] = new_max;
            if (correction != 1.0f)
                for (int d = 0; d < D; d++) acc[d] *= correction;
            weighted_rows_sum(scores, 1, args->v, args->qkv_stride, hv.b, hv.h, j0, visible, D, acc);
        }
    }
    float *lse = tw_cpu_f32(args->lse) + ((int64_t)hv.b * args->heads + hv.h) * args->seq_len;
    for (int i = i0; i < i1; i++) {
        float *out = row_at(args->out, args->out_stride, hv.b, hv.h, i);
        const float *acc = s.acc + (size_t)(i - i0) * D;
        const float inverse = 1.0f / s.stat_b[i - i0];
        for (int d = 0; d < D; d++) out[d] = acc[d] * inverse;
        lse[i] = s.stat_a[i - i0] + logf(s.stat_b[i - i0]);
    }
}

tw_status tw_cpu_attention_fwd(void *context, const tw_attention_args *args) {
    (void)context;
    const int T = args->seq_len, D = args->head_dim;
    const int blocks = (T + QUERY_BLOCK - 1) / QUERY_BLOCK;
    const int64_t tasks = (int64_t)args->batch * args->heads * blocks;
    bool out_of_memory = false;
#pragma omp parallel
    {
        float *base = scratch_alloc(D);
        if (!base) {
#pragma omp atomic write
            out_of_memory = true;
        }
        /* Later query blocks see more keys: dynamic scheduling balances the threads. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) {
            if (!base) continue;
            const int block = (int)(task % blocks);
            const int i0 = block * QUERY_BLOCK;
            const int i1 = i0 + QUERY_BLOCK < T ? i0 + QUERY_BLOCK : T;
            forward_query_block(view_of(args, task / blocks, NULL), i0, i1, scratch_split(base, D));
        }
        free(base);
    }
    if (out_of_memory) return tw_error(TW_ERR_OUT_OF_MEMORY, "attention_fwd: out of host memory");
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Backward                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* For query row i against the key block whose K and V are transposed in tile_a and tile_b:
 * p (KEY_BLOCK) = P_ij and ds (KEY_BLOCK) = dS_ij for the `visible` keys. */
INLINE void probabilities_and_grads(head_view hv, int i, scratch s, int visible,
                                           float *p, float *ds) {
    const tw_attention_args *args = hv.args;
    const int D = args->head_dim;
    row_times_tile(row_at(args->q, args->qkv_stride, hv.b, hv.h, i), args->scale, s.tile_a, D, p);
    row_times_tile(row_at(args->dout, args->out_stride, hv.b, hv.h, i), 1.0f, s.tile_b, D, ds);
    const float lse = hv.lse[i], delta = hv.delta[i];
#pragma omp simd
    for (int jj = 0; jj < visible; jj++) {
        p[jj] = tw_cpu_exp(p[jj] - lse);
        ds[jj] = p[jj] * (ds[jj] - delta);
    }
}

/* dq_i += scale * sum_{j<=i} dS_ij k_j for query rows [i0, i1); acc (QUERY_BLOCK, D). */
HOT_LOOP static void backward_dq_block(head_view hv, int i0, int i1, scratch s) {
    const tw_attention_args *args = hv.args;
    const int D = args->head_dim;
    memset(s.acc, 0, (size_t)(i1 - i0) * D * sizeof(float));
    for (int j0 = 0; j0 < i1; j0 += KEY_BLOCK) {
        const int j1 = j0 + KEY_BLOCK < i1 ? j0 + KEY_BLOCK : i1;
        transpose_rows(args->k, args->qkv_stride, hv.b, hv.h, j0, j1 - j0, D, s.tile_a);
        transpose_rows(args->v, args->qkv_stride, hv.b, hv.h, j0, j1 - j0, D, s.tile_b);
        for (int i = i0 > j0 ? i0 : j0; i < i1; i++) {
            const int visible = (i + 1 < j1 ? i + 1 : j1) - j0;
            probabilities_and_grads(hv, i, s, visible, s.row_a, s.row_b);
            float *acc = s.acc + (size_t)(i - i0) * D;
            weighted_rows_sum(s.row_b, 1, args->k, args->qkv_stride, hv.b, hv.h, j0, visible, D, acc);
        }
    }
    for (int i = i0; i < i1; i++)
        axpy(args->scale, s.acc + (size_t)(i - i0) * D,
             row_at(args->dq, args->qkv_stride, hv.b, hv.h, i), D);
}

/* For key rows [j0, j1): dv_j += sum_{i>=j} P_ij dO_i and dk_j += scale sum_{i>=j} dS_ij q_i.
 * Query rows come QUERY_BLOCK at a time: their P and dS against the key block fill p_tile and
 * ds_tile (zero where masked), then each key row's sums take the block's rows four at a time.
 * acc and acc2 (KEY_BLOCK, D) hold the dK and dV sums. */
HOT_LOOP static void backward_dkv_block(head_view hv, int j0, int j1, scratch s) {
    const tw_attention_args *args = hv.args;
    const int D = args->head_dim, T = args->seq_len, keys = j1 - j0;
    memset(s.acc, 0, (size_t)keys * D * sizeof(float));
    memset(s.acc2, 0, (size_t)keys * D * sizeof(float));
    transpose_rows(args->k, args->qkv_stride, hv.b, hv.h, j0, keys, D, s.tile_a);
    transpose_rows(args->v, args->qkv_stride, hv.b, hv.h, j0, keys, D, s.tile_b);
    for (int i0 = j0; i0 < T; i0 += QUERY_BLOCK) {
        const int queries = i0 + QUERY_BLOCK < T ? QUERY_BLOCK : T - i0;
        for (int q = 0; q < queries; q++) {
            const int i = i0 + q, visible = (i + 1 < j1 ? i + 1 : j1) - j0;
            float *p = s.p_tile + q * KEY_BLOCK, *ds = s.ds_tile + q * KEY_BLOCK;
            probabilities_and_grads(hv, i, s, visible, p, ds);
            for (int jj = visible; jj < keys; jj++) p[jj] = ds[jj] = 0.0f; /* masked: j > i */
        }
        for (int jj = 0; jj < keys; jj++) {
            weighted_rows_sum(s.ds_tile + jj, KEY_BLOCK, args->q, args->qkv_stride, hv.b, hv.h,
                              i0, queries, D, s.acc + (size_t)jj * D);
            weighted_rows_sum(s.p_tile + jj, KEY_BLOCK, args->dout, args->out_stride, hv.b, hv.h,
                              i0, queries, D, s.acc2 + (size_t)jj * D);
        }
    }
    for (int j = j0; j < j1; j++) {
        axpy(args->scale, s.acc + (size_t)(j - j0) * D,
             row_at(args->dk, args->qkv_stride, hv.b, hv.h, j), D);
        axpy(1.0f, s.acc2 + (size_t)(j - j0) * D,
             row_at(args->dv, args->qkv_stride, hv.b, hv.h, j), D);
    }
}

/* The whole backward of one (batch, head) in a single pass over its (query block, key block)
 * tiles: P and dS of each tile are computed once and feed dQ, dK and dV alike (the two-pass
 * scheme above recomputes them, but splits one head over several threads). Sums run over key
 * blocks (dQ) and query blocks (dK, dV) in ascending order, as in the two-pass scheme. grads
 * holds 3 (T, D) accumulators for dQ, dK and dV. */
HOT_LOOP static void backward_head(head_view hv, scratch s, float *grads) {
    const tw_attention_args *args = hv.args;
    const int D = args->head_dim, T = args->seq_len;
    float *dq = grads, *dk = grads + (size_t)T * D, *dv = grads + 2 * (size_t)T * D;
    memset(grads, 0, 3 * (size_t)T * D * sizeof(float));
    for (int j0 = 0; j0 < T; j0 += KEY_BLOCK) {
        const int j1 = j0 + KEY_BLOCK < T ? j0 + KEY_BLOCK : T, keys = j1 - j0;
        transpose_rows(args->k, args->qkv_stride, hv.b, hv.h, j0, keys, D, s.tile_a);
        transpose_rows(args->v, args->qkv_stride, hv.b, hv.h, j0, keys, D, s.tile_b);
        for (int i0 = j0; i0 < T; i0 += QUERY_BLOCK) {
            const int queries = i0 + QUERY_BLOCK < T ? QUERY_BLOCK : T - i0;
            for (int q = 0; q < queries; q++) {
                const int i = i0 + q, visible = (i + 1 < j1 ? i + 1 : j1) - j0;
                float *p = s.p_tile + q * KEY_BLOCK, *ds = s.ds_tile + q * KEY_BLOCK;
                probabilities_and_grads(hv, i, s, visible, p, ds);
                for (int jj = visible; jj < keys; jj++) p[jj] = ds[jj] = 0.0f; /* j > i */
                weighted_rows_sum(ds, 1, args->k, args->qkv_stride, hv.b, hv.h, j0, visible, D,
                                  dq + (size_t)i * D);
            }
            for (int jj = 0; jj < keys; jj++) {
                weighted_rows_sum(s.ds_tile + jj, KEY_BLOCK, args->q, args->qkv_stride, hv.b,
                                  hv.h, i0, queries, D, dk + (size_t)(j0 + jj) * D);
                weighted_rows_sum(s.p_tile + jj, KEY_BLOCK, args->dout, args->out_stride, hv.b,
                                  hv.h, i0, queries, D, dv + (size_t)(j0 + jj) * D);
            }
        }
    }
    for (int t = 0; t < T; t++) {
        axpy(args->scale, dq + (size_t)t * D, row_at(args->dq, args->qkv_stride, hv.b, hv.h, t), D);
        axpy(args->scale, dk + (size_t)t * D, row_at(args->dk, args->qkv_stride, hv.b, hv.h, t), D);
        axpy(1.0f, dv + (size_t)t * D, row_at(args->dv, args->qkv_stride, hv.b, hv.h, t), D);
    }
}

/* delta (B, H, T) = rowwise dO . O */
static void attention_delta(const tw_attention_args *args, float *delta) {
    const int64_t rows = (int64_t)args->batch * args->heads * args->seq_len;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int t = (int)(r % args->seq_len);
        const int64_t bh = r / args->seq_len;
        const int b = (int)(bh / args->heads), h = (int)(bh % args->heads);
        delta[r] = dot(row_at(args->dout, args->out_stride, b, h, t),
                       row_at(args->out, args->out_stride, b, h, t), args->head_dim);
    }
}

/* Both drivers return true when a thread could not get its scratch. */
static bool backward_by_heads(const tw_attention_args *args, const float *delta) {
    const int T = args->seq_len, D = args->head_dim;
    const int64_t heads = (int64_t)args->batch * args->heads;
    bool out_of_memory = false;
#pragma omp parallel
    {
        float *base = scratch_alloc(D);
        float *grads = malloc(3 * (size_t)T * D * sizeof *grads);
        if (!base || !grads) {
#pragma omp atomic write
            out_of_memory = true;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < heads; bh++)
            if (base && grads) backward_head(view_of(args, bh, delta), scratch_split(base, D), grads);
        free(base);
        free(grads);
    }
    return out_of_memory;
}

static bool backward_by_blocks(const tw_attention_args *args, const float *delta) {
    const int T = args->seq_len, D = args->head_dim;
    const int64_t heads = (int64_t)args->batch * args->heads;
    const int query_blocks = (T + QUERY_BLOCK - 1) / QUERY_BLOCK;
    const int key_blocks = (T + KEY_BLOCK - 1) / KEY_BLOCK;
    bool out_of_memory = false;
#pragma omp parallel
    {
        float *base = scratch_alloc(D);
        if (!base) {
#pragma omp atomic write
            out_of_memory = true;
        }
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t task = 0; task < heads * query_blocks; task++) {
            if (!base) continue;
            const int i0 = (int)(task % query_blocks) * QUERY_BLOCK;
            const int i1 = i0 + QUERY_BLOCK < T ? i0 + QUERY_BLOCK : T;
            backward_dq_block(view_of(args, task / query_blocks, delta), i0, i1,
                              scratch_split(base, D));
        }
        /* dq and dk/dv are different rows, so the two loops need no barrier between them. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < heads * key_blocks; task++) {
            if (!base) continue;
            const int j0 = (int)(task % key_blocks) * KEY_BLOCK;
            const int j1 = j0 + KEY_BLOCK < T ? j0 + KEY_BLOCK : T;
            backward_dkv_block(view_of(args, task / key_blocks, delta), j0, j1,
                               scratch_split(base, D));
        }
        free(base);
    }
    return out_of_memory;
}

tw_status tw_cpu_attention_bwd(void *context, const tw_attention_args *args) {
    tw_cpu_context *cpu = context;
    const int T = args->seq_len;
    const int64_t heads = (int64_t)args->batch * args->heads;
    tw_buffer *delta_buffer = NULL;
    tw_status status =
        tw_buffer_alloc(cpu->device, (size_t)(heads * T) * sizeof(float), &delta_buffer);
    if (status != TW_OK) return status;
    float *delta = tw_cpu_f32(tw_at(delta_buffer, 0));
    attention_delta(args, delta);

    bool out_of_memory = false;
    /* Enough heads to keep every thread busy: one thread per head, one pass. Otherwise the
     * blocks of a head are shared out, at the price of computing P and dS twice. */
    if (heads >= 2 * (int64_t)omp_get_max_threads())
        out_of_memory = backward_by_heads(args, delta);
    else
        out_of_memory = backward_by_blocks(args, delta);
    tw_buffer_free(delta_buffer);
    if (out_of_memory) return tw_error(TW_ERR_OUT_OF_MEMORY, "attention_bwd: out of host memory");
    return TW_OK;
}
