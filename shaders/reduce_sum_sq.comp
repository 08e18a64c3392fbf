#version 450
// twist: sum of squares for global-norm clipping, first level (host side: backends/vulkan/vk_ops.c).
// x (n) is cut into parts contiguous chunks of `chunk` elements (the cut depends only on n);
// workgroup q sums the squares of chunk q (invocation l takes elements l, l + WG, ... of it, in
// order; then the workgroup tree) into partials[q]. The second level, reduce_sum_sq_final.comp,
// adds the partials. Float accumulation: each invocation's run is short, so the error stays near
// that of a pairwise sum.
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { TW_T x[]; };
layout(std430, set = 0, binding = 1) buffer Partials { float partials[]; };

layout(push_constant) uniform Push {
    uint n, chunk, parts;
    uint x_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint q = gl_WorkGroupID.x; q < p.parts; q += gl_NumWorkGroups.x) {
        uint begin = q * p.chunk;
        uint count = min(p.chunk, p.n - begin);
        float sum = 0.0;
        for (uint k = lid; k < count; k += TW_WG) {
            float v = TW_LD(x, p.x_off + begin + k);
            sum += v * v;
        }
        sum = tw_wg_sum(sum);
        if (lid == 0) partials[q] = sum;
    }
}
