/* twist Vulkan: fused causal attention, forward, tiled for GPUs (host side:
 * backends/vulkan/vk_attention.c; layout of the work in attention_tiled.glsl).
 *
 *   out[i] = sum_{j <= i} softmax_j(scale q_i . k_j) v_j;   lse[i] = log sum_{j <= i} exp(...)
 *
 * One workgroup per (b, h, block of BLK query rows), the last blocks (longest rows) first. Its
 * rows of Q (scaled) stay in shared memory (vec4 tiles, attention_tiled.glsl); the key blocks 0 .. its diagonal pass through
 * shared memory one at a time (K, then V in the same tile). Per key block: S = Q K^T in
 * registers, row maxima over the 8 invocations sharing a row through shared memory, online
 * softmax (running max m, sum l, accumulator rescaled by exp(m_old - m_new)), P to shared
 * memory, O += P V. Every sum runs in a fixed order (deterministic). Bindings: 0 q, 1 k, 2 v,
 * 3 out, 4 lse. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_tiled.glsl"

TW_BUFFER_RO(0, float, q_data)
TW_BUFFER_RO(1, float, k_data)
TW_BUFFER_RO(2, float, v_data)
TW_BUFFER(3, float, out_data)
TW_BUFFER(4, float, lse_data)

shared vec4 Qs[BLK * RS];  // query rows of the block, scaled
shared vec4 KVs[BLK * RS]; // the key block's K rows, then its V rows
shared vec4 Ps[BLK * PS];  // probabilities: element j of row r is Ps[r * PS + j / 4][j % 4]
shared float red_max[BLK * 8], red_sum[BLK * 8]; // per-row partials of the 8 column groups

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, i0 = (nblk - 1 - group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh);

    TW_TILE_LOAD(Qs, q_data, pc.q_off + base, pc.st, i0, T, pc.scale)
    float m[TM], l[TM];
    vec4 o[TM * NC4];
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        m[a] = TW_NEG_BIG;
        l[a] = 0.0;
        TW_UNROLL for (uint c = 0; c < NC4; c++) o[a * NC4 + c] = vec4(0.0);
    }
    // Key blocks 0 .. the diagonal one (j0 = i0): every row sees key j0 of every block it
    // visits up to its own, so no row's block is wholly masked.
    const uint last = min(i0 + BLK, T) - 1;
    for (uint j0 = 0; j0 <= last; j0 += BLK) {
        barrier(); // the previous block's readers of KVs and Ps are done
        TW_TILE_LOAD(KVs, k_data, pc.k_off + base, pc.st, j0, T, 1.0)
        barrier();
        float s[TM * TN];
        TW_UNROLL for (uint x = 0; x < TM * TN; x++) s[x] = 0.0;
        for (uint cv = 0; cv < HDV; cv++) {
            vec4 qv[TM], kv[TN];
            TW_UNROLL for (uint a = 0; a < TM; a++) qv[a] = Qs[(ry + RG * a) * RS + cv];
            TW_UNROLL for (uint n = 0; n < TN; n++) kv[n] = KVs[(kx + 8 * n) * RS + cv];
            TW_UNROLL for (uint a = 0; a < TM; a++)
                TW_UNROLL for (uint n = 0; n < TN; n++)
                    s[a * TN + n] = tw_dot4(qv[a], kv[n], s[a * TN + n]);
        }
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint i = i0 + ry + RG * a;
            float part = TW_NEG_BIG;
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                const uint j = j0 + kx + 8 * n;
                if (j > i || j >= T) s[a * TN + n] = TW_NEG_BIG;
                part = max(part, s[a * TN + n]);
            }
            red_max[(ry + RG * a) * 8 + kx] = part;
        }
        barrier(); // red_max complete; every invocation is done reading K
        float corr[TM];
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint r = ry + RG * a;
            float block_max = red_max[r * 8];
            TW_UNROLL for (uint g = 1; g < 8; g++) block_max = max(block_max, red_max[r * 8 + g]);
            const float new_m = max(m[a], block_max);
            corr[a] = exp(m[a] - new_m); // 0 on the first block (m = TW_NEG_BIG)
            m[a] = new_m;
            float part = 0.0;
            TW_UNROLL for (uint n = 0; n < TN; n++) {
                const float p = exp(s[a * TN + n] - new_m);
                const uint c = kx + 8 * n;
                Ps[r * PS + c / 4][c % 4] = p;
                part += p;
            }
            red_sum[r * 8 + kx] = part;
        }
        TW_TILE_LOAD(KVs, v_data, pc.v_off + base, pc.st, j0, T, 1.0)
        barrier();
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint r = ry + RG * a;
            float sum = 0.0;
            TW_UNROLL for (uint g = 0; g < 8; g++) sum += red_sum[r * 8 + g];
            l[a] = l[a] * corr[a] + sum;
            TW_UNROLL for (uint c = 0; c < NC4; c++) o[a * NC4 + c] *= corr[a];
        }
        // O += P V over the block's keys in order, 4 at a time.
        for (uint j4 = 0; j4 < BLK / 4; j4++) {
            vec4 p[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) p[a] = Ps[(ry + RG * a) * PS + j4];
            TW_UNROLL for (uint jj = 0; jj < 4; jj++) {
                TW_UNROLL for (uint c = 0; c < NC4; c++) {
                    const uint cv = kx + 8 * c;
                    const vec4 vd = cv < HDV ? KVs[(4 * j4 + jj) * RS + cv] : vec4(0.0);
                    TW_UNROLL for (uint a = 0; a < TM; a++)
                        o[a * NC4 + c] = fma(vec4(p[a][jj]), vd, o[a * NC4 + c]);
                }
            }
        }
    }
    const uint obase = pc.o_off + tw_out_base(bh);
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint i = i0 + ry + RG * a;
        if (i >= T) continue;
        const float inv = 1.0 / l[a];
        TW_UNROLL for (uint c = 0; c < NC4; c++) {
            const uint cv = kx + 8 * c;
            TW_UNROLL for (uint e = 0; e < 4; e++)
                if (4 * cv + e < HD) out_data[obase + i * pc.ot + 4 * cv + e] = o[a * NC4 + c][e] * inv;
        }
        if (kx == 0) lse_data[pc.lse_off + bh * T + i] = m[a] + log(l[a]);
    }
}
