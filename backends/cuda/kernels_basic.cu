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
#include <climits>
#include <cmath>

#include "cuda_kernels.h"

namespace {

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
__global__ void scale_matrix_kernel(float *c, int m, int n, int64_t ldc, int64_t stride_c,
                                    int batch, float beta) {
    const size_t per_matrix = (size_t)m * (size_t)n, total = per_matrix * (size_t)batch;
    for (size_t i = thread_index(); i < total; i += grid_stride()) {
        const size_t p = i / per_matrix, rest = i % per_matrix;
        float *element = c + (int64_t)p * stride_c + (int64_t)(rest / n) * ldc + (int64_t)(rest % n);
        *element = beta == 0.0f ? 0.0f : beta * *element;
    }
}

// ------------------------------------------------------------------------------------------
// Softmax: one block per row
// ------------------------------------------------------------------------------------------

__global__ void softmax_fwd_kernel(int cols, int causal_t, const float *in, float *out) {
    __shared__ float shared[kBlock];
    const int r = blockIdx.x;
    const float *x = in + (size_t)r * cols;
    float *y = out + (size_t)r * cols; // may alias x: each element is one thread's
    int visible = causal_t > 0 ? r % causal_t + 1 : cols;
    if (visible > cols) visible = cols;
    float max = -INFINITY;
    for (int c = threadIdx.x; c < visible; c += kBlock) max = fmaxf(max, x[c]);
    max = block_max(max, shared);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < visible; c += kBlock) sum += expf(x[c] - max);
    sum = block_sum(sum, shared);
    const float inverse = 1.0f / sum;
    for (int c = threadIdx.x; c < cols; c += kBlock)
        y[c] = c < visible ? expf(x[c] - max) * inverse : 0.0f;
}

// dx += y * (dy - sum_c(dy * y)), the sum in double.
__global__ void softmax_bwd_kernel(int cols, const float *y, const float *dy, float *dx) {
    __shared__ double shared[kBlock];
    const size_t base = (size_t)blockIdx.x * cols;
    double dot = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) dot += (double)y[base + c] * dy[base + c];
    const float total = (float)block_sum(dot, shared);
    for (int c = threadIdx.x; c < cols; c += kBlock)
        dx[base + c] += y[base + c] * (dy[base + c] - total);
}

// ------------------------------------------------------------------------------------------
// LayerNorm
// ------------------------------------------------------------------------------------------

__global__ void layernorm_fwd_kernel(int cols, float eps, const float *x_all, const float *w,
                                     const float *b, float *y_all, float *mean, float *rstd) {
    __shared__ double shared[kBlock];
    const int r = blockIdx.x;
    const float *x = x_all + (size_t)r * cols;
    float *y = y_all + (size_t)r * cols;
    double sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) sum += x[c];
    const float mu = (float)(block_sum(sum, shared) / cols);
    double sum_sq = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const double d = (double)x[c] - mu;
        sum_sq += d * d;
    }
    const float s = (float)(1.0 / sqrt(block_sum(sum_sq, shared) / cols + eps));
    for (int c = threadIdx.x; c < cols; c += kBlock) y[c] = (x[c] - mu) * s * w[c] + b[c];
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = s;
    }
}

// dx (row) += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)), dnorm = dout * w.
__global__ void layernorm_bwd_rows_kernel(int cols, const float *dout, const float *x_all,
                                          const float *w, const float *mean, const float *rstd,
                                          float *dx_all) {
    __shared__ double shared[kBlock];
    const int r = blockIdx.x;
    const size_t base = (size_t)r * cols;
    const float mu = mean[r], s = rstd[r];
    double dnorm_sum = 0.0, dnorm_xhat_sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const float xhat = (x_all[base + c] - mu) * s, dnorm = dout[base + c] * w[c];
        dnorm_sum += dnorm;
        dnorm_xhat_sum += (double)dnorm * xhat;
    }
    const float dnorm_mean = (float)(block_sum(dnorm_sum, shared) / cols);
    const float dnorm_xhat_mean = (float)(block_sum(dnorm_xhat_sum, shared) / cols);
    for (int c = threadIdx.x; c < cols; c += kBlock) {
        const float xhat = (x_all[base + c] - mu) * s, dnorm = dout[base + c] * w[c];
        dx_all[base + c] += (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * s;
    }
}

