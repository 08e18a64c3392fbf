// twist shaders: the body of attention_fwd.comp and of attention_fwd_texel.comp
// (TW_ATTN_TEXEL in attention_common.glsl).

TW_QKV_INPUT(0, q)
TW_QKV_INPUT(1, k)
TW_QKV_INPUT(2, v)
TW_BUFFER(3, float, out_data)
TW_BUFFER(4, float, lse_data)

const uint BLK = 16; /* keys per online-softmax rescale */

float qa[HD], qb[HD], acc_a[HD], acc_b[HD];
float sa[BLK], sbk[BLK];

/* Scores of both rows against keys j0 .. j0 + count - 1 (4 partial sums each, so the dot
 * products are independent chains), TW_NEG_BIG past count and for key ia in row ib. */
void score_block(uint kbase, uint j0, uint count, uint ia) {
    for (uint jj = 0; jj < BLK; jj++) {
        sa[jj] = TW_NEG_BIG;
        sbk[jj] = TW_NEG_BIG;
        if (jj >= count) continue;
        uint kr = kbase + (j0 + jj) * pc.st;
        vec4 xa = vec4(0.0), xb = vec4(0.0);
        uint d = 0;
        TW_UNROLL for (; d + 4 <= HD; d += 4) {
            vec4 kv = TW_LOAD4(k, kr + d);
            xa = fma(vec4(qa[d], qa[d + 1], qa[d + 2], qa[d + 3]), kv, xa);
            xb = fma(vec4(qb[d], qb[d + 1], qb[d + 2], qb[d + 3]), kv, xb);
        }
        TW_UNROLL for (; d < HD; d++) {
            float kd = TW_LOAD1(k, kr + d);
            xa.x = fma(qa[d], kd, xa.x);
            xb.x = fma(qb[d], kd, xb.x);
        }
        sa[jj] = (xa.x + xa.y) + (xa.z + xa.w);
        if (j0 + jj != ia) sbk[jj] = (xb.x + xb.y) + (xb.z + xb.w);
    }
}

/* Online-softmax update of one row with the block s: returns the factor that rescales the
 * running accumulator, turns s into unnormalised probabilities, adds their sum into l. */
float softmax_a(inout float m, inout float l) {
    float block_max = TW_NEG_BIG;
    for (uint jj = 0; jj < BLK; jj++) block_max = max(block_max, sa[jj]);
    float new_m = max(m, block_max);
    float correction = exp(m - new_m); /* 0 on the first block: m = TW_NEG_BIG */
    float sum = 0.0;
    for (uint jj = 0; jj < BLK; jj++) {
        sa[jj] = exp(sa[jj] - new_m);
        sum += sa[jj];
    }
    l = l * correction + sum;
    m = new_m;
    return correction;
}

float softmax_b(inout float m, inout float l) {
    float block_max = TW_NEG_BIG;
    for (uint jj = 0; jj < BLK; jj++) block_max = max(block_max, sbk[jj]);
    float new_m = max(m, block_max);
    float correction = exp(m - new_m);
    float sum = 0.0;
    for (uint jj = 0; jj < BLK; jj++) {
        sbk[jj] = exp(sbk[jj] - new_m);
        sum += sbk[jj];
    }
    l = l * correction + sum;
    m = new_m;
    return correction;
}

void row_pair(uint bh, uint w) {
    const uint T = pc.seq_len;
    const uint ia = T - 1 - 2 * w;
    const bool has_b = ia >= 1; /* with odd T the last pair holds row 0 alone */
    const uint ib = has_b ? ia - 1 : ia;
    const uint base = tw_qkv_base(bh);
    const uint kbase = pc.k_off + base, vbase = pc.v_off + base;
    TW_UNROLL for (uint d = 0; d < HD; d++) {
        qa[d] = TW_LOAD1(q, pc.q_off + base + ia * pc.st + d) * pc.scale;
        qb[d] = TW_LOAD1(q, pc.q_off + base + ib * pc.st + d) * pc.scale;
        acc_a[d] = 0.0;
        acc_b[d] = 0.0;
    }
    float ma = TW_NEG_BIG, la = 0.0, mb = TW_NEG_BIG, lb = 0.0;
    for (uint j0 = 0; j0 <= ia; j0 += BLK) {
        uint count = min(BLK, ia + 1 - j0);
        score_block(kbase, j0, count, ia);
        float ca = softmax_a(ma, la);
        float cb = softmax_b(mb, lb);
        TW_UNROLL for (uint d = 0; d < HD; d++) {
            acc_a[d] *= ca;
            acc_b[d] *= cb;
        }
        for (uint jj = 0; jj < count; jj++) {
            float pa = sa[jj], pb = sbk[jj];
            uint vr = vbase + (j0 + jj) * pc.st;
            uint d = 0;
            TW_UNROLL for (; d + 4 <= HD; d += 4) {
                vec4 vd = TW_LOAD4(v, vr + d);
                TW_UNROLL for (uint e = 0; e < 4; e++) {
                    acc_a[d + e] = fma(pa, vd[e], acc_a[d + e]);
                    acc_b[d + e] = fma(pb, vd[e], acc_b[d + e]);
                }
            }
            TW_UNROLL for (; d < HD; d++) {
                float vd = TW_LOAD1(v, vr + d);
                acc_a[d] = fma(pa, vd, acc_a[d]);
                acc_b[d] = fma(pb, vd, acc_b[d]);
            }
        }
    }
    const uint obase = pc.o_off + tw_out_base(bh);
    float inv_a = 1.0 / la, inv_b = 1.0 / lb;
    TW_UNROLL for (uint d = 0; d < HD; d++) out_data[obase + ia * pc.ot + d] = acc_a[d] * inv_a;
    lse_data[pc.lse_off + bh * T + ia] = ma + log(la);
    if (has_b) {
        TW_UNROLL for (uint d = 0; d < HD; d++) out_data[obase + ib * pc.ot + d] = acc_b[d] * inv_b;
        lse_data[pc.lse_off + bh * T + ib] = mb + log(lb);
    }
}

void main() {
    const uint pairs = (pc.seq_len + 1) / 2;
    TW_ATTENTION_ITEM(gid, pc.batch * pc.heads * pairs)
    row_pair(gid / pairs, gid % pairs);
}
