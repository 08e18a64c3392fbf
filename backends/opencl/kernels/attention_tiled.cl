/* twist OpenCL kernels: fused causal attention tiled for GPUs, flash-attention style (host side:
 * cl_attention.c, variant "tiled"; the same work split as the Vulkan shaders
 * shaders/attention_*_tiled.comp, whose comments say more).
 *
 * Built per head dimension with -DHD=<D> and the block size of each kernel, -DBLK_FWD,
 * -DBLK_DQ, -DBLK_DKDV (32, 16 or 8: the largest whose tiles fit the device's local memory).
 * A work-group of WGS(BLK) work-items (128; 64 at BLK = 8) owns one block of BLK query rows
 * (forward, dQ) or key rows (dK/dV) of one (b, h) and walks the other side's blocks in order,
 * staging their rows in local memory as float4 tiles: rows of HDV = ceil(HD / 4) float4s (zeros
 * past HD) at a stride of RS = HDV + 1, score rows of BLK / 4 float4s at PS = BLK / 4 + 1, so
 * every local load reads 4 floats and the rows a warp reads at once start 4 banks apart.
 * Work-item lid = (ry, kx) = (lid / 8, lid % 8), RG = WGS / 8 row groups: in a score phase it
 * computes scores of rows ry + RG a (a < TM) and columns kx + 8 n (n < TN), in an accumulation
 * phase it owns rows ry + RG a and the float4 column groups cv = kx + 8 c (c < NC4). Every sum
 * runs in a fixed order, every output element has one owner: deterministic, no atomics.
 *
 * Element (b, h, t, d) of q, k, v, dq, dk, dv is at off + b*sb + h*sh + t*st + d; of out and
 * dout at off + b*ob + h*oh + t*ot + d. lse and delta are (B, H, T) contiguous. */
#ifndef HD
#error "HD (the head dimension) must be defined"
#endif
#ifdef USE_FMA
#define MAD(a, b, c) fma((a), (b), (c))
#else
#define MAD(a, b, c) ((a) * (b) + (c))
#endif

#define NEG_BIG (-3.0e38f) /* a finite -infinity: exp(NEG_BIG - m) is 0 */
#define HDV ((HD + 3) / 4)
#define RS (HDV + 1)
#define NC4 ((HDV + 7) / 8)
/* These read BLK, defined before each kernel. */
#define WGS (BLK == 8 ? 64 : 128)
#define RG (WGS / 8)
#define TM (BLK / RG)
#define TN (BLK / 8)
#define PS (BLK / 4 + 1)

/* s + a . b in a fixed order (x, y, z, w). */
static float dot4(float4 a, float4 b, float s) {
    return MAD(a.w, b.w, MAD(a.z, b.z, MAD(a.y, b.y, MAD(a.x, b.x, s))));
}

/* Element e of a float4 (e a variable). */
static float elem4(float4 v, int e) { return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w; }

/* Sets element e of the float4 at p. */
static void set4(__local float4 *p, int e, float value) { ((__local float *)p)[e] = value; }

/* Floats 4 cv .. 4 cv + 3 of a row (zeros past HD; rows are not 16-byte aligned in general). */
static float4 row4(__global const float *row, int cv) {
    float4 r;
    r.x = 4 * cv + 0 < HD ? row[4 * cv + 0] : 0.0f;
    r.y = 4 * cv + 1 < HD ? row[4 * cv + 1] : 0.0f;
    r.z = 4 * cv + 2 < HD ? row[4 * cv + 2] : 0.0f;
    r.w = 4 * cv + 3 < HD ? row[4 * cv + 3] : 0.0f;
    return r;
}

/* Rows r0 .. r0 + BLK - 1 (zeros from row T on) of a (b, h) slice at `src` with row stride st
 * into the local float4 tile dst, scaled. */
#define LOAD_ROWS(dst, src, st, r0, T, scale_)                                            \
    for (int e_ = lid; e_ < BLK * HDV; e_ += WGS) {                                       \
        int r_ = e_ / HDV, cv_ = e_ % HDV, t_ = (r0) + r_;                                \
        (dst)[r_ * RS + cv_] =                                                            \
            t_ < (T) ? row4((src) + (size_t)t_ * (st), cv_) * (scale_) : (float4)(0.0f);  \
    }

#define BLK BLK_FWD
/* Forward: one work-group per (b, h, block of BLK query rows), the last blocks first. Per key
 * block 0 .. the diagonal: S = Q K^T in registers, row maxima over the 8 work-items sharing a row
 * through local memory, online softmax (running max m, sum l, rescale by exp(m_old - m_new)),
 * P to local memory, O += P V (V in K's tile). out = O / l, lse = m + log l. */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
