#version 450
// twist: LayerNorm backward, input gradient (host side: backends/vulkan/vk_ops.c).
// dx (rows, cols) += (dnorm - mean_c(dnorm) - xhat mean_c(dnorm xhat)) rstd per row, with
// xhat = (x - mean) rstd and dnorm = dout weight. One workgroup per row, both row sums in one tree.
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer DOut { TW_T dout[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { TW_T x[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { TW_T w[]; };
layout(std430, set = 0, binding = 3) readonly buffer Mean { float mean[]; };
layout(std430, set = 0, binding = 4) readonly buffer Rstd { float rstd[]; };
layout(std430, set = 0, binding = 5) buffer DX { TW_T dx[]; };

layout(push_constant) uniform Push {
    uint rows, cols;
    uint dout_off, x_off, w_off, mean_off, rstd_off, dx_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        uint base = r * p.cols;
        float mu = mean[p.mean_off + r], s = rstd[p.rstd_off + r];
        float dnorm_sum = 0.0, dnorm_xhat_sum = 0.0;
        for (uint c = lid; c < p.cols; c += TW_WG) {
            float xhat = (TW_LD(x, p.x_off + base + c) - mu) * s;
            float dnorm = TW_LD(dout, p.dout_off + base + c) * TW_LD(w, p.w_off + c);
            dnorm_sum += dnorm;
            dnorm_xhat_sum += dnorm * xhat;
        }
        tw_wg_sum2(dnorm_sum, dnorm_xhat_sum);
        float dnorm_mean = dnorm_sum / float(p.cols);
        float dnorm_xhat_mean = dnorm_xhat_sum / float(p.cols);
        for (uint c = lid; c < p.cols; c += TW_WG) {
            float xhat = (TW_LD(x, p.x_off + base + c) - mu) * s;
            float dnorm = TW_LD(dout, p.dout_off + base + c) * TW_LD(w, p.w_off + c);
            TW_ST(dx, p.dx_off + base + c,
                  TW_LD(dx, p.dx_off + base + c) +
                      (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * s);
        }
    }
}
