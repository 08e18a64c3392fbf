// Fused bias + GELU for the MLP of a transformer block (issue 17, "fused kernels where the step
// spends time on memory traffic"). A START, NOT YET WIRED IN: no op of twist/backend.h calls
// these launchers yet (the op list has bias_add and gelu_fwd/gelu_bwd as separate ops), and they
// have never run on a GPU. What is missing before they can replace the separate ops:
//   1. an op in the list (twist/backend.h, backend_support.h's TW_BACKEND_OPS) with these
//      semantics, a cpu reference built from bias_add + gelu, and conformance cases for it;
//   2. the model (src/model) calling it for fc -> GELU where the backend has it;
//   3. a measurement on a GPU against the unfused pair (bias_add, gelu_fwd / gelu_bwd, bias_bwd).
//
// Why: for the MLP's hidden activations h (rows = B*T, cols = 4C) the unfused forward reads and
// writes h in bias_add and reads h / writes g in gelu_fwd: 2 reads + 2 writes of (rows, cols).
// Fused: 1 read + 2 writes (h keeps the pre-activation, which the backward needs). The backward
// fuses gelu_bwd with bias_bwd's first pass: dh is written once and the column partial sums of
// dbias come from registers instead of re-reading dh.
//
// Semantics (each element with one owner, no atomics, the same bits run after run):
//   forward   h (rows, cols) += bias (cols);  g (rows, cols) = gelu(h)     [g may not alias h]
//   backward  local = gelu'(h) * dg;  dh (rows, cols) += local;
//             dbias (cols) += column sums of local (rows in segments, segments in order; the
//             sums in double as bias_bwd's). With dh zero on entry this is gelu_bwd followed by
//             bias_bwd(dh), the unfused sequence.
// Storage types as in kernels_basic.cu: float, __nv_bfloat16 or __half with fp32 arithmetic
// (cuda_elements.cuh); GELU is the tanh form of gelu_fwd_kernel, constant for constant.
#include <cmath>

#include "cuda_elements.cuh"
#include "cuda_kernels.h"

namespace {

using tw_cuda::from_f32;
using tw_cuda::to_f32;

constexpr int kBlock = 256;
constexpr unsigned kMaxGrid = 1u << 20;
constexpr int kSegmentRows = 32; // as kernels_basic.cu's column sums
constexpr int kMaxSegments = 256;
constexpr float kGeluScale = 0.7978845608028654f; // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

unsigned grid_for(size_t n) {
    size_t blocks = (n + kBlock - 1) / kBlock;
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxGrid) blocks = kMaxGrid;
    return (unsigned)blocks;
}

int column_segments(int rows) {
    int segments = (rows + kSegmentRows - 1) / kSegmentRows;
    if (segments < 1) segments = 1;
    return segments > kMaxSegments ? kMaxSegments : segments;
}

__device__ __forceinline__ float gelu(float v) {
    return 0.5f * v * (1.0f + tanhf(kGeluScale * (v + kGeluCubic * v * v * v)));
}

__device__ __forceinline__ float gelu_grad(float v) {
    const float t = tanhf(kGeluScale * (v + kGeluCubic * v * v * v));
    return 0.5f * (1.0f + t) +
           0.5f * v * (1.0f - t * t) * kGeluScale * (1.0f + 3.0f * kGeluCubic * v * v);
}

// Elementwise over rows * cols; the pre-activation is rounded to T before GELU reads it, so g
// is gelu of exactly the h that is stored (and that the backward will read).
template <typename T>
__global__ void bias_gelu_fwd_kernel(int rows, int cols, const T *bias, T *h, T *g) {
    const size_t n = (size_t)rows * cols;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const T pre = from_f32<T>(to_f32(h[i]) + to_f32(bias[i % cols]));
        h[i] = pre;
        g[i] = from_f32<T>(gelu(to_f32(pre)));
    }
}

// Thread (column c, segment blockIdx.y) walks the segment's rows in order: writes dh and keeps
// the segment's column sum of local in a register (double), then one write of the partial.
template <typename T>
__global__ void bias_gelu_bwd_kernel(int rows, int cols, int rows_per_segment, const T *h,
                                     const T *dg, T *dh, double *partial) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int segment = blockIdx.y;
    const int r0 = segment * rows_per_segment;
    const int r1 = min(rows, r0 + rows_per_segment);
    double sum = 0.0;
    for (int r = r0; r < r1; r++) {
        const size_t at = (size_t)r * cols + c;
        const float local = gelu_grad(to_f32(h[at])) * to_f32(dg[at]);
        dh[at] = from_f32<T>(to_f32(dh[at]) + local);
        sum += local;
    }
    partial[(size_t)segment * cols + c] = sum;
}

// dbias[c] += sum over segments, in order (kernels_basic.cu's column_finish_kernel).
template <typename T>
__global__ void bias_finish_kernel(int cols, int segments, const double *partial, T *dbias) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double sum = 0.0;
    for (int s = 0; s < segments; s++) sum += partial[(size_t)s * cols + c];
    dbias[c] = from_f32<T>(to_f32(dbias[c]) + (float)sum);
}

} // namespace

#define IN(p) static_cast<const T *>(p)
#define OUT(p) static_cast<T *>(p)

extern "C" {

cudaError_t tw_cuda_launch_bias_gelu_fwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, const void *bias, void *h, void *g) {
    TW_CUDA_DISPATCH(type, bias_gelu_fwd_kernel<T><<<grid_for((size_t)rows * cols), kBlock, 0,
                                                     stream>>>(rows, cols, IN(bias), OUT(h),
                                                               OUT(g)))
    return cudaGetLastError();
}

size_t tw_cuda_bias_gelu_bwd_scratch(int rows, int cols) {
    return (size_t)column_segments(rows) * (size_t)cols;
}

cudaError_t tw_cuda_launch_bias_gelu_bwd(cudaStream_t stream, tw_cuda_type type, int rows,
                                         int cols, const void *h, const void *dg, void *dh,
                                         void *dbias, double *scratch) {
    const int segments = column_segments(rows);
    const int rows_per_segment = (rows + segments - 1) / segments;
    const unsigned column_blocks = (unsigned)((cols + kBlock - 1) / kBlock);
    const dim3 grid(column_blocks, (unsigned)segments);
    TW_CUDA_DISPATCH(type, {
        bias_gelu_bwd_kernel<T><<<grid, kBlock, 0, stream>>>(rows, cols, rows_per_segment, IN(h),
                                                             IN(dg), OUT(dh), scratch);
        bias_finish_kernel<T><<<column_blocks, kBlock, 0, stream>>>(cols, segments, scratch,
                                                                    OUT(dbias));
    })
    return cudaGetLastError();
}

} // extern "C"
