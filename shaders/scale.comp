#version 450
// out = alpha * x over n floats (vk_ops_basic.c); out may alias x.
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, float, x)
TW_BUFFER(1, float, result)

layout(push_constant) uniform Push {
    uint n;
    uint x_off, out_off;
    float alpha;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    result[p.out_off + i] = p.alpha * x[p.x_off + i];
}
