// Fused causal attention, forward and backward (semantics: include/twist/backend.h; reference:
// backends/cpu/cpu_attention.c). Flash-attention style: the (T, T) score matrix never exists in
// global memory; tiles of 32 keys (or queries) live in shared memory, one per warp lane.
//
// Work split (warps of 32 lanes, blocks of 4 warps; head_dim D <= 128):
//   forward   a block owns 16 query rows (4 per warp) and walks the key tiles up to its last
//             row. Lane l scores key j0 + l against the warp's rows; warp shuffles give each
//             row's tile max and sum (online softmax: running max m, sum l, output rescaled when
//             m grows); then lane l owns output columns d = l, l + 32, l + 64, l + 96 and adds
//             sum_j p_j v_j[d] over the tile, p_j broadcast by shuffle. lse = m + log(l).
//   backward  delta_i = dO_i . O_i first (one warp per row, into a (B, H, T) scratch).
//             dQ: a block owns 8 query rows (2 per warp) and walks the key tiles like the forward,
//             recomputing P_ij = exp(scale q_i.k_j - lse_i) and dS_ij = P_ij (dO_i.v_j - delta_i),
//             and adds dq_i += scale sum_j dS_ij k_j.
//             dK, dV: a block owns 8 key rows (2 per warp) and walks the query tiles from its first
//             key on: lane l is query i0 + l; dv_j += sum_i P_ij dO_i, dk_j += scale sum_i dS_ij q_i.
//   Every gradient row has one owner and its sum runs in a fixed order: no atomics, the same
//   bits run after run.
// Offsets are int64 (element (b, h, t, d) at b*stride.b + h*stride.h + t*stride.t + d). Shared
// memory per block stays under 48 KB: tiles read by rows across lanes have a row stride of 129
// floats (odd, so the 32 lanes hit 32 different banks).
#include <cmath>

#include "cuda_kernels.h"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxD = TW_CUDA_ATTENTION_MAX_D;
constexpr int kPerLane = kMaxD / 32; // output columns per lane
constexpr int kTile = 32;            // keys (forward, dQ) or queries (dK/dV) per tile
constexpr int kPad = kMaxD + 1;      // row stride of lane-indexed tiles
constexpr int kFwdRows = 4;          // query rows per warp, forward
constexpr int kBwdRows = 2;          // query rows (dQ) or key rows (dK/dV) per warp, backward
constexpr unsigned kFull = 0xffffffffu;

static_assert(kMaxD % 32 == 0, "head dimension limit must be a multiple of the warp size");

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, offset));
    return v;
}

// Butterfly sum: every lane ends with the same bits (float addition is commutative).
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFull, v, offset);
    return v;
}

// Head (b, h) of flattened index bh.
struct head {
    int b, h;
};

__device__ __forceinline__ head head_of(long long bh, int heads) {
    head result = {(int)(bh / heads), (int)(bh % heads)};
    return result;
}

// dst[r * dst_stride + d] = rows (r0 + r) of one head, for r < count, d < D; rows at or past T
// are zero. All threads of the block take part.
__device__ void load_rows(float *dst, int dst_stride, const float *base, int64_t row_stride,
                          int r0, int count, int T, int D) {
    for (int e = threadIdx.x; e < count * D; e += kThreads) {
        const int r = e / D, d = e % D, t = r0 + r;
        dst[r * dst_stride + d] = t < T ? base[(int64_t)t * row_stride + d] : 0.0f;
    }
}

