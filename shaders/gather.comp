#version 450
// twist: gather and scatter of matrix rows and columns (host side: backends/vulkan/vk_ops.c).
// idx (count) int32, in range and, for scatters, distinct (the caller guarantees it), so no two
// invocations write one element. One invocation per moved element e of the small matrix:
//   MODE_GATHER_ROWS:  dst (count, cols)[i][c] = src (rows, cols)[idx[i]][c]
//   MODE_SCATTER_ROWS: dst (rows, cols)[idx[i]][c] (+)= src (count, cols)[i][c]
//   MODE_GATHER_COLS:  dst (rows, count)[r][i] = src (rows, cols)[r][idx[i]]
//   MODE_SCATTER_COLS: dst (rows, cols)[r][idx[i]] (+)= src (rows, count)[r][i]
#include "common.glsl"
#include "dtype.glsl"
TW_LOCAL_SIZE_X_SPEC

#define MODE_GATHER_ROWS 0u
#define MODE_SCATTER_ROWS 1u
#define MODE_GATHER_COLS 2u
#define MODE_SCATTER_COLS 3u

layout(std430, set = 0, binding = 0) readonly buffer Idx { int idx[]; };
layout(std430, set = 0, binding = 1) readonly buffer Src { TW_T src[]; };
layout(std430, set = 0, binding = 2) buffer Dst { TW_T dst[]; };

layout(push_constant) uniform Push {
    uint n;          // elements moved: count * cols (rows) or rows * count (cols)
    uint mode, accumulate;
    uint cols;       // columns of the big matrix
    uint count;      // indices
    uint idx_off, src_off, dst_off;
} p;

// Element offset in the big matrix of small-matrix element e.
uint big_index(uint e) {
    if (p.mode <= MODE_SCATTER_ROWS) {
        uint i = e / p.cols, c = e % p.cols;
        return uint(idx[p.idx_off + i]) * p.cols + c;
    }
    uint r = e / p.count, i = e % p.count;
    return r * p.cols + uint(idx[p.idx_off + i]);
}

void main() {
    bool gather = p.mode == MODE_GATHER_ROWS || p.mode == MODE_GATHER_COLS;
    const uint e = tw_global_index();
    if (e < p.n) {
        uint big = big_index(e);
        if (gather) {
            TW_ST(dst, p.dst_off + e, TW_LD(src, p.src_off + big));
        } else {
            float value = TW_LD(src, p.src_off + e);
            uint d = p.dst_off + big;
            TW_ST(dst, d, p.accumulate != 0 ? TW_LD(dst, d) + value : value);
        }
    }
}
