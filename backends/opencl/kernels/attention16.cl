/* twist OpenCL kernels: fused causal attention on f16 / bf16 storage, fp32 arithmetic (host
 * side: cl_gpu16.c). Built per (data type, head dimension) after kernels/dtype.cl with
 * -DHD=<D> -DWG=<work-group size>; q, k, v, out, dout, dq, dk, dv are TW_T, lse and delta fp32.
 * Element (b, h, t, d) of q, k, v, dq, dk, dv is at off + b*sb + h*sh + t*st + d; of out and
 * dout at off + b*ob + h*oh + t*ot + d. lse and delta are (B, H, T) contiguous.
 *
 * A work-group owns WG consecutive rows of one (b, h) (query rows in the forward and dQ, key rows
 * in dK/dV) and walks the other side's rows in tiles of KT, staged once per tile in local memory
 * as fp32 and shared by every row of the group: global traffic per tile is 1/WG of a row-per-
 * work-item scheme, and the (T, T) scores exist nowhere (online softmax in the forward; the
 * backward recomputes P from lse). Row groups are handed out longest first. Rows past T take
 * part in the barriers but do no work. */
#ifndef HD
#error "HD (the head dimension) must be defined"
#endif
#ifndef WG
#define WG 64
#endif
/* Rows per staged tile: two (KT, HD) fp32 tiles in 32 KB at most. */
#define KT_RAW (4096 / HD)
#define KT (KT_RAW > 32 ? 32 : (KT_RAW < 1 ? 1 : KT_RAW))

#define GROUP_SPLIT(row_groups, heads, longest_last_index)                                  \
    const int bh = get_group_id(0) / (row_groups);                                          \
    const int rg_ = get_group_id(0) % (row_groups);                                         \
    const int rg = (longest_last_index) ? (row_groups) - 1 - rg_ : rg_;                     \
    const int b_ = bh / (heads), h_ = bh % (heads);                                         \
    const int lid = get_local_id(0);

/* Stages rows [j0, j0 + KT) of x (b, h) into tile (KT, HD) fp32, zeros past T. */
static void stage(__local float (*tile)[HD], __global const TW_T *x, ulong base, long st,
                  int j0, int seq_len, int lid) {
    for (int e = lid; e < KT * HD; e += WG) {
        int jj = e / HD, d = e % HD, j = j0 + jj;
        tile[jj][d] = j < seq_len ? TW_LD(x, base + (ulong)j * st + d) : 0.0f;
    }
}

/* O = softmax(scale Q K^T, causal) V and lse per query row. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void tw_attention16_fwd(
    int heads, int seq_len, int row_groups, float scale, long sb, long sh, long st, long ob,
    long oh, long ot, __global const TW_T *q, ulong q_off, __global const TW_T *k, ulong k_off,
    __global const TW_T *v, ulong v_off, __global TW_T *out, ulong out_off, __global float *lse,
    ulong lse_off) {
    GROUP_SPLIT(row_groups, heads, 1)
    __local float Ks[KT][HD], Vs[KT][HD];
    const int i = rg * WG + lid;
    const bool active = i < seq_len;
    const int last = min(seq_len - 1, rg * WG + WG - 1);
    const ulong head = (ulong)b_ * sb + (ulong)h_ * sh;
    float qr[HD], acc[HD];
    for (int d = 0; d < HD; d++) {
        qr[d] = active ? scale * TW_LD(q, q_off + head + (ulong)i * st + d) : 0.0f;
        acc[d] = 0.0f;
    }
    float mx = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 <= last; j0 += KT) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(Ks, k, k_off + head, st, j0, seq_len, lid);
        stage(Vs, v, v_off + head, st, j0, seq_len, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active) continue;
        for (int jj = 0; jj < KT && j0 + jj <= i; jj++) {
            float s = 0.0f;
            for (int d = 0; d < HD; d++) s = fma(qr[d], Ks[jj][d], s);
            if (s > mx) { /* rescale what was summed against the old maximum */
                float correction = exp(mx - s);
                l *= correction;
                for (int d = 0; d < HD; d++) acc[d] *= correction;
                mx = s;
            }
            float p = exp(s - mx);
            l += p;
            for (int d = 0; d < HD; d++) acc[d] = fma(p, Vs[jj][d], acc[d]);
        }
    }
    if (!active) return;
    const float inv = 1.0f / l;
    const ulong o = out_off + (ulong)b_ * ob + (ulong)h_ * oh + (ulong)i * ot;
    for (int d = 0; d < HD; d++) TW_ST(out, o + d, acc[d] * inv);
    lse[lse_off + ((ulong)bh * seq_len + i)] = mx + log(l);
}

/* delta (B*H*T) = sum_d dO O per row; one work-item per row. */
__kernel void tw_attention16_delta(int heads, int seq_len, int rows, long ob, long oh, long ot,
                                   __global const TW_T *out, ulong out_off,
                                   __global const TW_T *dout, ulong dout_off,
                                   __global float *delta) {
    const int g = get_global_id(0);
    if (g >= rows) return;
    const int bh = g / seq_len, i = g % seq_len, b_ = bh / heads, h_ = bh % heads;
    const ulong o = (ulong)b_ * ob + (ulong)h_ * oh + (ulong)i * ot;
    float sum = 0.0f;
    for (int d = 0; d < HD; d++)
        sum = fma(TW_LD(dout, dout_off + o + d), TW_LD(out, out_off + o + d), sum);
    delta[g] = sum;
}

