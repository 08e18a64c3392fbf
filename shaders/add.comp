#version 450
// out = a + b over n floats (vk_ops_basic.c); out may alias a or b: each element is read before
// it is written, by the same invocation.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, a)
TW_BUFFER_RO(1, TW_T, b)
TW_BUFFER(2, TW_T, result)

layout(push_constant) uniform Push {
    uint n;
    uint a_off, b_off, out_off;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    TW_ST(result, p.out_off + i, TW_LD(a, p.a_off + i) + TW_LD(b, p.b_off + i));
}
