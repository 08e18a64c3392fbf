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

#ifdef TW_FAULT_BUILD
/* Test-only (TWIST_CL_TUNE_FAULT=<variant>:build, see cl_gemm.c): a program that fails to build. */
#error "test fault injection: this variant is built to fail"
#endif

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

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_BLOCK: the GPU family (named variants in gemm_own.c: large, large32, wide, medium,
 * small, splitk), after the register-blocked SGEMMs of CLBlast's xgemm and the step-by-step CUDA
 * SGEMM write-ups. A work-group of (BN/TN, BM/TM) work-items computes a (BM, BN) tile of C; each
 * work-item a (TM, TN) register tile. Per step of BK along k, the work-group stages (BK, BM) of
 * op(A) and (BK, BN) of op(B) in local memory, both stored k-major (a_tile[kk][i]) so the inner
 * loop reads rows of both.
 *
 * Options:
 *   BM, BN, BK, TM, TN  tiles; TM, TN multiples of LV
 *   GV                  global load width (1 or 4): vectors along the operand's contiguous
 *                       dimension, used when the host says the operand is 4-float aligned
 *                       (a_vec/b_vec: offset, leading dimension and batch stride multiples of 4)
 *                       and the vector lies wholly inside the matrix; scalar loads otherwise
 *   LV                  local read / C store width (1 or 4). Work-item (tx, ty) owns rows
 *                       (r / LV) * (LY * LV) + ty * LV + r % LV, r < TM (columns likewise), so
 *                       with LV = 4 it reads float4s of local rows (one 128-bit load on GPUs)
 *                       and a warp's 16 tx read 16 consecutive float4s (no bank conflicts);
 *                       with LV = 1 rows are strided by LY (the classic layout)
 *   PAD                 floats of padding per local row (a multiple of LV): the transposing
 *                       stores into a_tile (A contiguous along k) hit different banks
 *   DB                  1: double buffering. Two local tiles; the next step's global loads are
 *                       issued into registers before the current tile's FMAs and stored into the
 *                       other tile afterwards, so one barrier per step and load latency hidden
 *                       behind the FMAs. 0: one tile, two barriers per step.
 *   TRANS_A, TRANS_B    A stored (K, M) / B stored (N, K)
 *   TW_NO_UNROLL        no unroll hints (CPU devices, where the tests run these kernels: PoCL
 *                       then compiles the 128x128 variants in ~9 s instead of ~35 s)
 * Split-K (deterministic, no atomics): get_global_id(2) = p * splits + s; split s covers
 * k in [s * k_chunk, min(K, (s + 1) * k_chunk)) (k_chunk a multiple of BK) and, when splits > 1,
 * writes its raw sums to W[((p * splits + s) * M + i) * N + j]; tw_gemm_reduce then adds the
 * splits in order s = 0, 1, ... and applies alpha and beta. With splits == 1, W is unused and
 * the epilogue writes C directly.
 * ---------------------------------------------------------------------------------------------- */
#ifdef TW_GEMM_BLOCK

#define LX (BN / TN)
#define LY (BM / TM)
#define THREADS (LX * LY)
#define AP (BM + PAD) /* local row pitches (floats) */
#define BP (BN + PAD)
#define A_LOADS (BM * BK / GV / THREADS) /* global vectors per work-item per step */
#define B_LOADS (BK * BN / GV / THREADS)
#if (BM * BK / GV) % THREADS != 0 || (BK * BN / GV) % THREADS != 0
#error "every work-item must load the same number of tile vectors"
#endif
#if TM % LV != 0 || TN % LV != 0 || PAD % LV != 0 || BK % GV != 0
#error "tile sizes must be multiples of the vector widths"
#endif

#if GV == 4
typedef float4 gvec;
#define GZERO ((float4)0.0f)
#else
typedef float gvec;
#define GZERO 0.0f
#endif

/* Element e of a gvec. */
#if GV == 4
#define GLANE(v, e) ((e) == 0 ? (v).x : (e) == 1 ? (v).y : (e) == 2 ? (v).z : (v).w)
#else
#define GLANE(v, e) (v)
#endif

/* Loads vector number v (GV consecutive elements along the contiguous dimension) of a
 * (rows, cols) row-major view at (row0, col0) of a matrix whose element (r, c) lies at
 * base[r * ld + c], rows < row_end and cols < col_end valid; zeros outside. */
gvec load_vec(const __global float *base, long ld, int row, int col, int row_end,
                     int col_end, int aligned) {
#if GV == 4
    if (row < row_end && aligned && col + 3 < col_end)
        return *(const __global float4 *)(base + (long)row * ld + col);
    float4 v = (float4)0.0f;
    if (row < row_end) {
        const __global float *p = base + (long)row * ld;
        if (col < col_end) v.x = p[col];
        if (col + 1 < col_end) v.y = p[col + 1];
        if (col + 2 < col_end) v.z = p[col + 2];
        if (col + 3 < col_end) v.w = p[col + 3];
    }
    return v;
#else
    (void)aligned;
    return (row < row_end && col < col_end) ? base[(long)row * ld + col] : 0.0f;
#endif
}

