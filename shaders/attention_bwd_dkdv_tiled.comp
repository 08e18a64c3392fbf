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

shared vec4 Ks[BLK * RS], Vs[BLK * RS]; // this block's key rows
shared vec4 Qs[BLK * RS], Gs[BLK * RS]; // the current query block's q and dO rows
// P and dS transposed, key-major: element (query i, key j) at [j * PS + i / 4][i % 4].
shared vec4 Pt[BLK * PS], Dt[BLK * PS];
shared float lse_s[BLK], delta_s[BLK];

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, j0 = (group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);

    TW_TILE_LOAD(Ks, k_data, pc.k_off + base, pc.st, j0, T, 1.0)
    TW_TILE_LOAD(Vs, v_data, pc.v_off + base, pc.st, j0, T, 1.0)
    vec4 dk[TM * NC4], dv[TM * NC4];
    TW_UNROLL for (uint x = 0; x < TM * NC4; x++) {
        dk[x] = vec4(0.0);
        dv[x] = vec4(0.0);
    }
    for (uint i0 = j0; i0 < T; i0 += BLK) {
        barrier(); // the previous block's readers of Qs, Gs, Pt, Dt are done
        TW_TILE_LOAD(Qs, q_data, pc.q_off + base, pc.st, i0, T, 1.0)
        TW_TILE_LOAD(Gs, dout_data, gbase, pc.ot, i0, T, 1.0)
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
        for (uint cv = 0; cv < HDV; cv++) {
            vec4 qv[TM], gv[TM], kv[TN], vv[TN];
            TW_UNROLL for (uint a = 0; a < TM; a++) {
                qv[a] = Qs[(ry + RG * a) * RS + cv];
                gv[a] = Gs[(ry + RG * a) * RS + cv];
            }
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                kv[n] = Ks[(kx + 8 * n) * RS + cv];
                vv[n] = Vs[(kx + 8 * n) * RS + cv];
            }
            TW_UNROLL for (uint a = 0; a < TM; a++)
                TW_UNROLL for (uint n = 0; n < TN; n++) {
                    s[a * TN + n] = tw_dot4(qv[a], kv[n], s[a * TN + n]);
                    dp[a * TN + n] = tw_dot4(gv[a], vv[n], dp[a * TN + n]);
                }
        }
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint r = ry + RG * a, i = i0 + r;
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                const uint c = kx + 8 * n, j = j0 + c;
                const bool visible = i < T && j <= i;
                const float p = visible ? exp(pc.scale * s[a * TN + n] - lse_s[r]) : 0.0;
                Pt[c * PS + r / 4][r % 4] = p;
                Dt[c * PS + r / 4][r % 4] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier();
        // Accumulate over the block's query rows in order, 4 at a time: key rows ry + RG a,
        // column groups kx + 8 c.
        for (uint i4 = 0; i4 < BLK / 4; i4++) {
            vec4 p[TM], ds[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) {
                p[a] = Pt[(ry + RG * a) * PS + i4];
                ds[a] = Dt[(ry + RG * a) * PS + i4];
            }
            TW_UNROLL for (uint ii = 0; ii < 4; ii++) {
                TW_UNROLL for (uint c = 0; c < NC4; c++) {
                    const uint cv = kx + 8 * c;
                    const vec4 g = cv < HDV ? Gs[(4 * i4 + ii) * RS + cv] : vec4(0.0);
                    const vec4 x = cv < HDV ? Qs[(4 * i4 + ii) * RS + cv] : vec4(0.0);
                    TW_UNROLL for (uint a = 0; a < TM; a++) {
                        dv[a * NC4 + c] = fma(vec4(p[a][ii]), g, dv[a * NC4 + c]);
                        dk[a * NC4 + c] = fma(vec4(ds[a][ii]), x, dk[a * NC4 + c]);
                    }
                }
            }
        }
    }
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint j = j0 + ry + RG * a;
        if (j >= T) continue;
        const uint kr = base + j * pc.st;
        TW_UNROLL for (uint c = 0; c < NC4; c++) {
            const uint cv = kx + 8 * c;
            TW_UNROLL for (uint e = 0; e < 4; e++) {
                const uint d = 4 * cv + e;
                if (d >= HD) continue;
                dk_data[pc.dk_off + kr + d] += pc.scale * dk[a * NC4 + c][e];
                dv_data[pc.dv_off + kr + d] += dv[a * NC4 + c][e];
            }
        }
    }
}
