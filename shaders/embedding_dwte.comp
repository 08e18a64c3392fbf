#version 450
// twist: token-embedding gradient without atomics (host side: backends/vulkan/vk_ops.c).
// tokens (B*T) int32 in [0, vocab), dout (B*T, C), dwte (vocab, C): dwte[tokens[i]] += dout[i]
// for every position i. Tokens repeat, so a row of dwte may receive several rows of dout; they
// are added in position order, as the CPU reference does, so the sums match it bit for bit.
//
// Invocation (c, k) owns column c of the dwte rows whose token t has t mod buckets == k: it walks
// all positions in order and adds the ones with its tokens. Every element of dwte has exactly one
// owner, and no scratch is needed. buckets (the y groups) trades redundant token scans for
// parallelism: 1 on CPU devices, more on GPUs where C columns alone are too few invocations.
// dout has the op's data type; dwte is fp32 in every variant: a 16-bit dwte is converted to fp32
// scratch by the host around this shader (vk_ops.c), so a row that many positions add into is
// rounded once, not once per position.
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) readonly buffer Tokens { int tokens[]; };
layout(std430, set = 0, binding = 1) readonly buffer DOut { TW_T dout[]; };
layout(std430, set = 0, binding = 2) buffer DWte { float dwte[]; };

layout(push_constant) uniform Push {
    uint bt, channels, buckets;
    uint tokens_off, dout_off, dwte_off;
} p;

void main() {
    // x covers columns (a grid-stride loop when they outnumber the groups), y is the bucket, so
    // the column index uses x alone rather than tw_global_index().
    uint k = gl_WorkGroupID.y;
    uint stride = gl_NumWorkGroups.x * TW_LOCAL_X;
    for (uint c = gl_WorkGroupID.x * TW_LOCAL_X + gl_LocalInvocationID.x; c < p.channels;
         c += stride) {
        for (uint i = 0; i < p.bt; i++) {
            uint token = uint(tokens[p.tokens_off + i]);
            if (token % p.buckets != k) continue;
            dwte[p.dwte_off + token * p.channels + c] +=
                TW_LD(dout, p.dout_off + i * p.channels + c);
        }
    }
}
