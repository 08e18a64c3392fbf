/* twist OpenCL kernels: LayerNorm over the last dimension (host side: cl_ops.c).
 * Row statistics use one work-item per row looping over the columns in order (deterministic,
 * and on CPU devices a row is one core's sequential stream); the weight and bias gradients use
 * one work-item per column looping over the rows in order. */

/* x (N, C) -> out (N, C), mean (N), rstd (N); variance biased, two passes for accuracy. */
__kernel void tw_layernorm_fwd(int rows, int cols, float eps, __global const float *x,
                               ulong x_off, __global const float *weight, ulong w_off,
                               __global const float *bias, ulong b_off, __global float *out,
                               ulong out_off, __global float *mean, ulong mean_off,
                               __global float *rstd, ulong rstd_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *row = x + x_off + (size_t)r * cols;
    __global float *dst = out + out_off + (size_t)r * cols;
    float sum = 0.0f;
    for (int c = 0; c < cols; c++) sum += row[c];
    float mu = sum / cols;
    float var = 0.0f;
    for (int c = 0; c < cols; c++) {
        float d = row[c] - mu;
        var += d * d;
    }
    float s = 1.0f / sqrt(var / cols + eps);
    for (int c = 0; c < cols; c++)
        dst[c] = (row[c] - mu) * s * weight[w_off + c] + bias[b_off + c];
    mean[mean_off + r] = mu;
    rstd[rstd_off + r] = s;
}

/* dx (N, C) += (w dout - mean_c(w dout) - xhat mean_c(w dout xhat)) rstd, xhat = (x - mean) rstd */
__kernel void tw_layernorm_bwd_dx(int rows, int cols, __global const float *dout, ulong dout_off,
                                  __global const float *x, ulong x_off,
                                  __global const float *weight, ulong w_off,
                                  __global const float *mean, ulong mean_off,
                                  __global const float *rstd, ulong rstd_off, __global float *dx,
                                  ulong dx_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float *dy = dout + dout_off + (size_t)r * cols;
    __global const float *row = x + x_off + (size_t)r * cols;
    __global float *g = dx + dx_off + (size_t)r * cols;
    float mu = mean[mean_off + r], s = rstd[rstd_off + r];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int c = 0; c < cols; c++) {
        float dnorm = weight[w_off + c] * dy[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (row[c] - mu) * s;
    }
    dnorm_mean /= cols;
    dnorm_norm_mean /= cols;
    for (int c = 0; c < cols; c++) {
        float xhat = (row[c] - mu) * s;
        float dnorm = weight[w_off + c] * dy[c];
        g[c] += (dnorm - dnorm_mean - xhat * dnorm_norm_mean) * s;
    }
}

/* dweight (C) += sum_r dout xhat;  dbias (C) += sum_r dout: one work-item per column. */
__kernel void tw_layernorm_bwd_dw(int rows, int cols, __global const float *dout, ulong dout_off,
                                  __global const float *x, ulong x_off,
                                  __global const float *mean, ulong mean_off,
                                  __global const float *rstd, ulong rstd_off,
                                  __global float *dweight, ulong dw_off, __global float *dbias,
                                  ulong db_off) {
    int c = get_global_id(0);
    if (c >= cols) return;
    float dw = 0.0f, db = 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t e = (size_t)r * cols + c;
        float dy = dout[dout_off + e];
        dw += dy * (x[x_off + e] - mean[mean_off + r]) * rstd[rstd_off + r];
        db += dy;
    }
    dweight[dw_off + c] += dw;
    dbias[db_off + c] += db;
}