// ------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
attention_fwd_kernel(tw_cuda_attention a, int query_blocks) {
    constexpr int kBlockRows = kWarps * kFwdRows;
    __shared__ float ks[kTile * kPad];
    __shared__ float vs[kTile * kMaxD];
    __shared__ float qs[kBlockRows * kMaxD];
    const int T = a.seq_len, D = a.head_dim;
    const long long bh = blockIdx.x / query_blocks;
    // Later query blocks see more keys: they are scheduled first.
    const int qb = query_blocks - 1 - (int)(blockIdx.x % query_blocks);
    const head hd = head_of(bh, a.heads);
    const float *q = a.q + hd.b * a.qkv_b + hd.h * a.qkv_h;
    const float *k = a.k + hd.b * a.qkv_b + hd.h * a.qkv_h;
    const float *v = a.v + hd.b * a.qkv_b + hd.h * a.qkv_h;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i0 = qb * kBlockRows;
    const int row0 = i0 + warp * kFwdRows; // this warp's first query row
    const int last_row = min(i0 + kBlockRows, T) - 1;

    load_rows(qs, kMaxD, q, a.qkv_t, i0, kBlockRows, T, D);

    float m[kFwdRows], l[kFwdRows], acc[kFwdRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kFwdRows; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) acc[r][u] = 0.0f;
    }

    for (int j0 = 0; j0 <= last_row; j0 += kTile) {
        __syncthreads(); // the previous tile is consumed (first pass: nothing to wait for)
        load_rows(ks, kPad, k, a.qkv_t, j0, kTile, T, D);
        load_rows(vs, kMaxD, v, a.qkv_t, j0, kTile, T, D);
        __syncthreads();
        // Warp-uniform: none of this warp's rows exists or sees a key of this tile.
        if (row0 >= T || j0 > row0 + kFwdRows - 1) continue;

        // Scores of key j = j0 + lane against the warp's rows.
        const int j = j0 + lane;
        float s[kFwdRows];
#pragma unroll
        for (int r = 0; r < kFwdRows; r++) s[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float kd = ks[lane * kPad + d];
#pragma unroll
            for (int r = 0; r < kFwdRows; r++) s[r] += qs[(warp * kFwdRows + r) * kMaxD + d] * kd;
        }
        float p[kFwdRows];
#pragma unroll
        for (int r = 0; r < kFwdRows; r++) {
            const int i = row0 + r;
            p[r] = 0.0f;
            if (i >= T) continue; // warp-uniform
            const float score = j <= i ? s[r] * a.scale : -INFINITY;
            // Key j0 <= i is visible on the first tile that row i processes, so m_new is finite.
            const float m_new = fmaxf(m[r], warp_max(score));
            p[r] = expf(score - m_new);              // masked keys: exp(-inf) = 0
            const float correction = expf(m[r] - m_new); // first tile: exp(-inf) = 0
            l[r] = l[r] * correction + warp_sum(p[r]);
            m[r] = m_new;
#pragma unroll
            for (int u = 0; u < kPerLane; u++) acc[r][u] *= correction;
        }
        // acc[r][d] += sum_j p_rj v_j[d] over the keys any of the warp's rows can see.
        const int count = min(min(kTile, T - j0), row0 + kFwdRows - j0);
        for (int jj = 0; jj < count; jj++) {
            float pj[kFwdRows];
#pragma unroll
            for (int r = 0; r < kFwdRows; r++) pj[r] = __shfl_sync(kFull, p[r], jj);
#pragma unroll
            for (int u = 0; u < kPerLane; u++) {
                const int d = lane + 32 * u;
                if (d < D) {
                    const float vd = vs[jj * kMaxD + d];
#pragma unroll
                    for (int r = 0; r < kFwdRows; r++) acc[r][u] += pj[r] * vd;
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < kFwdRows; r++) {
        const int i = row0 + r;
        if (i >= T) continue;
        float *out = a.out + hd.b * a.out_b + hd.h * a.out_h + (int64_t)i * a.out_t;
        const float inverse = 1.0f / l[r];
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) out[d] = acc[r][u] * inverse;
        }
        if (lane == 0) a.lse[bh * T + i] = m[r] + logf(l[r]);
    }
}

// ------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------

// delta (B, H, T) = rowwise dO . O: one warp per row.
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(tw_cuda_attention a) {
    const long long rows = (long long)a.batch * a.heads * a.seq_len;
    const int lane = threadIdx.x % 32;
    for (long long row = (long long)blockIdx.x * kWarps + threadIdx.x / 32; row < rows;
         row += (long long)gridDim.x * kWarps) {
        const int t = (int)(row % a.seq_len);
        const head hd = head_of(row / a.seq_len, a.heads);
        const int64_t at = hd.b * a.out_b + hd.h * a.out_h + (int64_t)t * a.out_t;
        float sum = 0.0f;
        for (int d = lane; d < a.head_dim; d += 32) sum += a.dout[at + d] * a.out[at + d];
        sum = warp_sum(sum);
        if (lane == 0) a.delta[row] = sum;
    }
}

__global__ void __launch_bounds__(kThreads)
attention_dq_kernel(tw_cuda_attention a, int query_blocks) {
    constexpr int kBlockRows = kWarps * kBwdRows;
    __shared__ float ks[kTile * kPad];
    __shared__ float vs[kTile * kPad];
    __shared__ float qs[kBlockRows * kMaxD];
    __shared__ float dos[kBlockRows * kMaxD];
    const int T = a.seq_len, D = a.head_dim;
    const long long bh = blockIdx.x / query_blocks;
    const int qb = query_blocks - 1 - (int)(blockIdx.x % query_blocks);
    const head hd = head_of(bh, a.heads);
    const int64_t qkv_head = hd.b * a.qkv_b + hd.h * a.qkv_h;
    const int64_t out_head = hd.b * a.out_b + hd.h * a.out_h;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i0 = qb * kBlockRows;
    const int row0 = i0 + warp * kBwdRows;
    const int last_row = min(i0 + kBlockRows, T) - 1;

    load_rows(qs, kMaxD, a.q + qkv_head, a.qkv_t, i0, kBlockRows, T, D);
    load_rows(dos, kMaxD, a.dout + out_head, a.out_t, i0, kBlockRows, T, D);

    float lse[kBwdRows], delta[kBwdRows], acc[kBwdRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kBwdRows; r++) {
        const int i = row0 + r;
        lse[r] = i < T ? a.lse[bh * T + i] : 0.0f;
        delta[r] = i < T ? a.delta[bh * T + i] : 0.0f;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) acc[r][u] = 0.0f;
    }

    for (int j0 = 0; j0 <= last_row; j0 += kTile) {
        __syncthreads();
        load_rows(ks, kPad, a.k + qkv_head, a.qkv_t, j0, kTile, T, D);
        load_rows(vs, kPad, a.v + qkv_head, a.qkv_t, j0, kTile, T, D);
        __syncthreads();
        if (row0 >= T || j0 > row0 + kBwdRows - 1) continue; // warp-uniform

        const int j = j0 + lane;
        float s[kBwdRows], dp[kBwdRows];
#pragma unroll
        for (int r = 0; r < kBwdRows; r++) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float kd = ks[lane * kPad + d], vd = vs[lane * kPad + d];
#pragma unroll
            for (int r = 0; r < kBwdRows; r++) {
                s[r] += qs[(warp * kBwdRows + r) * kMaxD + d] * kd;
                dp[r] += dos[(warp * kBwdRows + r) * kMaxD + d] * vd;
            }
        }
        float ds[kBwdRows];
