/* twist OpenCL kernels: fused causal attention tiled for GPUs, flash-attention style (host side:
 * cl_attention.c, variant "tiled"; the same work split as the Vulkan shaders
 * shaders/attention_*_tiled.comp, whose comments say more).
 *
 * Built per head dimension with -DHD=<D> and the block size of each kernel, -DBLK_FWD,
 * -DBLK_DQ, -DBLK_DKDV (32, 16 or 8: the largest whose tiles fit the device's local memory).
 * A work-group of WGS(BLK) work-items (128; 64 at BLK = 8) owns one block of BLK query rows
 * (forward, dQ) or key rows (dK/dV) of one (b, h) and walks the other side's blocks in order,
 * staging their rows in local memory (row strides HD + 1 and BLK + 1, odd against bank
 * conflicts). Work-item lid = (ry, kx) = (lid / 8, lid % 8), RG = WGS / 8 row groups: in a score
 * phase it computes scores of rows ry + RG a (a < TM) and columns kx + 8 n (n < TN), in an
 * accumulation phase it owns rows ry + RG a and columns d = kx + 8 c (c < NC). Every sum runs in
 * a fixed order, every output element has one owner: deterministic, no atomics.
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
#define HDP (HD + 1)
#define NC ((HD + 7) / 8)
/* These read BLK, defined before each kernel. */
#define WGS (BLK == 8 ? 64 : 128)
#define RG (WGS / 8)
#define TM (BLK / RG)
#define TN (BLK / 8)
#define BP (BLK + 1)

/* Rows r0 .. r0 + BLK - 1 (zeros from row T on) of a (b, h) slice at `src` with row stride st
 * into the local tile dst. */
