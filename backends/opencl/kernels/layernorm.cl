/* twist OpenCL kernels: LayerNorm over the last dimension (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl: x, weight, bias, out and the gradients are TW_T;
 * mean and rstd stay float. Row statistics use one work-item per row looping over the columns
 * in order (deterministic, and on CPU devices a row is one core's sequential stream); the weight
 * and bias gradients use one work-item per column looping over the rows in order. */

/* x (N, C) -> out (N, C), mean (N), rstd (N); variance biased, two passes for accuracy. */
__kernel void tw_layernorm_fwd(int rows, int cols, float eps, __global const TW_T *x,
                               ulong x_off, __global const TW_T *weight, ulong w_off,
                               __global const TW_T *bias, ulong b_off, __global TW_T *out,
                               ulong out_off, __global float *mean, ulong mean_off,
                               __global float *rstd, ulong rstd_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const TW_T *row = x + x_off + (size_t)r * cols;
    __global TW_T *dst = out + out_off + (size_t)r * cols;
    float sum = 0.0f;
    for (int c = 0; c < cols; c++) sum += TW_LD(row, c);
    float mu = sum / cols;
    float var = 0.0f;
    for (int c = 0; c < cols; c++) {
        float d = TW_LD(row, c) - mu;
        var += d * d;
    }
    float s = 1.0f / sqrt(var / cols + eps);
    for (int c = 0; c < cols; c++)
        TW_ST(dst, c, (TW_LD(row, c) - mu) * s * TW_LD(weight, w_off + c) + TW_LD(bias, b_off + c));
    mean[mean_off + r] = mu;
    rstd[rstd_off + r] = s;
}

/* dx (N, C) += (w dout - mean_c(w dout) - xhat mean_c(w dout xhat)) rstd, xhat = (x - mean) rstd */
__kernel void tw_layernorm_bwd_dx(int rows, int cols, __global const TW_T *dout, ulong dout_off,
                                  __global const TW_T *x, ulong x_off,
                                  __global const TW_T *weight, ulong w_off,
                                  __global const float *mean, ulong mean_off,
                                  __global const float *rstd, ulong rstd_off, __global TW_T *dx,
                                  ulong dx_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const TW_T *dy = dout + dout_off + (size_t)r * cols;
    __global const TW_T *row = x + x_off + (size_t)r * cols;
    __global TW_T *g = dx + dx_off + (size_t)r * cols;
    float mu = mean[mean_off + r], s = rstd[rstd_off + r];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int c = 0; c < cols; c++) {
        float dnorm = TW_LD(weight, w_off + c) * TW_LD(dy, c);
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (TW_LD(row, c) - mu) * s;
    }
    dnorm_mean /= cols;
    dnorm_norm_mean /= cols;
    for (int c = 0; c < cols; c++) {
        float xhat = (TW_LD(row, c) - mu) * s;
        float dnorm = TW_LD(weight, w_off + c) * TW_LD(dy, c);
        TW_ST(g, c, TW_LD(g, c) + (dnorm - dnorm_mean - xhat * dnorm_norm_mean) * s);
    }
}

/* dweight (C) += sum_r dout xhat;  dbias (C) += sum_r dout: one work-item per column. */
__kernel void tw_layernorm_bwd_dw(int rows, int cols, __global const TW_T *dout, ulong dout_off,
                                  __global const TW_T *x, ulong x_off,
                                  __global const float *mean, ulong mean_off,
                                  __global const float *rstd, ulong rstd_off,
                                  __global TW_T *dweight, ulong dw_off, __global TW_T *dbias,
                                  ulong db_off) {
    int c = get_global_id(0);
    if (c >= cols) return;
    float dw = 0.0f, db = 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t e = (size_t)r * cols + c;
        float dy = TW_LD(dout, dout_off + e);
        dw += dy * (TW_LD(x, x_off + e) - mean[mean_off + r]) * rstd[rstd_off + r];
        db += dy;
    }
    TW_ST(dweight, dw_off + c, TW_LD(dweight, dw_off + c) + dw);
    TW_ST(dbias, db_off + c, TW_LD(dbias, db_off + c) + db);
}
