/* twist Vulkan: fused causal attention, backward pass 1 of 3 (host side: vk_attention.c).
 *   delta (B*H*T) = sum_d dO[i][d] * O[i][d] per query row, into the op's scratch buffer.
 * Bindings: 0 out, 1 dout, 2 delta. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"

TW_BUFFER_RO(0, float, out_data)
TW_BUFFER_RO(1, float, dout_data)
TW_BUFFER_WO(2, float, delta_data)

void main() {
    const uint T = pc.seq_len;
    TW_ATTENTION_ITEM(gid, pc.batch * pc.heads * T)
    uint row = tw_out_base(gid / T) + (gid % T) * pc.ot;
    uint o = pc.o_off + row, g = pc.dout_off + row;
    float sum = 0.0;
    for (uint d = 0; d < HD; d++) sum = fma(out_data[o + d], dout_data[g + d], sum);
    delta_data[gid] = sum;
}
