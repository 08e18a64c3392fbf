#version 450
// twist: delta (B*H*T) = sum_d dO O per row, f16/bf16 storage (see attn16_common.glsl); one
// invocation per row (push row_groups carries the row count B*H*T here).
#include "common.glsl"
#include "dtype.glsl"
#include "attn16_common.glsl"

void main() {
    const uint g = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
    if (g >= p.row_groups) return;
    const uint bh = g / p.seq_len, i = g % p.seq_len, b_ = bh / p.heads, h_ = bh % p.heads;
    const uint at = b_ * p.ob + h_ * p.oh + i * p.ot;
    float sum = 0.0;
    for (uint d = 0; d < HD; d++)
        sum = fma(TW_LD(dout, p.dout_off + at + d), TW_LD(o, p.out_off + at + d), sum);
    delta[g] = sum;
}
