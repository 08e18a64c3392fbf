/* twist Vulkan: fp32 GEMM, shared-memory tiled (host side: backends/vulkan/vk_gemm.c).
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * One workgroup computes a (TM, TN) tile of C, walking k in steps of TK: each step copies the
 * (TM, TK) slice of op(A) and the (TK, TN) slice of op(B) into shared memory, then every
 * invocation accumulates its (WM, WN) register tile from them. Invocation (ty, tx) owns rows
 * ty + i * (TM / WM) and columns tx + j * (TN / WN) of the tile, so neighbouring invocations
 * read neighbouring shared words (no bank conflicts on a GPU, contiguous lanes on a CPU).
 * Tile sizes and transposes are specialization constants picked per device by the host; the
 * workgroup is 1-D with (TM / WM) * (TN / WN) invocations (constant 0).
 *
 * Workgroups loop over tiles and batches (grid-stride) so any shape fits the device's group-count
 * limits. beta == 0 never reads C (NaNs in C must not propagate); k == 0 gives C = beta C. */
#version 450
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TM = 64;   /* tile rows */
layout(constant_id = 2) const uint TN = 64;   /* tile columns */
layout(constant_id = 3) const uint TK = 16;   /* k per shared-memory step */
layout(constant_id = 4) const uint WM = 4;    /* rows per invocation */
layout(constant_id = 5) const uint WN = 4;    /* columns per invocation */
layout(constant_id = 6) const bool TRANS_A = false; /* A_p stored (k, m) */
layout(constant_id = 7) const bool TRANS_B = false; /* B_p stored (n, k) */

const uint TY = TM / WM; /* invocations along rows */
const uint TX = TN / WN; /* invocations along columns */
const uint THREADS = TX * TY;
const uint AS_LD = TM + 1; /* padded: transposed stores spread over banks */
const uint BS_LD = TN + 1;

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

shared float As[TK * AS_LD]; /* As[kk * AS_LD + row]: op(A) slice, (TK, TM) */
shared float Bs[TK * BS_LD]; /* Bs[kk * BS_LD + col]: op(B) slice, (TK, TN) */

/* op(A)[row][kk] of batch p, 0 outside the matrix. Consecutive invocations take consecutive
 * stored elements (coalesced global reads) whichever way A is stored. */
void load_a(uint a_base, uint row0, uint k0) {
    for (uint idx = gl_LocalInvocationID.x; idx < TM * TK; idx += THREADS) {
        uint r, kk;
        if (TRANS_A) { kk = idx / TM; r = idx % TM; } else { r = idx / TK; kk = idx % TK; }
        uint row = row0 + r, kg = k0 + kk;
        float x = 0.0;
        if (row < pc.m && kg < pc.k)
            x = TRANS_A ? a_data[a_base + kg * pc.lda + row] : a_data[a_base + row * pc.lda + kg];
        As[kk * AS_LD + r] = x;
    }
}

/* op(B)[kk][col] of batch p, 0 outside the matrix. */
void load_b(uint b_base, uint col0, uint k0) {
    for (uint idx = gl_LocalInvocationID.x; idx < TK * TN; idx += THREADS) {
        uint c, kk;
        if (TRANS_B) { c = idx / TK; kk = idx % TK; } else { kk = idx / TN; c = idx % TN; }
        uint col = col0 + c, kg = k0 + kk;
        float x = 0.0;
        if (col < pc.n && kg < pc.k)
            x = TRANS_B ? b_data[b_base + col * pc.ldb + kg] : b_data[b_base + kg * pc.ldb + col];
        Bs[kk * BS_LD + c] = x;
    }
}

void main() {
    const uint tx = gl_LocalInvocationID.x % TX;
    const uint ty = gl_LocalInvocationID.x / TX;
    const uint tiles_m = (pc.m + TM - 1) / TM, tiles_n = (pc.n + TN - 1) / TN;

    for (uint p = gl_WorkGroupID.z; p < pc.batch; p += gl_NumWorkGroups.z)
    for (uint tm = gl_WorkGroupID.y; tm < tiles_m; tm += gl_NumWorkGroups.y)
    for (uint tn = gl_WorkGroupID.x; tn < tiles_n; tn += gl_NumWorkGroups.x) {
        const uint row0 = tm * TM, col0 = tn * TN;
        const uint a_base = pc.a_off + p * pc.stride_a;
        const uint b_base = pc.b_off + p * pc.stride_b;
        float acc[WM * WN];
        [[unroll]] for (uint i = 0; i < WM * WN; i++) acc[i] = 0.0;

        for (uint k0 = 0; k0 < pc.k; k0 += TK) {
            load_a(a_base, row0, k0);
            load_b(b_base, col0, k0);
            barrier();
            [[unroll]] for (uint kk = 0; kk < TK; kk++) {
                float av[WM], bv[WN];
                [[unroll]] for (uint i = 0; i < WM; i++) av[i] = As[kk * AS_LD + ty + i * TY];
                [[unroll]] for (uint j = 0; j < WN; j++) bv[j] = Bs[kk * BS_LD + tx + j * TX];
                [[unroll]] for (uint i = 0; i < WM; i++)
                    [[unroll]] for (uint j = 0; j < WN; j++)
                        acc[i * WN + j] = fma(av[i], bv[j], acc[i * WN + j]);
            }
            barrier(); /* the next step overwrites the slices */
        }

        const uint c_base = pc.c_off + p * pc.stride_c;
        [[unroll]] for (uint i = 0; i < WM; i++) {
            uint row = row0 + ty + i * TY;
            if (row >= pc.m) continue;
            [[unroll]] for (uint j = 0; j < WN; j++) {
                uint col = col0 + tx + j * TX;
                if (col >= pc.n) continue;
                uint at = c_base + row * pc.ldc + col;
                float r = pc.alpha * acc[i * WN + j];
                if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
                c_data[at] = r;
            }
        }
    }
}
