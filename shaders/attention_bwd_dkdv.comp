/* twist Vulkan: fused causal attention, backward pass 3 of 3 (host side: vk_attention.c).
 *
 * dK, dV, one invocation per pair of key rows (ja, jb = ja + 1), longest first (pair 0), so each
 * query and dO row read serves both; query rows i >= ja of this dispatch's range [range_begin,
 * range_end) in order, RB at a time (query ja masked for key jb), P recomputed from q, k and lse:
 *   dv_j += sum_i P_ij dO_i;  dk_j += scale sum_i dS_ij q_i
 * Each dk/dv row is written by one invocation per dispatch, summing in a fixed order, and the
 * host's dispatches over consecutive query ranges add into it one after another (no atomics).
 * Bindings: 0 q, 1 k, 2 v, 3 dout, 4 lse, 5 delta, 6 dk, 7 dv. */
#version 450
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_bwd_dkdv.glsl"
