#version 450
// out = alpha * x over n floats (vk_ops_basic.c); out may alias x.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, x)
TW_BUFFER(1, TW_T, result)

layout(push_constant) uniform Push {
    uint n;
    uint x_off, out_off;
    float alpha;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    TW_ST(result, p.out_off + i, p.alpha * TW_LD(x, p.x_off + i));
}
