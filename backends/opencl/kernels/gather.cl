/* twist OpenCL kernels: gather and scatter of matrix rows and columns (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl (src and dst TW_T). One work-item per moved
 * element. Indices are in range and, for scatters, distinct (the caller guarantees it), so no
 * two work-items write one element. */

/* dst (count, cols)[i][c] = src (src_rows, cols)[idx[i]][c] */
__kernel void tw_gather_rows(int count, int cols, __global const int *idx, ulong idx_off,
                             __global const TW_T *src, ulong src_off, __global TW_T *dst,
                             ulong dst_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)count * (size_t)cols) return;
    size_t i = e / (size_t)cols, c = e % (size_t)cols;
    TW_ST(dst, dst_off + e, TW_LD(src, src_off + (size_t)idx[idx_off + i] * cols + c));
}

/* dst (dst_rows, cols)[idx[i]][c] (+)= src (count, cols)[i][c] */
__kernel void tw_scatter_rows(int count, int cols, int accumulate, __global const int *idx,
                              ulong idx_off, __global const TW_T *src, ulong src_off,
                              __global TW_T *dst, ulong dst_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)count * (size_t)cols) return;
    size_t i = e / (size_t)cols, c = e % (size_t)cols;
    size_t d = dst_off + (size_t)idx[idx_off + i] * cols + c;
    float value = TW_LD(src, src_off + e);
    TW_ST(dst, d, accumulate ? TW_LD(dst, d) + value : value);
}

/* dst (rows, count)[r][i] = src (rows, src_cols)[r][idx[i]] */
__kernel void tw_gather_cols(int rows, int src_cols, int count, __global const int *idx,
                             ulong idx_off, __global const TW_T *src, ulong src_off,
                             __global TW_T *dst, ulong dst_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)rows * (size_t)count) return;
    size_t r = e / (size_t)count, i = e % (size_t)count;
    TW_ST(dst, dst_off + e, TW_LD(src, src_off + r * src_cols + idx[idx_off + i]));
}

/* dst (rows, dst_cols)[r][idx[i]] (+)= src (rows, count)[r][i] */
__kernel void tw_scatter_cols(int rows, int dst_cols, int count, int accumulate,
                              __global const int *idx, ulong idx_off, __global const TW_T *src,
                              ulong src_off, __global TW_T *dst, ulong dst_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)rows * (size_t)count) return;
    size_t r = e / (size_t)count, i = e % (size_t)count;
    size_t d = dst_off + r * dst_cols + idx[idx_off + i];
    float value = TW_LD(src, src_off + e);
    TW_ST(dst, d, accumulate ? TW_LD(dst, d) + value : value);
}
