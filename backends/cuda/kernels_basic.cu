// CUDA kernels for every op but GEMM (cuBLAS) and attention (kernels_attention.cu). Semantics:
// include/twist/backend.h; reference: backends/cpu/cpu_ops.c.
//
// Shapes of work:
//   elementwise ops   one thread per element, grid-stride loops over size_t indices
//   row ops           one block of kBlock threads per row; each thread walks the columns
//                     c = tid, tid + kBlock, ... in order, then a shared-memory tree of fixed
//                     shape combines the threads (sums in double where the CPU uses double)
//   column sums       (bias_bwd, layernorm dweight/dbias) two passes: partial sums over fixed
//                     row segments, then one thread per column adds the segments in order
//   sum_sq            two passes: a fixed number of blocks (a function of n only), then one block
// None uses atomics, so every result is the same bits run after run on one GPU.
//
// Data types: every kernel with typed tensors is a template over their storage type T (float,
// __nv_bfloat16, __half; cuda_elements.cuh). Elements are read with to_f32, all arithmetic and
// every sum is fp32 (or double where the fp32 kernel used double), and results are rounded once
// when written with from_f32<T>; an op that adds into a tensor (dx += ...) reads, adds in fp32
// and rounds the sum. Statistics, losses, lse and AdamW's param/m/v stay float pointers. The fp32
// instances are the kernels as they were before the templates.
#include <climits>
#include <cmath>

#include "cuda_elements.cuh"
#include "cuda_kernels.h"

namespace {

using tw_cuda::from_f32;
using tw_cuda::to_f32;

constexpr int kBlock = 256;           // threads per block everywhere in this file
constexpr unsigned kMaxGrid = 1u << 20; // grid-stride loops cover the rest
constexpr int kSegmentRows = 32;      // rows per column-sum segment (at most kMaxSegments)
constexpr int kMaxSegments = 256;
constexpr int kEmbeddingPartitions = 16; // dwte: tokens split by (token % 16) across blocks
constexpr int kSumSqPerThread = 16;
constexpr int kMaxSumSqBlocks = 1024;

unsigned grid_for(size_t n) {
    size_t blocks = (n + kBlock - 1) / kBlock;
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxGrid) blocks = kMaxGrid;
    return (unsigned)blocks;
}

__device__ __forceinline__ size_t thread_index() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_stride() { return (size_t)gridDim.x * blockDim.x; }

// Sum over the block's kBlock threads by a fixed tree; every thread gets the result.
template <typename T>
__device__ T block_sum(T value, T *shared) {
    const int tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (int step = kBlock / 2; step > 0; step >>= 1) {
        if (tid < step) shared[tid] += shared[tid + step];
        __syncthreads();
    }
    T total = shared[0];
    __syncthreads(); // shared may be reused at once
    return total;
}

__device__ float block_max(float value, float *shared) {
    const int tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (int step = kBlock / 2; step > 0; step >>= 1) {
        if (tid < step) shared[tid] = fmaxf(shared[tid], shared[tid + step]);
        __syncthreads();
    }
    float result = shared[0];
    __syncthreads();
    return result;
}

__device__ int block_min_int(int value, int *shared) {
    const int tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (int step = kBlock / 2; step > 0; step >>= 1) {
        if (tid < step) shared[tid] = min(shared[tid], shared[tid + step]);
        __syncthreads();
    }
    int result = shared[0];
    __syncthreads();
    return result;
}

// Segments of rows for the column sums: a function of `rows` only.
int column_segments(int rows) {
    int segments = (rows + kSegmentRows - 1) / kSegmentRows;
    if (segments < 1) segments = 1;
    return segments > kMaxSegments ? kMaxSegments : segments;
}

// ------------------------------------------------------------------------------------------
// Fill, GEMM's C = beta C
// ------------------------------------------------------------------------------------------

__global__ void fill_kernel(float *dst, size_t n, float value) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) dst[i] = value;
}

