#version 450
// dx += gelu'(x) * dout over n floats (vk_ops_basic.c). tanh and sech^2 come from
// tw_tanh_sech2 (common.glsl), accurate where a saturating tanh would leave 1 - t^2 = 1.2e-7.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, x)
TW_BUFFER_RO(1, TW_T, dout)
TW_BUFFER(2, TW_T, dx)

layout(push_constant) uniform Push {
    uint n;
    uint x_off, dout_off, dx_off;
} p;

const float GELU_K = 0.7978845608028654; // sqrt(2 / pi)
const float GELU_C = 0.044715;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    float v = TW_LD(x, p.x_off + i);
    float t, sech2;
    tw_tanh_sech2(GELU_K * (v + GELU_C * v * v * v), t, sech2);
    float grad = 0.5 * (1.0 + t) + 0.5 * v * sech2 * GELU_K * (1.0 + 3.0 * GELU_C * v * v);
    TW_ST(dx, p.dx_off + i, TW_LD(dx, p.dx_off + i) + (grad * TW_LD(dout, p.dout_off + i)));
}
