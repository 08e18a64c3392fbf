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

shared vec4 Qs[BLK * RS], Gs[BLK * RS]; // this block's q and dO rows
shared vec4 Ks[BLK * RS], Vs[BLK * RS]; // the current key block
shared vec4 Ds[BLK * PS];               // dS: (query i, key j) at [i * PS + j / 4][j % 4]
shared float lse_s[BLK], delta_s[BLK];

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, i0 = (nblk - 1 - group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);

    TW_TILE_LOAD(Qs, q_data, pc.q_off + base, pc.st, i0, T, 1.0)
    TW_TILE_LOAD(Gs, dout_data, gbase, pc.ot, i0, T, 1.0)
    if (lid < BLK) {
        uint i = i0 + lid;
        lse_s[lid] = i < T ? lse_data[pc.lse_off + bh * T + i] : 0.0;
        delta_s[lid] = i < T ? delta_data[bh * T + i] : 0.0;
    }
    vec4 acc[TM * NC4];
    TW_UNROLL for (uint x = 0; x < TM * NC4; x++) acc[x] = vec4(0.0);
    const uint last = min(i0 + BLK, T) - 1;
    for (uint j0 = 0; j0 <= last; j0 += BLK) {
        barrier(); // the previous block's readers of Ks and Ds are done
        TW_TILE_LOAD(Ks, k_data, pc.k_off + base, pc.st, j0, T, 1.0)
        TW_TILE_LOAD(Vs, v_data, pc.v_off + base, pc.st, j0, T, 1.0)
        barrier();
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
                Ds[r * PS + c / 4][c % 4] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier();
        // dq += dS K over the block's keys in order, 4 at a time.
        for (uint j4 = 0; j4 < BLK / 4; j4++) {
            vec4 ds[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) ds[a] = Ds[(ry + RG * a) * PS + j4];
            TW_UNROLL for (uint jj = 0; jj < 4; jj++) {
                TW_UNROLL for (uint c = 0; c < NC4; c++) {
                    const uint cv = kx + 8 * c;
                    const vec4 x = cv < HDV ? Ks[(4 * j4 + jj) * RS + cv] : vec4(0.0);
                    TW_UNROLL for (uint a = 0; a < TM; a++)
                        acc[a * NC4 + c] = fma(vec4(ds[a][jj]), x, acc[a * NC4 + c]);
                }
            }
        }
    }
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint i = i0 + ry + RG * a;
        if (i >= T) continue;
        TW_UNROLL for (uint c = 0; c < NC4; c++) {
            const uint cv = kx + 8 * c;
            TW_UNROLL for (uint e = 0; e < 4; e++) {
                const uint d = 4 * cv + e;
                if (d < HD)
                    dq_data[pc.dq_off + base + i * pc.st + d] += pc.scale * acc[a * NC4 + c][e];
            }
        }
    }
}
