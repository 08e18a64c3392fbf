#version 450
// twist: O = softmax(scale Q K^T, causal) V and lse per query row, f16/bf16 storage (see
// attn16_common.glsl). One workgroup per (b, h, group of WG query rows), longest rows first.
#include "common.glsl"
#include "dtype.glsl"
#include "attn16_common.glsl"

shared float Ks[KT][HD];
shared float Vs[KT][HD];

void main() {
    const uint bh = gl_WorkGroupID.x / p.row_groups;
    const uint rg = p.row_groups - 1u - gl_WorkGroupID.x % p.row_groups;
    const uint b_ = bh / p.heads, h_ = bh % p.heads, lid = gl_LocalInvocationID.x;
    const uint i = rg * WG + lid;
    const bool live = i < p.seq_len;
    const uint last = min(p.seq_len - 1u, rg * WG + WG - 1u);
    const uint head = b_ * p.sb + h_ * p.sh;
    float qr[HD], acc[HD];
    for (uint d = 0; d < HD; d++) {
        qr[d] = live ? p.scale * TW_LD(q, p.q_off + head + i * p.st + d) : 0.0;
        acc[d] = 0.0;
    }
    float mx = -1.0 / 0.0, l = 0.0;
    for (uint j0 = 0; j0 <= last; j0 += KT) {
        barrier();
        for (uint e = lid; e < KT * HD; e += WG) {
            uint jj = e / HD, d = e % HD, j = j0 + jj;
            bool in_range = j < p.seq_len;
            Ks[jj][d] = in_range ? TW_LD(k, p.k_off + head + j * p.st + d) : 0.0;
            Vs[jj][d] = in_range ? TW_LD(v, p.v_off + head + j * p.st + d) : 0.0;
        }
        barrier();
        if (!live) continue;
        for (uint jj = 0; jj < KT && j0 + jj <= i; jj++) {
            float s = 0.0;
            for (uint d = 0; d < HD; d++) s = fma(qr[d], Ks[jj][d], s);
            if (s > mx) { // rescale what was summed against the old maximum
                float correction = exp(mx - s);
                l *= correction;
                for (uint d = 0; d < HD; d++) acc[d] *= correction;
                mx = s;
            }
            float pr = exp(s - mx);
            l += pr;
            for (uint d = 0; d < HD; d++) acc[d] = fma(pr, Vs[jj][d], acc[d]);
        }
    }
    if (!live) return;
    const float inv = 1.0 / l;
    const uint at = p.out_off + b_ * p.ob + h_ * p.oh + i * p.ot;
    for (uint d = 0; d < HD; d++) TW_ST(o, at + d, acc[d] * inv);
    lse[p.lse_off + bh * p.seq_len + i] = mx + log(l);
}
