/* twist: own tiled SGEMM kernels for the OpenCL backend (host side: gemm_own.c).
 *
 * All kernels compute, for batch index p = get_global_id(2),
 *     C_p (M, N) = alpha * op(A_p) (M, K) * op(B_p) (K, N) + beta * C_p
 * and never read C when beta == 0 (NaNs in C must not propagate). Offsets, leading dimensions
 * and batch strides are in elements and need no alignment: vector loads use vloadN, which only
 * needs float alignment. One program holds one kernel, chosen with a -D option:
 *
 *   TW_GEMM_VEC    (CPU devices) no local memory, no barriers. Each work-item owns a (WM, WN*VW)
 *                  register tile and runs the whole K loop: per k it loads WN vectors of a row of
 *                  B' (contiguous along N) and broadcasts WM scalars of A' (any strides), like a
 *                  BLAS micro-kernel. The host maps every transpose case with a B operand
 *                  contiguous along a C dimension onto it (swapping A and B, i.e. computing C^T,
 *                  when only op(A) is contiguous along M). Edges: rows past M are clamped to
 *                  row M-1 and not stored; a vector crossing column N is loaded from N-VW instead
 *                  so that every load stays a whole in-bounds vector.
 *   TW_GEMM_DOT    (CPU devices) C = A B^T with both operands contiguous along K: each work-item
 *                  owns a (WM, WN) tile of dot products, vectorised along K, with a scalar tail.
 *                  Why no local memory on CPUs: a CPU OpenCL compiler (PoCL) runs a work-group
 *                  as a loop over work-items split at each barrier, so every work-item's
 *                  accumulators go through memory at every barrier; local memory is just cache.
 *                  TW_GEMM_TILED measures 3-7 GFLOP/s on PoCL where these reach ~200.
 *   TW_GEMM_TILED  (GPUs) the classic local-memory tiling: a work-group of (TN/WN, TM/WM)
 *                  work-items stages (TM, TK) of op(A) and (TK, TN) of op(B) in padded local
 *                  memory, each work-item accumulates a (WM, WN) register tile whose rows and
 *                  columns are strided by the work-group size, so global loads and stores
 *                  coalesce and local reads do not conflict.
 *
 * Options: WM, WN (register tile), VW (vector width: 1, 2, 4, 8 or 16), USE_FMA (the device has
 * hardware fma; otherwise a*b+c is left for the compiler to contract), C_UNIT (TW_GEMM_VEC: C'
 * has unit column stride, so rows of the tile are stored as vectors), TM, TN, TK, PAD, TRANS_A,
 * TRANS_B (TW_GEMM_TILED). */

#ifndef VW
#define VW 1
#endif

#ifdef USE_FMA
#define MAD(a, b, c) fma((a), (b), (c))
#else
#define MAD(a, b, c) ((a) * (b) + (c))
#endif

#define TW_CAT2(a, b) a##b
#define TW_CAT(a, b) TW_CAT2(a, b)

#if VW == 1
typedef float floatv;
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#else
typedef TW_CAT(float, VW) floatv;
#define VLOAD(p) TW_CAT(vload, VW)(0, (p))
#define VSTORE(v, p) TW_CAT(vstore, VW)((v), 0, (p))
#endif

/* alpha * acc + beta * c, with c not read when beta == 0. */
#define TW_EPILOGUE(acc, cptr) \
    ((beta == 0.0f) ? alpha * (acc) : MAD(alpha, (acc), beta * *(cptr)))

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_VEC: C' (M, N) = alpha A' (M, K) B' (K, N) + beta C'.
 *   A'[r][k] at A[r * a_rs + k * a_ks];  B'[k][c] at B[k * b_ks + c];  C'[r][c] at C[r * c_rs +
 *   c * c_cs] (c_cs == 1 when C_UNIT). Work-item (x, y) owns rows y*WM.., columns x*WN*VW...
 * ---------------------------------------------------------------------------------------------- */
#ifdef TW_GEMM_VEC

