// twist Vulkan shaders: workgroup reductions for the row ops (softmax, layernorm, xent, sum_sq).
//
// One workgroup reduces one row: each invocation first folds its own strided slice of the row in
// column order, then the workgroup combines the per-invocation values in a fixed binary tree in
// shared memory. The tree depends only on the workgroup size (specialization constant 0, a power
// of two chosen by the host), so results are bitwise reproducible on a device. Every function
// must be called in uniform control flow (it contains barriers) and ends with a barrier, so the
// shared arrays may be reused by the next call at once.

#ifndef TW_REDUCE_WG_GLSL
#define TW_REDUCE_WG_GLSL

#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC

#define TW_WG gl_WorkGroupSize.x

shared float tw_red_a[TW_WG];
shared float tw_red_b[TW_WG];
shared uint tw_red_i[TW_WG];

// Sum of v over the workgroup.
float tw_wg_sum(float v) {
    uint lid = gl_LocalInvocationID.x;
    tw_red_a[lid] = v;
    barrier();
    for (uint s = TW_WG / 2; s > 0; s >>= 1) {
        if (lid < s) tw_red_a[lid] += tw_red_a[lid + s];
        barrier();
    }
    float r = tw_red_a[0];
    barrier();
    return r;
}

// Sums of a and of b over the workgroup, in one tree.
void tw_wg_sum2(inout float a, inout float b) {
    uint lid = gl_LocalInvocationID.x;
    tw_red_a[lid] = a;
    tw_red_b[lid] = b;
    barrier();
    for (uint s = TW_WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            tw_red_a[lid] += tw_red_a[lid + s];
            tw_red_b[lid] += tw_red_b[lid + s];
        }
        barrier();
    }
    a = tw_red_a[0];
    b = tw_red_b[0];
    barrier();
}

// Online log-sum-exp state of a slice: m its maximum, s = sum exp(x - m) (0 for an empty slice,
// whose m is -inf), i the first column holding m.
void tw_lse_add(inout float m, inout float s, inout uint i, float x, uint column) {
    if (x > m) {
        s = (s == 0.0 ? 0.0 : s * exp(m - x)) + 1.0;
        m = x;
        i = column;
    } else if (x > -1.0 / 0.0) {
        s += exp(x - m);
    }
}

// Combines two slice states: the larger maximum wins, the smaller column on equal maxima.
void tw_lse_merge(inout float m, inout float s, inout uint i, float m2, float s2, uint i2) {
    if (s2 == 0.0) return;
    if (s == 0.0) {
        m = m2;
        s = s2;
        i = i2;
        return;
    }
    float mx = max(m, m2);
    s = s * exp(m - mx) + s2 * exp(m2 - mx);
    if (m2 > m || (m2 == m && i2 < i)) i = i2;
    m = mx;
}

// Workgroup combination of the slice states (m, s, i); every invocation gets the row's state.
void tw_wg_lse(inout float m, inout float s, inout uint i) {
    uint lid = gl_LocalInvocationID.x;
    tw_red_a[lid] = m;
    tw_red_b[lid] = s;
    tw_red_i[lid] = i;
    barrier();
    for (uint k = TW_WG / 2; k > 0; k >>= 1) {
        if (lid < k) {
            float m1 = tw_red_a[lid], s1 = tw_red_b[lid];
            uint i1 = tw_red_i[lid];
            tw_lse_merge(m1, s1, i1, tw_red_a[lid + k], tw_red_b[lid + k], tw_red_i[lid + k]);
            tw_red_a[lid] = m1;
            tw_red_b[lid] = s1;
            tw_red_i[lid] = i1;
        }
        barrier();
    }
    m = tw_red_a[0];
    s = tw_red_b[0];
    i = tw_red_i[0];
    barrier();
}

#endif
