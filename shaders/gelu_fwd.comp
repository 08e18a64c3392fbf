#version 450
// out = gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) over n floats
// (vk_ops_basic.c); out may alias x.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, x)
TW_BUFFER(1, TW_T, result)

layout(push_constant) uniform Push {
    uint n;
    uint x_off, out_off;
} p;

const float GELU_K = 0.7978845608028654; // sqrt(2 / pi)
const float GELU_C = 0.044715;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    float v = TW_LD(x, p.x_off + i);
    float t, sech2;
    tw_tanh_sech2(GELU_K * (v + GELU_C * v * v * v), t, sech2);
    TW_ST(result, p.out_off + i, 0.5 * v * (1.0 + t));
}