/* dQ_i += scale sum_{j <= i} P_ij (dO_i . V_j - delta_i) K_j; work-group = WG query rows. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void tw_attention16_dq(
    int heads, int seq_len, int row_groups, float scale, long sb, long sh, long st, long ob,
    long oh, long ot, __global const TW_T *q, ulong q_off, __global const TW_T *k, ulong k_off,
    __global const TW_T *v, ulong v_off, __global const TW_T *dout, ulong dout_off,
    __global const float *lse, ulong lse_off, __global const float *delta, __global TW_T *dq,
    ulong dq_off) {
    GROUP_SPLIT(row_groups, heads, 1)
    __local float Ks[KT][HD], Vs[KT][HD];
    const int i = rg * WG + lid;
    const bool active = i < seq_len;
    const int last = min(seq_len - 1, rg * WG + WG - 1);
    const ulong head = (ulong)b_ * sb + (ulong)h_ * sh;
    const ulong orow = (ulong)b_ * ob + (ulong)h_ * oh + (ulong)i * ot;
    float qr[HD], dor[HD], acc[HD];
    for (int d = 0; d < HD; d++) {
        qr[d] = active ? scale * TW_LD(q, q_off + head + (ulong)i * st + d) : 0.0f;
        dor[d] = active ? TW_LD(dout, dout_off + orow + d) : 0.0f;
        acc[d] = 0.0f;
    }
    const ulong row_index = (ulong)bh * seq_len + (active ? i : 0);
    const float row_lse = lse[lse_off + row_index], row_delta = delta[row_index];
    for (int j0 = 0; j0 <= last; j0 += KT) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(Ks, k, k_off + head, st, j0, seq_len, lid);
        stage(Vs, v, v_off + head, st, j0, seq_len, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active) continue;
        for (int jj = 0; jj < KT && j0 + jj <= i; jj++) {
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HD; d++) {
                s = fma(qr[d], Ks[jj][d], s);
                dp = fma(dor[d], Vs[jj][d], dp);
            }
            float ds = exp(s - row_lse) * (dp - row_delta);
            for (int d = 0; d < HD; d++) acc[d] = fma(ds, Ks[jj][d], acc[d]);
        }
    }
    if (!active) return;
    const ulong o = dq_off + head + (ulong)i * st;
    for (int d = 0; d < HD; d++) TW_ST(dq, o + d, TW_LD(dq, o + d) + scale * acc[d]);
}

/* dV_j += sum_{i >= j} P_ij dO_i;  dK_j += scale sum_{i >= j} P_ij (dO_i . V_j - delta_i) Q_i;
 * work-group = WG key rows, walking query tiles from its first row to T - 1. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void tw_attention16_dkdv(
    int heads, int seq_len, int row_groups, float scale, long sb, long sh, long st, long ob,
    long oh, long ot, __global const TW_T *q, ulong q_off, __global const TW_T *k, ulong k_off,
    __global const TW_T *v, ulong v_off, __global const TW_T *dout, ulong dout_off,
    __global const float *lse, ulong lse_off, __global const float *delta, __global TW_T *dk,
    ulong dk_off, __global TW_T *dv, ulong dv_off) {
    GROUP_SPLIT(row_groups, heads, 0)
    __local float Qs[KT][HD], Os[KT][HD], Ls[KT], Ds[KT];
    const int j = rg * WG + lid;
    const bool active = j < seq_len;
    const int first = rg * WG;
    const ulong head = (ulong)b_ * sb + (ulong)h_ * sh;
    const ulong ohead = (ulong)b_ * ob + (ulong)h_ * oh;
    float kr[HD], vr[HD], dk_acc[HD], dv_acc[HD];
    for (int d = 0; d < HD; d++) {
        kr[d] = active ? scale * TW_LD(k, k_off + head + (ulong)j * st + d) : 0.0f;
        vr[d] = active ? TW_LD(v, v_off + head + (ulong)j * st + d) : 0.0f;
        dk_acc[d] = dv_acc[d] = 0.0f;
    }
    for (int i0 = first; i0 < seq_len; i0 += KT) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage(Qs, q, q_off + head, st, i0, seq_len, lid);
        for (int e = lid; e < KT * HD; e += WG) {
            int ii = e / HD, d = e % HD, i = i0 + ii;
            Os[ii][d] = i < seq_len ? TW_LD(dout, dout_off + ohead + (ulong)i * ot + d) : 0.0f;
        }
        for (int ii = lid; ii < KT; ii += WG) {
            int i = i0 + ii;
            ulong r = (ulong)bh * seq_len + (i < seq_len ? i : 0);
            Ls[ii] = lse[lse_off + r];
            Ds[ii] = delta[r];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active) continue;
        for (int ii = 0; ii < KT && i0 + ii < seq_len; ii++) {
            if (i0 + ii < j) continue;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HD; d++) {
                s = fma(Qs[ii][d], kr[d], s);
                dp = fma(Os[ii][d], vr[d], dp);
            }
            float p = exp(s - Ls[ii]);
            float ds = p * (dp - Ds[ii]);
            for (int d = 0; d < HD; d++) {
                dv_acc[d] = fma(p, Os[ii][d], dv_acc[d]);
                dk_acc[d] = fma(ds, Qs[ii][d], dk_acc[d]);
            }
        }
    }
    if (!active) return;
    const ulong o = head + (ulong)j * st;
    for (int d = 0; d < HD; d++) {
        TW_ST(dk, dk_off + o + d, TW_LD(dk, dk_off + o + d) + scale * dk_acc[d]);
        TW_ST(dv, dv_off + o + d, TW_LD(dv, dv_off + o + d) + dv_acc[d]);
    }
}
