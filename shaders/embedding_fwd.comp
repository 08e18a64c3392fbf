#version 450
// twist: token + position embedding forward (host side: backends/vulkan/vk_ops.c).
// tokens (B*T) int32, wte (vocab, C), wpe (>= T, C), out (B*T, C):
// out[i][c] = wte[tokens[i]][c] + wpe[i mod T][c]; one invocation per output element.
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) readonly buffer Tokens { int tokens[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wte { TW_T wte[]; };
layout(std430, set = 0, binding = 2) readonly buffer Wpe { TW_T wpe[]; };
layout(std430, set = 0, binding = 3) buffer Out { TW_T y[]; };

layout(push_constant) uniform Push {
    uint n, seq_len, channels; // n = B*T*C
    uint tokens_off, wte_off, wpe_off, out_off;
} p;

void main() {
    const uint e = tw_global_index();
    if (e < p.n) {
        uint i = e / p.channels, c = e % p.channels;
        uint token = uint(tokens[p.tokens_off + i]);
        TW_ST(y, p.out_off + e, TW_LD(wte, p.wte_off + token * p.channels + c) +
                           TW_LD(wpe, p.wpe_off + (i % p.seq_len) * p.channels + c));
    }
}