#pragma unroll
        for (int r = 0; r < kBwdRows; r++) {
            const int i = row0 + r;
            const float p = i < T && j <= i ? expf(s[r] * a.scale - lse[r]) : 0.0f;
            ds[r] = p * (dp[r] - delta[r]);
        }
        const int count = min(min(kTile, T - j0), row0 + kBwdRows - j0);
        for (int jj = 0; jj < count; jj++) {
            float dsj[kBwdRows];
#pragma unroll
            for (int r = 0; r < kBwdRows; r++) dsj[r] = __shfl_sync(kFull, ds[r], jj);
#pragma unroll
            for (int u = 0; u < kPerLane; u++) {
                const int d = lane + 32 * u;
                if (d < D) {
                    const float kd = ks[jj * kPad + d];
#pragma unroll
                    for (int r = 0; r < kBwdRows; r++) acc[r][u] += dsj[r] * kd;
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < kBwdRows; r++) {
        const int i = row0 + r;
        if (i >= T) continue;
        float *dq = a.dq + qkv_head + (int64_t)i * a.qkv_t;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) dq[d] += a.scale * acc[r][u];
        }
    }
}

__global__ void __launch_bounds__(kThreads)
attention_dkdv_kernel(tw_cuda_attention a, int key_blocks) {
    constexpr int kBlockKeys = kWarps * kBwdRows;
    __shared__ float qt[kTile * kPad];
    __shared__ float dot[kTile * kPad];
    __shared__ float kr[kBlockKeys * kMaxD];
    __shared__ float vr[kBlockKeys * kMaxD];
    __shared__ float lse_t[kTile], delta_t[kTile];
    const int T = a.seq_len, D = a.head_dim;
    const long long bh = blockIdx.x / key_blocks;
    const int kb = (int)(blockIdx.x % key_blocks); // early keys see more queries: first
    const head hd = head_of(bh, a.heads);
    const int64_t qkv_head = hd.b * a.qkv_b + hd.h * a.qkv_h;
    const int64_t out_head = hd.b * a.out_b + hd.h * a.out_h;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j_first = kb * kBlockKeys;
    const int key0 = j_first + warp * kBwdRows; // this warp's first key row

    load_rows(kr, kMaxD, a.k + qkv_head, a.qkv_t, j_first, kBlockKeys, T, D);
    load_rows(vr, kMaxD, a.v + qkv_head, a.qkv_t, j_first, kBlockKeys, T, D);

    float dk[kBwdRows][kPerLane], dv[kBwdRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kBwdRows; r++)
#pragma unroll
        for (int u = 0; u < kPerLane; u++) dk[r][u] = dv[r][u] = 0.0f;

    // Queries before the block's first key see none of its keys.
    for (int i0 = j_first; i0 < T; i0 += kTile) {
        __syncthreads();
        load_rows(qt, kPad, a.q + qkv_head, a.qkv_t, i0, kTile, T, D);
        load_rows(dot, kPad, a.dout + out_head, a.out_t, i0, kTile, T, D);
        if (threadIdx.x < kTile) {
            const int i = i0 + threadIdx.x;
            lse_t[threadIdx.x] = i < T ? a.lse[bh * T + i] : 0.0f;
            delta_t[threadIdx.x] = i < T ? a.delta[bh * T + i] : 0.0f;
        }
        __syncthreads();
        if (key0 >= T) continue; // warp-uniform

        const int i = i0 + lane;
        float s[kBwdRows], dp[kBwdRows];
#pragma unroll
        for (int r = 0; r < kBwdRows; r++) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float qd = qt[lane * kPad + d], od = dot[lane * kPad + d];
#pragma unroll
            for (int r = 0; r < kBwdRows; r++) {
                s[r] += qd * kr[(warp * kBwdRows + r) * kMaxD + d];
                dp[r] += od * vr[(warp * kBwdRows + r) * kMaxD + d];
            }
        }
        float p[kBwdRows], ds[kBwdRows];
#pragma unroll
        for (int r = 0; r < kBwdRows; r++) {
            const int j = key0 + r;
            p[r] = i < T && j < T && j <= i ? expf(s[r] * a.scale - lse_t[lane]) : 0.0f;
            ds[r] = p[r] * (dp[r] - delta_t[lane]);
        }
        const int count = min(kTile, T - i0);
        for (int ii = 0; ii < count; ii++) {
            float pi[kBwdRows], dsi[kBwdRows];
#pragma unroll
            for (int r = 0; r < kBwdRows; r++) {
                pi[r] = __shfl_sync(kFull, p[r], ii);
                dsi[r] = __shfl_sync(kFull, ds[r], ii);
            }
#pragma unroll
            for (int u = 0; u < kPerLane; u++) {
                const int d = lane + 32 * u;
                if (d < D) {
                    const float qd = qt[ii * kPad + d], od = dot[ii * kPad + d];
#pragma unroll
                    for (int r = 0; r < kBwdRows; r++) {
                        dk[r][u] += dsi[r] * qd;
                        dv[r][u] += pi[r] * od;
                    }
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < kBwdRows; r++) {
        const int j = key0 + r;
        if (j >= T) continue;
        float *dk_row = a.dk + qkv_head + (int64_t)j * a.qkv_t;
        float *dv_row = a.dv + qkv_head + (int64_t)j * a.qkv_t;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) {
                dk_row[d] += a.scale * dk[r][u];
                dv_row[d] += dv[r][u];
            }
        }
    }
}

