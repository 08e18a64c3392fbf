/* twist Vulkan: the second pass of split-K GEMM (host side: backends/vulkan/vk_gemm.c).
 *
 *   C_p[row][col] = alpha * sum_{s < splits} partial[s][p][row][col] + beta * C_p[row][col]
 *
 * partial (binding 0) is the scratch gemm_tiled.comp wrote with splits > 1: split s, batch p at
 * element s * split_stride + p * m * n + row * n + col. The splits are added in order 0, 1, ...
 * so the result does not depend on scheduling (no atomics). One invocation per element of C;
 * beta == 0 never reads C. Bindings: 0 partial, 1 C. */
#version 450
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC

TW_BUFFER_RO(0, float, partial)
TW_BUFFER(1, float, c_data)

layout(push_constant) uniform Push {
    uint m, n, batch, ldc;
    uint c_off, stride_c, splits, split_stride;
    float alpha, beta;
} pc;

void main() {
    const uint i = tw_global_index();
    const uint mn = pc.m * pc.n;
    if (i >= pc.batch * mn) return;
    const uint p = i / mn, row = (i % mn) / pc.n, col = i % pc.n;
    float sum = 0.0;
    for (uint s = 0; s < pc.splits; s++) sum += partial[s * pc.split_stride + i];
    const uint at = pc.c_off + p * pc.stride_c + row * pc.ldc + col;
    float r = pc.alpha * sum;
    if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
    c_data[at] = r;
}
