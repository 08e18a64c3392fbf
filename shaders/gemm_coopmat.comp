/* twist Vulkan: GEMM on cooperative matrices (VK_KHR_cooperative_matrix), fp16 inputs and fp32
 * accumulation (host side: backends/vulkan/vk_gemm.c, which uses it only when asked for with
 * tw_device_set_gemm_impl(TW_GEMM_VENDOR): rounding A and B to fp16 gives relative errors ~1e-3,
 * outside the fp32 contract of tw_gemm, so TW_GEMM_AUTO keeps the fp32 variants, gemm_tiled.comp).
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * A workgroup of 4 subgroups (constant 0 = 4 * subgroup size) computes a (BM, BN) tile of C:
 * subgroup (wm, wn) owns FRAG_M x FRAG_N accumulator fragments of (CM_M, CM_N). Each k step
 * converts the (BM, BK) slice of op(A) and the (BK, BN) slice of op(B) from fp32 to fp16 into
 * shared memory (zeros outside the matrices, so every shape works), then multiplies fragments
 * from there. The epilogue stages each fragment through shared memory, so that alpha, beta
 * (beta == 0 never reads C) and the bounds of C are applied element by element.
 * The fragment shape (CM_M, CM_N, CM_K) is the one the device reports (constants 1..3). */
#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint THREADS = 128; /* 4 subgroups (not gl_WorkGroupSize: see
                                                     common.glsl on lavapipe) */
layout(constant_id = 1) const uint CM_M = 16;
layout(constant_id = 2) const uint CM_N = 16;
layout(constant_id = 3) const uint CM_K = 16;
layout(constant_id = 4) const bool TRANS_A = false; /* A_p stored (k, m) */
layout(constant_id = 5) const bool TRANS_B = false; /* B_p stored (n, k) */

const uint WARPS_M = 2, WARPS_N = 2; /* subgroups per workgroup */
const uint FRAG_M = 2, FRAG_N = 2;   /* fragments per subgroup */
const uint BM = WARPS_M * FRAG_M * CM_M;
const uint BN = WARPS_N * FRAG_N * CM_N;
const uint BK = 2 * CM_K;
const uint A_LD = BK + 8; /* rows padded by 16 bytes: fewer bank conflicts, aligned rows */
const uint B_LD = BN + 8;

layout(std430, set = 0, binding = 0) readonly buffer A_buf { float a_data[]; };
layout(std430, set = 0, binding = 1) readonly buffer B_buf { float b_data[]; };
layout(std430, set = 0, binding = 2) buffer C_buf { float c_data[]; };

layout(push_constant) uniform Push {
    uint m, n, k, batch;
    uint lda, ldb, ldc;
    uint a_off, b_off, c_off;
    uint stride_a, stride_b, stride_c;
    float alpha, beta;
} pc;

shared float16_t As[BM * A_LD];                 /* op(A) slice, (BM, BK) row-major */
shared float16_t Bs[BK * B_LD];                 /* op(B) slice, (BK, BN) row-major */
shared float Cs[WARPS_M * WARPS_N * CM_M * CM_N]; /* one fragment per subgroup, epilogue */

void load_tiles(uint a_base, uint b_base, uint row0, uint col0, uint k0) {
    const uint threads = THREADS;
    for (uint idx = gl_LocalInvocationID.x; idx < BM * BK; idx += threads) {
        uint r, kk;
        if (TRANS_A) { kk = idx / BM; r = idx % BM; } else { r = idx / BK; kk = idx % BK; }
        uint row = row0 + r, kg = k0 + kk;
        float x = 0.0;
        if (row < pc.m && kg < pc.k)
            x = TRANS_A ? a_data[a_base + kg * pc.lda + row] : a_data[a_base + row * pc.lda + kg];
        As[r * A_LD + kk] = float16_t(x);
    }
    for (uint idx = gl_LocalInvocationID.x; idx < BK * BN; idx += threads) {
        uint c, kk;
        if (TRANS_B) { c = idx / BK; kk = idx % BK; } else { kk = idx / BN; c = idx % BN; }
        uint col = col0 + c, kg = k0 + kk;
        float x = 0.0;
        if (col < pc.n && kg < pc.k)
            x = TRANS_B ? b_data[b_base + col * pc.ldb + kg] : b_data[b_base + kg * pc.ldb + col];
        Bs[kk * B_LD + c] = float16_t(x);
    }
}

void main() {
    const uint warp = gl_SubgroupID;
    const uint wm = warp / WARPS_N, wn = warp % WARPS_N;
    const uint tiles_m = (pc.m + BM - 1) / BM, tiles_n = (pc.n + BN - 1) / BN;

    for (uint p = gl_WorkGroupID.z; p < pc.batch; p += gl_NumWorkGroups.z)
    for (uint tm = gl_WorkGroupID.y; tm < tiles_m; tm += gl_NumWorkGroups.y)
    for (uint tn = gl_WorkGroupID.x; tn < tiles_n; tn += gl_NumWorkGroups.x) {
        const uint row0 = tm * BM, col0 = tn * BN;
        coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> acc[FRAG_M * FRAG_N];
        [[unroll]] for (uint f = 0; f < FRAG_M * FRAG_N; f++)
            acc[f] = coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);

        for (uint k0 = 0; k0 < pc.k; k0 += BK) {
            load_tiles(pc.a_off + p * pc.stride_a, pc.b_off + p * pc.stride_b, row0, col0, k0);
            barrier();
            [[unroll]] for (uint ks = 0; ks < BK; ks += CM_K) {
                coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> fa[FRAG_M];
                coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> fb[FRAG_N];
                [[unroll]] for (uint i = 0; i < FRAG_M; i++)
                    coopMatLoad(fa[i], As, ((wm * FRAG_M + i) * CM_M) * A_LD + ks, A_LD,
                                gl_CooperativeMatrixLayoutRowMajor);
                [[unroll]] for (uint j = 0; j < FRAG_N; j++)
                    coopMatLoad(fb[j], Bs, ks * B_LD + (wn * FRAG_N + j) * CM_N, B_LD,
                                gl_CooperativeMatrixLayoutRowMajor);
                [[unroll]] for (uint i = 0; i < FRAG_M; i++)
                    [[unroll]] for (uint j = 0; j < FRAG_N; j++)
                        acc[i * FRAG_N + j] = coopMatMulAdd(fa[i], fb[j], acc[i * FRAG_N + j]);
            }
            barrier(); /* the next step overwrites the slices */
        }

        const uint c_base = pc.c_off + p * pc.stride_c;
        const uint stage = warp * CM_M * CM_N;
        [[unroll]] for (uint i = 0; i < FRAG_M; i++)
        [[unroll]] for (uint j = 0; j < FRAG_N; j++) {
            coopMatStore(acc[i * FRAG_N + j], Cs, stage, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            const uint frag_row = row0 + (wm * FRAG_M + i) * CM_M;
            const uint frag_col = col0 + (wn * FRAG_N + j) * CM_N;
            for (uint e = gl_SubgroupInvocationID; e < CM_M * CM_N; e += gl_SubgroupSize) {
                uint row = frag_row + e / CM_N, col = frag_col + e % CM_N;
                if (row >= pc.m || col >= pc.n) continue;
                uint at = c_base + row * pc.ldc + col;
                float r = pc.alpha * Cs[stage + e];
                if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
                c_data[at] = r;
            }
            subgroupMemoryBarrierShared();
            subgroupBarrier(); /* the next fragment overwrites the staging area */
        }
    }
}
