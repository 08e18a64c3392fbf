#version 450
// twist: AdamW with decoupled weight decay, in place on param, m, v (n) (host side:
// backends/vulkan/vk_ops.c). The bias corrections 1 - beta^step come from the host, computed as
// the CPU reference does. One invocation per parameter.
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { TW_T grad[]; };
layout(std430, set = 0, binding = 2) buffer M { float m[]; };
layout(std430, set = 0, binding = 3) buffer V { float v[]; };

layout(push_constant) uniform Push {
    uint n;
    float lr, beta1, beta2, eps, weight_decay, grad_scale, correction1, correction2;
    uint param_off, grad_off, m_off, v_off;
} p;

void main() {
    const uint i = tw_global_index();
    if (i < p.n) {
        float g = p.grad_scale * TW_LD(grad, p.grad_off + i);
        float mi = p.beta1 * m[p.m_off + i] + (1.0 - p.beta1) * g;
        float vi = p.beta2 * v[p.v_off + i] + (1.0 - p.beta2) * g * g;
        m[p.m_off + i] = mi;
        v[p.v_off + i] = vi;
        float m_hat = mi / p.correction1, v_hat = vi / p.correction2;
        float w = param[p.param_off + i];
        param[p.param_off + i] = w - p.lr * (m_hat / (sqrt(v_hat) + p.eps) + p.weight_decay * w);
    }
}
