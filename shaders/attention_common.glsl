// twist shaders: what the fused attention shaders share (attention_fwd.comp,
// attention_bwd_delta.comp, attention_bwd_dq.comp, attention_bwd_dkdv.comp; host side:
// backends/vulkan/vk_attention.c). #include after common.glsl.
//
// Element (b, h, t, d) of q, k, v, dq, dk, dv is at <x>_off + b*sb + h*sh + t*st + d; of out and
// dout at <x>_off + b*ob + h*oh + t*ot + d. lse (B, H, T) is contiguous from lse_off, delta
// (B, H, T) from 0 of its own scratch buffer.
//
// Every invocation owns whole rows and keeps them in private arrays of HD floats (the head
// dimension, specialization constant 1, so each pipeline is built for one D): no shared memory,
// no barriers, and no invocation ever holds more than one block of scores of a row. The (T, T)
// matrix exists nowhere.
#ifndef TW_ATTENTION_COMMON_GLSL
#define TW_ATTENTION_COMMON_GLSL

TW_LOCAL_SIZE_X_SPEC
layout(constant_id = 1) const uint HD = 64;

layout(push_constant) uniform Push {
    uint batch, heads, seq_len;
    float scale;
    uint q_off, k_off, v_off;
    uint sb, sh, st;    // q, k, v, dq, dk, dv strides (b, h, t)
    uint o_off, dout_off;
    uint ob, oh, ot;    // out, dout strides
    uint lse_off;
    uint dq_off, dk_off, dv_off;
    // Backward only: this dispatch's share of the work. dQ sums keys [range_begin, range_end),
    // dK/dV sum query rows [range_begin, range_end), over pair_count row pairs per (b, h) (the
    // pairs with no work in the range are not launched). The host splits the sums this way on
    // CPU devices, whose loop limiter would otherwise cut long rows short (vk_attention.c).
    uint range_begin, range_end, pair_count;
} pc;

// q, k, v and dout: storage buffers, or with TW_ATTN_TEXEL 1 (the *_texel.comp variants, which
// the host picks on CPU devices where every row starts on a 4-float texel) RGBA32F uniform texel
// buffers, which llvmpipe fetches for all SIMD lanes at once instead of lane by lane.
// TW_QKV_INPUT(b, k) declares binding b as `k`; TW_LOAD4(k, i) reads elements i .. i+3 (i a
// multiple of 4 with texels), TW_LOAD1(k, i) element i.
#ifndef TW_ATTN_TEXEL
#define TW_ATTN_TEXEL 0
#endif
// TW_D_UNROLL: unrolls the backward's loops over head_dim in the texel variants, so the rows
// kept in private arrays are indexed by constants (llvmpipe keeps dynamically indexed private
// arrays in memory, gathered and scattered lane by lane).
#if TW_ATTN_TEXEL
#define TW_D_UNROLL TW_UNROLL
#else
#define TW_D_UNROLL
#endif
#if TW_ATTN_TEXEL
#define TW_QKV_INPUT(b, name) layout(set = 0, binding = b) uniform samplerBuffer name##_tex;
#define TW_LOAD4(name, i) texelFetch(name##_tex, int((i) >> 2))
#define TW_LOAD1(name, i) texelFetch(name##_tex, int((i) >> 2))[(i) & 3u]
#else
#define TW_QKV_INPUT(b, name) TW_BUFFER_RO(b, float, name##_data)
#define TW_LOAD4(name, i) \
    vec4(name##_data[i], name##_data[(i) + 1], name##_data[(i) + 2], name##_data[(i) + 3])
#define TW_LOAD1(name, i) name##_data[i]
#endif

// This invocation's item in the host's x-then-y grid of workgroups (tw_vk_dispatch_1d);
// tw_global_index() of common.glsl, which needs the workgroup-size declaration above.
#define TW_ATTENTION_ITEM(i, n)      \
    const uint i = tw_global_index(); \
    if (i >= (n)) return;

// A finite stand-in for -infinity: exp() of it minus any score is 0, and no infinity ever meets
// exp() (whose behaviour at +-inf some drivers do not honour).
const float TW_NEG_BIG = -3.0e38;

// The (b, h) base offset of a flat (B*H) index in the q/k/v layout and in the out layout.
uint tw_qkv_base(uint bh) { return (bh / pc.heads) * pc.sb + (bh % pc.heads) * pc.sh; }
uint tw_out_base(uint bh) { return (bh / pc.heads) * pc.ob + (bh % pc.heads) * pc.oh; }

// The backward's pair product: a function `dots(r1, r2)` returning (a1 . buf1[r1], b1 . buf1[r1],
// a2 . buf2[r2], b2 . buf2[r2]) for the private rows a1, b1, a2, b2 (HD floats each), in 4
// partial sums each. The dQ pass gives it (q rows, k) and (dO rows, v); the dK/dV pass (k rows,
// q) and (v rows, dO). A macro because GLSL passes arrays by value, which would copy the rows.
#define TW_PAIR_DOTS(a1, b1, buf1, a2, b2, buf2)                                               \
    vec4 dots(uint r1, uint r2) {                                                              \
        vec4 x0 = vec4(0.0), x1 = vec4(0.0), x2 = vec4(0.0), x3 = vec4(0.0);                   \
        uint d = 0;                                                                            \
        TW_D_UNROLL for (; d + 4 <= HD; d += 4) {                                              \
            vec4 u1 = TW_LOAD4(buf1, r1 + d);                                                  \
            vec4 u2 = TW_LOAD4(buf2, r2 + d);                                                  \
            x0 = fma(vec4(a1[d], a1[d + 1], a1[d + 2], a1[d + 3]), u1, x0);                    \
            x1 = fma(vec4(b1[d], b1[d + 1], b1[d + 2], b1[d + 3]), u1, x1);                    \
            x2 = fma(vec4(a2[d], a2[d + 1], a2[d + 2], a2[d + 3]), u2, x2);                    \
            x3 = fma(vec4(b2[d], b2[d + 1], b2[d + 2], b2[d + 3]), u2, x3);                    \
        }                                                                                      \
        TW_D_UNROLL for (; d < HD; d++) {                                                      \
            float e1 = TW_LOAD1(buf1, r1 + d), e2 = TW_LOAD1(buf2, r2 + d);                    \
            x0.x = fma(a1[d], e1, x0.x);                                                       \
            x1.x = fma(b1[d], e1, x1.x);                                                       \
            x2.x = fma(a2[d], e2, x2.x);                                                       \
            x3.x = fma(b2[d], e2, x3.x);                                                       \
        }                                                                                      \
        return vec4((x0.x + x0.y) + (x0.z + x0.w), (x1.x + x1.y) + (x1.z + x1.w),              \
                    (x2.x + x2.y) + (x2.z + x2.w), (x3.x + x3.y) + (x3.z + x3.w));             \
    }

#endif