/* VW columns of a row of B' from column c on, lanes past column n - 1 reading column n - 1:
 * only for n < VW, where no whole vector fits. */
floatv load_cols_clamped(const __global float *row, int c, int n) {
    float lanes[VW];
    for (int l = 0; l < VW; ++l) lanes[l] = row[min(c + l, n - 1)];
    return VLOAD(lanes);
}

__kernel void tw_gemm_vec(int M, int N, int K, float alpha, float beta,
                          const __global float *A, ulong a_off, long a_rs, long a_ks, long a_batch,
                          const __global float *B, ulong b_off, long b_ks, long b_batch,
                          __global float *C, ulong c_off, long c_rs, long c_cs, long c_batch) {
    const int col0 = (int)get_global_id(0) * (WN * VW);
    const int row0 = (int)get_global_id(1) * WM;
    if (row0 >= M || col0 >= N) return; /* padding of the global size */
    const long p = (long)get_global_id(2);
    A += a_off + p * a_batch;
    B += b_off + p * b_batch;
    C += c_off + p * c_batch;

    /* Rows past M read row M-1 (valid memory); their results are not stored. */
    long a_row[WM];
#pragma unroll
    for (int r = 0; r < WM; ++r) a_row[r] = (long)min(row0 + r, M - 1) * a_rs;

    /* Vector t owns columns col0 + t*VW ... At the right edge it loads the last VW columns
     * instead (first[t] = N - VW), so every load stays a whole vector; lanes left of its own
     * columns belong to a neighbour and are not stored. */
    int first[WN];
#pragma unroll
    for (int t = 0; t < WN; ++t) first[t] = N < VW ? col0 + t * VW : min(col0 + t * VW, N - VW);

    floatv acc[WM][WN];
#pragma unroll
    for (int r = 0; r < WM; ++r)
#pragma unroll
        for (int t = 0; t < WN; ++t) acc[r][t] = (floatv)0.0f;

    const __global float *a_k = A;
    const __global float *b_k = B;
    if (N >= VW) {
        for (int k = 0; k < K; ++k) {
            floatv b[WN];
#pragma unroll
            for (int t = 0; t < WN; ++t) b[t] = VLOAD(b_k + first[t]);
#pragma unroll
            for (int r = 0; r < WM; ++r) {
                const floatv a = (floatv)a_k[a_row[r]];
#pragma unroll
                for (int t = 0; t < WN; ++t) acc[r][t] = MAD(a, b[t], acc[r][t]);
            }
            a_k += a_ks;
            b_k += b_ks;
        }
    } else {
        for (int k = 0; k < K; ++k) {
            floatv b[WN];
#pragma unroll
            for (int t = 0; t < WN; ++t) b[t] = load_cols_clamped(b_k, first[t], N);
#pragma unroll
            for (int r = 0; r < WM; ++r) {
                const floatv a = (floatv)a_k[a_row[r]];
#pragma unroll
                for (int t = 0; t < WN; ++t) acc[r][t] = MAD(a, b[t], acc[r][t]);
            }
            a_k += a_ks;
            b_k += b_ks;
        }
    }

#pragma unroll
    for (int r = 0; r < WM; ++r) {
        if (row0 + r >= M) break;
        __global float *c_row = C + (long)(row0 + r) * c_rs;
#pragma unroll
        for (int t = 0; t < WN; ++t) {
            const int own = col0 + t * VW; /* first column this vector owns */
#ifdef C_UNIT
            if (first[t] == own && own + VW <= N) {
                floatv out = alpha * acc[r][t];
                if (beta != 0.0f) out = MAD((floatv)beta, VLOAD(c_row + own), out);
                VSTORE(out, c_row + own);
                continue;
            }
#endif
            float lanes[VW];
            VSTORE(acc[r][t], lanes);
            for (int l = 0; l < VW; ++l) {
                const int c = first[t] + l;
                if (c < own || c >= N) continue;
                __global float *dst = c_row + (long)c * c_cs;
                *dst = TW_EPILOGUE(lanes[l], dst);
            }
        }
    }
}
#endif /* TW_GEMM_VEC */

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_DOT: C (M, N) = alpha A (M, K) B (N, K)^T + beta C, rows of A and B contiguous along K.
 * Work-item (x, y) owns rows y*WM.., columns x*WN..; VW consecutive k per step.
 * ---------------------------------------------------------------------------------------------- */
