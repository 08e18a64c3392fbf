/* twist OpenCL kernels: row softmax, optionally causal (host side: cl_ops.c).
 * One work-item per row, columns in order. Built per data type after kernels/dtype.cl. */

/* out (rows, cols) = softmax of in over each row; with causal_t > 0 columns past r mod causal_t
 * get probability 0. out may alias in: each element is read before it is written. */
__kernel void tw_softmax_fwd(int rows, int cols, int causal_t, __global const TW_T *in,
                             ulong in_off, __global TW_T *out, ulong out_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const TW_T *x = in + in_off + (size_t)r * cols;
    __global TW_T *y = out + out_off + (size_t)r * cols;
    int valid = causal_t > 0 ? min(cols, r % causal_t + 1) : cols;
    float mx = -INFINITY;
    for (int c = 0; c < valid; c++) mx = fmax(mx, TW_LD(x, c));
    float sum = 0.0f;
    for (int c = 0; c < valid; c++) sum += exp(TW_LD(x, c) - mx);
    float inv = 1.0f / sum;
    for (int c = 0; c < valid; c++) TW_ST(y, c, exp(TW_LD(x, c) - mx) * inv);
    for (int c = valid; c < cols; c++) TW_ST(y, c, 0.0f);
}

/* dx += y (dy - sum_c dy y) per row. */
__kernel void tw_softmax_bwd(int rows, int cols, __global const TW_T *y, ulong y_off,
                             __global const TW_T *dy, ulong dy_off, __global TW_T *dx,
                             ulong dx_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    float dot = 0.0f;
    for (int c = 0; c < cols; c++) dot += TW_LD(dy, dy_off + base + c) * TW_LD(y, y_off + base + c);
    for (int c = 0; c < cols; c++)
        TW_ST(dx, dx_off + base + c,
              TW_LD(dx, dx_off + base + c) +
                  TW_LD(y, y_off + base + c) * (TW_LD(dy, dy_off + base + c) - dot));
}
