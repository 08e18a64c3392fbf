/* twist OpenCL kernels: fused causal multi-head attention (host side: cl_attention.c).
 *
 * Built once per head dimension with -DHD=<D>, so each work-item keeps its rows in private
 * arrays of exactly D floats and the compiler can unroll and vectorise the loops over d.
 * Element (b, h, t, d) of q, k, v, dq, dk, dv is at off + b*sb + h*sh + t*st + d; of out and dout
 * at off + b*ob + h*oh + t*ot + d. lse and delta are (B, H, T) contiguous.
 *
 * No work-item ever holds more than one row of scores at a time: the (T, T) matrix exists
 * nowhere. There are no barriers and no local memory (work-items are independent), which suits
 * CPU OpenCL compilers; rows are handed out longest first (query row T-1 first in the forward,
 * key row 0 first in dK/dV) so the causal triangle's long rows do not end up last. Scores are
 * computed a block at a time and exponentiated as one vector (exp is the costliest step per
 * score; vector exp is nearly as cheap as a scalar one on CPU OpenCL compilers). */
#ifndef HD
#error "HD (the head dimension) must be defined"
#endif
#define BLK 16 /* keys scored per online-softmax rescale in the forward */
#define RB 8    /* rows per step in the backward kernels */
#ifdef USE_FMA /* hardware fma; otherwise fma() would be emulated in software */
#define MAD(a, b, c) fma((a), (b), (c))
#else
#define MAD(a, b, c) ((a) * (b) + (c))
#endif

/* (b, h) of a flat (B*H*T) index and the row offsets it implies. */
#define TW_SPLIT(gid, heads, seq_len, bh, row)   \
    size_t bh = (gid) / (size_t)(seq_len);        \
    int row = (int)((gid) % (size_t)(seq_len));   \
    int b_ = (int)(bh / (size_t)(heads));         \
    int h_ = (int)(bh % (size_t)(heads));

/* Dot products of private rows with global rows of HD floats. Without fast-math a compiler may
 * not reorder a float sum, so a plain loop is one chain of HD dependent fmas; these keep 8-wide
 * vector partial sums and compute four dots at once, four independent chains (summing in a
 * different order from the CPU reference, well inside fp32 tolerance). */
#define NV (HD / 8)
static float hsum8(float8 x) {
    float4 y = x.lo + x.hi;
    float2 z = y.lo + y.hi;
    return z.x + z.y;
}

static float dot_hd(const float *a, __global const float *b) {
    float8 acc = (float8)(0.0f);
    for (int v = 0; v < NV; v++) acc = MAD(vload8(v, a), vload8(v, b), acc);
    float s = hsum8(acc);
    for (int d = NV * 8; d < HD; d++) s = MAD(a[d], b[d], s);
    return s;
}

/* (a . b0, a . b1, c . d0, c . d1) */
static float4 dot_2x2(const float *a, __global const float *b0, __global const float *b1,
                      const float *c, __global const float *d0, __global const float *d1) {
    float8 s0 = (float8)(0.0f), s1 = s0, s2 = s0, s3 = s0;
    for (int v = 0; v < NV; v++) {
        float8 av = vload8(v, a), cv = vload8(v, c);
        s0 = MAD(av, vload8(v, b0), s0);
        s1 = MAD(av, vload8(v, b1), s1);
        s2 = MAD(cv, vload8(v, d0), s2);
        s3 = MAD(cv, vload8(v, d1), s3);
    }
    float4 r = (float4)(hsum8(s0), hsum8(s1), hsum8(s2), hsum8(s3));
    for (int d = NV * 8; d < HD; d++) {
        r.x = MAD(a[d], b0[d], r.x);
        r.y = MAD(a[d], b1[d], r.y);
        r.z = MAD(c[d], d0[d], r.z);
        r.w = MAD(c[d], d1[d], r.w);
    }
    return r;
}

