#version 450
// twist: position-embedding gradient (host side: backends/vulkan/vk_ops.c).
// dwpe[t][c] += dout[b][t][c] for b = 0, 1, ... in order; one invocation per (t, c).
layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) readonly buffer DOut { float dout[]; };
layout(std430, set = 0, binding = 1) buffer DWpe { float dwpe[]; };

layout(push_constant) uniform Push {
    uint n, batch; // n = T*C
    uint dout_off, dwpe_off;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint e = gl_GlobalInvocationID.x; e < p.n; e += stride) {
        float acc = dwpe[p.dwpe_off + e];
        for (uint b = 0; b < p.batch; b++) acc += dout[p.dout_off + b * p.n + e];
        dwpe[p.dwpe_off + e] = acc;
        if (p.n - e <= stride) break;
    }
}
