/* twist OpenCL kernels: row softmax, optionally causal (host side: cl_ops.c).
 * One work-item per row, columns in order. */

/* out (rows, cols) = softmax of in over each row; with causal_t > 0 columns past r mod causal_t
 * get probability 0. out may alias in: each element is read before it is written. */
__kernel void tw_softmax_fwd(int rows, int cols, int causal_t, __global const float *in,
                             ulong in_off, __global float *out, ulong out_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *x = in + in_off + (size_t)r * cols;
    __global float *y = out + out_off + (size_t)r * cols;
    int valid = causal_t > 0 ? min(cols, r % causal_t + 1) : cols;
    float mx = -INFINITY;
    for (int c = 0; c < valid; c++) mx = fmax(mx, x[c]);
    float sum = 0.0f;
    for (int c = 0; c < valid; c++) sum += exp(x[c] - mx);
    float inv = 1.0f / sum;
    for (int c = 0; c < valid; c++) y[c] = exp(x[c] - mx) * inv;
    for (int c = valid; c < cols; c++) y[c] = 0.0f;
}

/* dx += y (dy - sum_c dy y) per row. */
__kernel void tw_softmax_bwd(int rows, int cols, __global const float *y, ulong y_off,
                             __global const float *dy, ulong dy_off, __global float *dx,
                             ulong dx_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    float dot = 0.0f;
    for (int c = 0; c < cols; c++) dot += dy[dy_off + base + c] * y[y_off + base + c];
    for (int c = 0; c < cols; c++)
        dx[dx_off + base + c] += y[y_off + base + c] * (dy[dy_off + base + c] - dot);
}