#ifdef TW_GEMM_DOT

float sum_lanes(floatv v) {
#if VW == 16
    const float8 h8 = v.lo + v.hi;
#elif VW == 8
    const float8 h8 = v;
#endif
#if VW >= 8
    const float4 h4 = h8.lo + h8.hi;
#elif VW == 4
    const float4 h4 = v;
#endif
#if VW >= 4
    const float2 h2 = h4.lo + h4.hi;
#elif VW == 2
    const float2 h2 = v;
#endif
#if VW >= 2
    return h2.x + h2.y;
#else
    return v;
#endif
}

__kernel void tw_gemm_dot(int M, int N, int K, float alpha, float beta,
                          const __global float *A, ulong a_off, long lda, long a_batch,
                          const __global float *B, ulong b_off, long ldb, long b_batch,
                          __global float *C, ulong c_off, long ldc, long c_batch) {
    const int col0 = (int)get_global_id(0) * WN;
    const int row0 = (int)get_global_id(1) * WM;
    if (row0 >= M || col0 >= N) return; /* padding of the global size */
    const long p = (long)get_global_id(2);
    A += a_off + p * a_batch;
    B += b_off + p * b_batch;
    C += c_off + p * c_batch;

    /* Rows and columns past the edge read the last valid one; their results are not stored. */
    const __global float *a_row[WM];
    const __global float *b_row[WN];
#pragma unroll
    for (int r = 0; r < WM; ++r) a_row[r] = A + (long)min(row0 + r, M - 1) * lda;
#pragma unroll
    for (int t = 0; t < WN; ++t) b_row[t] = B + (long)min(col0 + t, N - 1) * ldb;

    floatv acc[WM][WN];
#pragma unroll
    for (int r = 0; r < WM; ++r)
#pragma unroll
        for (int t = 0; t < WN; ++t) acc[r][t] = (floatv)0.0f;

    int k = 0;
    for (; k + VW <= K; k += VW) {
        floatv a[WM], b[WN];
#pragma unroll
        for (int r = 0; r < WM; ++r) a[r] = VLOAD(a_row[r] + k);
#pragma unroll
        for (int t = 0; t < WN; ++t) b[t] = VLOAD(b_row[t] + k);
#pragma unroll
        for (int r = 0; r < WM; ++r)
#pragma unroll
            for (int t = 0; t < WN; ++t) acc[r][t] = MAD(a[r], b[t], acc[r][t]);
    }

    float sum[WM][WN];
#pragma unroll
    for (int r = 0; r < WM; ++r)
#pragma unroll
        for (int t = 0; t < WN; ++t) sum[r][t] = sum_lanes(acc[r][t]);
    for (; k < K; ++k) {
#pragma unroll
        for (int r = 0; r < WM; ++r)
#pragma unroll
            for (int t = 0; t < WN; ++t) sum[r][t] = MAD(a_row[r][k], b_row[t][k], sum[r][t]);
    }

#pragma unroll
    for (int r = 0; r < WM; ++r) {
        if (row0 + r >= M) break;
        __global float *c_row = C + (long)(row0 + r) * ldc;
#pragma unroll
        for (int t = 0; t < WN; ++t) {
            if (col0 + t >= N) break;
            c_row[col0 + t] = TW_EPILOGUE(sum[r][t], c_row + col0 + t);
        }
    }
}
#endif /* TW_GEMM_DOT */

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_TILED: local-memory tiling for GPUs. Work-group (LX, LY) = (TN/WN, TM/WM) computes the
 * (TM, TN) tile of C at (group_id(1)*TM, group_id(0)*TN); work-item (tx, ty) owns rows
 * ty + r*LY and columns tx + t*LX.
 * ---------------------------------------------------------------------------------------------- */
