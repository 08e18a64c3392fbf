#version 450
// twist: tw_convert between float types (host side: backends/vulkan/vk_gpu16.c).
// dst (n) = src (n), rounded to nearest even; NaN stays NaN, values past the target's range
// become +-inf. The type pair is specialization constants 1 (FROM) and 2 (TO): 0 f32, 1 f16,
// 2 bf16. Each side is bound twice, as fp32 words and as 16-bit halves of the same buffer
// (bindings 0/1 the source, 2/3 the destination); the shader touches only the view of its type.
// Built once (it defines TW_DTYPE itself for dtype.glsl's 16-bit helpers).
#define TW_DTYPE 1
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
layout(constant_id = 1) const uint FROM = 0;
layout(constant_id = 2) const uint TO = 1;
TW_BUFFER_RO(0, float, src32)
TW_BUFFER_RO(1, uint16_t, src16)
TW_BUFFER_WO(2, float, dst32)
TW_BUFFER_WO(3, uint16_t, dst16)

layout(push_constant) uniform Push {
    uint n;
    uint src_off, dst_off;
} p;

void main() {
    uint i = tw_global_index();
    if (i >= p.n) return;
    uint s = p.src_off + i, d = p.dst_off + i;
    float value = FROM == 0 ? src32[s]
                  : FROM == 1 ? tw_f16_bits_to_f32(uint(src16[s]))
                              : tw_bf16_bits_to_f32(uint(src16[s]));
    if (TO == 0) dst32[d] = value;
    else if (TO == 1) dst16[d] = uint16_t(tw_f32_to_f16_bits(value));
    else dst16[d] = uint16_t(tw_f32_to_bf16_bits(value));
}
