/* twist: unfused causal multi-head attention, built only from backend ops (tw_gemm,
 * tw_softmax_fwd/bwd), so it runs unchanged on every backend.
 *
 * It is the path the fused tw_attention_fwd/bwd are measured against (`twist bench attention`)
 * and a second, independent implementation for tests and for the model to fall back on. It
 * materialises the (B, H, T, T) score matrix in device scratch buffers, so its memory grows as
 * T^2 where the fused ops grow as T: that difference is what the benchmark shows.
 *
 * Arguments are the fused ops' tw_attention_args (see twist/backend.h), with the same strides
 * and the same meaning, except that `lse` is neither written nor read (it may be left empty):
 * the backward pass recomputes the probabilities from q and k.
 *
 *   forward:  S = scale Q K^T (causal), P = softmax_rows(S), out = P V
 *   backward: dP = dO V^T, dV += P^T dO, dS = P * (dP - rowsum(dP * P)),
 *             dQ += scale dS K, dK += scale dS^T Q
 *
 * Scratch (allocated with tw_buffer_alloc on the device, so it counts in the device's current and
 * peak bytes, and freed before returning): forward B*H*T*T floats (P); backward 3 * B*H*T*T
 * floats (P, dP, dS). */
#ifndef TWIST_ATTENTION_UNFUSED_H
#define TWIST_ATTENTION_UNFUSED_H

#include "twist/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

tw_status tw_attention_unfused_fwd(tw_device *device, const tw_attention_args *args);
tw_status tw_attention_unfused_bwd(tw_device *device, const tw_attention_args *args);

#ifdef __cplusplus
}
#endif

#endif
