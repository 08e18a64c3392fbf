// twist shaders: helpers shared by every compute shader (#include "common.glsl" after
// #version 450). Conventions (backends/vulkan/vk_internal.h): set 0, binding i = the op's i-th
// buffer as a whole std430 array; element offsets and sizes in the push constants as uint;
// specialization constant 0 = workgroup size along x.
#ifndef TW_COMMON_GLSL
#define TW_COMMON_GLSL

#extension GL_EXT_control_flow_attributes : enable

// [[unroll]] / [[dont_unroll]] from GL_EXT_control_flow_attributes, spelled as macros.
#define TW_UNROLL [[unroll]]
#define TW_DONT_UNROLL [[dont_unroll]]

// The workgroup size along x is specialization constant 0, chosen by the host; TW_LOCAL_X is the
// same constant as a value. Shaders use TW_LOCAL_X, not gl_WorkGroupSize.x: Mesa 22's lavapipe
// leaves gl_WorkGroupSize at the SPIR-V's default (1) when the size is specialized, so a loop
// striding by it visits elements many times.
#define TW_LOCAL_SIZE_X_SPEC                                                   \
    layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;        \
    layout(constant_id = 0) const uint TW_LOCAL_X = 1;

// A storage buffer of `type` elements at `binding`: TW_BUFFER(0, float, x) declares `x[]`.
// readonly/writeonly variants let drivers skip hazards; no `restrict`, since two bindings may be
// the same buffer (an output that aliases its input).
#define TW_BUFFER(b, type, name) \
    layout(std430, set = 0, binding = b) buffer name##_block { type name[]; };
#define TW_BUFFER_RO(b, type, name) \
    layout(std430, set = 0, binding = b) readonly buffer name##_block { type name[]; };
#define TW_BUFFER_WO(b, type, name) \
    layout(std430, set = 0, binding = b) writeonly buffer name##_block { type name[]; };

// Index of this invocation in a grid of workgroups that the host lays out in x, then y (the
// y count only exceeds 1 when x reaches maxComputeWorkGroupCount[0], 65535 on most devices):
// linear group id * workgroup size + local id. One item per invocation, guarded with
// `if (i >= n) return;`. (A grid-stride loop instead of the y dimension ran 2-3x slower on
// lavapipe.) Needs TW_LOCAL_SIZE_X_SPEC first.
#define tw_global_index() \
    ((gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * TW_LOCAL_X + gl_LocalInvocationID.x)

// tanh(u) and sech^2(u) = 1 - tanh^2(u), both computed from e = exp(-2|u|) so they stay accurate
// for every u: some tanh implementations saturate at 0.99999994, and 1 - t*t then leaves 1.2e-7
// where the GELU gradient multiplies it by a term that grows like x^3.
void tw_tanh_sech2(float u, out float t, out float sech2) {
    float e = exp(-2.0 * abs(u));
    float magnitude = (1.0 - e) / (1.0 + e);
    t = u < 0.0 ? -magnitude : magnitude;
    sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
}

#endif
