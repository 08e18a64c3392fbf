/* twist OpenCL kernels: GEMM on f16 / bf16 storage with fp32 accumulation (host side:
 * cl_gpu16.c). Built per data type after kernels/dtype.cl (A and B are TW_T) with -DTD=<n>.
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * A work-group of TD x TD work-items computes a (TM, TM) tile of C, TM = TD * WPT: each
 * work-item owns WPT x WPT elements strided by TD (neighbouring work-items touch neighbouring
 * columns, so loads and stores of C coalesce). Each k step stages the (TM, BK) slice of op(A)
 * and the (BK, TM) slice of op(B) in local memory as fp32 (zeros outside the matrices, so any
 * shape works), read from global memory along its contiguous dimension whatever the transpose.
 * TD = 16: 256 work-items, 64 x 64 tiles, 8.5 KB of local memory. Group dimension 2 is the batch.
 * Two kernels: C in the data type (tw_gemm16_ct) or fp32 (tw_gemm16_cf). */
#ifndef TD
#define TD 16
#endif
#define WPT 4
#define TM (TD * WPT)
#define BK 16

static void gemm_tile(int m, int n, int k, int trans_a, int trans_b, __global const TW_T *a,
                      ulong a_base, long lda, __global const TW_T *b, ulong b_base, long ldb,
                      __local float (*As)[TM + 1], __local float (*Bs)[TM + 1],
                      float acc[WPT][WPT]) {
    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * TD + tx;
    const int col0 = get_group_id(0) * TM, row0 = get_group_id(1) * TM;
    for (int i = 0; i < WPT; i++)
        for (int j = 0; j < WPT; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += BK) {
        for (int e = lid; e < BK * TM; e += TD * TD) {
            int r, kk;
            if (trans_a) { kk = e / TM; r = e % TM; } else { r = e / BK; kk = e % BK; }
            int row = row0 + r, kg = k0 + kk;
            float value = 0.0f;
            if (row < m && kg < k)
                value = TW_LD(a, a_base + (trans_a ? (ulong)kg * lda + row
                                                   : (ulong)row * lda + kg));
            As[kk][r] = value;
        }
        for (int e = lid; e < BK * TM; e += TD * TD) {
            int c, kk;
            if (trans_b) { c = e / BK; kk = e % BK; } else { kk = e / TM; c = e % TM; }
            int col = col0 + c, kg = k0 + kk;
            float value = 0.0f;
            if (col < n && kg < k)
                value = TW_LD(b, b_base + (trans_b ? (ulong)col * ldb + kg
                                                   : (ulong)kg * ldb + col));
            Bs[kk][c] = value;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < BK; kk++) {
            float av[WPT], bv[WPT];
            for (int i = 0; i < WPT; i++) av[i] = As[kk][ty + i * TD];
            for (int j = 0; j < WPT; j++) bv[j] = Bs[kk][tx + j * TD];
            for (int i = 0; i < WPT; i++)
                for (int j = 0; j < WPT; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* The kernel pair differs only in C's element type: STORE_C / LOAD_C. */
#define TW_GEMM16_KERNEL(name, CTYPE, LOAD_C, STORE_C)                                        \
    __kernel __attribute__((reqd_work_group_size(TD, TD, 1))) void name(                     \
        int m, int n, int k, int trans_a, int trans_b, float alpha, float beta,             \
        __global const TW_T *a, ulong a_off, long lda, long stride_a,                       \
        __global const TW_T *b, ulong b_off, long ldb, long stride_b, __global CTYPE *c,    \
        ulong c_off, long ldc, long stride_c) {                                             \
        __local float As[BK][TM + 1], Bs[BK][TM + 1];                                       \
        float acc[WPT][WPT];                                                                \
        const ulong p = get_group_id(2);                                                    \
        gemm_tile(m, n, k, trans_a, trans_b, a, a_off + p * stride_a, lda, b,               \
                  b_off + p * stride_b, ldb, As, Bs, acc);                                  \
        const int col0 = get_group_id(0) * TM + get_local_id(0);                            \
        const int row0 = get_group_id(1) * TM + get_local_id(1);                            \
        const ulong c_base = c_off + p * stride_c;                                          \
        for (int i = 0; i < WPT; i++) {                                                     \
            int row = row0 + i * TD;                                                        \
            if (row >= m) break;                                                            \
            for (int j = 0; j < WPT; j++) {                                                 \
                int col = col0 + j * TD;                                                    \
                if (col >= n) break;                                                        \
                ulong at = c_base + (ulong)row * ldc + col;                                 \
                float value = alpha * acc[i][j];                                            \
                if (beta != 0.0f) value += beta * LOAD_C(c, at);                            \
                STORE_C(c, at, value);                                                      \
            }                                                                               \
        }                                                                                   \
    }

#define LD_F32(p, i) ((p)[i])
#define ST_F32(p, i, v) ((p)[i] = (v))
TW_GEMM16_KERNEL(tw_gemm16_ct, TW_T, TW_LD, TW_ST)
TW_GEMM16_KERNEL(tw_gemm16_cf, float, LD_F32, ST_F32)
