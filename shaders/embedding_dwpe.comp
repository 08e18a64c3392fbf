#version 450
// twist: position-embedding gradient (host side: backends/vulkan/vk_ops.c).
// dwpe[t][c] += dout[b][t][c] for b = 0, 1, ... in order; one invocation per (t, c).
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) readonly buffer DOut { TW_T dout[]; };
layout(std430, set = 0, binding = 1) buffer DWpe { TW_T dwpe[]; };

layout(push_constant) uniform Push {
    uint n, batch; // n = T*C
    uint dout_off, dwpe_off;
} p;

void main() {
    const uint e = tw_global_index();
    if (e < p.n) {
        float acc = TW_LD(dwpe, p.dwpe_off + e);
        for (uint b = 0; b < p.batch; b++) acc += TW_LD(dout, p.dout_off + b * p.n + e);
        TW_ST(dwpe, p.dwpe_off + e, acc);
    }
}
