/* twist Vulkan: fused causal attention, forward, tiled for GPUs (host side:
 * backends/vulkan/vk_attention.c; layout of the work in attention_tiled.glsl).
 *
 *   out[i] = sum_{j <= i} softmax_j(scale q_i . k_j) v_j;   lse[i] = log sum_{j <= i} exp(...)
 *
 * One workgroup per (b, h, block of BLK query rows), the last blocks (longest rows) first. Its
 * rows of Q (scaled) stay in shared memory; the key blocks 0 .. its diagonal pass through
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

shared float Qs[BLK * HDP];  // query rows of the block, scaled: Qs[r * HDP + d]
shared float KVs[BLK * HDP]; // the key block's K rows, then its V rows
shared float Ps[BLK * BP];   // probabilities: Ps[r * BP + j]
shared float red_max[BLK * 8], red_sum[BLK * 8]; // per-row partials of the 8 column groups

/* Rows j0 .. j0 + BLK - 1 of `src` (zeros past T) into KVs. */
#define TW_LOAD_TILE(src, off, j0)                                           \
    for (uint e = lid; e < BLK * HD; e += TW_ATTN_WG) {                      \
        uint r = e / HD, d = e % HD, j = (j0) + r;                           \
        KVs[r * HDP + d] = j < T ? src[(off) + j * pc.st + d] : 0.0;         \
    }

void main() {
    const uint T = pc.seq_len, nblk = (T + BLK - 1) / BLK;
    const uint group = tw_tiled_group();
    if (group >= pc.batch * pc.heads * nblk) return; // the whole workgroup
    const uint bh = group / nblk, i0 = (nblk - 1 - group % nblk) * BLK;
    const uint lid = gl_LocalInvocationID.x, ry = lid / 8, kx = lid % 8;
    const uint base = tw_qkv_base(bh);
    const uint koff = pc.k_off + base, voff = pc.v_off + base;

    for (uint e = lid; e < BLK * HD; e += TW_ATTN_WG) {
        uint r = e / HD, d = e % HD, i = i0 + r;
        Qs[r * HDP + d] = i < T ? q_data[pc.q_off + base + i * pc.st + d] * pc.scale : 0.0;
    }
    float m[TM], l[TM], o[TM * NC];
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        m[a] = TW_NEG_BIG;
        l[a] = 0.0;
        TW_UNROLL for (uint c = 0; c < NC; c++) o[a * NC + c] = 0.0;
    }
    // Key blocks 0 .. the diagonal one (j0 = i0): every row sees key j0 of every block it
    // visits up to its own, so no row's block is wholly masked.
    const uint last = min(i0 + BLK, T) - 1;
    for (uint j0 = 0; j0 <= last; j0 += BLK) {
        barrier(); // the previous block's readers of KVs and Ps are done
        TW_LOAD_TILE(k_data, koff, j0)
        barrier();
        float s[TM * TN];
        TW_UNROLL for (uint x = 0; x < TM * TN; x++) s[x] = 0.0;
        for (uint d = 0; d < HD; d++) {
            float qv[TM], kv[TN];
            TW_UNROLL for (uint a = 0; a < TM; a++) qv[a] = Qs[(ry + RG * a) * HDP + d];
            TW_UNROLL for (uint n = 0; n < TN; n++) kv[n] = KVs[(kx + 8 * n) * HDP + d];
            TW_UNROLL for (uint a = 0; a < TM; a++)
                TW_UNROLL for (uint n = 0; n < TN; n++)
                    s[a * TN + n] = fma(qv[a], kv[n], s[a * TN + n]);
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
                Ps[r * BP + kx + 8 * n] = p;
                part += p;
            }
            red_sum[r * 8 + kx] = part;
        }
        TW_LOAD_TILE(v_data, voff, j0)
        barrier();
        TW_UNROLL for (uint a = 0; a < TM; a++) {
            const uint r = ry + RG * a;
            float sum = 0.0;
            TW_UNROLL for (uint g = 0; g < 8; g++) sum += red_sum[r * 8 + g];
            l[a] = l[a] * corr[a] + sum;
            TW_UNROLL for (uint c = 0; c < NC; c++) o[a * NC + c] *= corr[a];
        }
        for (uint j = 0; j < BLK; j++) {
            float p[TM];
            TW_UNROLL for (uint a = 0; a < TM; a++) p[a] = Ps[(ry + RG * a) * BP + j];
            TW_UNROLL for (uint c = 0; c < NC; c++) {
                const uint d = kx + 8 * c;
                const float vd = d < HD ? KVs[j * HDP + d] : 0.0;
                TW_UNROLL for (uint a = 0; a < TM; a++)
                    o[a * NC + c] = fma(p[a], vd, o[a * NC + c]);
            }
        }
    }
    const uint obase = pc.o_off + tw_out_base(bh);
    TW_UNROLL for (uint a = 0; a < TM; a++) {
        const uint i = i0 + ry + RG * a;
        if (i >= T) continue;
        const float inv = 1.0 / l[a];
        TW_UNROLL for (uint c = 0; c < NC; c++) {
            const uint d = kx + 8 * c;
            if (d < HD) out_data[obase + i * pc.ot + d] = o[a * NC + c] * inv;
        }
        if (kx == 0) lse_data[pc.lse_off + bh * T + i] = m[a] + log(l[a]);
    }
}
