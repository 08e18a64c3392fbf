/* twist Vulkan: fused causal attention, forward (host side: backends/vulkan/vk_attention.c).
 *
 *   out[i] = sum_{j <= i} softmax_j(scale q_i . k_j) v_j;   lse[i] = log sum_{j <= i} exp(...)
 *
 * One invocation per pair of query rows (ia, ib = ia - 1), so each key and value row it reads
 * serves two rows; pairs are handed out longest first (ia = T - 1 first), so the long rows of
 * the causal triangle do not end up last. Keys are scored a block of BLK at a time with an
 * online-softmax rescale per block (running max m, running sum l). Bindings: 0 q, 1 k, 2 v,
 * 3 out, 4 lse. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_fwd.glsl"