#define LOAD_ROWS(dst, src, st, r0, T)                                             \
    for (int e_ = lid; e_ < BLK * HD; e_ += WGS) {                                 \
        int r_ = e_ / HD, d_ = e_ % HD, t_ = (r0) + r_;                            \
        (dst)[r_ * HDP + d_] = t_ < (T) ? (src)[(size_t)t_ * (st) + d_] : 0.0f;    \
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
    __local float Qs[BLK * HDP], KVs[BLK * HDP], Ps[BLK * BP];
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

    for (int e = lid; e < BLK * HD; e += WGS) {
        int r = e / HD, d = e % HD, i = i0 + r;
        Qs[r * HDP + d] = i < T ? qb[(size_t)i * st + d] * scale : 0.0f;
    }
    float m[TM], l[TM], o[TM * NC];
    for (int a = 0; a < TM; a++) {
        m[a] = NEG_BIG;
        l[a] = 0.0f;
        for (int c = 0; c < NC; c++) o[a * NC + c] = 0.0f;
    }
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous block's readers of KVs and Ps are done */
        LOAD_ROWS(KVs, kb, st, j0, T)
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[TM * TN];
        for (int x = 0; x < TM * TN; x++) s[x] = 0.0f;
        for (int d = 0; d < HD; d++) {
            float qv[TM], kv[TN];
            for (int a = 0; a < TM; a++) qv[a] = Qs[(ry + RG * a) * HDP + d];
            for (int n = 0; n < TN; n++) kv[n] = KVs[(kx + 8 * n) * HDP + d];
            for (int a = 0; a < TM; a++)
                for (int n = 0; n < TN; n++) s[a * TN + n] = MAD(qv[a], kv[n], s[a * TN + n]);
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
                Ps[r * BP + kx + 8 * n] = p;
                part += p;
            }
            red_sum[r * 8 + kx] = part;
        }
        LOAD_ROWS(KVs, vb, st, j0, T)
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a;
            float sum = 0.0f;
            for (int g = 0; g < 8; g++) sum += red_sum[r * 8 + g];
            l[a] = l[a] * corr[a] + sum;
            for (int c = 0; c < NC; c++) o[a * NC + c] *= corr[a];
        }
        for (int j = 0; j < BLK; j++) {
            float p[TM];
            for (int a = 0; a < TM; a++) p[a] = Ps[(ry + RG * a) * BP + j];
            for (int c = 0; c < NC; c++) {
                const int d = kx + 8 * c;
                const float vd = d < HD ? KVs[j * HDP + d] : 0.0f;
                for (int a = 0; a < TM; a++) o[a * NC + c] = MAD(p[a], vd, o[a * NC + c]);
            }
        }
    }
    __global float *ob_ = out + out_off + (size_t)(b_ * ob + h_ * oh);
    for (int a = 0; a < TM; a++) {
        const int i = i0 + ry + RG * a;
        if (i >= T) continue;
        const float inv = 1.0f / l[a];
        for (int c = 0; c < NC; c++) {
            const int d = kx + 8 * c;
            if (d < HD) ob_[(size_t)i * ot + d] = o[a * NC + c] * inv;
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
    for (int d = 0; d < HD; d++) {                                                     \
        float qv[TM], gv[TM], kv[TN], vv[TN];                                          \
        for (int a = 0; a < TM; a++) {                                                 \
            qv[a] = Qs[(ry + RG * a) * HDP + d];                                       \
            gv[a] = Gs[(ry + RG * a) * HDP + d];                                       \
        }                                                                              \
        for (int n = 0; n < TN; n++) {                                                 \
            kv[n] = Ks[(kx + 8 * n) * HDP + d];                                        \
            vv[n] = Vs[(kx + 8 * n) * HDP + d];                                        \
        }                                                                              \
        for (int a = 0; a < TM; a++)                                                   \
            for (int n = 0; n < TN; n++) {                                             \
                s[a * TN + n] = MAD(qv[a], kv[n], s[a * TN + n]);                      \
                dp[a * TN + n] = MAD(gv[a], vv[n], dp[a * TN + n]);                    \
            }                                                                          \
    }

#define BLK BLK_DKDV
/* dK, dV: one work-group per (b, h, block of BLK key rows), key block 0 (the most query rows)
 * first; query blocks from the diagonal to T - 1 in order:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i)
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i */
__kernel __attribute__((reqd_work_group_size(WGS, 1, 1))) void
tw_attention_dkdv_tiled(int batch, int heads, int seq_len, float scale, __global const float *q,
                        ulong q_off, __global const float *k, ulong k_off,
                        __global const float *v, ulong v_off, long sb, long sh, long st,
                        __global const float *dout, ulong dout_off, long ob, long oh, long ot,
                        __global const float *lse, ulong lse_off, __global const float *delta,
                        __global float *dk, ulong dk_off, __global float *dv, ulong dv_off) {
    __local float Ks[BLK * HDP], Vs[BLK * HDP], Qs[BLK * HDP], Gs[BLK * HDP];
    __local float Ps[BLK * BP], Ds[BLK * BP], lse_s[BLK], delta_s[BLK];
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
    LOAD_ROWS(Ks, k + k_off + base, st, j0, T)
    LOAD_ROWS(Vs, v + v_off + base, st, j0, T)
    float dka[TM * NC], dva[TM * NC];
    for (int x = 0; x < TM * NC; x++) dka[x] = dva[x] = 0.0f;
    for (int i0 = j0; i0 < T; i0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        LOAD_ROWS(Qs, qb, st, i0, T)
        LOAD_ROWS(Gs, gb, ot, i0, T)
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
                Ps[r * BP + c] = p;
                Ds[r * BP + c] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = 0; i < BLK; i++) {
            float p[TM], ds[TM];
            for (int a = 0; a < TM; a++) {
                p[a] = Ps[i * BP + ry + RG * a];
                ds[a] = Ds[i * BP + ry + RG * a];
            }
            for (int c = 0; c < NC; c++) {
                const int d = kx + 8 * c;
                const float g = d < HD ? Gs[i * HDP + d] : 0.0f;
                const float x = d < HD ? Qs[i * HDP + d] : 0.0f;
                for (int a = 0; a < TM; a++) {
                    dva[a * NC + c] = MAD(p[a], g, dva[a * NC + c]);
                    dka[a * NC + c] = MAD(ds[a], x, dka[a * NC + c]);
                }
            }
        }
    }
    for (int a = 0; a < TM; a++) {
        const int j = j0 + ry + RG * a;
        if (j >= T) continue;
        const size_t row = base + (size_t)j * st;
        for (int c = 0; c < NC; c++) {
            const int d = kx + 8 * c;
            if (d >= HD) continue;
            dk[dk_off + row + d] += scale * dka[a * NC + c];
            dv[dv_off + row + d] += dva[a * NC + c];
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
    __local float Qs[BLK * HDP], Gs[BLK * HDP], Ks[BLK * HDP], Vs[BLK * HDP];
    __local float Ds[BLK * BP], lse_s[BLK], delta_s[BLK];
    const int T = seq_len, nblk = (T + BLK - 1) / BLK;
    const size_t group = get_group_id(0);
    if (group >= (size_t)batch * heads * nblk) return;
    const size_t bh = group / nblk;
    const int i0 = (nblk - 1 - (int)(group % nblk)) * BLK;
    const int lid = (int)get_local_id(0), ry = lid / 8, kx = lid % 8;
    const int b_ = (int)(bh / heads), h_ = (int)(bh % heads);
    const size_t base = (size_t)(b_ * sb + h_ * sh);
    __global const float *kb = k + k_off + base, *vb = v + v_off + base;
    LOAD_ROWS(Qs, q + q_off + base, st, i0, T)
    LOAD_ROWS(Gs, dout + dout_off + (size_t)(b_ * ob + h_ * oh), ot, i0, T)
    if (lid < BLK) {
        int i = i0 + lid;
        lse_s[lid] = i < T ? lse[lse_off + bh * T + i] : 0.0f;
        delta_s[lid] = i < T ? delta[bh * T + i] : 0.0f;
    }
    float acc[TM * NC];
    for (int x = 0; x < TM * NC; x++) acc[x] = 0.0f;
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        LOAD_ROWS(Ks, kb, st, j0, T)
        LOAD_ROWS(Vs, vb, st, j0, T)
        barrier(CLK_LOCAL_MEM_FENCE);
        BWD_SCORES()
        for (int a = 0; a < TM; a++) {
            const int r = ry + RG * a, i = i0 + r;
            for (int n = 0; n < TN; n++) {
                const int c = kx + 8 * n, j = j0 + c;
                const float p = (i < T && j <= i) ? exp(scale * s[a * TN + n] - lse_s[r]) : 0.0f;
                Ds[r * BP + c] = p * (dp[a * TN + n] - delta_s[r]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int j = 0; j < BLK; j++) {
            float ds[TM];
            for (int a = 0; a < TM; a++) ds[a] = Ds[(ry + RG * a) * BP + j];
            for (int c = 0; c < NC; c++) {
                const int d = kx + 8 * c;
                const float x = d < HD ? Ks[j * HDP + d] : 0.0f;
                for (int a = 0; a < TM; a++) acc[a * NC + c] = MAD(ds[a], x, acc[a * NC + c]);
            }
        }
    }
    __global float *dqb = dq + dq_off + base;
    for (int a = 0; a < TM; a++) {
        const int i = i0 + ry + RG * a;
        if (i >= T) continue;
        for (int c = 0; c < NC; c++) {
            const int d = kx + 8 * c;
            if (d < HD) dqb[(size_t)i * st + d] += scale * acc[a * NC + c];
        }
    }
}
#undef BLK
