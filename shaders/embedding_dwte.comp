#version 450
// twist: token-embedding gradient without atomics (host side: backends/vulkan/vk_ops.c).
// tokens (B*T) int32, dout (B*T, C), dwte (vocab, C): dwte[tokens[i]] += dout[i] for every
// position i. Tokens repeat, so a row of dwte may receive several rows of dout: the workgroup of
// the FIRST position holding a token owns that row and adds every position holding the token in
// position order (the order of a sequential loop, so the sums match the CPU reference bit for
// bit); workgroups of later positions find an earlier occurrence and do nothing.
//
// A workgroup scans the tokens in chunks of its size: each invocation compares one token and
// flags a match in shared memory; a chunk without any match (the common case) costs one compare
// per invocation and two barriers. No scratch memory.
#include "common.glsl"
TW_LOCAL_SIZE_X_SPEC

layout(std430, set = 0, binding = 0) readonly buffer Tokens { int tokens[]; };
layout(std430, set = 0, binding = 1) readonly buffer DOut { float dout[]; };
layout(std430, set = 0, binding = 2) buffer DWte { float dwte[]; };

layout(push_constant) uniform Push {
    uint bt, channels;
    uint tokens_off, dout_off, dwte_off;
} p;

#define WG gl_WorkGroupSize.x
#define EARLIER 2u // a chunk holds the token before the workgroup's position
#define LATER 1u   // a chunk holds the token at or after it

shared uint s_match[WG];
shared uint s_flags[2];

void main() {
    uint lid = gl_LocalInvocationID.x;
    for (uint i = gl_WorkGroupID.x; i < p.bt; i += gl_NumWorkGroups.x) {
        int token = tokens[p.tokens_off + i];
        uint row = p.dwte_off + uint(token) * p.channels;
        if (lid == 0) {
            s_flags[0] = 0;
            s_flags[1] = 0;
        }
        barrier();
        uint chunk = 0;
        for (uint base = 0; base < p.bt; base += WG, chunk++) {
            uint j = base + lid;
            bool hit = j < p.bt && tokens[p.tokens_off + j] == token;
            s_match[lid] = hit && j >= i ? 1u : 0u;
            if (hit) atomicOr(s_flags[chunk & 1u], j < i ? EARLIER : LATER);
            // The other slot was last read before the previous chunk's closing barrier.
            if (lid == 0) s_flags[(chunk + 1u) & 1u] = 0;
            barrier();
            uint flags = s_flags[chunk & 1u];
            if ((flags & EARLIER) != 0) break; // not the first occurrence: another owns the row
            if ((flags & LATER) != 0) {
                for (uint k = 0; k < WG; k++) {
                    if (s_match[k] == 0) continue;
                    uint src = p.dout_off + (base + k) * p.channels;
                    for (uint c = lid; c < p.channels; c += WG) dwte[row + c] += dout[src + c];
                }
            }
            barrier();
        }
        barrier();
    }
}
