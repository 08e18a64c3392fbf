#version 450
// twist: fused softmax + cross-entropy backward (host side: backends/vulkan/vk_ops.c).
// dlogits (rows, ld) += grad_scale (softmax(logits) - onehot(target)) on the vocab class columns
// of rows whose target is >= 0, softmax recomputed as exp(logit - lse). One workgroup per row.
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) readonly buffer Logits { TW_T z[]; };
layout(std430, set = 0, binding = 1) readonly buffer Targets { int targets[]; };
layout(std430, set = 0, binding = 2) readonly buffer Lse { float lse[]; };
layout(std430, set = 0, binding = 3) buffer DLogits { TW_T dz[]; };

layout(push_constant) uniform Push {
    uint rows, vocab, ld;
    float grad_scale;
    uint logits_off, targets_off, lse_off, dlogits_off;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
        int t = targets[p.targets_off + r];
        if (t < 0) continue;
        float row_lse = lse[p.lse_off + r];
        uint src = p.logits_off + r * p.ld, dst = p.dlogits_off + r * p.ld;
        for (uint c = lid; c < p.vocab; c += gl_WorkGroupSize.x) {
            float prob = exp(TW_LD(z, src + c) - row_lse);
            TW_ST(dz, dst + c,
                  TW_LD(dz, dst + c) + p.grad_scale * (c == uint(t) ? prob - 1.0 : prob));
        }
    }
}
