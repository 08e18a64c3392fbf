#version 450
// twist: dV_j += sum_{i >= j} P_ij dO_i;  dK_j += scale sum_{i >= j} P_ij (dO_i . V_j - delta_i)
// Q_i, f16/bf16 storage (see attn16_common.glsl); one workgroup per (b, h, group of WG key rows),
// walking query tiles from its first row to T - 1 (longest groups first: the lowest rows).
#include "common.glsl"
#include "dtype.glsl"
#include "attn16_common.glsl"

shared float Qs[KT][HD];
shared float Os[KT][HD];
shared float Ls[KT];
shared float Ds[KT];

void main() {
    const uint bh = gl_WorkGroupID.x / p.row_groups;
    const uint rg = gl_WorkGroupID.x % p.row_groups;
    const uint b_ = bh / p.heads, h_ = bh % p.heads, lid = gl_LocalInvocationID.x;
    const uint j = rg * WG + lid;
    const bool live = j < p.seq_len;
    const uint head = b_ * p.sb + h_ * p.sh, ohead = b_ * p.ob + h_ * p.oh;
    float kr[HD], vr[HD], dk_acc[HD], dv_acc[HD];
    for (uint d = 0; d < HD; d++) {
        kr[d] = live ? p.scale * TW_LD(k, p.k_off + head + j * p.st + d) : 0.0;
        vr[d] = live ? TW_LD(v, p.v_off + head + j * p.st + d) : 0.0;
        dk_acc[d] = 0.0;
        dv_acc[d] = 0.0;
    }
    for (uint i0 = rg * WG; i0 < p.seq_len; i0 += KT) {
        barrier();
        for (uint e = lid; e < KT * HD; e += WG) {
            uint ii = e / HD, d = e % HD, i = i0 + ii;
            bool in_range = i < p.seq_len;
            Qs[ii][d] = in_range ? TW_LD(q, p.q_off + head + i * p.st + d) : 0.0;
            Os[ii][d] = in_range ? TW_LD(dout, p.dout_off + ohead + i * p.ot + d) : 0.0;
        }
        for (uint ii = lid; ii < KT; ii += WG) {
            uint i = i0 + ii;
            uint row = bh * p.seq_len + (i < p.seq_len ? i : 0u);
            Ls[ii] = lse[p.lse_off + row];
            Ds[ii] = delta[row];
        }
        barrier();
        if (!live) continue;
        for (uint ii = 0; ii < KT && i0 + ii < p.seq_len; ii++) {
            if (i0 + ii < j) continue;
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < HD; d++) {
                s = fma(Qs[ii][d], kr[d], s);
                dp = fma(Os[ii][d], vr[d], dp);
            }
            float pr = exp(s - Ls[ii]);
            float ds = pr * (dp - Ds[ii]);
            for (uint d = 0; d < HD; d++) {
                dv_acc[d] = fma(pr, Os[ii][d], dv_acc[d]);
                dk_acc[d] = fma(ds, Qs[ii][d], dk_acc[d]);
            }
        }
    }
    if (!live) return;
    const uint at = head + j * p.st;
    for (uint d = 0; d < HD; d++) {
        TW_ST(dk, p.dk_off + at + d, TW_LD(dk, p.dk_off + at + d) + p.scale * dk_acc[d]);
        TW_ST(dv, p.dv_off + at + d, TW_LD(dv, p.dv_off + at + d) + dv_acc[d]);
    }
}