// batch matrices (m, n), row stride ldc, stride_c apart.
template <typename T>
__global__ void scale_matrix_kernel(T *c, int m, int n, int64_t ldc, int64_t stride_c,
                                    int batch, float beta) {
    const size_t per_matrix = (size_t)m * (size_t)n, total = per_matrix * (size_t)batch;
    for (size_t i = thread_index(); i < total; i += grid_stride()) {
        const size_t p = i / per_matrix, rest = i % per_matrix;
        T *element = c + (int64_t)p * stride_c + (int64_t)(rest / n) * ldc + (int64_t)(rest % n);
        *element = from_f32<T>(beta == 0.0f ? 0.0f : beta * to_f32(*element));
    }
}

// ------------------------------------------------------------------------------------------
// Softmax: one block per row
// ------------------------------------------------------------------------------------------

template <typename T>
__global__ void softmax_fwd_kernel(int cols, int causal_t, const T *in, T *out) {
    __shared__ float shared[kBlock];
    const int r = blockIdx.x;
    const T *x = in + (size_t)r * cols;
    T *y = out + (size_t)r * cols; // may alias x: each element is one thread's
    int visible = causal_t > 0 ? r % causal_t + 1 : cols;
    if (visible > cols) visible = cols;
    float max = -INFINITY;
    for (int c = threadIdx.x; c < visible; c += kBlock) max = fmaxf(max, to_f32(x[c]));
    max = block_max(max, shared);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < visible; c += kBlock) sum += expf(to_f32(x[c]) - max);
    sum = block_sum(sum, shared);
    const float inverse = 1.0f / sum;
    for (int c = threadIdx.x; c < cols; c += kBlock)
        y[c] = from_f32<T>(c < visible ? expf(to_f32(x[c]) - max) * inverse : 0.0f);
}

// dx += y * (dy - sum_c(dy * y)), the sum in double.
template <typename T>
__global__ void softmax_bwd_kernel(int cols, const T *y, const T *dy, T *dx) {
    __shared__ double shared[kBlock];
    const size_t base = (size_t)blockIdx.x * cols;
    double dot = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock)
        dot += (double)to_f32(y[base + c]) * to_f32(dy[base + c]);
    const float total = (float)block_sum(dot, shared);
    for (int c = threadIdx.x; c < cols; c += kBlock)
        dx[base + c] = from_f32<T>(to_f32(dx[base + c]) +
                                   to_f32(y[base + c]) * (to_f32(dy[base + c]) - total));
}

// ------------------------------------------------------------------------------------------
// LayerNorm
// ------------------------------------------------------------------------------------------

template <typename T>
__global__ void layernorm_fwd_kernel(int cols, float eps, const T *x_all, const T *w,
                                     const T *b, T *y_all, float *mean, float *rstd) {
    __shared__ double shared[kBlock];
    const int r = blockIdx.x;
    const T *x = x_all + (size_t)r * cols;
    T *y = y_all + (size_t)r * cols;
    double sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) sum += to_f32(x[c]);
    const float mu = (float)(block_sum(sum, shared) / cols);
    double sum_sq = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const double d = (double)to_f32(x[c]) - mu;
        sum_sq += d * d;
    }
    const float s = (float)(1.0 / sqrt(block_sum(sum_sq, shared) / cols + eps));
    for (int c = threadIdx.x; c < cols; c += kBlock)
        y[c] = from_f32<T>((to_f32(x[c]) - mu) * s * to_f32(w[c]) + to_f32(b[c]));
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = s;
    }
}

// dx (row) += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)), dnorm = dout * w.
template <typename T>
__global__ void layernorm_bwd_rows_kernel(int cols, const T *dout, const T *x_all, const T *w,
                                          const float *mean, const float *rstd, T *dx_all) {
    __shared__ double shared[kBlock];
    const int r = blockIdx.x;
    const size_t base = (size_t)r * cols;
    const float mu = mean[r], s = rstd[r];
    double dnorm_sum = 0.0, dnorm_xhat_sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const float xhat = (to_f32(x_all[base + c]) - mu) * s;
        const float dnorm = to_f32(dout[base + c]) * to_f32(w[c]);
        dnorm_sum += dnorm;
        dnorm_xhat_sum += (double)dnorm * xhat;
    }
    const float dnorm_mean = (float)(block_sum(dnorm_sum, shared) / cols);
    const float dnorm_xhat_mean = (float)(block_sum(dnorm_xhat_sum, shared) / cols);
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const float xhat = (to_f32(x_all[base + c]) - mu) * s;
        const float dnorm = to_f32(dout[base + c]) * to_f32(w[c]);
        dx_all[base + c] = from_f32<T>(to_f32(dx_all[base + c]) +
                                       (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * s);
    }
}

