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

/* (qa . k, qb . k, ga . v, gb . v) for key row kr and value row vr, in 4 partial sums each. */
vec4 dots(uint kr, uint vr) {
    vec4 x0 = vec4(0.0), x1 = vec4(0.0), x2 = vec4(0.0), x3 = vec4(0.0);
    uint d = 0;
    TW_D_UNROLL for (; d + 4 <= HD; d += 4) {
        vec4 kv = TW_LOAD4(k, kr + d);
        vec4 vv = TW_LOAD4(v, vr + d);
        x0 = fma(vec4(qa[d], qa[d + 1], qa[d + 2], qa[d + 3]), kv, x0);
        x1 = fma(vec4(qb[d], qb[d + 1], qb[d + 2], qb[d + 3]), kv, x1);
        x2 = fma(vec4(ga[d], ga[d + 1], ga[d + 2], ga[d + 3]), vv, x2);
        x3 = fma(vec4(gb[d], gb[d + 1], gb[d + 2], gb[d + 3]), vv, x3);
    }
    TW_D_UNROLL for (; d < HD; d++) {
        float kd = TW_LOAD1(k, kr + d), vd = TW_LOAD1(v, vr + d);
        x0.x = fma(qa[d], kd, x0.x);
        x1.x = fma(qb[d], kd, x1.x);
        x2.x = fma(ga[d], vd, x2.x);
        x3.x = fma(gb[d], vd, x3.x);
    }
    return vec4((x0.x + x0.y) + (x0.z + x0.w), (x1.x + x1.y) + (x1.z + x1.w),
                (x2.x + x2.y) + (x2.z + x2.w), (x3.x + x3.y) + (x3.z + x3.w));
}

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