static float hmax16(float16 x) {
    float8 a = fmax(x.lo, x.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

static float hsum16(float16 x) { return hsum8(x.lo + x.hi); }

/* Online-softmax update of one row with a block of scores s (BLK, -inf where masked): rescale
 * by exp(m - new m), turn s into probabilities in place, add their sum into l. */
static float softmax_block(float *s, float *m, float *l) {
    float16 sv = vload16(0, s);
    float new_m = fmax(*m, hmax16(sv));
    float correction = exp(*m - new_m); /* 0 on the first block (m = -inf) */
    float16 pv = exp(sv - new_m);
    *l = *l * correction + hsum16(pv);
    vstore16(pv, 0, s);
    *m = new_m;
    return correction;
}

/* Forward: one work-item per pair of query rows (ia, ib = ia - 1), so each key and value row
 * loaded serves two rows; online softmax over keys j <= ia in blocks of BLK (key ia masked for
 * row ib). Pairs are handed out longest first.
 *   out[i] = sum_j softmax_j(scale q_i . k_j) v_j;  lse[i] = log sum_j exp(scale q_i . k_j) */
__kernel void tw_attention_fwd(int batch, int heads, int seq_len, float scale,
                               __global const float *q, ulong q_off, __global const float *k,
                               ulong k_off, __global const float *v, ulong v_off, long sb,
                               long sh, long st, __global float *out, ulong out_off, long ob,
                               long oh, long ot, __global float *lse, ulong lse_off) {
    const int pairs = (seq_len + 1) / 2;
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * pairs) return;
    TW_SPLIT(gid, heads, pairs, bh, w)
    const int ia = seq_len - 1 - 2 * w;
    const bool has_b = ia >= 1; /* with odd T the last pair holds row 0 alone */
    const int ib = has_b ? ia - 1 : ia;
    size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *kb = k + k_off + base;
    __global const float *vb = v + v_off + base;

    float qa[HD], qb[HD], acc_a[HD], acc_b[HD], sa[BLK], sbk[BLK];
    for (int d = 0; d < HD; d++) {
        qa[d] = q[q_off + base + (size_t)ia * st + d] * scale;
        qb[d] = q[q_off + base + (size_t)ib * st + d] * scale;
        acc_a[d] = 0.0f;
        acc_b[d] = 0.0f;
    }
    float ma = -INFINITY, la = 0.0f, mb = -INFINITY, lb = 0.0f;
    for (int j0 = 0; j0 <= ia; j0 += BLK) {
        int count = min(BLK, ia + 1 - j0);
        int jj = 0;
        for (; jj + 2 <= count; jj += 2) {
            __global const float *kj = kb + (size_t)(j0 + jj) * st;
            float4 r4 = dot_2x2(qa, kj, kj + st, qb, kj, kj + st);
            sa[jj] = r4.x;
            sa[jj + 1] = r4.y;
            sbk[jj] = r4.z;
            sbk[jj + 1] = r4.w;
        }
        for (; jj < count; jj++) {
            __global const float *kj = kb + (size_t)(j0 + jj) * st;
            sa[jj] = dot_hd(qa, kj);
            sbk[jj] = dot_hd(qb, kj);
        }
        for (; jj < BLK; jj++) sa[jj] = sbk[jj] = -INFINITY; /* masked: exp gives 0 */
        if (ib - j0 + 1 < count) sbk[ib - j0 + 1] = -INFINITY; /* key ia is not visible to ib */
        float ca = softmax_block(sa, &ma, &la);
        float cb = softmax_block(sbk, &mb, &lb);
        for (int d = 0; d < HD; d++) {
            acc_a[d] *= ca;
            acc_b[d] *= cb;
        }
        for (jj = 0; jj < count; jj++) {
            float pa = sa[jj], pb = sbk[jj];
            __global const float *vj = vb + (size_t)(j0 + jj) * st;
            for (int d = 0; d < HD; d++) {
                float vd = vj[d];
                acc_a[d] = MAD(pa, vd, acc_a[d]);
                acc_b[d] = MAD(pb, vd, acc_b[d]);
            }
        }
    }
    size_t out_base = out_off + (size_t)(b_ * ob + h_ * oh);
    float inv_a = 1.0f / la, inv_b = 1.0f / lb;
    for (int d = 0; d < HD; d++) out[out_base + (size_t)ia * ot + d] = acc_a[d] * inv_a;
    lse[lse_off + bh * seq_len + ia] = ma + log(la);
    if (has_b) {
        for (int d = 0; d < HD; d++) out[out_base + (size_t)ib * ot + d] = acc_b[d] * inv_b;
        lse[lse_off + bh * seq_len + ib] = mb + log(lb);
    }
}

/* Backward, first pass: delta (B*H*T) = sum_d dO[i][d] O[i][d] per row. */
__kernel void tw_attention_delta(int batch, int heads, int seq_len, __global const float *out,
                                 ulong out_off, __global const float *dout, ulong dout_off,
                                 long ob, long oh, long ot, __global float *delta) {
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * seq_len) return;
    TW_SPLIT(gid, heads, seq_len, bh, i)
    size_t row = (size_t)(b_ * ob + h_ * oh) + (size_t)i * ot;
    __global const float *o = out + out_off + row;
    __global const float *g = dout + dout_off + row;
    float sum = 0.0f;
    for (int d = 0; d < HD; d++) sum = MAD(o[d], g[d], sum);
    delta[gid] = sum;
}

