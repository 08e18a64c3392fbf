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
// and its columns d = kx + 8 c (c < NC).
// Tiles in shared memory have odd row strides (HDP = HD + 1, BP = BLK + 1), so the rows a warp
// reads at once fall in different banks.
#ifndef TW_ATTENTION_TILED_GLSL
#define TW_ATTENTION_TILED_GLSL

layout(constant_id = 2) const uint BLK = 32;

const uint TW_ATTN_WG = TW_LOCAL_X; // 128, or 64 at BLK = 8 (specialization constant 0)
const uint RG = TW_ATTN_WG / 8;      // row groups
const uint TM = BLK / RG;            // rows per invocation (1 or 2)
const uint TN = BLK / 8;             // score columns per invocation (1, 2 or 4)
const uint NC = (HD + 7) / 8; // accumulator columns per row and invocation
const uint HDP = HD + 1;
const uint BP = BLK + 1;

// This workgroup's block: the flat group id over the host's x-then-y grid.
uint tw_tiled_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

#endif
