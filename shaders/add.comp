#version 450
// out = a + b over n floats (vk_ops_basic.c); out may alias a or b: each element is read before
// it is written, by the same invocation.
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, float, a)
TW_BUFFER_RO(1, float, b)
TW_BUFFER(2, float, result)

layout(push_constant) uniform Push {
    uint n;
    uint a_off, b_off, out_off;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    result[p.out_off + i] = a[p.a_off + i] + b[p.b_off + i];
}