/* (a0 . b, a1 . b, c0 . e, c1 . e): two private rows against one global row, twice. */
static float4 dot_pairs(const float *a0, const float *a1, __global const float *b,
                        const float *c0, const float *c1, __global const float *e) {
    float8 s0 = (float8)(0.0f), s1 = s0, s2 = s0, s3 = s0;
    for (int v = 0; v < NV; v++) {
        float8 bv = vload8(v, b), ev = vload8(v, e);
        s0 = MAD(vload8(v, a0), bv, s0);
        s1 = MAD(vload8(v, a1), bv, s1);
        s2 = MAD(vload8(v, c0), ev, s2);
        s3 = MAD(vload8(v, c1), ev, s3);
    }
    float4 r = (float4)(hsum8(s0), hsum8(s1), hsum8(s2), hsum8(s3));
    for (int d = NV * 8; d < HD; d++) {
        r.x = MAD(a0[d], b[d], r.x);
        r.y = MAD(a1[d], b[d], r.y);
        r.z = MAD(c0[d], e[d], r.z);
        r.w = MAD(c1[d], e[d], r.w);
    }
    return r;
}

/* dQ: one work-item per pair of query rows (ia, ib = ia - 1), keys j <= ia in order, RB at a
 * time (key ia masked for row ib):
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i);
 *   dq_i += scale sum_j dS_ij k_j */
__kernel void tw_attention_dq(int batch, int heads, int seq_len, float scale,
                              __global const float *q, ulong q_off, __global const float *k,
                              ulong k_off, __global const float *v, ulong v_off, long sb, long sh,
                              long st, __global const float *dout, ulong dout_off, long ob,
                              long oh, long ot, __global const float *lse, ulong lse_off,
                              __global const float *delta, __global float *dq, ulong dq_off) {
    const int pairs = (seq_len + 1) / 2;
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * pairs) return;
    TW_SPLIT(gid, heads, pairs, bh, w)
    const int ia = seq_len - 1 - 2 * w;
    const bool has_b = ia >= 1;
    const int ib = has_b ? ia - 1 : ia;
    size_t base = (size_t)(b_ * sb + h_ * sh);
    size_t gbase = dout_off + (size_t)(b_ * ob + h_ * oh);
    __global const float *kb = k + k_off + base;
    __global const float *vb = v + v_off + base;
    float qa[HD], qb[HD], ga[HD], gbr[HD], acc_a[HD], acc_b[HD];
    float sa[RB], sbk[RB], dpa[RB], dpb[RB];
    for (int d = 0; d < HD; d++) {
        qa[d] = q[q_off + base + (size_t)ia * st + d] * scale;
        qb[d] = q[q_off + base + (size_t)ib * st + d] * scale;
        ga[d] = dout[gbase + (size_t)ia * ot + d];
        gbr[d] = dout[gbase + (size_t)ib * ot + d];
        acc_a[d] = acc_b[d] = 0.0f;
    }
    float lse_a = lse[lse_off + bh * seq_len + ia], lse_b = lse[lse_off + bh * seq_len + ib];
    float delta_a = delta[bh * seq_len + ia], delta_b = delta[bh * seq_len + ib];
    for (int j0 = 0; j0 <= ia; j0 += RB) {
        int count = min(RB, ia + 1 - j0);
        for (int jj = 0; jj < RB; jj++) {
            if (jj < count) {
                float4 r = dot_pairs(qa, qb, kb + (size_t)(j0 + jj) * st, ga, gbr,
                                     vb + (size_t)(j0 + jj) * st);
                sa[jj] = r.x;
                sbk[jj] = r.y;
                dpa[jj] = r.z;
                dpb[jj] = r.w;
            } else {
                sa[jj] = sbk[jj] = -INFINITY; /* exp gives 0 */
                dpa[jj] = dpb[jj] = 0.0f;
            }
        }
        if (ia - j0 < count) sbk[ia - j0] = -INFINITY; /* key ia is not visible to ib */
        float8 pa = exp(vload8(0, sa) - lse_a), pb = exp(vload8(0, sbk) - lse_b);
        vstore8(pa * (vload8(0, dpa) - delta_a), 0, dpa); /* dS */
        vstore8(pb * (vload8(0, dpb) - delta_b), 0, dpb);
        for (int jj = 0; jj < count; jj++) {
            float ds0 = dpa[jj], ds1 = dpb[jj];
            __global const float *kr = kb + (size_t)(j0 + jj) * st;
            for (int d = 0; d < HD; d++) {
                float x = kr[d];
                acc_a[d] = MAD(ds0, x, acc_a[d]);
                acc_b[d] = MAD(ds1, x, acc_b[d]);
            }
        }
    }
    for (int d = 0; d < HD; d++) dq[dq_off + base + (size_t)ia * st + d] += scale * acc_a[d];
    if (has_b)
        for (int d = 0; d < HD; d++) dq[dq_off + base + (size_t)ib * st + d] += scale * acc_b[d];
}

