/* twist Vulkan: fp32 GEMM for CPU devices, no shared memory, no barriers (host side:
 * backends/vulkan/vk_gemm.c, which picks it where tw_vk_get_limits()->is_cpu).
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * Why: a CPU Vulkan driver (lavapipe) runs a workgroup's invocations as SIMD lanes, a loop of
 * lane-vectors split at each barrier, so a shared-memory tiled shader's staging spills every register
 * tile to memory at every barrier and reaches a few GFLOP/s. Here each invocation keeps its
 * (WM, WN) tile of C in registers over the whole k loop, like a BLAS micro-kernel (the same
 * finding as TW_GEMM_VEC in backends/opencl/kernels/gemm.cl on PoCL).
 *
 * Layout: a workgroup of TW_LOCAL_X invocations covers WM rows and TW_LOCAL_X * WN columns of
 * C. Invocation x owns the WM rows of its group and the columns col0 + x + j * TW_LOCAL_X,
 * j < WN: consecutive lanes own consecutive columns, so their loads of op(B) are contiguous
 * across lanes and their loads of op(A) are the same address in every lane (uniform). Per k:
 * WN loads of op(B), WM loads of op(A), WM * WN fma. Rows past m and columns past n load row
 * m-1 / column n-1 (valid memory, no branch in the k loop) and are not stored.
 *
 * VEC4 (specialization constant 5, set by the host when the operands allow it): the same with
 * vec4 loads, each invocation owning WN quads of columns (main_vec4): lavapipe loads storage
 * buffers lane by lane, so fewer, wider loads are what make it faster there.
 *
 * Groups over (column blocks, row blocks, batch), grid-stride over what exceeds the device's
 * group-count limits. beta == 0 never reads C (NaNs in C must not propagate); k == 0 gives
 * C = beta C. Push constants and bindings are gemm_texel.comp's. */
#version 450
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
layout(constant_id = 1) const uint WM = 8;          /* rows per invocation */
layout(constant_id = 2) const uint WN = 1;          /* columns per invocation */
layout(constant_id = 3) const bool TRANS_A = false; /* A_p stored (k, m) */
layout(constant_id = 4) const bool TRANS_B = false; /* B_p stored (n, k) */
layout(constant_id = 5) const bool VEC4 = false;    /* the vec4 path (see main_vec4) */

TW_BUFFER_RO(0, float, a_data)
TW_BUFFER_RO(1, float, b_data)
TW_BUFFER(2, float, c_data)
/* The same buffers as vec4 arrays, for VEC4 (descriptors may alias: Vulkan allows several
 * variables on one binding when their types fit its descriptor type). */
TW_BUFFER_RO(0, vec4, a4_data)
TW_BUFFER_RO(1, vec4, b4_data)

layout(push_constant) uniform Push {
    uint m, n, k, batch;
    uint lda, ldb, ldc;
    uint a_off, b_off, c_off;
    uint stride_a, stride_b, stride_c;
    float alpha, beta;
} pc;

/* VEC4: neither operand transposed, and a_off, b_off, lda, ldb, stride_a, stride_b, k and n all
 * multiples of 4 (the host checks). lavapipe loads a storage buffer lane by lane with a bounds
 * check per component, but once per lane for all components of a vector, so a vec4 load costs
 * little more than a float load. Invocation x owns column quads q = bn * TW_LOCAL_X * WN + x +
 * j * TW_LOCAL_X (columns 4q..4q+3); per 4 steps of k it loads WM vec4 of A (a row, along k) and
 * 4 * WN vec4 of B (rows of B, along n) for 16 * WM * WN fma. */