// Blocks = B*H*per_head, checked against the grid limit (2^31 - 1).
bool grid_size(const tw_cuda_attention *a, int per_head, unsigned *blocks) {
    const long long total = (long long)a->batch * a->heads * per_head;
    if (total < 1 || total > 0x7fffffffLL) return false;
    *blocks = (unsigned)total;
    return true;
}


// ------------------------------------------------------------------------------------------
// The tiled variant ("tiled"; the one above is "warp"): the work split of the Vulkan and OpenCL
// tiled kernels (shaders/attention_*_tiled.comp, backends/opencl/kernels/attention_tiled.cl),
// which run on lavapipe and PoCL in tests; this CUDA transcription compiles here but has not run
// on a GPU (the backend measures it against "warp" on first use and skips it if it disagrees).
//
// A block of 128 threads owns BLK (32 or 16) query rows (forward, dQ) or key rows (dK/dV) of
// one (b, h) and walks the other side's blocks in order, staging their rows in shared memory as
// float4 tiles: rows of HDV = ceil(D / 4) float4s (zeros past D) at a stride of RS = HDV + 1,
// score rows of BLK / 4 float4s at PS = BLK / 4 + 1, so every shared load moves 4 floats and the
// rows a warp reads at once start 4 banks apart. Thread t = (ry, kx) = (t / 8, t % 8): in a score
// phase it computes the scores of rows ry + 16 a (a < TM = BLK / 16) against columns kx + 8 n
// (n < TN = BLK / 8); in an accumulation phase it owns rows ry + 16 a and the float4 column
// groups cv = kx + 8 c (c < NC4, a template parameter with NC4 * 32 >= D, so the accumulators stay
// in registers). Every sum runs in a fixed order and every output element has one owner:
// deterministic, no atomics. Dynamic shared memory, at most 48 KB (tiled_shared_floats).
// ------------------------------------------------------------------------------------------

constexpr int kTiledThreads = 128;
constexpr float kNegBig = -3.0e38f; // a finite -infinity: exp(kNegBig - m) is 0

__host__ __device__ constexpr int tiled_shared_floats(int blk, int D, int pass) {
    // pass 0 forward: Q, KV, P, two (BLK, 8) partials; 1 dQ: Q, dO, K, V, dS, lse, delta;
    // 2 dK/dV: the same and P.
    return pass == 0   ? 2 * blk * ((D + 3) / 4 + 1) * 4 + blk * (blk / 4 + 1) * 4 + 16 * blk
           : pass == 1 ? 4 * blk * ((D + 3) / 4 + 1) * 4 + blk * (blk / 4 + 1) * 4 + 2 * blk
                       : 4 * blk * ((D + 3) / 4 + 1) * 4 + 2 * blk * (blk / 4 + 1) * 4 + 2 * blk;
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float s) {
    return fmaf(a.w, b.w, fmaf(a.z, b.z, fmaf(a.y, b.y, fmaf(a.x, b.x, s))));
}

