// twist shaders: the body of attention_bwd_dkdv.comp and of attention_bwd_dkdv_texel.comp
// (TW_ATTN_TEXEL in attention_common.glsl).

TW_QKV_INPUT(0, q)
TW_QKV_INPUT(1, k)
TW_QKV_INPUT(2, v)
TW_QKV_INPUT(3, dout)
TW_BUFFER_RO(4, float, lse_data)
TW_BUFFER_RO(5, float, delta_data)
TW_BUFFER(6, float, dk_data)
TW_BUFFER(7, float, dv_data)

const uint RB = 8; /* query rows per step */

float ka[HD], kb[HD], va[HD], vb[HD], dka[HD], dkb[HD], dva[HD], dvb[HD];
float pa[RB], pb[RB], dsa[RB], dsb[RB];

/* dots(qr, gr): (ka . q, kb . q, va . dO, vb . dO) for query row qr and dO row gr. */
TW_PAIR_DOTS(ka, kb, q, va, vb, dout)

void key_pair(uint bh, uint w) {
    const uint T = pc.seq_len;
    const uint ja = 2 * w;
    const bool has_b = ja + 1 < T;
    const uint jb = has_b ? ja + 1 : ja;
    const uint base = tw_qkv_base(bh), gbase = pc.dout_off + tw_out_base(bh);
    const uint qbase = pc.q_off + base;
    TW_D_UNROLL for (uint d = 0; d < HD; d++) {
        ka[d] = TW_LOAD1(k, pc.k_off + base + ja * pc.st + d) * pc.scale;
        kb[d] = TW_LOAD1(k, pc.k_off + base + jb * pc.st + d) * pc.scale;
        va[d] = TW_LOAD1(v, pc.v_off + base + ja * pc.st + d);
        vb[d] = TW_LOAD1(v, pc.v_off + base + jb * pc.st + d);
        dka[d] = 0.0;
        dkb[d] = 0.0;
        dva[d] = 0.0;
        dvb[d] = 0.0;
    }
    const uint lse_row = pc.lse_off + bh * T, delta_row = bh * T;
    const uint i_end = min(pc.range_end, T);
    for (uint i0 = max(ja, pc.range_begin); i0 < i_end; i0 += RB) {
        uint count = min(RB, i_end - i0);
        for (uint ii = 0; ii < RB; ii++) {
            pa[ii] = 0.0; /* P and dS: 0 for rows past the end */
            pb[ii] = 0.0;
            dsa[ii] = 0.0;
            dsb[ii] = 0.0;
            if (ii >= count) continue;
            uint i = i0 + ii;
            vec4 r = dots(qbase + i * pc.st, gbase + i * pc.ot);
            float row_lse = lse_data[lse_row + i], row_delta = delta_data[delta_row + i];
            pa[ii] = exp(r.x - row_lse);
            dsa[ii] = pa[ii] * (r.z - row_delta);
            if (!(i == ja && has_b)) { /* query ja does not see key jb */
                pb[ii] = exp(r.y - row_lse);
                dsb[ii] = pb[ii] * (r.w - row_delta);
            }
        }
        for (uint ii = 0; ii < count; ii++) {
            float p0 = pa[ii], p1 = pb[ii], ds0 = dsa[ii], ds1 = dsb[ii];
            uint qr = qbase + (i0 + ii) * pc.st, gr = gbase + (i0 + ii) * pc.ot;
            uint d = 0;
            TW_D_UNROLL for (; d + 4 <= HD; d += 4) {
                vec4 g = TW_LOAD4(dout, gr + d), x = TW_LOAD4(q, qr + d);
                TW_UNROLL for (uint e = 0; e < 4; e++) {
                    dva[d + e] = fma(p0, g[e], dva[d + e]);
                    dvb[d + e] = fma(p1, g[e], dvb[d + e]);
                    dka[d + e] = fma(ds0, x[e], dka[d + e]);
                    dkb[d + e] = fma(ds1, x[e], dkb[d + e]);
                }
            }
            TW_D_UNROLL for (; d < HD; d++) {
                float g = TW_LOAD1(dout, gr + d), x = TW_LOAD1(q, qr + d);
                dva[d] = fma(p0, g, dva[d]);
                dvb[d] = fma(p1, g, dvb[d]);
                dka[d] = fma(ds0, x, dka[d]);
                dkb[d] = fma(ds1, x, dkb[d]);
            }
        }
    }
    const uint dk = pc.dk_off + base, dv = pc.dv_off + base;
    TW_D_UNROLL for (uint d = 0; d < HD; d++) {
        dk_data[dk + ja * pc.st + d] += pc.scale * dka[d];
        dv_data[dv + ja * pc.st + d] += dva[d];
    }
    if (has_b) {
        TW_D_UNROLL for (uint d = 0; d < HD; d++) {
            dk_data[dk + jb * pc.st + d] += pc.scale * dkb[d];
            dv_data[dv + jb * pc.st + d] += dvb[d];
        }
    }
}

void main() {
    const uint pairs = pc.pair_count; /* the pairs with ja < range_end */
    TW_ATTENTION_ITEM(gid, pc.batch * pc.heads * pairs)
    key_pair(gid / pairs, gid % pairs);
}