#ifdef TW_GEMM_TILED

#define LX (TN / WN)
#define LY (TM / WM)
#define THREADS (LX * LY)
#if (TM * TK) % THREADS != 0 || (TK * TN) % THREADS != 0
#error "every work-item must load the same number of tile elements"
#endif

__kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
tw_gemm_tiled(int M, int N, int K, float alpha, float beta,
              const __global float *A, ulong a_off, long lda, long a_batch,
              const __global float *B, ulong b_off, long ldb, long b_batch,
              __global float *C, ulong c_off, long ldc, long c_batch) {
    /* (TK, TM) of op(A) and (TK, TN) of op(B); PAD keeps strided stores conflict-free. */
    __local float a_tile[TK][TM + PAD];
    __local float b_tile[TK][TN + PAD];

    const int tx = (int)get_local_id(0);
    const int ty = (int)get_local_id(1);
    const int tid = ty * LX + tx;
    const int tile_row = (int)get_group_id(1) * TM;
    const int tile_col = (int)get_group_id(0) * TN;
    const long p = (long)get_global_id(2);
    A += a_off + p * a_batch;
    B += b_off + p * b_batch;
    C += c_off + p * c_batch;

    float acc[WM][WN];
#pragma unroll
    for (int r = 0; r < WM; ++r)
#pragma unroll
        for (int t = 0; t < WN; ++t) acc[r][t] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += TK) {
        /* Consecutive work-items load consecutive addresses of whichever dimension is
         * contiguous in memory; out-of-range elements are zero. */
#pragma unroll
        for (int s = 0; s < TM * TK / THREADS; ++s) {
            const int e = tid + s * THREADS;
#if TRANS_A
            const int i = e % TM, kk = e / TM; /* A stored (K, M) */
            const int gi = tile_row + i, gk = k0 + kk;
            a_tile[kk][i] = (gi < M && gk < K) ? A[(long)gk * lda + gi] : 0.0f;
#else
            const int kk = e % TK, i = e / TK; /* A stored (M, K) */
            const int gi = tile_row + i, gk = k0 + kk;
            a_tile[kk][i] = (gi < M && gk < K) ? A[(long)gi * lda + gk] : 0.0f;
#endif
        }
#pragma unroll
        for (int s = 0; s < TK * TN / THREADS; ++s) {
            const int e = tid + s * THREADS;
#if TRANS_B
            const int kk = e % TK, j = e / TK; /* B stored (N, K) */
            const int gj = tile_col + j, gk = k0 + kk;
            b_tile[kk][j] = (gj < N && gk < K) ? B[(long)gj * ldb + gk] : 0.0f;
#else
            const int j = e % TN, kk = e / TN; /* B stored (K, N) */
            const int gj = tile_col + j, gk = k0 + kk;
            b_tile[kk][j] = (gj < N && gk < K) ? B[(long)gk * ldb + gj] : 0.0f;
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);

#pragma unroll
        for (int kk = 0; kk < TK; ++kk) {
            float a[WM], b[WN];
#pragma unroll
            for (int r = 0; r < WM; ++r) a[r] = a_tile[kk][ty + r * LY];
#pragma unroll
            for (int t = 0; t < WN; ++t) b[t] = b_tile[kk][tx + t * LX];
#pragma unroll
            for (int r = 0; r < WM; ++r)
#pragma unroll
                for (int t = 0; t < WN; ++t) acc[r][t] = MAD(a[r], b[t], acc[r][t]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

#pragma unroll
    for (int r = 0; r < WM; ++r) {
        const int i = tile_row + ty + r * LY;
        if (i >= M) break;
        __global float *c_row = C + (long)i * ldc;
#pragma unroll
        for (int t = 0; t < WN; ++t) {
            const int j = tile_col + tx + t * LX;
            if (j < N) c_row[j] = TW_EPILOGUE(acc[r][t], c_row + j);
        }
    }
}
#endif /* TW_GEMM_TILED */