__device__ __forceinline__ float elem4(float4 v, int e) {
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

__device__ __forceinline__ float4 fma4(float p, float4 v, float4 acc) {
    return make_float4(fmaf(p, v.x, acc.x), fmaf(p, v.y, acc.y), fmaf(p, v.z, acc.z),
                       fmaf(p, v.w, acc.w));
}

__device__ __forceinline__ void set4(float4 *p, int e, float value) {
    reinterpret_cast<float *>(p)[e] = value;
}

// Rows r0 .. r0 + BLK - 1 (zeros from T on) into the float4 tile dst, scaled.
template <int BLK>
__device__ __forceinline__ void tiled_load(float4 *dst, const float *src, int64_t stride, int r0,
                                           int T, int D, float scale) {
    const int HDV = (D + 3) / 4, RS = HDV + 1;
    for (int e = threadIdx.x; e < BLK * HDV; e += kTiledThreads) {
        const int r = e / HDV, cv = e % HDV, t = r0 + r;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (t < T) {
            const float *row = src + (int64_t)t * stride + 4 * cv;
            x.x = 4 * cv + 0 < D ? row[0] * scale : 0.0f;
            x.y = 4 * cv + 1 < D ? row[1] * scale : 0.0f;
            x.z = 4 * cv + 2 < D ? row[2] * scale : 0.0f;
            x.w = 4 * cv + 3 < D ? row[3] * scale : 0.0f;
        }
        dst[r * RS + cv] = x;
    }
}

template <int BLK, int NC4>
__global__ void __launch_bounds__(kTiledThreads)
attention_fwd_tiled_kernel(tw_cuda_attention a, int nblk) {
    constexpr int TM = BLK / 16, TN = BLK / 8, PS = BLK / 4 + 1;
    extern __shared__ float4 smem[];
    const int T = a.seq_len, D = a.head_dim, HDV = (D + 3) / 4, RS = HDV + 1;
    float4 *Qs = smem, *KVs = Qs + BLK * RS, *Ps = KVs + BLK * RS;
    float *red_max = reinterpret_cast<float *>(Ps + BLK * PS), *red_sum = red_max + BLK * 8;
    const long long bh = blockIdx.x / nblk;
    const int i0 = (nblk - 1 - (int)(blockIdx.x % nblk)) * BLK; // longest rows first
    const int ry = threadIdx.x / 8, kx = threadIdx.x % 8;
    const head hd = head_of(bh, a.heads);
    const int64_t base = hd.b * a.qkv_b + hd.h * a.qkv_h;

    tiled_load<BLK>(Qs, a.q + base, a.qkv_t, i0, T, D, a.scale);
    float m[TM], l[TM];
    float4 o[TM][NC4];
#pragma unroll
    for (int x = 0; x < TM; x++) {
        m[x] = kNegBig;
        l[x] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC4; c++) o[x][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        __syncthreads(); // the previous block's readers of KVs and Ps are done
        tiled_load<BLK>(KVs, a.k + base, a.qkv_t, j0, T, D, 1.0f);
        __syncthreads();
        float s[TM][TN];
#pragma unroll
        for (int x = 0; x < TM; x++)
#pragma unroll
            for (int n = 0; n < TN; n++) s[x][n] = 0.0f;
        for (int cv = 0; cv < HDV; cv++) {
            float4 qv[TM], kv[TN];
#pragma unroll
            for (int x = 0; x < TM; x++) qv[x] = Qs[(ry + 16 * x) * RS + cv];
#pragma unroll
            for (int n = 0; n < TN; n++) kv[n] = KVs[(kx + 8 * n) * RS + cv];
#pragma unroll
            for (int x = 0; x < TM; x++)
#pragma unroll
                for (int n = 0; n < TN; n++) s[x][n] = dot4(qv[x], kv[n], s[x][n]);
        }
#pragma unroll
        for (int x = 0; x < TM; x++) {
            const int i = i0 + ry + 16 * x;
            float part = kNegBig;
#pragma unroll
            for (int n = 0; n < TN; n++) {
                const int j = j0 + kx + 8 * n;
                if (j > i || j >= T) s[x][n] = kNegBig;
                part = fmaxf(part, s[x][n]);
            }
            red_max[(ry + 16 * x) * 8 + kx] = part;
        }
        __syncthreads(); // red_max complete; K no longer read
        float corr[TM];
#pragma unroll
        for (int x = 0; x < TM; x++) {
            const int r = ry + 16 * x;
            float block_max = red_max[r * 8];
#pragma unroll
            for (int g = 1; g < 8; g++) block_max = fmaxf(block_max, red_max[r * 8 + g]);
            const float new_m = fmaxf(m[x], block_max);
            corr[x] = expf(m[x] - new_m);
            m[x] = new_m;
            float part = 0.0f;
#pragma unroll
            for (int n = 0; n < TN; n++) {
                const float p = expf(s[x][n] - new_m);
                const int c = kx + 8 * n;
                set4(&Ps[r * PS + c / 4], c % 4, p);
                part += p;
            }
            red_sum[r * 8 + kx] = part;
        }
        tiled_load<BLK>(KVs, a.v + base, a.qkv_t, j0, T, D, 1.0f);
        __syncthreads();
#pragma unroll
        for (int x = 0; x < TM; x++) {
            const int r = ry + 16 * x;
            float sum = 0.0f;
#pragma unroll
            for (int g = 0; g < 8; g++) sum += red_sum[r * 8 + g];
            l[x] = l[x] * corr[x] + sum;
#pragma unroll
            for (int c = 0; c < NC4; c++) {
                o[x][c].x *= corr[x];
                o[x][c].y *= corr[x];
                o[x][c].z *= corr[x];
                o[x][c].w *= corr[x];
            }
        }
        for (int j4 = 0; j4 < BLK / 4; j4++) {
            float4 p[TM];
#pragma unroll
            for (int x = 0; x < TM; x++) p[x] = Ps[(ry + 16 * x) * PS + j4];
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
#pragma unroll
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 vd =
                        cv < HDV ? KVs[(4 * j4 + jj) * RS + cv] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                    for (int x = 0; x < TM; x++) o[x][c] = fma4(elem4(p[x], jj), vd, o[x][c]);
                }
        }
    }
    float *out = a.out + hd.b * a.out_b + hd.h * a.out_h;
#pragma unroll
    for (int x = 0; x < TM; x++) {
        const int i = i0 + ry + 16 * x;
        if (i >= T) continue;
        const float inverse = 1.0f / l[x];
#pragma unroll
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (4 * cv + e < D) out[(int64_t)i * a.out_t + 4 * cv + e] = elem4(o[x][c], e) * inverse;
        }
        if (kx == 0) a.lse[bh * T + i] = m[x] + logf(l[x]);
    }
}