// Column partial sums over the rows of segment blockIdx.y: partial_w[seg][c] = sum dout * xhat,
// partial_b[seg][c] = sum dout (x == NULL: bias_bwd, only partial_b). Rows in order.
template <typename T>
__global__ void column_partials_kernel(int rows, int cols, int rows_per_segment, const T *dout,
                                       const T *x, const float *mean, const float *rstd,
                                       double *partial_w, double *partial_b) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int segment = blockIdx.y;
    const int r0 = segment * rows_per_segment;
    const int r1 = min(rows, r0 + rows_per_segment);
    double sum_w = 0.0, sum_b = 0.0;
    for (int r = r0; r < r1; r++) {
        const size_t at = (size_t)r * cols + c;
        const float dy = to_f32(dout[at]);
        if (x) sum_w += (double)dy * ((to_f32(x[at]) - mean[r]) * rstd[r]);
        sum_b += dy;
    }
    const size_t out = (size_t)segment * cols + c;
    if (x) partial_w[out] = sum_w;
    partial_b[out] = sum_b;
}

// target[c] += sum over segments, in order, of partial[seg][c].
template <typename T>
__global__ void column_finish_kernel(int cols, int segments, const double *partial, T *target) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double sum = 0.0;
    for (int s = 0; s < segments; s++) sum += partial[(size_t)s * cols + c];
    target[c] = from_f32<T>(to_f32(target[c]) + (float)sum);
}

// ------------------------------------------------------------------------------------------
// GELU (tanh form), elementwise arithmetic, AdamW
// ------------------------------------------------------------------------------------------

constexpr float kGeluScale = 0.7978845608028654f; // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

template <typename T> __global__ void gelu_fwd_kernel(size_t n, const T *x, T *y) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float v = to_f32(x[i]);
        y[i] = from_f32<T>(0.5f * v * (1.0f + tanhf(kGeluScale * (v + kGeluCubic * v * v * v))));
    }
}

template <typename T> __global__ void gelu_bwd_kernel(size_t n, const T *x, const T *dy, T *dx) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float v = to_f32(x[i]);
        const float t = tanhf(kGeluScale * (v + kGeluCubic * v * v * v));
        const float local = 0.5f * (1.0f + t) +
                            0.5f * v * (1.0f - t * t) * kGeluScale * (1.0f + 3.0f * kGeluCubic * v * v);
        dx[i] = from_f32<T>(to_f32(dx[i]) + local * to_f32(dy[i]));
    }
}

template <typename T> __global__ void add_kernel(size_t n, const T *a, const T *b, T *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride())
        out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

template <typename T> __global__ void scale_kernel(size_t n, float alpha, const T *x, T *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride())
        out[i] = from_f32<T>(alpha * to_f32(x[i]));
}

template <typename T> __global__ void bias_add_kernel(int rows, int cols, const T *bias, T *out) {
    const size_t n = (size_t)rows * cols;
    for (size_t i = thread_index(); i < n; i += grid_stride())
        out[i] = from_f32<T>(to_f32(out[i]) + to_f32(bias[i % cols]));
}

struct adamw_params {
    float lr, beta1, beta2, eps, weight_decay, grad_scale, correction1, correction2;
};

// param (the fp32 master weights), m and v are fp32 whatever grad's type T is.
template <typename T>
__global__ void adamw_kernel(size_t n, adamw_params a, float *p, const T *grad, float *m,
                             float *v) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float g = a.grad_scale * to_f32(grad[i]);
        const float m_i = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        const float v_i = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        m[i] = m_i;
        v[i] = v_i;
        const float m_hat = m_i / a.correction1, v_hat = v_i / a.correction2;
        p[i] -= a.lr * (m_hat / (sqrtf(v_hat) + a.eps) + a.weight_decay * p[i]);
    }
}

// ------------------------------------------------------------------------------------------
// sum_sq: blocks over a fixed grid-stride partition (a function of n), then one block
// ------------------------------------------------------------------------------------------

