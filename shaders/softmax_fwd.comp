#version 450
// twist: row softmax, optionally causal (host side: backends/vulkan/vk_ops.c).
// in, out (rows, cols); with causal_t > 0, row r sees columns 0 ..= r mod causal_t and the rest
// get probability 0. One workgroup per row (rows beyond the dispatch loop), invocations stride
// over the columns. out may alias in: every element is read before the barrier that precedes
// the writes, and each is then rewritten by the invocation that reads it.
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer In { TW_T x[]; };
layout(std430, set = 0, binding = 1) buffer Out { TW_T y[]; };

layout(push_constant) uniform Push {
    uint rows, cols, causal_t;
    uint in_off, out_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        uint visible = p.causal_t > 0 ? min(p.cols, r % p.causal_t + 1) : p.cols;
        uint src = p.in_off + r * p.cols, dst = p.out_off + r * p.cols;
        float m = -1.0 / 0.0, s = 0.0;
        uint arg = 0;
        for (uint c = lid; c < visible; c += TW_WG) tw_lse_add(m, s, arg, TW_LD(x, src + c), c);
        tw_wg_lse(m, s, arg);
        float inv = 1.0 / s;
        for (uint c = lid; c < p.cols; c += TW_WG)
            TW_ST(y, dst + c, c < visible ? exp(TW_LD(x, src + c) - m) * inv : 0.0);
    }
}
