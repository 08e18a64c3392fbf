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

// The workgroup size along x is specialization constant 0, chosen by the host.
#define TW_LOCAL_SIZE_X_SPEC layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

// A storage buffer of `type` elements at `binding`: TW_BUFFER(0, float, x) declares `x[]`.
// readonly/writeonly variants let drivers skip hazards; no `restrict`, since two bindings may be
// the same buffer (an output that aliases its input).
#define TW_BUFFER(b, type, name) \
    layout(std430, set = 0, binding = b) buffer name##_block { type name[]; };
#define TW_BUFFER_RO(b, type, name) \
    layout(std430, set = 0, binding = b) readonly buffer name##_block { type name[]; };
#define TW_BUFFER_WO(b, type, name) \
    layout(std430, set = 0, binding = b) writeonly buffer name##_block { type name[]; };

// Index of this invocation in a 1-D grid of workgroups along x, and the grid's total invocation
// count. Ops launch min(ceil(n / local), maxComputeWorkGroupCount[0]) groups and loop with
// TW_FOR_EACH, so any n below 2^32 is covered with the group-count limit of every device.
uint tw_global_index() { return gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x; }
uint tw_global_count() { return gl_NumWorkGroups.x * gl_WorkGroupSize.x; }

// Grid-stride loop over [0, n): for every index i this invocation owns. Stops instead of wrapping
// when i + stride overflows 32 bits (n close to 2^32).
#define TW_FOR_EACH(i, n)                                                   \
    for (uint i = tw_global_index(), tw_stride_ = tw_global_count(); i < (n); \
         i = (i + tw_stride_ < i) ? (n) : i + tw_stride_)

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