/* dK, dV: one work-item per pair of key rows (ja, jb = ja + 1), so each query and dO row loaded
 * serves both; query rows i >= ja in order, RB at a time (row ja masked for key jb):
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i */
__kernel void tw_attention_dkdv(int batch, int heads, int seq_len, float scale,
                                __global const float *q, ulong q_off, __global const float *k,
                                ulong k_off, __global const float *v, ulong v_off, long sb,
                                long sh, long st, __global const float *dout, ulong dout_off,
                                long ob, long oh, long ot, __global const float *lse,
                                ulong lse_off, __global const float *delta, __global float *dk,
                                ulong dk_off, __global float *dv, ulong dv_off) {
    const int pairs = (seq_len + 1) / 2;
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * pairs) return;
    TW_SPLIT(gid, heads, pairs, bh, w)
    const int ja = 2 * w; /* pair 0 (the longest) first */
    const bool has_b = ja + 1 < seq_len;
    const int jb = has_b ? ja + 1 : ja;
    size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *qb = q + q_off + base;
    __global const float *gb = dout + dout_off + (size_t)(b_ * ob + h_ * oh);
    float ka[HD], kb[HD], va[HD], vb[HD], dka[HD], dkb[HD], dva[HD], dvb[HD];
    float sa[RB], sbk[RB], dpa[RB], dpb[RB], row_lse[RB], row_delta[RB];
    for (int d = 0; d < HD; d++) {
        ka[d] = k[k_off + base + (size_t)ja * st + d] * scale;
        kb[d] = k[k_off + base + (size_t)jb * st + d] * scale;
        va[d] = v[v_off + base + (size_t)ja * st + d];
        vb[d] = v[v_off + base + (size_t)jb * st + d];
        dka[d] = dkb[d] = dva[d] = dvb[d] = 0.0f;
    }
    __global const float *lse_row = lse + lse_off + bh * seq_len;
    __global const float *delta_row = delta + bh * seq_len;
    for (int i0 = ja; i0 < seq_len; i0 += RB) {
        int count = min(RB, seq_len - i0);
        for (int ii = 0; ii < RB; ii++) {
            if (ii < count) {
                float4 r = dot_pairs(ka, kb, qb + (size_t)(i0 + ii) * st, va, vb,
                                     gb + (size_t)(i0 + ii) * ot);
                sa[ii] = r.x;
                sbk[ii] = r.y;
                dpa[ii] = r.z;
                dpb[ii] = r.w;
                row_lse[ii] = lse_row[i0 + ii];
                row_delta[ii] = delta_row[i0 + ii];
            } else {
                sa[ii] = sbk[ii] = -INFINITY; /* exp gives 0 */
                dpa[ii] = dpb[ii] = row_lse[ii] = row_delta[ii] = 0.0f;
            }
        }
        if (i0 == ja && has_b) sbk[0] = -INFINITY; /* query ja does not see key jb */
        float8 lse8 = vload8(0, row_lse), delta8 = vload8(0, row_delta);
        float8 pa = exp(vload8(0, sa) - lse8), pb = exp(vload8(0, sbk) - lse8);
        vstore8(pa, 0, sa);
        vstore8(pb, 0, sbk);
        vstore8(pa * (vload8(0, dpa) - delta8), 0, dpa); /* dS */
        vstore8(pb * (vload8(0, dpb) - delta8), 0, dpb);
        for (int ii = 0; ii < count; ii++) {
            float p0 = sa[ii], p1 = sbk[ii], ds0 = dpa[ii], ds1 = dpb[ii];
            __global const float *qr = qb + (size_t)(i0 + ii) * st;
            __global const float *gr = gb + (size_t)(i0 + ii) * ot;
            for (int d = 0; d < HD; d++) {
                float g = gr[d], x = qr[d];
                dva[d] = MAD(p0, g, dva[d]);
                dvb[d] = MAD(p1, g, dvb[d]);
                dka[d] = MAD(ds0, x, dka[d]);
                dkb[d] = MAD(ds1, x, dkb[d]);
            }
        }
    }
    for (int d = 0; d < HD; d++) {
        dk[dk_off + base + (size_t)ja * st + d] += scale * dka[d];
        dv[dv_off + base + (size_t)ja * st + d] += dva[d];
    }
    if (has_b) {
        for (int d = 0; d < HD; d++) {
            dk[dk_off + base + (size_t)jb * st + d] += scale * dkb[d];
            dv[dv_off + base + (size_t)jb * st + d] += dvb[d];
        }
    }
}