// Column partial sums over the rows of segment blockIdx.y: partial_w[seg][c] = sum dout * xhat,
// partial_b[seg][c] = sum dout (x == NULL: bias_bwd, only partial_b). Rows in order.
__global__ void column_partials_kernel(int rows, int cols, int rows_per_segment,
                                       const float *dout, const float *x, const float *mean,
                                       const float *rstd, double *partial_w, double *partial_b) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int segment = blockIdx.y;
    const int r0 = segment * rows_per_segment;
    const int r1 = min(rows, r0 + rows_per_segment);
    double sum_w = 0.0, sum_b = 0.0;
    for (int r = r0; r < r1; r++) {
        const size_t at = (size_t)r * cols + c;
        const float dy = dout[at];
        if (x) sum_w += (double)dy * ((x[at] - mean[r]) * rstd[r]);
        sum_b += dy;
    }
    const size_t out = (size_t)segment * cols + c;
    if (x) partial_w[out] = sum_w;
    partial_b[out] = sum_b;
}

// target[c] += sum over segments, in order, of partial[seg][c].
__global__ void column_finish_kernel(int cols, int segments, const double *partial,
                                     float *target) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double sum = 0.0;
    for (int s = 0; s < segments; s++) sum += partial[(size_t)s * cols + c];
    target[c] += (float)sum;
}

// ------------------------------------------------------------------------------------------
// GELU (tanh form), elementwise arithmetic, AdamW
// ------------------------------------------------------------------------------------------

constexpr float kGeluScale = 0.7978845608028654f; // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

__global__ void gelu_fwd_kernel(size_t n, const float *x, float *y) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(kGeluScale * (v + kGeluCubic * v * v * v)));
    }
}

__global__ void gelu_bwd_kernel(size_t n, const float *x, const float *dy, float *dx) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float v = x[i];
        const float t = tanhf(kGeluScale * (v + kGeluCubic * v * v * v));
        const float local = 0.5f * (1.0f + t) +
                            0.5f * v * (1.0f - t * t) * kGeluScale * (1.0f + 3.0f * kGeluCubic * v * v);
        dx[i] += local * dy[i];
    }
}

__global__ void add_kernel(size_t n, const float *a, const float *b, float *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(size_t n, float alpha, const float *x, float *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) out[i] = alpha * x[i];
}

__global__ void bias_add_kernel(int rows, int cols, const float *bias, float *out) {
    const size_t n = (size_t)rows * cols;
    for (size_t i = thread_index(); i < n; i += grid_stride()) out[i] += bias[i % cols];
}

struct adamw_params {
    float lr, beta1, beta2, eps, weight_decay, grad_scale, correction1, correction2;
};

__global__ void adamw_kernel(size_t n, adamw_params a, float *p, const float *grad, float *m,
                             float *v) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const float g = a.grad_scale * grad[i];
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

__global__ void sum_sq_partial_kernel(size_t n, const float *x, double *partial) {
    __shared__ double shared[kBlock];
    double sum = 0.0;
    for (size_t i = thread_index(); i < n; i += grid_stride()) sum += (double)x[i] * x[i];
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

__global__ void embedding_fwd_kernel(int seq_len, int channels, size_t n, const int32_t *tokens,
                                     const float *wte, const float *wpe, float *out) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / channels, c = i % channels;
        out[i] = wte[(size_t)tokens[r] * channels + c] + wpe[(r % seq_len) * channels + c];
    }
}

// dwpe (T, C): element (t, c) adds dout[(b, t)][c] for b in order (as the CPU does).
__global__ void embedding_bwd_wpe_kernel(int batch, int seq_len, int channels, const float *dout,
                                         float *dwpe) {
    const size_t n = (size_t)seq_len * channels;
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t t = i / channels, c = i % channels;
        float sum = dwpe[i];
        for (int b = 0; b < batch; b++) sum += dout[((size_t)b * seq_len + t) * channels + c];
        dwpe[i] = sum;
    }
}

