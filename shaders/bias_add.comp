#version 450
// out (rows, cols) += bias (cols) broadcast over rows (vk_ops_basic.c): one invocation per
// element, n = rows * cols.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, bias)
TW_BUFFER(1, TW_T, result)

layout(push_constant) uniform Push {
    uint n, cols;
    uint bias_off, out_off;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    TW_ST(result, p.out_off + i,
          TW_LD(result, p.out_off + i) + TW_LD(bias, p.bias_off + i % p.cols));
}
