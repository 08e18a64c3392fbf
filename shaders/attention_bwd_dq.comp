/* twist Vulkan: fused causal attention, backward pass 2 of 3 (host side: vk_attention.c).
 *
 * dQ, one invocation per pair of query rows (ia, ib = ia - 1), longest first, keys j <= ia of
 * this dispatch's range [range_begin, range_end) in order, RB at a time (key ia masked for row
 * ib), P recomputed from q, k and lse:
 *   P_ij = exp(scale q_i . k_j - lse_i);  dS_ij = P_ij (dO_i . v_j - delta_i);
 *   dq_i += scale sum_j dS_ij k_j
 * Each dq row is written by one invocation per dispatch, summing in a fixed order, and the
 * host's dispatches over consecutive key ranges add into it one after another (no atomics).
 * Bindings: 0 q, 1 k, 2 v, 3 dout, 4 lse, 5 delta, 6 dq. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_bwd_dq.glsl"