void main_vec4() {
    const uint lx = gl_LocalInvocationID.x;
    const uint quads = pc.n / 4, block_q = TW_LOCAL_X * WN;
    const uint blocks_m = (pc.m + WM - 1) / WM, blocks_n = (quads + block_q - 1) / block_q;
    const uint lda4 = pc.lda / 4, ldb4 = pc.ldb / 4;

    for (uint p = gl_WorkGroupID.z; p < pc.batch; p += gl_NumWorkGroups.z)
    for (uint bm = gl_WorkGroupID.y; bm < blocks_m; bm += gl_NumWorkGroups.y)
    for (uint bn = gl_WorkGroupID.x; bn < blocks_n; bn += gl_NumWorkGroups.x) {
        const uint row0 = bm * WM, q0 = bn * block_q + lx;
        uint a_at[WM], b_at[WN];
        TW_UNROLL for (uint i = 0; i < WM; i++)
            a_at[i] = (pc.a_off + p * pc.stride_a) / 4 + min(row0 + i, pc.m - 1) * lda4;
        TW_UNROLL for (uint j = 0; j < WN; j++)
            b_at[j] = (pc.b_off + p * pc.stride_b) / 4 + min(q0 + j * TW_LOCAL_X, quads - 1);

        vec4 acc[WM * WN];
        TW_UNROLL for (uint i = 0; i < WM * WN; i++) acc[i] = vec4(0.0);

        for (uint k4 = 0; k4 < pc.k / 4; k4++) {
            vec4 bv[4 * WN];
            TW_UNROLL for (uint t = 0; t < 4; t++)
                TW_UNROLL for (uint j = 0; j < WN; j++)
                    bv[t * WN + j] = b4_data[b_at[j] + (4 * k4 + t) * ldb4];
            TW_UNROLL for (uint i = 0; i < WM; i++) {
                const vec4 av = a4_data[a_at[i] + k4];
                TW_UNROLL for (uint t = 0; t < 4; t++)
                    TW_UNROLL for (uint j = 0; j < WN; j++)
                        acc[i * WN + j] = fma(vec4(av[t]), bv[t * WN + j], acc[i * WN + j]);
            }
        }

        const uint c_base = pc.c_off + p * pc.stride_c;
        TW_UNROLL for (uint i = 0; i < WM; i++) {
            const uint row = row0 + i;
            if (row >= pc.m) break;
            TW_UNROLL for (uint j = 0; j < WN; j++) {
                const uint q = q0 + j * TW_LOCAL_X;
                if (q >= quads) break;
                TW_UNROLL for (uint e = 0; e < 4; e++) {
                    const uint at = c_base + row * pc.ldc + 4 * q + e;
                    float r = pc.alpha * acc[i * WN + j][e];
                    if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
                    c_data[at] = r;
                }
            }
        }
    }
}

void main() {
    if (VEC4) {
        main_vec4();
        return;
    }
    const uint lx = gl_LocalInvocationID.x;
    const uint block_n = TW_LOCAL_X * WN;
    const uint blocks_m = (pc.m + WM - 1) / WM, blocks_n = (pc.n + block_n - 1) / block_n;
    /* op(A)[row][kk] at a_data[a_base + row * a_rs + kk * a_ks]; op(B)[kk][col] likewise. */
    const uint a_rs = TRANS_A ? 1u : pc.lda, a_ks = TRANS_A ? pc.lda : 1u;
    const uint b_ks = TRANS_B ? 1u : pc.ldb, b_cs = TRANS_B ? pc.ldb : 1u;

    for (uint p = gl_WorkGroupID.z; p < pc.batch; p += gl_NumWorkGroups.z)
    for (uint bm = gl_WorkGroupID.y; bm < blocks_m; bm += gl_NumWorkGroups.y)
    for (uint bn = gl_WorkGroupID.x; bn < blocks_n; bn += gl_NumWorkGroups.x) {
        const uint row0 = bm * WM, col0 = bn * block_n + lx;
        uint a_at[WM], b_at[WN];
        TW_UNROLL for (uint i = 0; i < WM; i++)
            a_at[i] = pc.a_off + p * pc.stride_a + min(row0 + i, pc.m - 1) * a_rs;
        TW_UNROLL for (uint j = 0; j < WN; j++)
            b_at[j] = pc.b_off + p * pc.stride_b + min(col0 + j * TW_LOCAL_X, pc.n - 1) * b_cs;

        float acc[WM * WN];
        TW_UNROLL for (uint i = 0; i < WM * WN; i++) acc[i] = 0.0;

        for (uint kk = 0; kk < pc.k; kk++) {
            float bv[WN];
            TW_UNROLL for (uint j = 0; j < WN; j++) bv[j] = b_data[b_at[j] + kk * b_ks];
            TW_UNROLL for (uint i = 0; i < WM; i++) {
                const float av = a_data[a_at[i] + kk * a_ks];
                TW_UNROLL for (uint j = 0; j < WN; j++)
                    acc[i * WN + j] = fma(av, bv[j], acc[i * WN + j]);
            }
        }

        const uint c_base = pc.c_off + p * pc.stride_c;
        TW_UNROLL for (uint i = 0; i < WM; i++) {
            const uint row = row0 + i;
            if (row >= pc.m) break;
            TW_UNROLL for (uint j = 0; j < WN; j++) {
                const uint col = col0 + j * TW_LOCAL_X;
                if (col >= pc.n) break;
                const uint at = c_base + row * pc.ldc + col;
                float r = pc.alpha * acc[i * WN + j];
                if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
                c_data[at] = r;
            }
        }
    }
}
