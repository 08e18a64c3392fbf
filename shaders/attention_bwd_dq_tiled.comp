/* twist Vulkan: fused causal attention, backward dQ pass, tiled for GPUs (host side:
 * backends/vulkan/vk_attention.c; layout of the work in attention_tiled.glsl).
 *
 * One workgroup per (b, h, block of BLK query rows), the last blocks (longest rows) first. Its
 * q and dO rows, lse and delta stay in shared memory; the key blocks 0 .. its diagonal pass
 * through shared memory in order (K, V). Per key block:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i)   (to shared)
 *   dq_i += scale sum_j dS_ij k_j
 * Each dq element is summed by one invocation in a fixed order of keys and added into the
 * gradient once (deterministic, no atomics). Bindings: 0 q, 1 k, 2 v, 3 dout, 4 lse, 5 delta,
 * 6 dq. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_tiled.glsl"

TW_BUFFER_RO(0, float, q_data)
TW_BUFFER_RO(1, float, k_data)
TW_BUFFER_RO(2, float, v_data)
TW_BUFFER_RO(3, float, dout_data)
TW_BUFFER_RO(4, float, lse_data)
TW_BUFFER_RO(5, float, delta_data)
TW_BUFFER(6, float, dq_data)

shared float Qs[BLK * HDP], Gs[BLK * HDP]; // this block's q and dO rows
shared float Ks[BLK * HDP], Vs[BLK * HDP]; // the current key block
shared float Ds[BLK * BP];                 // dS: [query row * BP + key row]
shared float lse_s[BLK], delta_s[BLK];

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, i0 = (nblk - 1 - group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);

    for (uint e = lid; e < BLK * HD; e += TW_ATTN_WG) {
        uint r = e / HD, d = e % HD, i = i0 + r;
        bool inside = i < T;
        Qs[r * HDP + d] = inside ? q_data[pc.q_off + base + i * pc.st + d] : 0.0;
        Gs[r * HDP + d] = inside ? dout_data[gbase + i * pc.ot + d] : 0.0;
    }
    if (lid < BLK) {
        uint i = i0 + lid;
        lse_s[lid] = i < T ? lse_data[pc.lse_off + bh * T + i] : 0.0;
        delta_s[lid] = i < T ? delta_data[bh * T + i] : 0.0;
    }
    float acc[TM * NC];
    TW_UNROLL for (uint x = 0; x < TM * NC; x++) acc[x] = 0.0;
    const uint last = min(i0 + BLK, T) - 1;
    for (uint j0 = 0; j0 <= last; j0 += BLK) {
        barrier(); // the previous block's readers of Ks and Ds are done
        for (uint e = lid; e < BLK * HD; e += TW_ATTN_WG) {
            uint r = e / HD, d = e % HD, j = j0 + r;
            bool inside = j < T;
            Ks[r * HDP + d] = inside ? k_data[pc.k_off + base + j * pc.st + d] : 0.0;
            Vs[r * HDP + d] = inside ? v_data[pc.v_off + base + j * pc.st + d] : 0.0;
        }
        barrier();
        float s[TM * TN], dp[TM * TN];
        TW_UNROLL for (uint x = 0; x < TM * TN; x++) {
            s[x] = 0.0;
            dp[x] = 0.0;
        }
        for (uint d = 0; d < HD; d++) {
            float qv[TM], gv[TM], kv[TN], vv[TN];
            TW_UNROLL for (uint a = 0; a < TM; a++) {
                qv[a] = Qs[(ry + RG * a) * HDP + d];
                gv[a] = Gs[(ry + RG * a) * HDP + d];
            }
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                kv[n] = Ks[(kx + 8 * n) * HDP + d];
                vv[n] = Vs[(kx + 8 * n) * HDP + d];
            }
            TW_UNROLL for (uint a = 0; a < TM; a++)
                TW_UNROLL for (uint n = 0; n < TN; n++) {
                    s[a * TN + n] = fma(qv[a], kv[n], s[a * TN + n]);
                    dp[a * TN + n] = fma(gv[a], vv[n], dp[a * TN + n]);
                }
        }
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint r = ry + RG * a, i = i0 + r;
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                const uint c = kx + 8 * n, j = j0 + c;
                const bool visible = i < T && j <= i;
                const float p = visible ? exp(pc.scale * s[a * TN + n] - lse_s[r]) : 0.0;
                Ds[r * BP + c] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier();
        for (uint j = 0; j < BLK; j++) {
            float ds[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) ds[a] = Ds[(ry + RG * a) * BP + j];
            TW_UNROLL for (uint c = 0; c < NC; c++) {
                const uint d = kx + 8 * c;
                const float x = d < HD ? Ks[j * HDP + d] : 0.0;
                TW_UNROLL for (uint a = 0; a < TM; a++) acc[a * NC + c] = fma(ds[a], x, acc[a * NC + c]);
            }
        }
    }
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint i = i0 + ry + RG * a;
        if (i >= T) continue;
        TW_UNROLL for (uint c = 0; c < NC; c++) {
            const uint d = kx + 8 * c;
            if (d < HD) dq_data[pc.dq_off + base + i * pc.st + d] += pc.scale * acc[a * NC + c];
        }
    }
}
