// Fused causal attention in bf16 and f16, forward and backward (semantics:
// include/twist/backend.h; reference: backends/cpu/cpu_attention.c). A copy of the fp32 kernels
// of kernels_attention.cu as they were when this file was written (the same tiles, work split,
// fixed summation order and shared-memory layout; read that file's header for them), made
// templates over the storage type E (__nv_bfloat16 or __half) of q, k, v, out, dout, dq, dk, dv:
//   - tiles are converted to fp32 as they are loaded into shared memory (the same 48 KB as fp32);
//   - every dot product, the online softmax and every accumulator are fp32; lse and the delta
//     scratch are fp32;
//   - out is rounded once when written; dq, dk, dv are read, the fp32 sum added, and rounded once.
// Kept apart from kernels_attention.cu so that file's fp32 kernels (and their tuning) change
// without touching these. Tensor-core MMA (bf16/f16 inputs, fp32 accumulate) is the next step
// for this file (issue 17); these kernels use the CUDA cores.
#include <cmath>

#include "cuda_elements.cuh"
#include "cuda_kernels.h"

namespace {

using tw_cuda::from_f32;
using tw_cuda::to_f32;

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

// dst[r * dst_stride + d] = rows (r0 + r) of one head converted to fp32, for r < count, d < D;
// rows at or past T are zero. All threads of the block take part.
template <typename E>
__device__ void load_rows(float *dst, int dst_stride, const E *base, int64_t row_stride, int r0,
                          int count, int seq_len, int D) {
    for (int e = threadIdx.x; e < count * D; e += kThreads) {
        const int r = e / D, d = e % D, t = r0 + r;
        dst[r * dst_stride + d] = t < seq_len ? to_f32(base[(int64_t)t * row_stride + d]) : 0.0f;
    }
}

// Typed views of the launch's void pointers.
template <typename E> __device__ __forceinline__ const E *in(const void *p) {
    return static_cast<const E *>(p);
}
template <typename E> __device__ __forceinline__ E *out(void *p) { return static_cast<E *>(p); }

// ------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------

template <typename E>
__global__ void __launch_bounds__(kThreads)
attention_fwd_kernel(tw_cuda_attention16 a, int query_blocks) {
    constexpr int kBlockRows = kWarps * kFwdRows;
    __shared__ float ks[kTile * kPad];
    __shared__ float vs[kTile * kMaxD];
    __shared__ float qs[kBlockRows * kMaxD];
    const int T = a.seq_len, D = a.head_dim;
    const long long bh = blockIdx.x / query_blocks;
    // Later query blocks see more keys: they are scheduled first.
    const int qb = query_blocks - 1 - (int)(blockIdx.x % query_blocks);
    const head hd = head_of(bh, a.heads);
    const E *q = in<E>(a.q) + hd.b * a.qkv_b + hd.h * a.qkv_h;
    const E *k = in<E>(a.k) + hd.b * a.qkv_b + hd.h * a.qkv_h;
    const E *v = in<E>(a.v) + hd.b * a.qkv_b + hd.h * a.qkv_h;
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
        E *o = out<E>(a.out) + hd.b * a.out_b + hd.h * a.out_h + (int64_t)i * a.out_t;
        const float inverse = 1.0f / l[r];
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) o[d] = from_f32<E>(acc[r][u] * inverse);
        }
        if (lane == 0) a.lse[bh * T + i] = m[r] + logf(l[r]);
    }
}

// ------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------

// delta (B, H, T) = rowwise dO . O: one warp per row.
template <typename E>
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(tw_cuda_attention16 a) {
    const long long rows = (long long)a.batch * a.heads * a.seq_len;
    const int lane = threadIdx.x % 32;
    for (long long row = (long long)blockIdx.x * kWarps + threadIdx.x / 32; row < rows;
         row += (long long)gridDim.x * kWarps) {
        const int t = (int)(row % a.seq_len);
        const head hd = head_of(row / a.seq_len, a.heads);
        const int64_t at = hd.b * a.out_b + hd.h * a.out_h + (int64_t)t * a.out_t;
        float sum = 0.0f;
        for (int d = lane; d < a.head_dim; d += 32)
            sum += to_f32(in<E>(a.dout)[at + d]) * to_f32(in<E>(a.out)[at + d]);
        sum = warp_sum(sum);
        if (lane == 0) a.delta[row] = sum;
    }
}

