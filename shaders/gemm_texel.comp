/* twist Vulkan: fp32 GEMM for CPU devices through uniform texel buffers (host side:
 * backends/vulkan/vk_gemm.c, which picks it on CPU devices with texel buffers when the shapes
 * allow: gemm_texel_fits there).
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * Why: llvmpipe (lavapipe) runs a workgroup's invocations as the SIMD lanes of one CPU thread. It
 * loads a storage buffer inside a loop lane by lane, with a branch per lane (gemm_direct.comp
 * spends most of its time there), but fetches texels for all lanes at once, with a gather. So A
 * and B are bound as RGBA32F texel buffers (4 floats per texel) and C as a storage buffer.
 *
 * Layout as gemm_direct.comp's vec4 path: a workgroup of TW_LOCAL_X invocations covers WM rows
 * and TW_LOCAL_X * WN column quads of C; invocation x owns the quads q0 + x + j * TW_LOCAL_X,
 * j < WN. Per 4 steps of k it fetches the (WM, 4) block of op(A) (WM texels along k, or WM
 * texels along m when TRANS_A) and the (4, 4 WN) block of op(B) (4 WN texels along n, or along
 * k when TRANS_B, transposed in registers), for 16 WM WN vec4 fma. On llvmpipe each float of a
 * lane is one SIMD register across the lanes: the accumulators are 4 WM WN registers.
 * Rows and quads past the end read the last row / quad (no branch in the k loop), not stored.
 *
 * Needs k and n multiples of 4, and a_off, b_off, lda, ldb, stride_a, stride_b multiples of 4
 * (texel-aligned rows); with TRANS_A also m and WM multiples of 4. beta == 0 never reads C (NaNs
 * in C must not propagate); k == 0 gives C = beta C. Push constants are gemm_direct.comp's; bindings:
 * 0 A (texels), 1 B (texels), 2 C. */
#version 450
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
layout(constant_id = 1) const uint WM = 16;         /* rows per invocation */
layout(constant_id = 2) const uint WN = 1;          /* column quads per invocation */
layout(constant_id = 3) const bool TRANS_A = false; /* A_p stored (k, m) */
layout(constant_id = 4) const bool TRANS_B = false; /* B_p stored (n, k) */

layout(set = 0, binding = 0) uniform samplerBuffer a_tex;
layout(set = 0, binding = 1) uniform samplerBuffer b_tex;
TW_BUFFER(2, float, c_data)

layout(push_constant) uniform Push {
    uint m, n, k, batch;
    uint lda, ldb, ldc;
    uint a_off, b_off, c_off;
    uint stride_a, stride_b, stride_c;
    float alpha, beta;
} pc;

const uint WM4 = (WM + 3) / 4; /* texels of A per k step with TRANS_A */

void main() {
    const uint lx = gl_LocalInvocationID.x;
    const uint quads = pc.n / 4, block_q = TW_LOCAL_X * WN;
    const uint blocks_m = (pc.m + WM - 1) / WM, blocks_n = (quads + block_q - 1) / block_q;
    const int lda4 = int(pc.lda / 4), ldb4 = int(pc.ldb / 4);

    for (uint p = gl_WorkGroupID.z; p < pc.batch; p += gl_NumWorkGroups.z)
    for (uint bm = gl_WorkGroupID.y; bm < blocks_m; bm += gl_NumWorkGroups.y)
    for (uint bn = gl_WorkGroupID.x; bn < blocks_n; bn += gl_NumWorkGroups.x) {
        const uint row0 = bm * WM, q0 = bn * block_q + lx;
        const int a_base = int((pc.a_off + p * pc.stride_a) / 4);
        const int b_base = int((pc.b_off + p * pc.stride_b) / 4);
        /* Texel of op(A)'s row i at k = 0 (row-major A), or of rows 4r..4r+3 at k = 0 (TRANS_A). */
        int a_at[WM];
        TW_UNROLL for (uint i = 0; i < WM; i++)
            a_at[i] = TRANS_A ? a_base + int(min(row0 / 4 + i, pc.m / 4 - 1))
                              : a_base + int(min(row0 + i, pc.m - 1)) * lda4;
        /* Texel of quad j at k = 0 (row-major B), or of column 4 quad + e at k = 0 (TRANS_B). */
        int b_at[4 * WN];
        TW_UNROLL for (uint j = 0; j < WN; j++) {
            const uint q = min(q0 + j * TW_LOCAL_X, quads - 1);
            TW_UNROLL for (uint e = 0; e < 4; e++)
                b_at[4 * j + e] = TRANS_B ? b_base + int(4 * q + e) * ldb4 : b_base + int(q);
        }

        vec4 acc[WM * WN];
        TW_UNROLL for (uint i = 0; i < WM * WN; i++) acc[i] = vec4(0.0);

        for (int k4 = 0; k4 < int(pc.k / 4); k4++) {
            /* bv[t * WN + j]: op(B) row 4 k4 + t, quad j. */
            vec4 bv[4 * WN];
            TW_UNROLL for (uint j = 0; j < WN; j++) {
                if (TRANS_B) {
                    vec4 c0 = texelFetch(b_tex, b_at[4 * j] + k4);
                    vec4 c1 = texelFetch(b_tex, b_at[4 * j + 1] + k4);
                    vec4 c2 = texelFetch(b_tex, b_at[4 * j + 2] + k4);
                    vec4 c3 = texelFetch(b_tex, b_at[4 * j + 3] + k4);
                    bv[0 * WN + j] = vec4(c0.x, c1.x, c2.x, c3.x);
                    bv[1 * WN + j] = vec4(c0.y, c1.y, c2.y, c3.y);
                    bv[2 * WN + j] = vec4(c0.z, c1.z, c2.z, c3.z);
                    bv[3 * WN + j] = vec4(c0.w, c1.w, c2.w, c3.w);
                } else {
                    TW_UNROLL for (uint t = 0; t < 4; t++)
                        bv[t * WN + j] = texelFetch(b_tex, b_at[4 * j] + (4 * k4 + int(t)) * ldb4);
                }
            }
            /* av[i]: op(A) row i at k = 4 k4 .. 4 k4 + 3. */
            vec4 av[WM];
            if (TRANS_A) {
                TW_UNROLL for (uint t = 0; t < 4; t++)
                    TW_UNROLL for (uint r = 0; r < WM4; r++) {
                        vec4 x = texelFetch(a_tex, a_at[r] + (4 * k4 + int(t)) * lda4);
                        TW_UNROLL for (uint e = 0; e < 4; e++)
                            if (4 * r + e < WM) av[4 * r + e][t] = x[e];
                    }
            } else {
                TW_UNROLL for (uint i = 0; i < WM; i++) av[i] = texelFetch(a_tex, a_at[i] + k4);
            }
            TW_UNROLL for (uint i = 0; i < WM; i++)
                TW_UNROLL for (uint t = 0; t < 4; t++)
                    TW_UNROLL for (uint j = 0; j < WN; j++)
                        acc[i * WN + j] = fma(vec4(av[i][t]), bv[t * WN + j], acc[i * WN + j]);
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
