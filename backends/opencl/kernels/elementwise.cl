/* twist OpenCL kernels: elementwise ops and the linear-layer bias (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl (TW_T storage, TW_LD/TW_ST, float arithmetic).
 * Every tensor is a buffer plus an element offset; one work-item per element unless noted, with
 * the global size rounded up to the work-group size (hence the bounds checks). */

/* out = a + b over n floats; out may alias a or b (each element read before written). */
__kernel void tw_add(ulong n, __global const TW_T *a, ulong a_off, __global const TW_T *b,
                     ulong b_off, __global TW_T *out, ulong out_off) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    TW_ST(out, out_off + i, TW_LD(a, a_off + i) + TW_LD(b, b_off + i));
}

/* out = alpha * x. */
__kernel void tw_scale(ulong n, float alpha, __global const TW_T *x, ulong x_off,
                       __global TW_T *out, ulong out_off) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    TW_ST(out, out_off + i, alpha * TW_LD(x, x_off + i));
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

/* gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); out may alias x. */
__kernel void tw_gelu_fwd(ulong n, __global const TW_T *x, ulong x_off, __global TW_T *out,
                          ulong out_off) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float v = TW_LD(x, x_off + i);
    TW_ST(out, out_off + i, 0.5f * v * (1.0f + tanh(GELU_K * (v + GELU_C * v * v * v))));
}

/* tanh(u) and sech^2(u) = 1 - tanh^2(u) from e = exp(-2|u|), both accurate for every u: some
 * OpenCL tanh implementations (PoCL's) saturate at 0.99999994, and 1 - t*t then leaves 1.2e-7
 * where the gradient multiplies it by a term that grows like x^3. */
void tanh_and_sech2(float u, float *t, float *sech2) {
    const float e = exp(-2.0f * fabs(u));
    const float magnitude = (1.0f - e) / (1.0f + e);
    *t = u < 0.0f ? -magnitude : magnitude;
    *sech2 = 4.0f * e / ((1.0f + e) * (1.0f + e));
}

/* dx += gelu'(x) dout */
__kernel void tw_gelu_bwd(ulong n, __global const TW_T *x, ulong x_off,
                          __global const TW_T *dout, ulong dout_off, __global TW_T *dx,
                          ulong dx_off) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float v = TW_LD(x, x_off + i);
    float t, sech2;
    tanh_and_sech2(GELU_K * (v + GELU_C * v * v * v), &t, &sech2);
    float grad = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
    TW_ST(dx, dx_off + i, TW_LD(dx, dx_off + i) + grad * TW_LD(dout, dout_off + i));
}

/* out (rows, cols) += bias (cols): one work-item per element. */
__kernel void tw_bias_add(int rows, int cols, __global const TW_T *bias, ulong bias_off,
                          __global TW_T *out, ulong out_off) {
    size_t i = get_global_id(0);
    if (i >= (size_t)rows * (size_t)cols) return;
    TW_ST(out, out_off + i, TW_LD(out, out_off + i) + TW_LD(bias, bias_off + i % (size_t)cols));
}

/* dbias (cols) += column sums of dout (rows, cols): one work-item per column summing rows in
 * order, so the result is the same bits on every run (no atomics). Neighbouring work-items read
 * neighbouring columns, so loads coalesce on GPUs. */
__kernel void tw_bias_bwd(int rows, int cols, __global const TW_T *dout, ulong dout_off,
                          __global TW_T *dbias, ulong dbias_off) {
    int c = get_global_id(0);
    if (c >= cols) return;
    __global const TW_T *column = dout + dout_off + c;
    float sum = 0.0f;
    for (int r = 0; r < rows; r++) sum += TW_LD(column, (size_t)r * cols);
    TW_ST(dbias, dbias_off + c, TW_LD(dbias, dbias_off + c) + sum);
}
