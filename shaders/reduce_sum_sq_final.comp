#version 450
// twist: sum of squares, second level (host side: backends/vulkan/vk_ops.c).
// out[0] = the sum of partials (parts), by one workgroup in a fixed order: invocation l adds
// partials l, l + WG, ... then the workgroup tree.
#include "common.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Partials { float partials[]; };
layout(std430, set = 0, binding = 1) buffer Out { float y[]; };

layout(push_constant) uniform Push {
    uint parts;
    uint out_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    float sum = 0.0;
    for (uint q = lid; q < p.parts; q += TW_WG) sum += partials[q];
    sum = tw_wg_sum(sum);
    if (lid == 0) y[p.out_off] = sum;
}
