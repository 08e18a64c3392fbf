// twist shaders: fused causal attention on f16 / bf16 storage, fp32 arithmetic: what
// attn16_fwd, attn16_delta, attn16_dq and attn16_dkdv.comp share (host side:
// backends/vulkan/vk_gpu16.c; the same scheme as backends/opencl/kernels/attention16.cl).
// q, k, v, out, dout, dq, dk, dv are TW_T; lse and delta fp32. Element (b, h, t, d) of
// q, k, v, dq, dk, dv is at off + b*sb + h*sh + t*st + d; of out and dout at off + b*ob + h*oh +
// t*ot + d. lse and delta are (B, H, T) contiguous.
//
// A workgroup owns WG consecutive rows of one (b, h) (query rows in the forward and dQ, key rows
// in dK/dV) and walks the other side's rows in tiles of KT rows staged in shared memory as fp32,
// shared by every row of the group; the (T, T) scores exist nowhere (online softmax forward, P
// recomputed from lse backward). Rows past T take part in the barriers but do no work.
// Constants: 0 = WG (workgroup size), 1 = HD (head dimension; private rows of HD floats).
//
// lavapipe: Mesa's gallivm stops a shader's loops after 65535 iterations in all (one counter
// shared by every loop of an invocation, LP_MAX_TGSI_LOOP_ITERATIONS), and these loops over d run
// about 2-3 HD times per key: with HD 64 query rows past ~450 end early. lavapipe therefore takes
// the fp32 path (backends/gpu16_via_f32.h); forcing these shaders there (TWIST_ATTENTION16=tiled)
// is only sound for T * HD below ~25000. GPUs have no such limit.
#ifndef TW_ATTN16_COMMON_GLSL
#define TW_ATTN16_COMMON_GLSL

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint HD = 64;
// Rows per staged tile: two (KT, HD) fp32 tiles in 32 KB at most.
const uint KT_RAW = 4096u / HD;
const uint KT = KT_RAW > 32u ? 32u : (KT_RAW < 1u ? 1u : KT_RAW);

TW_BUFFER_RO(0, TW_T, q)
TW_BUFFER_RO(1, TW_T, k)
TW_BUFFER_RO(2, TW_T, v)
TW_BUFFER(3, TW_T, o)
TW_BUFFER(4, float, lse)
TW_BUFFER_RO(5, TW_T, dout)
TW_BUFFER(6, float, delta)
TW_BUFFER(7, TW_T, dq)
TW_BUFFER(8, TW_T, dk)
TW_BUFFER(9, TW_T, dv)

layout(push_constant) uniform Push {
    uint heads, seq_len, row_groups;
    float scale;
    uint sb, sh, st, ob, oh, ot;
    uint q_off, k_off, v_off, out_off, lse_off, dout_off, dq_off, dk_off, dv_off;
} p;

#endif
