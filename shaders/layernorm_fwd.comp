#version 450
// twist: LayerNorm forward over the last dimension (host side: backends/vulkan/vk_ops.c).
// x (rows, cols) -> out (rows, cols) = (x - mean) rstd weight + bias, mean (rows), rstd (rows)
// with rstd = 1 / sqrt(var + eps), var biased. One workgroup per row; the mean and then the
// variance about it are two workgroup sums (two passes over the row, which stays in cache).
#include "common.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 3) buffer Out { float y[]; };
layout(std430, set = 0, binding = 4) buffer Mean { float mean[]; };
layout(std430, set = 0, binding = 5) buffer Rstd { float rstd[]; };

layout(push_constant) uniform Push {
    uint rows, cols;
    float eps;
    uint x_off, w_off, b_off, out_off, mean_off, rstd_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        uint src = p.x_off + r * p.cols, dst = p.out_off + r * p.cols;
        float sum = 0.0;
        for (uint c = lid; c < p.cols; c += TW_WG) sum += x[src + c];
        float mu = tw_wg_sum(sum) / float(p.cols);
        float sq = 0.0;
        for (uint c = lid; c < p.cols; c += TW_WG) {
            float d = x[src + c] - mu;
            sq += d * d;
        }
        float s = 1.0 / sqrt(tw_wg_sum(sq) / float(p.cols) + p.eps);
        for (uint c = lid; c < p.cols; c += TW_WG)
            y[dst + c] = (x[src + c] - mu) * s * w[p.w_off + c] + b[p.b_off + c];
        if (lid == 0) {
            mean[p.mean_off + r] = mu;
            rstd[p.rstd_off + r] = s;
        }
    }
}
