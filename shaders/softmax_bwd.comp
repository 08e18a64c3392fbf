#version 450
// twist: row softmax backward (host side: backends/vulkan/vk_ops.c).
// dx (rows, cols) += y (dy - sum_c dy y) per row, y the forward output. One workgroup per row.
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Y { TW_T y[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { TW_T dy[]; };
layout(std430, set = 0, binding = 2) buffer DX { TW_T dx[]; };

layout(push_constant) uniform Push {
    uint rows, cols;
    uint y_off, dy_off, dx_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        uint base = r * p.cols;
        float dot = 0.0;
        for (uint c = lid; c < p.cols; c += TW_WG)
            dot += TW_LD(dy, p.dy_off + base + c) * TW_LD(y, p.y_off + base + c);
        dot = tw_wg_sum(dot);
        for (uint c = lid; c < p.cols; c += TW_WG)
            TW_ST(dx, p.dx_off + base + c,
                  TW_LD(dx, p.dx_off + base + c) +
                      TW_LD(y, p.y_off + base + c) * (TW_LD(dy, p.dy_off + base + c) - dot));
    }
}