template <typename E>
__global__ void __launch_bounds__(kThreads)
attention_dq_kernel(tw_cuda_attention16 a, int query_blocks) {
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

    load_rows(qs, kMaxD, in<E>(a.q) + qkv_head, a.qkv_t, i0, kBlockRows, T, D);
    load_rows(dos, kMaxD, in<E>(a.dout) + out_head, a.out_t, i0, kBlockRows, T, D);

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
        load_rows(ks, kPad, in<E>(a.k) + qkv_head, a.qkv_t, j0, kTile, T, D);
        load_rows(vs, kPad, in<E>(a.v) + qkv_head, a.qkv_t, j0, kTile, T, D);
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
        E *dq = out<E>(a.dq) + qkv_head + (int64_t)i * a.qkv_t;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) dq[d] = from_f32<E>(to_f32(dq[d]) + a.scale * acc[r][u]);
        }
    }
}

template <typename E>
__global__ void __launch_bounds__(kThreads)
attention_dkdv_kernel(tw_cuda_attention16 a, int key_blocks) {
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

    load_rows(kr, kMaxD, in<E>(a.k) + qkv_head, a.qkv_t, j_first, kBlockKeys, T, D);
    load_rows(vr, kMaxD, in<E>(a.v) + qkv_head, a.qkv_t, j_first, kBlockKeys, T, D);

    float dk[kBwdRows][kPerLane], dv[kBwdRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kBwdRows; r++)
#pragma unroll
        for (int u = 0; u < kPerLane; u++) dk[r][u] = dv[r][u] = 0.0f;

    // Queries before the block's first key see none of its keys.
    for (int i0 = j_first; i0 < T; i0 += kTile) {
        __syncthreads();
        load_rows(qt, kPad, in<E>(a.q) + qkv_head, a.qkv_t, i0, kTile, T, D);
        load_rows(dot, kPad, in<E>(a.dout) + out_head, a.out_t, i0, kTile, T, D);
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
        E *dk_row = out<E>(a.dk) + qkv_head + (int64_t)j * a.qkv_t;
        E *dv_row = out<E>(a.dv) + qkv_head + (int64_t)j * a.qkv_t;
#pragma unroll
        for (int u = 0; u < kPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < D) {
                dk_row[d] = from_f32<E>(to_f32(dk_row[d]) + a.scale * dk[r][u]);
                dv_row[d] = from_f32<E>(to_f32(dv_row[d]) + dv[r][u]);
            }
        }
    }
}

// Blocks = B*H*per_head, checked against the grid limit (2^31 - 1).
bool grid_size(const tw_cuda_attention16 *a, int per_head, unsigned *blocks) {
    const long long total = (long long)a->batch * a->heads * per_head;
    if (total < 1 || total > 0x7fffffffLL) return false;
    *blocks = (unsigned)total;
    return true;
}

} // namespace

// Only bf16 and f16 here: fp32 attention is kernels_attention.cu's.
#define TW_ATTENTION16_DISPATCH(type, ...)                                                      \
    switch (type) {                                                                              \
    case TW_CUDA_BF16: {                                                                         \
        using E = __nv_bfloat16;                                                                 \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
    }                                                                                            \
    case TW_CUDA_F16: {                                                                          \
        using E = __half;                                                                        \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
    }                                                                                            \
    default: return cudaErrorInvalidValue;                                                       \
    }

extern "C" {

cudaError_t tw_cuda_launch_attention16_fwd(cudaStream_t stream, const tw_cuda_attention16 *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int query_blocks = (a->seq_len + kWarps * kFwdRows - 1) / (kWarps * kFwdRows);
    unsigned blocks;
    if (!grid_size(a, query_blocks, &blocks)) return cudaErrorInvalidConfiguration;
    TW_ATTENTION16_DISPATCH(a->type, attention_fwd_kernel<E><<<blocks, kThreads, 0, stream>>>(
                                         *a, query_blocks))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_attention16_bwd(cudaStream_t stream, const tw_cuda_attention16 *a) {
    if (a->head_dim > kMaxD) return cudaErrorInvalidValue;
    const int blocks_per_head = (a->seq_len + kWarps * kBwdRows - 1) / (kWarps * kBwdRows);
    unsigned blocks;
    if (!grid_size(a, blocks_per_head, &blocks)) return cudaErrorInvalidConfiguration;
    const long long rows = (long long)a->batch * a->heads * a->seq_len;
    long long delta_blocks = (rows + kWarps - 1) / kWarps;
    if (delta_blocks > (1 << 20)) delta_blocks = 1 << 20;
    TW_ATTENTION16_DISPATCH(a->type, {
        attention_delta_kernel<E><<<(unsigned)delta_blocks, kThreads, 0, stream>>>(*a);
        attention_dq_kernel<E><<<blocks, kThreads, 0, stream>>>(*a, blocks_per_head);
        attention_dkdv_kernel<E><<<blocks, kThreads, 0, stream>>>(*a, blocks_per_head);
    })
    return cudaGetLastError();
}

} // extern "C"
