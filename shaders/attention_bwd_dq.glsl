// twist shaders: the body of attention_bwd_dq.comp and of attention_bwd_dq_texel.comp
// (TW_ATTN_TEXEL in attention_common.glsl).

TW_QKV_INPUT(0, q)
TW_QKV_INPUT(1, k)
TW_QKV_INPUT(2, v)
TW_QKV_INPUT(3, dout)
TW_BUFFER_RO(4, float, lse_data)
TW_BUFFER_RO(5, float, delta_data)
TW_BUFFER(6, float, dq_data)

const uint RB = 8; /* keys per step */

float qa[HD], qb[HD], ga[HD], gb[HD], acc_a[HD], acc_b[HD];
float sa[RB], sbk[RB], dpa[RB], dpb[RB];

/* dots(kr, vr): (qa . k, qb . k, ga . v, gb . v) for key row kr and value row vr. */
TW_PAIR_DOTS(qa, qb, k, ga, gb, v)

void row_pair(uint bh, uint w) {
    const uint T = pc.seq_len;
    const uint ia = T - 1 - 2 * w;
    const bool has_b = ia >= 1;
    const uint ib = has_b ? ia - 1 : ia;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);
    const uint kbase = pc.k_off + base, vbase = pc.v_off + base;
    TW_D_UNROLL for (uint d = 0; d < HD; d++) {
        qa[d] = TW_LOAD1(q, pc.q_off + base + ia * pc.st + d) * pc.scale;
        qb[d] = TW_LOAD1(q, pc.q_off + base + ib * pc.st + d) * pc.scale;
        ga[d] = TW_LOAD1(dout, gbase + ia * pc.ot + d);
        gb[d] = TW_LOAD1(dout, gbase + ib * pc.ot + d);
        acc_a[d] = 0.0;
        acc_b[d] = 0.0;
    }
    const float lse_a = lse_data[pc.lse_off + bh * T + ia];
    const float lse_b = lse_data[pc.lse_off + bh * T + ib];
    const float delta_a = delta_data[bh * T + ia], delta_b = delta_data[bh * T + ib];
    const uint j_end = min(pc.range_end, ia + 1);
    for (uint j0 = pc.range_begin; j0 < j_end; j0 += RB) {
        uint count = min(RB, j_end - j0);
        for (uint jj = 0; jj < RB; jj++) {
            dpa[jj] = 0.0; /* dS: 0 for keys past the row's end */
            dpb[jj] = 0.0;
            if (jj >= count) continue;
            uint j = j0 + jj;
            vec4 r = dots(kbase + j * pc.st, vbase + j * pc.st);
            dpa[jj] = exp(r.x - lse_a) * (r.z - delta_a);
            if (j != ia) dpb[jj] = exp(r.y - lse_b) * (r.w - delta_b);
        }
        for (uint jj = 0; jj < count; jj++) {
            float ds0 = dpa[jj], ds1 = dpb[jj];
            uint kr = kbase + (j0 + jj) * pc.st;
            uint d = 0;
            TW_D_UNROLL for (; d + 4 <= HD; d += 4) {
                vec4 x = TW_LOAD4(k, kr + d);
                TW_UNROLL for (uint e = 0; e < 4; e++) {
                    acc_a[d + e] = fma(ds0, x[e], acc_a[d + e]);
                    acc_b[d + e] = fma(ds1, x[e], acc_b[d + e]);
                }
            }
            TW_D_UNROLL for (; d < HD; d++) {
                float x = TW_LOAD1(k, kr + d);
                acc_a[d] = fma(ds0, x, acc_a[d]);
                acc_b[d] = fma(ds1, x, acc_b[d]);
            }
        }
    }
    const uint dq = pc.dq_off + base;
    TW_D_UNROLL for (uint d = 0; d < HD; d++)
        dq_data[dq + ia * pc.st + d] += pc.scale * acc_a[d];
    if (has_b)
        TW_D_UNROLL for (uint d = 0; d < HD; d++)
            dq_data[dq + ib * pc.st + d] += pc.scale * acc_b[d];
}

void main() {
    const uint pairs = pc.pair_count; /* the pairs with ia >= range_begin */
    TW_ATTENTION_ITEM(gid, pc.batch * pc.heads * pairs)
    row_pair(gid / pairs, gid % pairs);
}