int sum_sq_blocks(size_t n) {
    size_t blocks = (n + (size_t)kBlock * kSumSqPerThread - 1) / ((size_t)kBlock * kSumSqPerThread);
    if (blocks < 1) blocks = 1;
    return blocks > kMaxSumSqBlocks ? kMaxSumSqBlocks : (int)blocks;
}

template <typename T> __global__ void sum_sq_partial_kernel(size_t n, const T *x, double *partial) {
    __shared__ double shared[kBlock];
    double sum = 0.0;
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float xi = to_f32(x[i]);
        sum += (double)xi * xi;
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void sum_sq_finish_kernel(int blocks, const double *partial, float *out) {
    __shared__ double shared[kBlock];
    double sum = 0.0;
    for (int i = threadIdx.x; i < blocks; i += kBlock) sum += partial[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) out[0] = (float)sum;
}

// ------------------------------------------------------------------------------------------
// Embedding
// ------------------------------------------------------------------------------------------

template <typename T>
__global__ void embedding_fwd_kernel(int seq_len, int channels, size_t n, const int32_t *tokens,
                                     const T *wte, const T *wpe, T *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / channels, c = i % channels;
        out[i] = from_f32<T>(to_f32(wte[(size_t)tokens[r] * channels + c]) +
                             to_f32(wpe[(r % seq_len) * channels + c]));
    }
}

// dwpe (T, C): element (t, c) adds dout[(b, t)][c] for b in order (as the CPU does).
// In bf16/f16 the sum is fp32 and rounded once.
template <typename T>
__global__ void embedding_bwd_wpe_kernel(int batch, int seq_len, int channels, const T *dout,
                                         T *dwpe) {
    const size_t n = (size_t)seq_len * channels;
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t t = i / channels, c = i % channels;
        float sum = to_f32(dwpe[i]);
        for (int b = 0; b < batch; b++)
            sum += to_f32(dout[((size_t)b * seq_len + t) * channels + c]);
        dwpe[i] = from_f32<T>(sum);
    }
}

// dwte (V, C): thread (c, partition p) walks every (b, t) row in order and adds those whose
// token is p modulo kEmbeddingPartitions. Each dwte element has exactly one owner, and its
// contributions arrive in row order, as on the CPU.
// The sums go into acc, fp32, for the columns [c0, c0 + width) with row stride acc_ld: in fp32
// acc is dwte itself (c0 = 0, width = acc_ld = C); in bf16/f16 it is an fp32 copy of a block of
// dwte's columns (embedding_bwd_wte_block), so that a token occurring n times is rounded once
// and not n times.
template <typename T>
__global__ void embedding_bwd_wte_kernel(int rows, int channels, int c0, int width,
                                         int64_t acc_ld, const int32_t *tokens, const T *dout,
                                         float *acc) {
    const int cc = blockIdx.x * blockDim.x + threadIdx.x;
    if (cc >= width) return;
    const int c = c0 + cc;
    const unsigned partition = blockIdx.y;
    for (int r = 0; r < rows; r++) {
        const int32_t token = tokens[r];
        if ((unsigned)token % kEmbeddingPartitions != partition) continue;
        acc[(size_t)token * acc_ld + cc] += to_f32(dout[(size_t)r * channels + c]);
    }
}

// block (V, width) fp32 <-> columns [c0, c0 + width) of dwte (V, C) of type T.
template <typename T>
__global__ void embedding_block_widen_kernel(int channels, int c0, int width, size_t n,
                                             const T *dwte, float *block) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t v = i / width, cc = i % width;
        block[i] = to_f32(dwte[v * channels + c0 + cc]);
    }
}

template <typename T>
__global__ void embedding_block_narrow_kernel(int channels, int c0, int width, size_t n,
                                              const float *block, T *dwte) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t v = i / width, cc = i % width;
        dwte[v * channels + c0 + cc] = from_f32<T>(block[i]);
    }
}

// ------------------------------------------------------------------------------------------
// Softmax + cross-entropy
// ------------------------------------------------------------------------------------------