tw_attention_fwd_tiled(int batch, int heads, int seq_len, float scale, __global const float *q,
                       ulong q_off, __global const float *k, ulong k_off,
                       __global const float *v, ulong v_off, long sb, long sh, long st,
                       __global float *out, ulong out_off, long ob, long oh, long ot,
                       __global float *lse, ulong lse_off) {
    __local float4 Qs[BLK * RS], KVs[BLK * RS], Ps[BLK * PS];
    __local float red_max[BLK * 8], red_sum[BLK * 8];
    const int T = seq_len, nblk = (T + BLK - 1) / BLK;
    const size_t group = get_group_id(0);
    if (group >= (size_t)batch * heads * nblk) return; /* the whole work-group */
    const size_t bh = group / nblk;
    const int i0 = (nblk - 1 - (int)(group % nblk)) * BLK;
    const int lid = (int)get_local_id(0), ry = lid / 8, kx = lid % 8;
    const int b_ = (int)(bh / heads), h_ = (int)(bh % heads);
    const size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *qb = q + q_off + base, *kb = k + k_off + base, *vb = v + v_off + base;

    LOAD_ROWS(Qs, qb, st, i0, T, scale)
    float m[TM], l[TM];
    float4 o[TM * NC4];
    for (int a = 0; a < TM; a++) {
        m[a] = NEG_BIG;
        l[a] = 0.0f;
        for (int c = 0; c < NC4; c++) o[a * NC4 + c] = (float4)(0.0f);
    }
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous block's readers of KVs and Ps are done */
        LOAD_ROWS(KVs, kb, st, j0, T, 1.0f)
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[TM * TN];
        for (int x = 0; x < TM * TN; x++) s[x] = 0.0f;
        for (int cv = 0; cv < HDV; cv++) {
            float4 qv[TM], kv[TN];
            for (int a = 0; a < TM; a++) qv[a] = Qs[(ry + RG * a) * RS + cv];
            for (int n = 0; n < TN; n++) kv[n] = KVs[(kx + 8 * n) * RS + cv];
            for (int a = 0; a < TM; a++)
                for (int n = 0; n < TN; n++) s[a * TN + n] = dot4(qv[a], kv[n], s[a * TN + n]);
        }
        for (int a = 0; a < TM; a++) {
            const int i = i0 + ry + RG * a;
            float part = NEG_BIG;
            for (int n = 0; n < TN; n++) {
                const int j = j0 + kx + 8 * n;
                if (j > i || j >= T) s[a * TN + n] = NEG_BIG;
                part = fmax(part, s[a * TN + n]);
            }
            red_max[(ry + RG * a) * 8 + kx] = part;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* red_max complete; K no longer read */
        float corr[TM];
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a;
            float block_max = red_max[r * 8];
            for (int g = 1; g < 8; g++) block_max = fmax(block_max, red_max[r * 8 + g]);
            const float new_m = fmax(m[a], block_max);
            corr[a] = exp(m[a] - new_m);
            m[a] = new_m;
            float part = 0.0f;
            for (int n = 0; n < TN; n++) {
                const float p = exp(s[a * TN + n] - new_m);
                const int c = kx + 8 * n;
                set4(&Ps[r * PS + c / 4], c % 4, p);
                part += p;
            }
            red_sum[r * 8 + kx] = part;
        }
        LOAD_ROWS(KVs, vb, st, j0, T, 1.0f)
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a;
            float sum = 0.0f;
            for (int g = 0; g < 8; g++) sum += red_sum[r * 8 + g];
            l[a] = l[a] * corr[a] + sum;
            for (int c = 0; c < NC4; c++) o[a * NC4 + c] *= corr[a];
        }
        for (int j4 = 0; j4 < BLK / 4; j4++) {
            float4 p[TM];
            for (int a = 0; a < TM; a++) p[a] = Ps[(ry + RG * a) * PS + j4];
            for (int jj = 0; jj < 4; jj++)
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 vd = cv < HDV ? KVs[(4 * j4 + jj) * RS + cv] : (float4)(0.0f);
                    for (int a = 0; a < TM; a++)
                        o[a * NC4 + c] = MAD((float4)(elem4(p[a], jj)), vd, o[a * NC4 + c]);
                }
        }
    }
    __global float *ob_ = out + out_off + (size_t)(b_ * ob + h_ * oh);
    for (int a = 0; a < TM; a++) {
        const int i = i0 + ry + RG * a;
        if (i >= T) continue;
        const float inv = 1.0f / l[a];
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
            for (int e = 0; e < 4; e++)
                if (4 * cv + e < HD) ob_[(size_t)i * ot + 4 * cv + e] = elem4(o[a * NC4 + c], e) * inv;
        }
        if (kx == 0) lse[lse_off + bh * T + i] = m[a] + log(l[a]);
    }
}
#undef BLK