// Scores of query rows ry + 16 x (Qs, Gs) against key rows kx + 8 n (Ks, Vs): s = q . k,
// dp = dO . v.
template <int TM, int TN>
__device__ __forceinline__ void tiled_bwd_scores(const float4 *Qs, const float4 *Gs,
                                                 const float4 *Ks, const float4 *Vs, int RS,
                                                 int HDV, int ry, int kx, float (&s)[TM][TN],
                                                 float (&dp)[TM][TN]) {
#pragma unroll
    for (int x = 0; x < TM; x++)
#pragma unroll
        for (int n = 0; n < TN; n++) s[x][n] = dp[x][n] = 0.0f;
    for (int cv = 0; cv < HDV; cv++) {
        float4 qv[TM], gv[TM], kv[TN], vv[TN];
#pragma unroll
        for (int x = 0; x < TM; x++) {
            qv[x] = Qs[(ry + 16 * x) * RS + cv];
            gv[x] = Gs[(ry + 16 * x) * RS + cv];
        }
#pragma unroll
        for (int n = 0; n < TN; n++) {
            kv[n] = Ks[(kx + 8 * n) * RS + cv];
            vv[n] = Vs[(kx + 8 * n) * RS + cv];
        }
#pragma unroll
        for (int x = 0; x < TM; x++)
#pragma unroll
            for (int n = 0; n < TN; n++) {
                s[x][n] = dot4(qv[x], kv[n], s[x][n]);
                dp[x][n] = dot4(gv[x], vv[n], dp[x][n]);
            }
    }
}

// dK, dV over key blocks (key block 0, the most query rows, first); query blocks from the
// diagonal on: dv_j += sum_i P_ij dO_i, dk_j += scale sum_i dS_ij q_i. P and dS are kept
// key-major (Pt, Dt: (query i, key j) at [j * PS + i / 4], element i % 4).
template <int BLK, int NC4>
__global__ void __launch_bounds__(kTiledThreads)
attention_dkdv_tiled_kernel(tw_cuda_attention a, int nblk) {
    constexpr int TM = BLK / 16, TN = BLK / 8, PS = BLK / 4 + 1;
    extern __shared__ float4 smem[];
    const int T = a.seq_len, D = a.head_dim, HDV = (D + 3) / 4, RS = HDV + 1;
    float4 *Ks = smem, *Vs = Ks + BLK * RS, *Qs = Vs + BLK * RS, *Gs = Qs + BLK * RS;
    float4 *Pt = Gs + BLK * RS, *Dt = Pt + BLK * PS;
    float *lse_s = reinterpret_cast<float *>(Dt + BLK * PS), *delta_s = lse_s + BLK;
    const long long bh = blockIdx.x / nblk;
    const int j0 = (int)(blockIdx.x % nblk) * BLK;
    const int ry = threadIdx.x / 8, kx = threadIdx.x % 8;
    const head hd = head_of(bh, a.heads);
    const int64_t base = hd.b * a.qkv_b + hd.h * a.qkv_h;
    const float *g = a.dout + hd.b * a.out_b + hd.h * a.out_h;
    tiled_load<BLK>(Ks, a.k + base, a.qkv_t, j0, T, D, 1.0f);
    tiled_load<BLK>(Vs, a.v + base, a.qkv_t, j0, T, D, 1.0f);
    float4 dk[TM][NC4], dv[TM][NC4];
#pragma unroll
    for (int x = 0; x < TM; x++)
#pragma unroll
        for (int c = 0; c < NC4; c++) dk[x][c] = dv[x][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int i0 = j0; i0 < T; i0 += BLK) {
        __syncthreads();
        tiled_load<BLK>(Qs, a.q + base, a.qkv_t, i0, T, D, 1.0f);
        tiled_load<BLK>(Gs, g, a.out_t, i0, T, D, 1.0f);
        if (threadIdx.x < BLK) {
            const int i = i0 + threadIdx.x;
            lse_s[threadIdx.x] = i < T ? a.lse[bh * T + i] : 0.0f;
            delta_s[threadIdx.x] = i < T ? a.delta[bh * T + i] : 0.0f;
        }
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
        tiled_bwd_scores<TM, TN>(Qs, Gs, Ks, Vs, RS, HDV, ry, kx, s, dp);
#pragma unroll
        for (int x = 0; x < TM; x++) {
            const int r = ry + 16 * x, i = i0 + r;
#pragma unroll
            for (int n = 0; n < TN; n++) {
                const int c = kx + 8 * n, j = j0 + c;
                const float p = (i < T && j <= i) ? expf(a.scale * s[x][n] - lse_s[r]) : 0.0f;
                set4(&Pt[c * PS + r / 4], r % 4, p);
                set4(&Dt[c * PS + r / 4], r % 4, p * (dp[x][n] - delta_s[r]));
            }
        }
        __syncthreads();
        for (int i4 = 0; i4 < BLK / 4; i4++) {
            float4 p[TM], ds[TM];
#pragma unroll
            for (int x = 0; x < TM; x++) {
                p[x] = Pt[(ry + 16 * x) * PS + i4];
                ds[x] = Dt[(ry + 16 * x) * PS + i4];
            }
#pragma unroll
            for (int ii = 0; ii < 4; ii++)
#pragma unroll
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    const float4 gd = cv < HDV ? Gs[(4 * i4 + ii) * RS + cv] : zero;
                    const float4 qd = cv < HDV ? Qs[(4 * i4 + ii) * RS + cv] : zero;
#pragma unroll
                    for (int x = 0; x < TM; x++) {
                        dv[x][c] = fma4(elem4(p[x], ii), gd, dv[x][c]);
                        dk[x][c] = fma4(elem4(ds[x], ii), qd, dk[x][c]);
                    }
                }
        }
    }
