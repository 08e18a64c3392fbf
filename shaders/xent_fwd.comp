#version 450
// twist: fused softmax + cross-entropy forward (host side: backends/vulkan/vk_ops.c).
// logits (rows, ld), the first vocab columns are classes; targets (rows) int32, < 0 = ignored.
// lse (rows) = log sum exp, losses (rows) = lse - logit[target] (0 if ignored), correct (rows) =
// 1 where the target is the argmax (first maximum on ties). One workgroup per row: a single pass
// over the row keeps an online (max, sum exp, first argmax) per invocation, then one tree.
#include "common.glsl"
#include "dtype.glsl"
#include "reduce_wg.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Logits { TW_T z[]; };
layout(std430, set = 0, binding = 1) readonly buffer Targets { int targets[]; };
layout(std430, set = 0, binding = 2) buffer Losses { float losses[]; };
layout(std430, set = 0, binding = 3) buffer Lse { float lse[]; };
layout(std430, set = 0, binding = 4) buffer Correct { float correct[]; };

layout(push_constant) uniform Push {
    uint rows, vocab, ld;
    uint logits_off, targets_off, losses_off, lse_off, correct_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        uint row = p.logits_off + r * p.ld;
        float m = -1.0 / 0.0, s = 0.0;
        uint arg = 0;
        for (uint c = lid; c < p.vocab; c += TW_WG) tw_lse_add(m, s, arg, TW_LD(z, row + c), c);
        tw_wg_lse(m, s, arg);
        if (lid == 0) {
            float row_lse = m + log(s);
            int t = targets[p.targets_off + r];
            lse[p.lse_off + r] = row_lse;
            losses[p.losses_off + r] = t >= 0 ? row_lse - TW_LD(z, row + uint(t)) : 0.0;
            correct[p.correct_off + r] = t >= 0 && uint(t) == arg ? 1.0 : 0.0;
        }
    }
}
