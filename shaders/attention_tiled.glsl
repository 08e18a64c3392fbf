// twist shaders: what the tiled (flash-attention style) attention shaders share
// (attention_fwd_tiled.comp, attention_bwd_dq_tiled.comp, attention_bwd_dkdv_tiled.comp; host
// side: backends/vulkan/vk_attention.c). #include after attention_common.glsl, whose push
// constants and head-dimension constant HD they use.
//
// These are the GPU variants: a workgroup of TW_ATTN_WG invocations owns one block of BLK query
// rows (forward, dQ) or key rows (dK/dV) of one (b, h) and walks the blocks of the other side in
// order, staging each block's rows in shared memory. BLK (specialization constant 2) is 32, 16
// or 8, the largest whose tiles fit the device's shared memory (the host chooses: at D = 128 the
// backward's four tiles of 32 rows would take 66 KB), with 128 invocations (64 at BLK = 8).
//
// Invocation lid is (ry, kx) = (lid / 8, lid % 8), RG = TW_ATTN_WG / 8 row groups. In a score
// phase it computes the BLK x BLK block's scores for rows ry + RG a (a < TM) and columns
// kx + 8 n (n < TN); in an accumulation phase it owns rows ry + RG a of the accumulated output
// and its 4-float column groups cv = kx + 8 c (c < NC4). Tiles in shared memory are vec4 arrays:
// rows of HDV = ceil(HD / 4) vec4s (zeros past HD) at a stride of RS = HDV + 1 vec4s, and score
// rows of BLK / 4 vec4s at PS = BLK / 4 + 1, so that every load reads 4 floats (a quarter of the
// load instructions of scalar tiles) and the rows a warp reads at once start 4 banks apart.
#ifndef TW_ATTENTION_TILED_GLSL
#define TW_ATTENTION_TILED_GLSL

layout(constant_id = 2) const uint BLK = 32;

const uint TW_ATTN_WG = TW_LOCAL_X; // 128, or 64 at BLK = 8 (specialization constant 0)
const uint RG = TW_ATTN_WG / 8;      // row groups
const uint TM = BLK / RG;            // rows per invocation (1 or 2)
const uint TN = BLK / 8;             // score columns per invocation (1, 2 or 4)
const uint HDV = (HD + 3) / 4;        // vec4s per row
const uint RS = HDV + 1;              // row stride of the tiles, in vec4s
const uint NC4 = (HDV + 7) / 8;       // accumulator column groups per row and invocation
const uint PS = BLK / 4 + 1;          // row stride of the score tiles, in vec4s

// This workgroup's block: the flat group id over the host's x-then-y grid.
uint tw_tiled_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// s + a . b in a fixed order (x, y, z, w).
float tw_dot4(vec4 a, vec4 b, float s) {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, s))));
}

// Elements 4 cv .. 4 cv + 3 of a row at `base` of `buf` (zeros past HD; the rows are not
// 16-byte aligned in general, so four scalar loads), scaled.
#define TW_ROW4(buf, base, cv, scale_)                                                       \
    vec4((4 * (cv) + 0 < HD ? buf[(base) + 4 * (cv) + 0] : 0.0),                             \
         (4 * (cv) + 1 < HD ? buf[(base) + 4 * (cv) + 1] : 0.0),                             \
         (4 * (cv) + 2 < HD ? buf[(base) + 4 * (cv) + 2] : 0.0),                             \
         (4 * (cv) + 3 < HD ? buf[(base) + 4 * (cv) + 3] : 0.0)) * (scale_)

// Rows t0 .. t0 + BLK - 1 of a (b, h) slice of `buf` (offset off_, row stride st_; zeros from
// row T on) into the vec4 tile `dst`, scaled. Every invocation of the workgroup takes part.
#define TW_TILE_LOAD(dst, buf, off_, st_, t0, T_, scale_)                                    \
    for (uint e_ = gl_LocalInvocationID.x; e_ < BLK * HDV; e_ += TW_ATTN_WG) {               \
        uint r_ = e_ / HDV, cv_ = e_ % HDV, t_ = (t0) + r_;                                  \
        dst[r_ * RS + cv_] = t_ < (T_) ? TW_ROW4(buf, (off_) + t_ * (st_), cv_, scale_)       \
                                       : vec4(0.0);                                          \
    }

#endif
