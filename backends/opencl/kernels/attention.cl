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
 * key row 0 first in dK/dV) so the causal triangle's long rows do not end up last. */
#ifndef HD
#error "HD (the head dimension) must be defined"
#endif
#define BLK 16 /* keys scored per online-softmax rescale */
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

/* Forward: one work-item per query row i, online softmax over keys j <= i in blocks of BLK.
 *   out[i] = sum_j softmax_j(scale q_i . k_j) v_j;  lse[i] = log sum_j exp(scale q_i . k_j) */
__kernel void tw_attention_fwd(int batch, int heads, int seq_len, float scale,
                               __global const float *q, ulong q_off, __global const float *k,
                               ulong k_off, __global const float *v, ulong v_off, long sb,
                               long sh, long st, __global float *out, ulong out_off, long ob,
                               long oh, long ot, __global float *lse, ulong lse_off) {
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * seq_len) return;
    TW_SPLIT(gid, heads, seq_len, bh, r)
    int i = seq_len - 1 - r; /* longest rows first */
    size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *qi = q + q_off + base + (size_t)i * st;
    __global const float *kb = k + k_off + base;
    __global const float *vb = v + v_off + base;

    float qr[HD], acc[HD], s[BLK];
    for (int d = 0; d < HD; d++) {
        qr[d] = qi[d] * scale;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 <= i; j0 += BLK) {
        int count = min(BLK, i + 1 - j0);
        float block_max = -INFINITY;
        int jj = 0;
        for (; jj + 4 <= count; jj += 4) {
            __global const float *kj = kb + (size_t)(j0 + jj) * st;
            float4 r = dot_2x2(qr, kj, kj + st, qr, kj + 2 * st, kj + 3 * st);
            s[jj] = r.x;
            s[jj + 1] = r.y;
            s[jj + 2] = r.z;
            s[jj + 3] = r.w;
        }
        for (; jj < count; jj++) s[jj] = dot_hd(qr, kb + (size_t)(j0 + jj) * st);
        for (jj = 0; jj < count; jj++) block_max = fmax(block_max, s[jj]);
        float new_m = fmax(m, block_max);
        float correction = exp(m - new_m); /* 0 on the first block (m = -inf) */
        l *= correction;
        for (int d = 0; d < HD; d++) acc[d] *= correction;
        for (jj = 0; jj < count; jj++) {
            float p = exp(s[jj] - new_m);
            l += p;
            __global const float *vj = vb + (size_t)(j0 + jj) * st;
            for (int d = 0; d < HD; d++) acc[d] = MAD(p, vj[d], acc[d]);
        }
        m = new_m;
    }
    float inv = 1.0f / l;
    __global float *oi = out + out_off + (size_t)(b_ * ob + h_ * oh) + (size_t)i * ot;
    for (int d = 0; d < HD; d++) oi[d] = acc[d] * inv;
    lse[lse_off + bh * seq_len + i] = m + log(l);
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

/* dQ: one work-item per query row i, keys j <= i in order:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i);
 *   dq_i += scale sum_j dS_ij k_j */
__kernel void tw_attention_dq(int batch, int heads, int seq_len, float scale,
                              __global const float *q, ulong q_off, __global const float *k,
                              ulong k_off, __global const float *v, ulong v_off, long sb, long sh,
                              long st, __global const float *dout, ulong dout_off, long ob,
                              long oh, long ot, __global const float *lse, ulong lse_off,
                              __global const float *delta, __global float *dq, ulong dq_off) {
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * seq_len) return;
    TW_SPLIT(gid, heads, seq_len, bh, r)
    int i = seq_len - 1 - r;
    size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *qi = q + q_off + base + (size_t)i * st;
    __global const float *gi = dout + dout_off + (size_t)(b_ * ob + h_ * oh) + (size_t)i * ot;
    __global const float *kb = k + k_off + base;
    __global const float *vb = v + v_off + base;
    float qr[HD], gr[HD], acc[HD];
    for (int d = 0; d < HD; d++) {
        qr[d] = qi[d] * scale;
        gr[d] = gi[d];
        acc[d] = 0.0f;
    }
    float row_lse = lse[lse_off + bh * seq_len + i];
    float row_delta = delta[bh * seq_len + i];
    int j = 0;
    for (; j + 2 <= i + 1; j += 2) { /* two keys per step: four independent dot chains */
        __global const float *kj = kb + (size_t)j * st, *vj = vb + (size_t)j * st;
        float4 r = dot_2x2(qr, kj, kj + st, gr, vj, vj + st);
        float p0 = exp(r.x - row_lse), p1 = exp(r.y - row_lse);
        float ds0 = p0 * (r.z - row_delta), ds1 = p1 * (r.w - row_delta);
        for (int d = 0; d < HD; d++) acc[d] = MAD(ds1, kj[st + d], MAD(ds0, kj[d], acc[d]));
    }
    for (; j <= i; j++) {
        __global const float *kj = kb + (size_t)j * st;
        float p = exp(dot_hd(qr, kj) - row_lse);
        float ds = p * (dot_hd(gr, vb + (size_t)j * st) - row_delta);
        for (int d = 0; d < HD; d++) acc[d] = MAD(ds, kj[d], acc[d]);
    }
    __global float *dqi = dq + dq_off + base + (size_t)i * st;
    for (int d = 0; d < HD; d++) dqi[d] += scale * acc[d];
}

