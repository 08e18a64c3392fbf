#version 450
// twist: LayerNorm forward over the last dimension (host side: backends/vulkan/vk_ops.c).
// x (rows, cols) -> out (rows, cols) = (x - mean) rstd weight + bias, mean (rows), rstd (rows)
// with rstd = 1 / sqrt(var + eps), var biased. One workgroup per row; the mean and then the
// variance about it are two workgroup sums (two passes over the row, which stays in cache).
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { TW_T x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { TW_T w[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { TW_T b[]; };
layout(std430, set = 0, binding = 3) buffer Out { TW_T y[]; };
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
        for (uint c = lid; c < p.cols; c += TW_WG) sum += TW_LD(x, src + c);
        float mu = tw_wg_sum(sum) / float(p.cols);
        float sq = 0.0;
        for (uint c = lid; c < p.cols; c += TW_WG) {
            float d = TW_LD(x, src + c) - mu;
            sq += d * d;
        }
        float s = 1.0 / sqrt(tw_wg_sum(sq) / float(p.cols) + p.eps);
        for (uint c = lid; c < p.cols; c += TW_WG)
            TW_ST(y, dst + c,
                  (TW_LD(x, src + c) - mu) * s * TW_LD(w, p.w_off + c) + TW_LD(b, p.b_off + c));
        if (lid == 0) {
            mean[p.mean_off + r] = mu;
            rstd[p.rstd_off + r] = s;
        }
    }
}