/* Scores of query rows ry + RG a (Qs, Gs) against key rows kx + 8 n (Ks, Vs) of the current
 * blocks: s = q . k and dp = dO . v, into s[] and dp[]. */
#define BWD_SCORES()                                                                   \
    float s[TM * TN], dp[TM * TN];                                                     \
    for (int x = 0; x < TM * TN; x++) s[x] = dp[x] = 0.0f;                             \
    for (int cv = 0; cv < HDV; cv++) {                                                 \
        float4 qv[TM], gv[TM], kv[TN], vv[TN];                                         \
        for (int a = 0; a < TM; a++) {                                                 \
            qv[a] = Qs[(ry + RG * a) * RS + cv];                                       \
            gv[a] = Gs[(ry + RG * a) * RS + cv];                                       \
        }                                                                              \
        for (int n = 0; n < TN; n++) {                                                 \
            kv[n] = Ks[(kx + 8 * n) * RS + cv];                                        \
            vv[n] = Vs[(kx + 8 * n) * RS + cv];                                        \
        }                                                                              \
        for (int a = 0; a < TM; a++)                                                   \
            for (int n = 0; n < TN; n++) {                                             \
                s[a * TN + n] = dot4(qv[a], kv[n], s[a * TN + n]);                     \
                dp[a * TN + n] = dot4(gv[a], vv[n], dp[a * TN + n]);                   \
            }                                                                          \
    }

#define BLK BLK_DKDV
/* dK, dV: one work-group per (b, h, block of BLK key rows), key block 0 (the most query rows)
 * first; query blocks from the diagonal to T - 1 in order:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i)
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i
 * P and dS are kept key-major (Pt, Dt: (query i, key j) at [j * PS + i / 4], element i % 4). */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
tw_attention_dkdv_tiled(int batch, int heads, int seq_len, float scale, __global const float *q,
                        ulong q_off, __global const float *k, ulong k_off,
                        __global const float *v, ulong v_off, long sb, long sh, long st,
                        __global const float *dout, ulong dout_off, long ob, long oh, long ot,
                        __global const float *lse, ulong lse_off, __global const float *delta,
                        __global float *dk, ulong dk_off, __global float *dv, ulong dv_off) {
    __local float4 Ks[BLK * RS], Vs[BLK * RS], Qs[BLK * RS], Gs[BLK * RS];
    __local float4 Pt[BLK * PS], Dt[BLK * PS];
    __local float lse_s[BLK], delta_s[BLK];
    const int T = seq_len, nblk = (T + BLK - 1) / BLK;
    const size_t group = get_group_id(0);
    if (group >= (size_t)batch * heads * nblk) return;
    const size_t bh = group / nblk;
    const int j0 = (int)(group % nblk) * BLK;
    const int lid = (int)get_local_id(0), ry = lid / 8, kx = lid % 8;
    const int b_ = (int)(bh / heads), h_ = (int)(bh % heads);
    const size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *qb = q + q_off + base;
    __global const float *gb = dout + dout_off + (size_t)(b_ * ob + h_ * oh);
    LOAD_ROWS(Ks, k + k_off + base, st, j0, T, 1.0f)
    LOAD_ROWS(Vs, v + v_off + base, st, j0, T, 1.0f)
    float4 dka[TM * NC4], dva[TM * NC4];
    for (int x = 0; x < TM * NC4; x++) dka[x] = dva[x] = (float4)(0.0f);
    for (int i0 = j0; i0 < T; i0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        LOAD_ROWS(Qs, qb, st, i0, T, 1.0f)
        LOAD_ROWS(Gs, gb, ot, i0, T, 1.0f)
        if (lid < BLK) {
            int i = i0 + lid;
            lse_s[lid] = i < T ? lse[lse_off + bh * T + i] : 0.0f;
            delta_s[lid] = i < T ? delta[bh * T + i] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        BWD_SCORES()
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a, i = i0 + r;
            for (int n = 0; n < TN; n++) {
                const int c = kx + 8 * n, j = j0 + c;
                const float p = (i < T && j <= i) ? exp(scale * s[a * TN + n] - lse_s[r]) : 0.0f;
                set4(&Pt[c * PS + r / 4], r % 4, p);
                set4(&Dt[c * PS + r / 4], r % 4, p * (dp[a * TN + n] - delta_s[r]));
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i4 = 0; i4 < BLK / 4; i4++) {
            float4 p[TM], ds[TM];
            for (int a = 0; a < TM; a++) {
                p[a] = Pt[(ry + RG * a) * PS + i4];
                ds[a] = Dt[(ry + RG * a) * PS + i4];
            }
            for (int ii = 0; ii < 4; ii++)
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 g = cv < HDV ? Gs[(4 * i4 + ii) * RS + cv] : (float4)(0.0f);
                    const float4 x = cv < HDV ? Qs[(4 * i4 + ii) * RS + cv] : (float4)(0.0f);
                    for (int a = 0; a < TM; a++) {
                        dva[a * NC4 + c] = MAD((float4)(elem4(p[a], ii)), g, dva[a * NC4 + c]);
                        dka[a * NC4 + c] = MAD((float4)(elem4(ds[a], ii)), x, dka[a * NC4 + c]);
                    }
                }
        }
    }
    for (int a = 0; a < TM; a++) {
        const int j = j0 + ry + RG * a;
        if (j >= T) continue;
        const size_t row = base + (size_t)j * st;
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
            for (int e = 0; e < 4; e++) {
                const int d = 4 * cv + e;
                if (d >= HD) continue;
                dk[dk_off + row + d] += scale * elem4(dka[a * NC4 + c], e);
                dv[dv_off + row + d] += elem4(dva[a * NC4 + c], e);
            }
        }
    }
}
#undef BLK

