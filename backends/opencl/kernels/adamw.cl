/* twist OpenCL kernels: AdamW with decoupled weight decay, in place (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl: grad is TW_T; param (the fp32 master weights),
 * m and v stay float. The bias corrections 1 - beta^step are computed once on the host (in
 * double). */
__kernel void tw_adamw(ulong n, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float grad_scale, float correction1, float correction2,
                       __global float *param, ulong param_off, __global const TW_T *grad,
                       ulong grad_off, __global float *m, ulong m_off, __global float *v,
                       ulong v_off) {
    size_t i = get_global_id(0);
    if (i >= n) return;
    float g = grad_scale * TW_LD(grad, grad_off + i);
    float mi = beta1 * m[m_off + i] + (1.0f - beta1) * g;
    float vi = beta2 * v[v_off + i] + (1.0f - beta2) * g * g;
    m[m_off + i] = mi;
    v[v_off + i] = vi;
    float m_hat = mi / correction1;
    float v_hat = vi / correction2;
    float p = param[param_off + i];
    param[param_off + i] = p - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p);
}