/* One step's global loads into registers: vector v of A's tile and of B's tile. In memory A's
 * tile is (BM, BK) contiguous along k (or (BK, BM) contiguous along m when TRANS_A); vectors are
 * numbered along the contiguous dimension first so that consecutive work-items read
 * consecutive addresses. */
#define A_VROW(v) ((v) / (TRANS_A ? BM / GV : BK / GV))
#define A_VCOL(v) ((v) % (TRANS_A ? BM / GV : BK / GV) * GV)
#define B_VROW(v) ((v) / (TRANS_B ? BK / GV : BN / GV))
#define B_VCOL(v) ((v) % (TRANS_B ? BK / GV : BN / GV) * GV)

void load_tiles(gvec ra[A_LOADS], gvec rb[B_LOADS], const __global float *A, long lda,
                       const __global float *B, long ldb, int M, int N, int k0, int k_end,
                       int tile_row, int tile_col, int tid, int a_vec, int b_vec) {
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int s = 0; s < A_LOADS; ++s) {
        const int v = tid + s * THREADS;
#if TRANS_A
        ra[s] = load_vec(A, lda, k0 + A_VROW(v), tile_row + A_VCOL(v), k_end, M, a_vec);
#else
        ra[s] = load_vec(A, lda, tile_row + A_VROW(v), k0 + A_VCOL(v), M, k_end, a_vec);
#endif
    }
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int s = 0; s < B_LOADS; ++s) {
        const int v = tid + s * THREADS;
#if TRANS_B
        rb[s] = load_vec(B, ldb, tile_col + B_VROW(v), k0 + B_VCOL(v), N, k_end, b_vec);
#else
        rb[s] = load_vec(B, ldb, k0 + B_VROW(v), tile_col + B_VCOL(v), k_end, N, b_vec);
#endif
    }
}

/* The registers of load_tiles into the k-major local tiles at, (BK, AP) and (BK, BP) floats. */
void store_tiles(const gvec ra[A_LOADS], const gvec rb[B_LOADS], __local float *at,
                        __local float *bt, int tid) {
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int s = 0; s < A_LOADS; ++s) {
        const int v = tid + s * THREADS;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int e = 0; e < GV; ++e) {
#if TRANS_A
            at[A_VROW(v) * AP + A_VCOL(v) + e] = GLANE(ra[s], e);
#else
            at[(A_VCOL(v) + e) * AP + A_VROW(v)] = GLANE(ra[s], e);
#endif
        }
    }
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int s = 0; s < B_LOADS; ++s) {
        const int v = tid + s * THREADS;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int e = 0; e < GV; ++e) {
#if TRANS_B
            bt[(B_VCOL(v) + e) * BP + B_VROW(v)] = GLANE(rb[s], e);
#else
            bt[B_VROW(v) * BP + B_VCOL(v) + e] = GLANE(rb[s], e);
#endif
        }
    }
}

/* Row r of the work-item's register tile within the work-group tile (columns alike). */
#define OWN_ROW(ty, r) (((r) / LV) * (LY * LV) + (ty) * LV + (r) % LV)
#define OWN_COL(tx, t) (((t) / LV) * (LX * LV) + (tx) * LV + (t) % LV)

/* acc += the (TM, TN) products of one local tile pair. */
void multiply_tiles(float acc[TM][TN], const __local float *at, const __local float *bt,
                           int tx, int ty) {
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int kk = 0; kk < BK; ++kk) {
        float a[TM], b[TN];
#if LV == 4
        const __local float4 *a_row = (const __local float4 *)(at + kk * AP + ty * 4);
        const __local float4 *b_row = (const __local float4 *)(bt + kk * BP + tx * 4);
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int g = 0; g < TM / 4; ++g) {
            const float4 v = a_row[g * LY];
            a[4 * g] = v.x, a[4 * g + 1] = v.y, a[4 * g + 2] = v.z, a[4 * g + 3] = v.w;
        }
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int g = 0; g < TN / 4; ++g) {
            const float4 v = b_row[g * LX];
            b[4 * g] = v.x, b[4 * g + 1] = v.y, b[4 * g + 2] = v.z, b[4 * g + 3] = v.w;
        }
#else
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int r = 0; r < TM; ++r) a[r] = at[kk * AP + OWN_ROW(ty, r)];
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int t = 0; t < TN; ++t) b[t] = bt[kk * BP + OWN_COL(tx, t)];
#endif
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int r = 0; r < TM; ++r)
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
            for (int t = 0; t < TN; ++t) acc[r][t] = MAD(a[r], b[t], acc[r][t]);
    }
}

__kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
tw_gemm_block(int M, int N, int K, float alpha, float beta,
              const __global float *A, ulong a_off, long lda, long a_batch, int a_vec,
              const __global float *B, ulong b_off, long ldb, long b_batch, int b_vec,
              __global float *C, ulong c_off, long ldc, long c_batch, int c_vec,
              int splits, int k_chunk, __global float *W) {
    /* float4 arrays so that the float4 reads of multiply_tiles are aligned. */
    __local float4 a_local[(DB + 1) * BK * AP / 4 + 1];
    __local float4 b_local[(DB + 1) * BK * BP / 4 + 1];
    __local float *at = (__local float *)a_local;
    __local float *bt = (__local float *)b_local;

    const int tx = (int)get_local_id(0);
    const int ty = (int)get_local_id(1);
    const int tid = ty * LX + tx;
    const int tile_row = (int)get_group_id(1) * BM;
    const int tile_col = (int)get_group_id(0) * BN;
    const int z = (int)get_global_id(2);
    const long p = z / splits;
    const int split = z % splits;
    A += a_off + p * a_batch;
    B += b_off + p * b_batch;
    const int k_begin = split * k_chunk;
    const int k_end = min(K, k_begin + k_chunk);

    float acc[TM][TN];
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int r = 0; r < TM; ++r)
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int t = 0; t < TN; ++t) acc[r][t] = 0.0f;

    gvec ra[A_LOADS], rb[B_LOADS];
#if DB
    if (k_begin < k_end) {
        load_tiles(ra, rb, A, lda, B, ldb, M, N, k_begin, k_end, tile_row, tile_col, tid, a_vec,
                   b_vec);
        store_tiles(ra, rb, at, bt, tid);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more)
            load_tiles(ra, rb, A, lda, B, ldb, M, N, k0 + BK, k_end, tile_row, tile_col, tid,
                       a_vec, b_vec);
        multiply_tiles(acc, at + cur * BK * AP, bt + cur * BK * BP, tx, ty);
        /* The other buffer was last read in the previous step, which every work-item finished
         * before the barrier that ended it. */
        if (more) store_tiles(ra, rb, at + (cur ^ 1) * BK * AP, bt + (cur ^ 1) * BK * BP, tid);
        barrier(CLK_LOCAL_MEM_FENCE);
        cur ^= 1;
    }
#else
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        load_tiles(ra, rb, A, lda, B, ldb, M, N, k0, k_end, tile_row, tile_col, tid, a_vec,
                   b_vec);
        store_tiles(ra, rb, at, bt, tid);
        barrier(CLK_LOCAL_MEM_FENCE);
        multiply_tiles(acc, at, bt, tx, ty);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif

    if (splits > 1) {
        /* Raw partial sums, (M, N) dense per (p, split). */
        W += ((long)z * M) * N;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int r = 0; r < TM; ++r) {
            const int i = tile_row + OWN_ROW(ty, r);
            if (i >= M) continue;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
            for (int t = 0; t < TN; ++t) {
                const int j = tile_col + OWN_COL(tx, t);
                if (j < N) W[(long)i * N + j] = acc[r][t];
            }
        }
        return;
    }

    C += c_off + p * c_batch;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
    for (int r = 0; r < TM; ++r) {
        const int i = tile_row + OWN_ROW(ty, r);
        if (i >= M) continue;
        __global float *c_row = C + (long)i * ldc;
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
        for (int g = 0; g < TN / LV; ++g) {
            const int j0 = tile_col + OWN_COL(tx, g * LV);
#if LV == 4
            if (c_vec && j0 + 3 < N) {
                float4 v = alpha * (float4)(acc[r][g * 4], acc[r][g * 4 + 1], acc[r][g * 4 + 2],
                                            acc[r][g * 4 + 3]);
                __global float4 *dst = (__global float4 *)(c_row + j0);
                if (beta != 0.0f) v = MAD((float4)beta, *dst, v);
                *dst = v;
                continue;
            }
#endif
#ifndef TW_NO_UNROLL
#pragma unroll
#endif
            for (int e = 0; e < LV; ++e) {
                const int j = j0 + e;
                if (j < N) c_row[j] = TW_EPILOGUE(acc[r][g * LV + e], c_row + j);
            }
        }
    }
}
#endif /* TW_GEMM_BLOCK */

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_REDUCE: C_p = alpha * sum_s W[p][s] + beta * C_p for split-K, the splits added in
 * order s = 0, 1, ... (deterministic). One work-item per element: (j, i, p) = global id.
 * ---------------------------------------------------------------------------------------------- */
#ifdef TW_GEMM_REDUCE
__kernel void tw_gemm_reduce(int M, int N, float alpha, float beta, int splits,
                             const __global float *W, __global float *C, ulong c_off, long ldc,
                             long c_batch) {
    const int j = (int)get_global_id(0);
    const int i = (int)get_global_id(1);
    const long p = (long)get_global_id(2);
    if (i >= M || j >= N) return;
    const __global float *w = W + (p * splits * M + i) * (long)N + j;
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += w[(long)s * M * N];
    __global float *c = C + c_off + p * c_batch + (long)i * ldc + j;
    *c = TW_EPILOGUE(sum, c);
}
#endif /* TW_GEMM_REDUCE */