#pragma unroll
    for (int x = 0; x < TM; x++) {
        const int j = j0 + ry + 16 * x;
        if (j >= T) continue;
#pragma unroll
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int d = 4 * cv + e;
                if (d >= D) continue;
                a.dk[base + (int64_t)j * a.qkv_t + d] += a.scale * elem4(dk[x][c], e);
                a.dv[base + (int64_t)j * a.qkv_t + d] += elem4(dv[x][c], e);
            }
        }
    }
}

// dQ over query blocks (the longest rows first); key blocks 0 .. the diagonal:
// dq_i += scale sum_j dS_ij k_j.
template <int BLK, int NC4>
__global__ void __launch_bounds__(kTiledThreads)
attention_dq_tiled_kernel(tw_cuda_attention a, int nblk) {
    constexpr int TM = BLK / 16, TN = BLK / 8, PS = BLK / 4 + 1;
    extern __shared__ float4 smem[];
    const int T = a.seq_len, D = a.head_dim, HDV = (D + 3) / 4, RS = HDV + 1;
    float4 *Qs = smem, *Gs = Qs + BLK * RS, *Ks = Gs + BLK * RS, *Vs = Ks + BLK * RS;
    float4 *Ds = Vs + BLK * RS;
    float *lse_s = reinterpret_cast<float *>(Ds + BLK * PS), *delta_s = lse_s + BLK;
    const long long bh = blockIdx.x / nblk;
    const int i0 = (nblk - 1 - (int)(blockIdx.x % nblk)) * BLK;
    const int ry = threadIdx.x / 8, kx = threadIdx.x % 8;
    const head hd = head_of(bh, a.heads);
    const int64_t base = hd.b * a.qkv_b + hd.h * a.qkv_h;
    tiled_load<BLK>(Qs, a.q + base, a.qkv_t, i0, T, D, 1.0f);
    tiled_load<BLK>(Gs, a.dout + hd.b * a.out_b + hd.h * a.out_h, a.out_t, i0, T, D, 1.0f);
    if (threadIdx.x < BLK) {
        const int i = i0 + threadIdx.x;
        lse_s[threadIdx.x] = i < T ? a.lse[bh * T + i] : 0.0f;
        delta_s[threadIdx.x] = i < T ? a.delta[bh * T + i] : 0.0f;
    }
    float4 acc[TM][NC4];
#pragma unroll
    for (int x = 0; x < TM; x++)
#pragma unroll
        for (int c = 0; c < NC4; c++) acc[x][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const int last = min(i0 + BLK, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += BLK) {
        __syncthreads();
        tiled_load<BLK>(Ks, a.k + base, a.qkv_t, j0, T, D, 1.0f);
        tiled_load<BLK>(Vs, a.v + base, a.qkv_t, j0, T, D, 1.0f);
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
        tiled_bwd_scores<TM, TN>(Qs, Gs, Ks, Vs, RS, HDV, ry, kx, s, dp);
#pragma unroll
        for (int x = 0; x < TM; x++) {
            const int r = ry + 16 * x, i = i0 + r;
#pragma unroll
            for (int n = 0; n < TN; n++) {
                const int c = kx + 8 * n, j = j0 + c;
                const float p = (i < T && j <= i) ? expf(a.scale * s[x][n] - lse_s[r]) : 0.0f;
                set4(&Ds[r * PS + c / 4], c % 4, p * (dp[x][n] - delta_s[r]));
            }
        }
        __syncthreads();
        for (int j4 = 0; j4 < BLK / 4; j4++) {
            float4 ds[TM];
#pragma unroll
            for (int x = 0; x < TM; x++) ds[x] = Ds[(ry + 16 * x) * PS + j4];
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
#pragma unroll
                for (int c = 0; c < NC4; c++) {
                    const int cv = kx + 8 * c;
                    const float4 kd = cv < HDV ? Ks[(4 * j4 + jj) * RS + cv]
                                               : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                    for (int x = 0; x < TM; x++) acc[x][c] = fma4(elem4(ds[x], jj), kd, acc[x][c]);
                }
        }
    }
#pragma unroll
    for (int x = 0; x < TM; x++) {
        const int i = i0 + ry + 16 * x;
        if (i >= T) continue;
#pragma unroll
        for (int c = 0; c < NC4; c++) {
            const int cv = kx + 8 * c;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int d = 4 * cv + e;
                if (d < D) a.dq[base + (int64_t)i * a.qkv_t + d] += a.scale * elem4(acc[x][c], e);
            }
        }
    }
}

constexpr int kTiledSharedLimit = 48 * 1024; // static limit without the opt-in attribute