// logits of type T; losses, lse and correct fp32.
template <typename T>
__global__ void xent_fwd_kernel(int vocab, int ld, const T *logits, const int32_t *targets,
                                float *losses, float *lse_out, float *correct) {
    __shared__ float shared[kBlock];
    __shared__ int shared_int[kBlock];
    const int r = blockIdx.x;
    const T *row = logits + (size_t)r * ld;
    float max = -INFINITY;
    for (int c = threadIdx.x; c < vocab; c += kBlock) max = fmaxf(max, to_f32(row[c]));
    max = block_max(max, shared);
    int first = INT_MAX; // first index holding the maximum (ties: the lowest)
    for (int c = threadIdx.x; c < vocab; c += kBlock)
        if (to_f32(row[c]) == max) first = min(first, c);
    first = block_min_int(first, shared_int);
    if (first == INT_MAX) first = vocab - 1; // as the CPU's scan ends when nothing matches
    float sum = 0.0f;
    for (int c = threadIdx.x; c < vocab; c += kBlock) sum += expf(to_f32(row[c]) - max);
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) {
        const float lse = max + logf(sum);
        const int t = targets[r];
        lse_out[r] = lse;
        losses[r] = t < 0 ? 0.0f : lse - to_f32(row[t]);
        correct[r] = t >= 0 && t == first ? 1.0f : 0.0f;
    }
}

// dlogits[r][c] += grad_scale * (exp(logit - lse) - [c == target]) on rows with a target.
template <typename T>
__global__ void xent_bwd_kernel(int rows, int vocab, int ld, float grad_scale, const T *logits,
                                const int32_t *targets, const float *lse, T *dlogits) {
    const size_t n = (size_t)rows * vocab;
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / vocab;
        const int c = (int)(i % vocab);
        const int t = targets[r];
        if (t < 0) continue;
        const size_t at = r * ld + c;
        float value = to_f32(dlogits[at]) + grad_scale * expf(to_f32(logits[at]) - lse[r]);
        if (c == t) value -= grad_scale;
        dlogits[at] = from_f32<T>(value);
    }
}

// ------------------------------------------------------------------------------------------
// Gather / scatter (indices in range; scatter indices distinct)
// ------------------------------------------------------------------------------------------

// Gathers and overwriting scatters copy elements as they are (no conversion, in any type).
template <typename T>
__global__ void gather_rows_kernel(int cols, size_t n, const int32_t *idx, const T *src, T *dst) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t row = i / cols, c = i % cols;
        dst[i] = src[(size_t)idx[row] * cols + c];
    }
}

template <typename T>
__global__ void scatter_rows_kernel(int cols, size_t n, const int32_t *idx, const T *src, T *dst,
                                    int accumulate) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t row = i / cols, c = i % cols;
        T *target = dst + (size_t)idx[row] * cols + c;
        *target = accumulate ? from_f32<T>(to_f32(*target) + to_f32(src[i])) : src[i];
    }
}

template <typename T>
__global__ void gather_cols_kernel(int src_cols, int count, size_t n, const int32_t *idx,
                                   const T *src, T *dst) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / count, j = i % count;
        dst[i] = src[r * src_cols + idx[j]];
    }
}

template <typename T>
__global__ void scatter_cols_kernel(int dst_cols, int count, size_t n, const int32_t *idx,
                                    const T *src, T *dst, int accumulate) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / count, j = i % count;
        T *target = dst + r * dst_cols + idx[j];
        *target = accumulate ? from_f32<T>(to_f32(*target) + to_f32(src[i])) : src[i];
    }
}

// ------------------------------------------------------------------------------------------
// Conversion between float types (tw_convert): widen to fp32 exactly, round once to the target
// ------------------------------------------------------------------------------------------

template <typename S, typename D> __global__ void convert_kernel(size_t n, const S *src, D *dst) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) dst[i] = from_f32<D>(to_f32(src[i]));
}

template <typename S>
cudaError_t launch_convert_from(cudaStream_t stream, size_t n, const S *src, tw_cuda_type dst_type,
                                void *dst) {
    TW_CUDA_DISPATCH(dst_type, convert_kernel<S, T><<<grid_for(n), kBlock, 0, stream>>>(
                                   n, src, static_cast<T *>(dst)))
    return cudaGetLastError();
}

} // namespace

// ------------------------------------------------------------------------------------------
// Launchers: TW_CUDA_DISPATCH binds T to the op's storage type (cuda_elements.cuh)
// ------------------------------------------------------------------------------------------

