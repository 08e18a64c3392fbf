/* twist Vulkan: fused causal attention, backward dK/dV pass, tiled for GPUs (host side:
 * backends/vulkan/vk_attention.c; layout of the work in attention_tiled.glsl).
 *
 * One workgroup per (b, h, block of BLK key rows), key block 0 (the most query rows) first. Its
 * K and V rows stay in shared memory; the query blocks from its diagonal to T - 1 pass through
 * shared memory in order (Q, dO, lse, delta). Per query block, with P recomputed from the
 * forward's lse:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i)
 * into shared memory, then
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i
 * Each dk/dv element is summed by one invocation in a fixed order of query rows and added into
 * the gradient once (deterministic, no atomics). Bindings: 0 q, 1 k, 2 v, 3 dout, 4 lse,
 * 5 delta, 6 dk, 7 dv. */
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
TW_BUFFER(6, float, dk_data)
TW_BUFFER(7, float, dv_data)

shared float Ks[BLK * HDP], Vs[BLK * HDP]; // this block's key rows
shared float Qs[BLK * HDP], Gs[BLK * HDP]; // the current query block's q and dO rows
shared float Ps[BLK * BP], Ds[BLK * BP];   // P and dS: [query row * BP + key row]
shared float lse_s[BLK], delta_s[BLK];

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, j0 = (group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);

    for (uint e = lid; e < BLK * HD; e += TW_ATTN_WG) {
        uint r = e / HD, d = e % HD, j = j0 + r;
        bool inside = j < T;
        Ks[r * HDP + d] = inside ? k_data[pc.k_off + base + j * pc.st + d] : 0.0;
        Vs[r * HDP + d] = inside ? v_data[pc.v_off + base + j * pc.st + d] : 0.0;
    }
    float dk[TM * NC], dv[TM * NC];
    TW_UNROLL for (uint x = 0; x < TM * NC; x++) {
        dk[x] = 0.0;
        dv[x] = 0.0;
    }
    for (uint i0 = j0; i0 < T; i0 += BLK) {
        barrier(); // the previous block's readers of Qs, Gs, Ps, Ds are done
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
        barrier();
        // Scores of query rows ry + RG a against key rows kx + 8 n.
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
                Ps[r * BP + c] = p;
                Ds[r * BP + c] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier();
        // Accumulate over the block's query rows in order: key rows ry + RG a, columns kx + 8 c.
        for (uint i = 0; i < BLK; i++) {
            float p[TM], ds[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) {
                p[a] = Ps[i * BP + ry + RG * a];
                ds[a] = Ds[i * BP + ry + RG * a];
            }
            TW_UNROLL for (uint c = 0; c < NC; c++) {
                const uint d = kx + 8 * c;
                const float g = d < HD ? Gs[i * HDP + d] : 0.0;
                const float x = d < HD ? Qs[i * HDP + d] : 0.0;
                TW_UNROLL for (uint a = 0; a < TM; a++) {
                    dv[a * NC + c] = fma(p[a], g, dv[a * NC + c]);
                    dk[a * NC + c] = fma(ds[a], x, dk[a * NC + c]);
                }
            }
        }
    }
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint j = j0 + ry + RG * a;
        if (j >= T) continue;
        const uint kr = base + j * pc.st;
        TW_UNROLL for (uint c = 0; c < NC; c++) {
            const uint d = kx + 8 * c;
            if (d >= HD) continue;
            dk_data[pc.dk_off + kr + d] += pc.scale * dk[a * NC + c];
            dv_data[pc.dv_off + kr + d] += dv[a * NC + c];
        }
    }
}
