#version 450
// twist: dQ_i += scale sum_{j <= i} P_ij (dO_i . V_j - delta_i) K_j, f16/bf16 storage (see
// attn16_common.glsl); one workgroup per (b, h, group of WG query rows), longest rows first.
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
    const uint orow = b_ * p.ob + h_ * p.oh + i * p.ot;
    float qr[HD], dor[HD], acc[HD];
    for (uint d = 0; d < HD; d++) {
        qr[d] = live ? p.scale * TW_LD(q, p.q_off + head + i * p.st + d) : 0.0;
        dor[d] = live ? TW_LD(dout, p.dout_off + orow + d) : 0.0;
        acc[d] = 0.0;
    }
    const uint row = bh * p.seq_len + (live ? i : 0u);
    const float row_lse = lse[p.lse_off + row], row_delta = delta[row];
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
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < HD; d++) {
                s = fma(qr[d], Ks[jj][d], s);
                dp = fma(dor[d], Vs[jj][d], dp);
            }
            float ds = exp(s - row_lse) * (dp - row_delta);
            for (uint d = 0; d < HD; d++) acc[d] = fma(ds, Ks[jj][d], acc[d]);
        }
    }
    if (!live) return;
    const uint at = p.dq_off + head + i * p.st;
    for (uint d = 0; d < HD; d++) TW_ST(dq, at + d, TW_LD(dq, at + d) + p.scale * acc[d]);
}