#define BLK BLK_DQ
/* dQ: one work-group per (b, h, block of BLK query rows), the last blocks first; key blocks 0 ..
 * the diagonal in order: dq_i += scale sum_j dS_ij k_j. */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
tw_attention_dq_tiled(int batch, int heads, int seq_len, float scale, __global const float *q,
                      ulong q_off, __global const float *k, ulong k_off, __global const float *v,
                      ulong v_off, long sb, long sh, long st, __global const float *dout,
                      ulong dout_off, long ob, long oh, long ot, __global const float *lse,
                      ulong lse_off, __global const float *delta, __global float *dq,
                      ulong dq_off) {
    __local float4 Qs[BLK * RS], Gs[BLK * RS], Ks[BLK * RS], Vs[BLK * RS], Ds[BLK * PS];
    __local float lse_s[BLK], delta_s[BLK];
    const int T = seq_len, nblk = (T + BLK - 1) / BLK;
    const size_t group = get_group_id(0);
    if (group >= (size_t)batch * heads * nblk) return;
    const size_t bh = group / nblk;
    const int i0 = (nblk - 1 - (int)(group % nblk)) * BLK;
    const int lid = (int)get_local_id(0), ry = lid / 8, kx = lid % 8;
    const int b_ = (int)(bh / heads), h_ = (int)(bh % heads);
    const size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *kb = k + k_off + base, *vb = v + v_off + base;
    LOAD_ROWS(Qs, q + q_off + base, st, i0, T, 1.0f)
    LOAD_ROWS(Gs, dout + dout_off + (size_t)(b_ * ob + h_ * oh), ot, i0, T, 1.0f)
    if (lid < BLK) {
        int i = i0 + lid;
        lse_s[lid] = i < T ? lse[lse_off + bh * T + i] : 0.0f;
        delta_s[lid] = i < T ? delta[bh * T + i] : 0.0f;
    }
    float4 acc[TM * NC4];
    for (int x = 0; x < TM * NC4; x++) acc[x] = (float4)(0.0f);
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        LOAD_ROWS(Ks, kb, st, j0, T, 1.0f)
        LOAD_ROWS(Vs, vb, st, j0, T, 1.0f)
        barrier(CLK_LOCAL_MEM_FENCE);
        BWD_SCORES()
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a, i = i0 + r;
            for (int n = 0; n < TN; n++) {
                const int c = kx + 8 * n, j = j0 + c;
                const float p = (i < T && j <= i) ? exp(scale * s[a * TN + n] - lse_s[r]) : 0.0f;
                set4(&Ds[r * PS + c / 4], c % 4, p * (dp[a * TN + n] - delta_s[r]));
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int j4 = 0; j4 < BLK / 4; j4++) {
            float4 ds[TM];
            for (int a = 0; a < TM; a++) ds[a] = Ds[(ry + RG * a) * PS + j4];
            for (int jj = 0; jj < 4; jj++)
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 x = cv < HDV ? Ks[(4 * j4 + jj) * RS + cv] : (float4)(0.0f);
                    for (int a = 0; a < TM; a++)
                        acc[a * NC4 + c] = MAD((float4)(elem4(ds[a], jj)), x, acc[a * NC4 + c]);
                }
        }
    }
    __global float *dqb = dq + dq_off + base;
    for (int a = 0; a < TM; a++) {
        const int i = i0 + ry + RG * a;
        if (i >= T) continue;
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
            for (int e = 0; e < 4; e++)
                if (4 * cv + e < HD) dqb[(size_t)i * st + 4 * cv + e] += scale * elem4(acc[a * NC4 + c], e);
        }
    }
}
#undef BLK