/* dK, dV: one work-item per key row j, query rows i >= j in order:
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i */
__kernel void tw_attention_dkdv(int batch, int heads, int seq_len, float scale,
                                __global const float *q, ulong q_off, __global const float *k,
                                ulong k_off, __global const float *v, ulong v_off, long sb,
                                long sh, long st, __global const float *dout, ulong dout_off,
                                long ob, long oh, long ot, __global const float *lse,
                                ulong lse_off, __global const float *delta, __global float *dk,
                                ulong dk_off, __global float *dv, ulong dv_off) {
    size_t gid = get_global_id(0);
    if (gid >= (size_t)batch * heads * seq_len) return;
    TW_SPLIT(gid, heads, seq_len, bh, j)
    size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *kj = k + k_off + base + (size_t)j * st;
    __global const float *vj = v + v_off + base + (size_t)j * st;
    __global const float *qb = q + q_off + base;
    __global const float *gb = dout + dout_off + (size_t)(b_ * ob + h_ * oh);
    float kr[HD], vr[HD], dk_acc[HD], dv_acc[HD];
    for (int d = 0; d < HD; d++) {
        kr[d] = kj[d] * scale;
        vr[d] = vj[d];
        dk_acc[d] = 0.0f;
        dv_acc[d] = 0.0f;
    }
    __global const float *lse_row = lse + lse_off + bh * seq_len;
    __global const float *delta_row = delta + bh * seq_len;
    int i = j;
    for (; i + 2 <= seq_len; i += 2) { /* two query rows per step */
        __global const float *qi = qb + (size_t)i * st, *gi = gb + (size_t)i * ot;
        float4 r = dot_2x2(kr, qi, qi + st, vr, gi, gi + ot);
        float p0 = exp(r.x - lse_row[i]), p1 = exp(r.y - lse_row[i + 1]);
        float ds0 = p0 * (r.z - delta_row[i]), ds1 = p1 * (r.w - delta_row[i + 1]);
        for (int d = 0; d < HD; d++) {
            dv_acc[d] = MAD(p1, gi[ot + d], MAD(p0, gi[d], dv_acc[d]));
            dk_acc[d] = MAD(ds1, qi[st + d], MAD(ds0, qi[d], dk_acc[d]));
        }
    }
    for (; i < seq_len; i++) {
        __global const float *qi = qb + (size_t)i * st;
        __global const float *gi = gb + (size_t)i * ot;
        float p = exp(dot_hd(kr, qi) - lse_row[i]);
        float ds = p * (dot_hd(vr, gi) - delta_row[i]);
        for (int d = 0; d < HD; d++) {
            dv_acc[d] = MAD(p, gi[d], dv_acc[d]);
            dk_acc[d] = MAD(ds, qi[d], dk_acc[d]);
        }
    }
    __global float *dkj = dk + dk_off + base + (size_t)j * st;
    __global float *dvj = dv + dv_off + base + (size_t)j * st;
    for (int d = 0; d < HD; d++) {
        dkj[d] += scale * dk_acc[d];
        dvj[d] += dv_acc[d];
    }
}