// dwte (V, C): thread (c, partition p) walks every (b, t) row in order and adds those whose
// token is p modulo kEmbeddingPartitions. Each dwte element has exactly one owner, and its
// contributions arrive in row order, as on the CPU.
__global__ void embedding_bwd_wte_kernel(int rows, int channels, const int32_t *tokens,
                                         const float *dout, float *dwte) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const unsigned partition = blockIdx.y;
    for (int r = 0; r < rows; r++) {
        const int32_t token = tokens[r];
        if ((unsigned)token % kEmbeddingPartitions != partition) continue;
        dwte[(size_t)token * channels + c] += dout[(size_t)r * channels + c];
    }
}

// ------------------------------------------------------------------------------------------
// Softmax + cross-entropy
// ------------------------------------------------------------------------------------------

__global__ void xent_fwd_kernel(int vocab, int ld, const float *logits, const int32_t *targets,
                                float *losses, float *lse_out, float *correct) {
    __shared__ float shared[kBlock];
    __shared__ int shared_int[kBlock];
    const int r = blockIdx.x;
    const float *row = logits + (size_t)r * ld;
    float max = -INFINITY;
    for (int c = threadIdx.x; c < vocab; c += kBlock) max = fmaxf(max, row[c]);
    max = block_max(max, shared);
    int first = INT_MAX; // first index holding the maximum (ties: the lowest)
    for (int c = threadIdx.x; c < vocab; c += kBlock)
        if (row[c] == max) first = min(first, c);
    first = block_min_int(first, shared_int);
    if (first == INT_MAX) first = vocab - 1; // as the CPU's scan ends when nothing matches
    float sum = 0.0f;
    for (int c = threadIdx.x; c < vocab; c += kBlock) sum += expf(row[c] - max);
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) {
        const float lse = max + logf(sum);
        const int t = targets[r];
        lse_out[r] = lse;
        losses[r] = t < 0 ? 0.0f : lse - row[t];
        correct[r] = t >= 0 && t == first ? 1.0f : 0.0f;
    }
}

// dlogits[r][c] += grad_scale * (exp(logit - lse) - [c == target]) on rows with a target.
__global__ void xent_bwd_kernel(int rows, int vocab, int ld, float grad_scale,
                                const float *logits, const int32_t *targets, const float *lse,
                                float *dlogits) {
    const size_t n = (size_t)rows * vocab;
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / vocab;
        const int c = (int)(i % vocab);
        const int t = targets[r];
        if (t < 0) continue;
        const size_t at = r * ld + c;
        float value = dlogits[at] + grad_scale * expf(logits[at] - lse[r]);
        if (c == t) value -= grad_scale;
        dlogits[at] = value;
    }
}

// ------------------------------------------------------------------------------------------
// Gather / scatter (indices in range; scatter indices distinct)
// ------------------------------------------------------------------------------------------

__global__ void gather_rows_kernel(int cols, size_t n, const int32_t *idx, const float *src,
                                   float *dst) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t row = i / cols, c = i % cols;
        dst[i] = src[(size_t)idx[row] * cols + c];
    }
}

__global__ void scatter_rows_kernel(int cols, size_t n, const int32_t *idx, const float *src,
                                    float *dst, int accumulate) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t row = i / cols, c = i % cols;
        float *target = dst + (size_t)idx[row] * cols + c;
        *target = accumulate ? *target + src[i] : src[i];
    }
}

__global__ void gather_cols_kernel(int src_cols, int count, size_t n, const int32_t *idx,
                                   const float *src, float *dst) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / count, j = i % count;
        dst[i] = src[r * src_cols + idx[j]];
    }
}

__global__ void scatter_cols_kernel(int dst_cols, int count, size_t n, const int32_t *idx,
                                    const float *src, float *dst, int accumulate) {
    for (size_t i = thread_index(); i < n; i += grid_stride()) {
        const size_t r = i / count, j = i % count;
        float *target = dst + r * dst_cols + idx[j];
        *target = accumulate ? *target + src[i] : src[i];
    }
}

} // namespace

// ------------------------------------------------------------------------------------------
// Launchers
// ------------------------------------------------------------------------------------------

