/* twist OpenCL kernels: token + position embedding (host side: cl_ops.c).
 * Built per data type after kernels/dtype.cl (wte, wpe, out and gradients TW_T).
 * tokens (B, T) int32, wte (V, C), wpe (>= T, C), out/dout (B, T, C). */

/* out[b][t][c] = wte[tokens[b][t]][c] + wpe[t][c]; one work-item per output element. */
__kernel void tw_embedding_fwd(int bt, int seq_len, int channels, __global const int *tokens,
                               ulong tokens_off, __global const TW_T *wte, ulong wte_off,
                               __global const TW_T *wpe, ulong wpe_off, __global TW_T *out,
                               ulong out_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)bt * (size_t)channels) return;
    int i = e / (size_t)channels, c = e % (size_t)channels;
    int token = tokens[tokens_off + i];
    TW_ST(out, out_off + e,
          TW_LD(wte, wte_off + (size_t)token * channels + c) +
              TW_LD(wpe, wpe_off + (size_t)(i % seq_len) * channels + c));
}

/* dwpe[t][c] += dout[b][t][c] for b in order; one work-item per (t, c). */
__kernel void tw_embedding_dwpe(int batch, int seq_len, int channels,
                                __global const TW_T *dout, ulong dout_off,
                                __global TW_T *dwpe, ulong dwpe_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)seq_len * (size_t)channels) return;
    float acc = TW_LD(dwpe, dwpe_off + e);
    for (int b = 0; b < batch; b++)
        acc += TW_LD(dout, dout_off + (size_t)b * seq_len * channels + e);
    TW_ST(dwpe, dwpe_off + e, acc);
}

/* The deterministic dwte scheme, without atomics or sorting: positions holding the same token
 * form a chain in position order. scratch (2 B*T int32) holds links then has_prev:
 * links[i] = the next position with tokens[i]'s token (-1 at the end); has_prev[j] = 1 when j
 * is not first in its chain (zeroed by the host first; each j has exactly one predecessor, so
 * no two work-items write one element). */
__kernel void tw_embedding_links(int bt, __global const int *tokens, ulong tokens_off,
                                 __global int *scratch) {
    int i = get_global_id(0);
    if (i >= bt) return;
    __global int *links = scratch, *has_prev = scratch + bt;
    int token = tokens[tokens_off + i];
    int next = -1;
    for (int j = i + 1; j < bt; j++) {
        if (tokens[tokens_off + j] == token) {
            next = j;
            break;
        }
    }
    links[i] = next;
    if (next >= 0) has_prev[next] = 1;
}

/* The first position of each chain adds the chain's dout rows into its wte row, in position
 * order (the order a sequential loop over (b, t) uses); one work-item per (position, c). */
__kernel void tw_embedding_dwte(int bt, int channels, __global const int *tokens,
                                ulong tokens_off, __global const int *scratch,
                                __global const TW_T *dout, ulong dout_off, __global TW_T *dwte,
                                ulong dwte_off) {
    size_t e = get_global_id(0);
    if (e >= (size_t)bt * (size_t)channels) return;
    __global const int *links = scratch, *has_prev = scratch + bt;
    int i = e / (size_t)channels, c = e % (size_t)channels;
    if (has_prev[i]) return;
    size_t row = dwte_off + (size_t)tokens[tokens_off + i] * channels + c;
    float acc = TW_LD(dwte, row);
    for (int j = i; j >= 0; j = links[j]) acc += TW_LD(dout, dout_off + (size_t)j * channels + c);
    TW_ST(dwte, row, acc);
}
