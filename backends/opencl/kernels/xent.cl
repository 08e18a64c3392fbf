/* twist OpenCL kernels: fused softmax + cross-entropy (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl: logits and dlogits are TW_T, losses, lse and
 * correct float. logits (N, ld) of which the first V columns are classes; targets (N) int32,
 * < 0 = ignored. */

/* One work-item per row: lse (N) = log sum exp, losses (N) = lse - logit[target] (0 if
 * ignored), correct (N) = 1 where target is the argmax (first maximum on ties). */
__kernel void tw_xent_fwd(int rows, int vocab, int ld, __global const TW_T *logits,
                          ulong logits_off, __global const int *targets, ulong targets_off,
                          __global float *losses, ulong losses_off, __global float *lse,
                          ulong lse_off, __global float *correct, ulong correct_off) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const TW_T *x = logits + logits_off + (size_t)r * ld;
    float mx = TW_LD(x, 0);
    int argmax = 0;
    for (int c = 1; c < vocab; c++) {
        float xc = TW_LD(x, c);
        if (xc > mx) { /* strict: the first maximum wins ties */
            mx = xc;
            argmax = c;
        }
    }
    float sum = 0.0f;
    for (int c = 0; c < vocab; c++) sum += exp(TW_LD(x, c) - mx);
    float row_lse = mx + log(sum);
    int t = targets[targets_off + r];
    lse[lse_off + r] = row_lse;
    losses[losses_off + r] = t >= 0 ? row_lse - TW_LD(x, t) : 0.0f;
    correct[correct_off + r] = (t >= 0 && t == argmax) ? 1.0f : 0.0f;
}

/* dlogits (N, ld) += grad_scale (softmax - onehot) on the V class columns of valid rows; one
 * work-item per (row, class). */
__kernel void tw_xent_bwd(int rows, int vocab, int ld, float grad_scale,
                          __global const TW_T *logits, ulong logits_off,
                          __global const int *targets, ulong targets_off,
                          __global const float *lse, ulong lse_off, __global TW_T *dlogits,
                          ulong dlogits_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)rows * (size_t)vocab) return;
    int r = e / (size_t)vocab, c = e % (size_t)vocab;
    int t = targets[targets_off + r];
    if (t < 0) return;
    size_t at = (size_t)r * ld + c;
    float p = exp(TW_LD(logits, logits_off + at) - lse[lse_off + r]);
    TW_ST(dlogits, dlogits_off + at,
          TW_LD(dlogits, dlogits_off + at) + grad_scale * (p - (c == t ? 1.0f : 0.0f)));
}