extern "C" {

cudaError_t tw_cuda_launch_fill(cudaStream_t stream, float *dst, size_t n, float value) {
    fill_kernel<<<grid_for(n), kBlock, 0, stream>>>(dst, n, value);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scale_matrix(cudaStream_t stream, float *c, int m, int n, int64_t ldc,
                                 int64_t stride_c, int batch, float beta) {
    scale_matrix_kernel<<<grid_for((size_t)m * n * batch), kBlock, 0, stream>>>(
        c, m, n, ldc, stride_c, batch, beta);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_softmax_fwd(cudaStream_t stream, int rows, int cols, int causal_t,
                                const float *in, float *out) {
    softmax_fwd_kernel<<<rows, kBlock, 0, stream>>>(cols, causal_t, in, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_softmax_bwd(cudaStream_t stream, int rows, int cols, const float *y,
                                const float *dy, float *dx) {
    softmax_bwd_kernel<<<rows, kBlock, 0, stream>>>(cols, y, dy, dx);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_layernorm_fwd(cudaStream_t stream, int rows, int cols, float eps,
                                  const float *x, const float *weight, const float *bias,
                                  float *out, float *mean, float *rstd) {
    layernorm_fwd_kernel<<<rows, kBlock, 0, stream>>>(cols, eps, x, weight, bias, out, mean,
                                                      rstd);
    return cudaGetLastError();
}

size_t tw_cuda_layernorm_bwd_scratch(int rows, int cols) {
    return 2 * (size_t)column_segments(rows) * (size_t)cols;
}

cudaError_t tw_cuda_launch_layernorm_bwd(cudaStream_t stream, int rows, int cols, const float *dout,
                                  const float *x, const float *weight, const float *mean,
                                  const float *rstd, float *dx, float *dweight, float *dbias,
                                  double *scratch) {
    layernorm_bwd_rows_kernel<<<rows, kBlock, 0, stream>>>(cols, dout, x, weight, mean, rstd, dx);
    const int segments = column_segments(rows);
    const int rows_per_segment = (rows + segments - 1) / segments;
    double *partial_w = scratch, *partial_b = scratch + (size_t)segments * cols;
    const dim3 grid((unsigned)((cols + kBlock - 1) / kBlock), (unsigned)segments);
    column_partials_kernel<<<grid, kBlock, 0, stream>>>(rows, cols, rows_per_segment, dout, x,
                                                        mean, rstd, partial_w, partial_b);
    const unsigned column_blocks = (unsigned)((cols + kBlock - 1) / kBlock);
    column_finish_kernel<<<column_blocks, kBlock, 0, stream>>>(cols, segments, partial_w, dweight);
    column_finish_kernel<<<column_blocks, kBlock, 0, stream>>>(cols, segments, partial_b, dbias);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gelu_fwd(cudaStream_t stream, size_t n, const float *x, float *out) {
    gelu_fwd_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, x, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gelu_bwd(cudaStream_t stream, size_t n, const float *x, const float *dout,
                             float *dx) {
    gelu_bwd_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, x, dout, dx);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_embedding_fwd(cudaStream_t stream, int batch, int seq_len, int channels,
                                  const int32_t *tokens, const float *wte, const float *wpe,
                                  float *out) {
    const size_t n = (size_t)batch * seq_len * channels;
    embedding_fwd_kernel<<<grid_for(n), kBlock, 0, stream>>>(seq_len, channels, n, tokens, wte,
                                                             wpe, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_embedding_bwd(cudaStream_t stream, int batch, int seq_len, int channels,
                                  const int32_t *tokens, const float *dout, float *dwte,
                                  float *dwpe) {
    const size_t wpe_elements = (size_t)seq_len * channels;
    embedding_bwd_wpe_kernel<<<grid_for(wpe_elements), kBlock, 0, stream>>>(batch, seq_len,
                                                                            channels, dout, dwpe);
    const dim3 grid((unsigned)((channels + 127) / 128), kEmbeddingPartitions);
    embedding_bwd_wte_kernel<<<grid, 128, 0, stream>>>(batch * seq_len, channels, tokens, dout,
                                                       dwte);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_xent_fwd(cudaStream_t stream, int rows, int vocab, int ld,
                             const float *logits, const int32_t *targets, float *losses,
                             float *lse, float *correct) {
    xent_fwd_kernel<<<rows, kBlock, 0, stream>>>(vocab, ld, logits, targets, losses, lse, correct);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_xent_bwd(cudaStream_t stream, int rows, int vocab, int ld, float grad_scale,
                             const float *logits, const int32_t *targets, const float *lse,
                             float *dlogits) {
    xent_bwd_kernel<<<grid_for((size_t)rows * vocab), kBlock, 0, stream>>>(
        rows, vocab, ld, grad_scale, logits, targets, lse, dlogits);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_bias_add(cudaStream_t stream, int rows, int cols, const float *bias,
                             float *out) {
    bias_add_kernel<<<grid_for((size_t)rows * cols), kBlock, 0, stream>>>(rows, cols, bias, out);
    return cudaGetLastError();
}

size_t tw_cuda_bias_bwd_scratch(int rows, int cols) {
    return (size_t)column_segments(rows) * (size_t)cols;
}

cudaError_t tw_cuda_launch_bias_bwd(cudaStream_t stream, int rows, int cols, const float *dout,
                             float *dbias, double *scratch) {
    const int segments = column_segments(rows);
    const int rows_per_segment = (rows + segments - 1) / segments;
    const dim3 grid((unsigned)((cols + kBlock - 1) / kBlock), (unsigned)segments);
    column_partials_kernel<<<grid, kBlock, 0, stream>>>(rows, cols, rows_per_segment, dout,
                                                        nullptr, nullptr, nullptr, nullptr,
                                                        scratch);
    column_finish_kernel<<<(unsigned)((cols + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
        cols, segments, scratch, dbias);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_add(cudaStream_t stream, size_t n, const float *a, const float *b,
                        float *out) {
    add_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, a, b, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scale(cudaStream_t stream, size_t n, float alpha, const float *x,
                          float *out) {
    scale_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, alpha, x, out);
    return cudaGetLastError();
}

size_t tw_cuda_sum_sq_scratch(size_t n) { return (size_t)sum_sq_blocks(n); }

cudaError_t tw_cuda_launch_sum_sq(cudaStream_t stream, size_t n, const float *x, float *out,
                           double *scratch) {
    const int blocks = sum_sq_blocks(n);
    sum_sq_partial_kernel<<<blocks, kBlock, 0, stream>>>(n, x, scratch);
    sum_sq_finish_kernel<<<1, kBlock, 0, stream>>>(blocks, scratch, out);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_adamw(cudaStream_t stream, size_t n, float lr, float beta1, float beta2,
                          float eps, float weight_decay, float grad_scale, float correction1,
                          float correction2, float *param, const float *grad, float *m,
                          float *v) {
    const adamw_params a = {lr, beta1, beta2, eps, weight_decay, grad_scale, correction1,
                            correction2};
    adamw_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, a, param, grad, m, v);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gather_rows(cudaStream_t stream, int cols, int count, const int32_t *idx,
                                const float *src, float *dst) {
    const size_t n = (size_t)count * cols;
    gather_rows_kernel<<<grid_for(n), kBlock, 0, stream>>>(cols, n, idx, src, dst);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scatter_rows(cudaStream_t stream, int cols, int count, const int32_t *idx,
                                 const float *src, float *dst, int accumulate) {
    const size_t n = (size_t)count * cols;
    scatter_rows_kernel<<<grid_for(n), kBlock, 0, stream>>>(cols, n, idx, src, dst, accumulate);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_gather_cols(cudaStream_t stream, int rows, int src_cols, int count,
                                const int32_t *idx, const float *src, float *dst) {
    const size_t n = (size_t)rows * count;
    gather_cols_kernel<<<grid_for(n), kBlock, 0, stream>>>(src_cols, count, n, idx, src, dst);
    return cudaGetLastError();
}

cudaError_t tw_cuda_launch_scatter_cols(cudaStream_t stream, int rows, int dst_cols, int count,
                                 const int32_t *idx, const float *src, float *dst,
                                 int accumulate) {
    const size_t n = (size_t)rows * count;
    scatter_cols_kernel<<<grid_for(n), kBlock, 0, stream>>>(dst_cols, count, n, idx, src, dst,
                                                            accumulate);
    return cudaGetLastError();
}

} // extern "C"