// The block size of a pass at head dimension D: 32 where its tiles fit 48 KB, else 16.
int tiled_block(int D, int pass) {
    return tiled_shared_floats(32, D, pass) * (int)sizeof(float) <= kTiledSharedLimit ? 32 : 16;
}

// Launches kernel<BLK, NC4> for NC4 = 1..4 (the least with NC4 * 32 >= D).
#define TW_TILED_LAUNCH_NC(kernel, BLK_, a, nblk, shared, stream)                             \
    do {                                                                                       \
        const int nc4_ = ((a)->head_dim + 31) / 32;                                            \
        const dim3 grid_((unsigned)((long long)(a)->batch * (a)->heads * (nblk)));             \
        if (nc4_ <= 1) kernel<BLK_, 1><<<grid_, kTiledThreads, shared, stream>>>(*(a), nblk);  \
        else if (nc4_ == 2) kernel<BLK_, 2><<<grid_, kTiledThreads, shared, stream>>>(*(a), nblk); \
        else if (nc4_ == 3) kernel<BLK_, 3><<<grid_, kTiledThreads, shared, stream>>>(*(a), nblk); \
        else kernel<BLK_, 4><<<grid_, kTiledThreads, shared, stream>>>(*(a), nblk);            \
    } while (0)
#define TW_TILED_LAUNCH(kernel, blk, a, nblk, shared, stream)                                  \
    do {                                                                                       \
        if (blk == 32) TW_TILED_LAUNCH_NC(kernel, 32, a, nblk, shared, stream);                \
        else TW_TILED_LAUNCH_NC(kernel, 16, a, nblk, shared, stream);                          \
    } while (0)

// Work-groups of one tiled pass fit a 1-D grid (2^31 - 1 blocks).
bool tiled_grid_fits(const tw_cuda_attention *a, int nblk) {
    const long long total = (long long)a->batch * a->heads * nblk;
    return total >= 1 && total <= 0x7fffffffLL;
}

} // namespace

extern "C" {

cudaError_t tw_cuda_launch_attention_fwd(cudaStream_t stream, const tw_cuda_attention *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int query_blocks = (a->seq_len + kWarps * kFwdRows - 1) / (kWarps * kFwdRows);
    unsigned blocks;
    if (!grid_size(a, query_blocks, &blocks)) return cudaErrorInvalidConfiguration;
    attention_fwd_kernel<<<blocks, kThreads, 0, stream>>>(*a, query_blocks);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_attention_bwd(cudaStream_t stream, const tw_cuda_attention *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int blocks_per_head = (a->seq_len + kWarps * kBwdRows - 1) / (kWarps * kBwdRows);
    unsigned blocks;
    if (!grid_size(a, blocks_per_head, &blocks)) return cudaErrorInvalidConfiguration;
    const long long rows = (long long)a->batch * a->heads * a->seq_len;
    long long delta_blocks = (rows + kWarps - 1) / kWarps;
    if (delta_blocks > (1 << 20)) delta_blocks = 1 << 20;
    attention_delta_kernel<<<(unsigned)delta_blocks, kThreads, 0, stream>>>(*a);
    attention_dq_kernel<<<blocks, kThreads, 0, stream>>>(*a, blocks_per_head);
    attention_dkdv_kernel<<<blocks, kThreads, 0, stream>>>(*a, blocks_per_head);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_attention_fwd_tiled(cudaStream_t stream, const tw_cuda_attention *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int blk = tiled_block(a->head_dim, 0), nblk = (a->seq_len + blk - 1) / blk;
    if (!tiled_grid_fits(a, nblk)) return cudaErrorInvalidConfiguration;
    const size_t shared = (size_t)tiled_shared_floats(blk, a->head_dim, 0) * sizeof(float);
    TW_TILED_LAUNCH(attention_fwd_tiled_kernel, blk, a, nblk, shared, stream);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_attention_bwd_tiled(cudaStream_t stream, const tw_cuda_attention *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int blk_dkdv = tiled_block(a->head_dim, 2), blk_dq = tiled_block(a->head_dim, 1);
    const int nblk_dkdv = (a->seq_len + blk_dkdv - 1) / blk_dkdv;
    const int nblk_dq = (a->seq_len + blk_dq - 1) / blk_dq;
    if (!tiled_grid_fits(a, nblk_dkdv) || !tiled_grid_fits(a, nblk_dq))
        return cudaErrorInvalidConfiguration;
    const long long rows = (long long)a->batch * a->heads * a->seq_len;
    long long delta_blocks = (rows + kWarps - 1) / kWarps;
    if (delta_blocks > (1 << 20)) delta_blocks = 1 << 20;
    attention_delta_kernel<<<(unsigned)delta_blocks, kThreads, 0, stream>>>(*a);
    const size_t dkdv_shared =
        (size_t)tiled_shared_floats(blk_dkdv, a->head_dim, 2) * sizeof(float);
    TW_TILED_LAUNCH(attention_dkdv_tiled_kernel, blk_dkdv, a, nblk_dkdv, dkdv_shared, stream);
    const size_t dq_shared = (size_t)tiled_shared_floats(blk_dq, a->head_dim, 1) * sizeof(float);
    TW_TILED_LAUNCH(attention_dq_tiled_kernel, blk_dq, a, nblk_dq, dq_shared, stream);
    return cudaGetLastError();
}

} // extern "C"