#define IN(p) static_cast<const T *>(p)
#define OUT(p) static_cast<T *>(p)

extern "C" {

cudaError_t tw_cuda_launch_fill(cudaStream_t stream, float *dst, size_t n, float value) {
    fill_kernel<<<grid_for(n), kBlock, 0, stream>>>(dst, n, value);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scale_matrix(cudaStream_t stream, tw_cuda_type type, void *c, int m,
                                        int n, int64_t ldc, int64_t stride_c, int batch,
                                        float beta) {
    TW_CUDA_DISPATCH(type, scale_matrix_kernel<T><<<grid_for((size_t)m * n * batch), kBlock, 0,
                                                    stream>>>(OUT(c), m, n, ldc, stride_c, batch,
                                                              beta))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_softmax_fwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                       int causal_t, const void *in, void *out) {
    TW_CUDA_DISPATCH(type, softmax_fwd_kernel<T><<<rows, kBlock, 0, stream>>>(cols, causal_t,
                                                                              IN(in), OUT(out)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_softmax_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                       const void *y, const void *dy, void *dx) {
    TW_CUDA_DISPATCH(type, softmax_bwd_kernel<T><<<rows, kBlock, 0, stream>>>(cols, IN(y), IN(dy),
                                                                              OUT(dx)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_layernorm_fwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, float eps, const void *x, const void *weight,
                                         const void *bias, void *out, float *mean, float *rstd) {
    TW_CUDA_DISPATCH(type, layernorm_fwd_kernel<T><<<rows, kBlock, 0, stream>>>(
                               cols, eps, IN(x), IN(weight), IN(bias), OUT(out), mean, rstd))
    return cudaGetLastError();
}

size_t tw_cuda_layernorm_bwd_scratch(int rows, int cols) {
    return 2 * (size_t)column_segments(rows) * (size_t)cols;
}

cudaError_t tw_cuda_launch_layernorm_bwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, const void *dout, const void *x,
                                         const void *weight, const float *mean,
                                         const float *rstd, void *dx, void *dweight, void *dbias,
                                         double *scratch) {
    const int segments = column_segments(rows);
    const int rows_per_segment = (rows + segments - 1) / segments;
    double *partial_w = scratch, *partial_b = scratch + (size_t)segments * cols;
    const dim3 grid((unsigned)((cols + kBlock - 1) / kBlock), (unsigned)segments);
    const unsigned column_blocks = (unsigned)((cols + kBlock - 1) / kBlock);
    TW_CUDA_DISPATCH(type, {
        layernorm_bwd_rows_kernel<T><<<rows, kBlock, 0, stream>>>(cols, IN(dout), IN(x),
                                                                  IN(weight), mean, rstd, OUT(dx));
        column_partials_kernel<T><<<grid, kBlock, 0, stream>>>(rows, cols, rows_per_segment,
                                                               IN(dout), IN(x), mean, rstd,
                                                               partial_w, partial_b);
        column_finish_kernel<T><<<column_blocks, kBlock, 0, stream>>>(cols, segments, partial_w,
                                                                      OUT(dweight));
        column_finish_kernel<T><<<column_blocks, kBlock, 0, stream>>>(cols, segments, partial_b,
                                                                      OUT(dbias));
    })
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gelu_fwd(cudaStream_t stream, tw_cuda_type type, size_t n,
                                    const void *x, void *out) {
    TW_CUDA_DISPATCH(type, gelu_fwd_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(n, IN(x),
                                                                                  OUT(out)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gelu_bwd(cudaStream_t stream, tw_cuda_type type, size_t n,
                                    const void *x, const void *dout, void *dx) {
    TW_CUDA_DISPATCH(type, gelu_bwd_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               n, IN(x), IN(dout), OUT(dx)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_embedding_fwd(cudaStream_t stream, tw_cuda_type type, int batch,
                                         int seq_len, int channels, const int32_t *tokens,
                                         const void *wte, const void *wpe, void *out) {
    const size_t n = (size_t)batch * seq_len * channels;
    TW_CUDA_DISPATCH(type, embedding_fwd_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               seq_len, channels, n, tokens, IN(wte), IN(wpe), OUT(out)))
    return cudaGetLastError();
}

// Column blocks of dwte widened at a time in bf16/f16: at most 64 Mi floats (256 MiB) of
// scratch, at least one column. GPT-2's wte (50257 x 768, 38.6 Mi) is one block: every block
// costs a walk over all (b, t) rows, so fewer blocks are faster; the scratch lives only during
// the op.
constexpr size_t kEmbeddingScratchFloats = (size_t)64 << 20;

static int embedding_block_width(tw_cuda_type type, int vocab, int channels) {
    if (type == TW_CUDA_F32) return 0;
    size_t width = kEmbeddingScratchFloats / (size_t)(vocab > 0 ? vocab : 1);
    if (width < 1) width = 1;
    return width > (size_t)channels ? channels : (int)width;
}

size_t tw_cuda_embedding_bwd_scratch(tw_cuda_type type, int vocab, int channels) {
    return (size_t)embedding_block_width(type, vocab, channels) * (size_t)vocab;
}

cudaError_t tw_cuda_launch_embedding_bwd(cudaStream_t stream, tw_cuda_type type, int batch,
                                         int seq_len, int vocab, int channels,
                                         const int32_t *tokens, const void *dout, void *dwte,
                                         void *dwpe, float *scratch) {
    const size_t wpe_elements = (size_t)seq_len * channels;
    const int rows = batch * seq_len;
    if (type == TW_CUDA_F32) { // in place, as before the data types
        embedding_bwd_wpe_kernel<float><<<grid_for(wpe_elements), kBlock, 0, stream>>>(
            batch, seq_len, channels, static_cast<const float *>(dout),
            static_cast<float *>(dwpe));
        const dim3 grid((unsigned)((channels + 127) / 128), kEmbeddingPartitions);
        embedding_bwd_wte_kernel<float><<<grid, 128, 0, stream>>>(
            rows, channels, 0, channels, channels, tokens, static_cast<const float *>(dout),
            static_cast<float *>(dwte));
        return cudaGetLastError();
    }
    const int width = embedding_block_width(type, vocab, channels);
    TW_CUDA_DISPATCH(type, {
        embedding_bwd_wpe_kernel<T><<<grid_for(wpe_elements), kBlock, 0, stream>>>(
            batch, seq_len, channels, IN(dout), OUT(dwpe));
        for (int c0 = 0; c0 < channels; c0 += width) {
            const int w = min(width, channels - c0);
            const size_t n = (size_t)vocab * w;
            embedding_block_widen_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                channels, c0, w, n, IN(dwte), scratch);
            const dim3 grid((unsigned)((w + 127) / 128), kEmbeddingPartitions);
            embedding_bwd_wte_kernel<T><<<grid, 128, 0, stream>>>(rows, channels, c0, w, w, tokens,
                                                                  IN(dout), scratch);
            embedding_block_narrow_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                channels, c0, w, n, scratch, OUT(dwte));
        }
    })
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_xent_fwd(cudaStream_t stream, tw_cuda_type type, int rows, int vocab,
                                    int ld, const void *logits, const int32_t *targets,
                                    float *losses, float *lse, float *correct) {
    TW_CUDA_DISPATCH(type, xent_fwd_kernel<T><<<rows, kBlock, 0, stream>>>(
                               vocab, ld, IN(logits), targets, losses, lse, correct))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_xent_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int vocab,
                                    int ld, float grad_scale, const void *logits,
                                    const int32_t *targets, const float *lse, void *dlogits) {
    TW_CUDA_DISPATCH(type, xent_bwd_kernel<T><<<grid_for((size_t)rows * vocab), kBlock, 0,
                                                stream>>>(rows, vocab, ld, grad_scale,
                                                          IN(logits), targets, lse,
                                                          OUT(dlogits)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_bias_add(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                    const void *bias, void *out) {
    TW_CUDA_DISPATCH(type, bias_add_kernel<T><<<grid_for((size_t)rows * cols), kBlock, 0,
                                                stream>>>(rows, cols, IN(bias), OUT(out)))
    return cudaGetLastError();
}

size_t tw_cuda_bias_bwd_scratch(int rows, int cols) {
    return (size_t)column_segments(rows) * (size_t)cols;
}

cudaError_t tw_cuda_launch_bias_bwd(cudaStream_t stream, tw_cuda_type type, int rows, int cols,
                                    const void *dout, void *dbias, double *scratch) {
    const int segments = column_segments(rows);
    const int rows_per_segment = (rows + segments - 1) / segments;
    const dim3 grid((unsigned)((cols + kBlock - 1) / kBlock), (unsigned)segments);
    TW_CUDA_DISPATCH(type, {
        column_partials_kernel<T><<<grid, kBlock, 0, stream>>>(rows, cols, rows_per_segment,
                                                               IN(dout), nullptr, nullptr,
                                                               nullptr, nullptr, scratch);
        column_finish_kernel<T><<<(unsigned)((cols + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
            cols, segments, scratch, OUT(dbias));
    })
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_add(cudaStream_t stream, tw_cuda_type type, size_t n, const void *a,
                               const void *b, void *out) {
    TW_CUDA_DISPATCH(type, add_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(n, IN(a), IN(b),
                                                                             OUT(out)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scale(cudaStream_t stream, tw_cuda_type type, size_t n, float alpha,
                                 const void *x, void *out) {
    TW_CUDA_DISPATCH(type, scale_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(n, alpha, IN(x),
                                                                               OUT(out)))
    return cudaGetLastError();
}

size_t tw_cuda_sum_sq_scratch(size_t n) { return (size_t)sum_sq_blocks(n); }

cudaError_t tw_cuda_launch_sum_sq(cudaStream_t stream, tw_cuda_type type, size_t n,
                                  const void *x, float *out, double *scratch) {
    const int blocks = sum_sq_blocks(n);
    TW_CUDA_DISPATCH(type, sum_sq_partial_kernel<T><<<blocks, kBlock, 0, stream>>>(n, IN(x),
                                                                                   scratch))
    sum_sq_finish_kernel<<<1, kBlock, 0, stream>>>(blocks, scratch, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_adamw(cudaStream_t stream, tw_cuda_type type, size_t n, float lr,
                                 float beta1, float beta2, float eps, float weight_decay,
                                 float grad_scale, float correction1, float correction2,
                                 float *param, const void *grad, float *m, float *v) {
    const adamw_params a = {lr, beta1, beta2, eps, weight_decay, grad_scale, correction1,
                            correction2};
    TW_CUDA_DISPATCH(type, adamw_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(n, a, param,
                                                                               IN(grad), m, v))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gather_rows(cudaStream_t stream, tw_cuda_type type, int cols,
                                       int count, const int32_t *idx, const void *src,
                                       void *dst) {
    const size_t n = (size_t)count * cols;
    TW_CUDA_DISPATCH(type, gather_rows_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               cols, n, idx, IN(src), OUT(dst)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scatter_rows(cudaStream_t stream, tw_cuda_type type, int cols,
                                        int count, const int32_t *idx, const void *src,
                                        void *dst, int accumulate) {
    const size_t n = (size_t)count * cols;
    TW_CUDA_DISPATCH(type, scatter_rows_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               cols, n, idx, IN(src), OUT(dst), accumulate))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gather_cols(cudaStream_t stream, tw_cuda_type type, int rows,
                                       int src_cols, int count, const int32_t *idx,
                                       const void *src, void *dst) {
    const size_t n = (size_t)rows * count;
    TW_CUDA_DISPATCH(type, gather_cols_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               src_cols, count, n, idx, IN(src), OUT(dst)))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scatter_cols(cudaStream_t stream, tw_cuda_type type, int rows,
                                        int dst_cols, int count, const int32_t *idx,
                                        const void *src, void *dst, int accumulate) {
    const size_t n = (size_t)rows * count;
    TW_CUDA_DISPATCH(type, scatter_cols_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(
                               dst_cols, count, n, idx, IN(src), OUT(dst), accumulate))
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_convert(cudaStream_t stream, size_t n, tw_cuda_type src_type,
                                   const void *src, tw_cuda_type dst_type, void *dst) {
    TW_CUDA_DISPATCH(src_type, return launch_convert_from<T>(stream, n, IN(src), dst_type, dst))
    return cudaErrorInvalidValue; // not reached: every case returns
}

} // extern "C"
