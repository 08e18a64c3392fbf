#version 450
// out (rows, cols) += bias (cols) broadcast over rows (vk_ops_basic.c): one invocation per
// element, n = rows * cols.
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, float, bias)
TW_BUFFER(1, float, result)

layout(push_constant) uniform Push {
    uint n, cols;
    uint bias_off, out_off;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    result[p.out_off + i] += bias[p.bias_off + i % p.cols];
}
