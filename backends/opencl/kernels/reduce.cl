/* twist OpenCL kernels: sum of squares for global-norm clipping (host side: cl_ops.c).
 *
 * A fixed two-level tree, so the result does not depend on scheduling: work-item p of P sums
 * the contiguous chunk [p * chunk, min(n, (p + 1) * chunk)) in order, then one work-item adds
 * the P partial sums in order. Accumulation is in double where the device has it (the CPU
 * reference accumulates in double), else float. Built per data type after kernels/dtype.cl:
 * x is TW_T; the partials and out stay float. */
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

__kernel void tw_sum_sq_partial(ulong n, ulong chunk, int parts, __global const TW_T *x,
                                ulong x_off, __global float *partials) {
    int p = get_global_id(0);
    if (p >= parts) return;
    ulong begin = (ulong)p * chunk;
    ulong end = min(n, begin + chunk);
    acc_t sum = 0;
    for (ulong i = begin; i < end; i++) {
        acc_t v = TW_LD(x, x_off + i);
        sum += v * v;
    }
    partials[p] = (float)sum;
}

/* out[0] = sum of the partials; a single work-item. */
__kernel void tw_sum_sq_final(int parts, __global const float *partials, __global float *out,
                              ulong out_off) {
    if (get_global_id(0) != 0) return;
    acc_t sum = 0;
    for (int p = 0; p < parts; p++) sum += partials[p];
    out[out_off] = (float)sum;
}
