/* twist Vulkan: the tiled fp32 GEMM family for GPUs (host side and the named variants:
 * backends/vulkan/vk_gemm.c).
 *
 *   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
 *
 * fp32 storage and fp32 arithmetic throughout (shared tiles included): tw_gemm's contract.
 *
 * Blocking (specialization constants, one pipeline per variant):
 *   - a workgroup computes a (BM, BN) tile of C, walking k in steps of BK; each step copies the
 *     (BM, BK) slice of op(A) and the (BK, BN) slice of op(B) into shared memory, stored k-major
 *     (As[kk][row], Bs[kk][col]) with rows padded by 4 floats (at most 2-way bank conflicts in
 *     the transposing stores, 16-byte aligned runs for the per-thread reads);
 *   - the workgroup is (BM / WM) * (BN / WN) warp tiles of WS threads each (WS = 32: a warp on
 *     NVIDIA, half a wave64 on AMD; only a grouping of threads, correct for any subgroup size);
 *   - a warp tile (WM, WN) is WMITER * WNITER sub-tiles of (WSUBM, WSUBN); in each, a thread owns
 *     a (TM, TN) register tile: lanes along columns first, so the TCOLS lanes of one row of
 *     threads read the same As words (broadcast) and neighbouring Bs words;
 *   - NBUF = 2: double-buffered shared slices, the next slice copied while the current one is
 *     consumed, one barrier per step instead of two;
 *   - vec4 global loads (push-constant flag bit 2) where the host found every row start 16-byte
 *     aligned (offsets, leading dimensions and batch strides multiples of 4); quads that cross
 *     the matrix edge, and every quad without the flag, are loaded as guarded scalars;
 *   - split-K (push constant splits > 1): group z covers (batch, split); each split sums its own
 *     k range into a partial C in scratch (the host binds it as C with alpha 1, beta 0) and
 *     shaders/gemm_reduce.comp adds the partials in a fixed order: deterministic, no atomics.
 * Transposes and vec4 loads are push-constant flags (bit 0: A stored (k, m); bit 1: B stored
 * (n, k); bit 2: vec4): they only change the addressing of the shared-memory copy, a branch
 * uniform over the whole dispatch, and keeping them out of the specialization constants means
 * one pipeline per variant instead of eight (pipeline creation is what a cold run on a GPU
 * driver pays for).
 *
 * Workgroups loop over tiles and (batch, split) pairs (grid-stride), so any shape fits the
 * device's group-count limits. beta == 0 never reads C (NaNs in C must not propagate); k == 0
 * gives C = beta C. Bindings: 0 A, 1 B, 2 C (storage buffers; A and B also read as vec4). */
#version 450
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC /* constant 0: the host sets THREADS below */
layout(constant_id = 1) const uint BM = 64;     /* workgroup tile rows */
layout(constant_id = 2) const uint BN = 64;     /* workgroup tile columns */
layout(constant_id = 3) const uint BK = 16;     /* k per shared-memory step (multiple of 4) */
layout(constant_id = 4) const uint WM = 32;     /* warp tile rows */
layout(constant_id = 5) const uint WN = 32;     /* warp tile columns */
layout(constant_id = 6) const uint TM = 4;      /* register tile rows per sub-tile */
layout(constant_id = 7) const uint TN = 4;      /* register tile columns per sub-tile */
layout(constant_id = 8) const uint WNITER = 1;  /* sub-tiles along a warp tile's columns */
layout(constant_id = 9) const uint WS = 32;     /* threads per warp tile */
layout(constant_id = 10) const uint NBUF = 1;   /* shared slices: 1, or 2 (double buffering) */

const uint THREADS = (BM / WM) * (BN / WN) * WS;
const uint WSUBN = WN / WNITER;
const uint TCOLS = WSUBN / TN;  /* threads across a sub-tile's columns */
const uint TROWS = WS / TCOLS;  /* threads down a sub-tile's rows */
const uint WSUBM = TROWS * TM;
const uint WMITER = WM / WSUBM;
/* Shared rows padded by 4 floats: consecutive k rows start 4 banks apart, and every row and
 * every thread's TM (TN) run stays 16-byte aligned, so a GPU compiler can turn the 4 scalar
 * accesses of a quad into one 128-bit shared load or store. */
const uint AS_LD = BM + 4;
const uint BS_LD = BN + 4;
const uint A_SLICE = BK * AS_LD, B_SLICE = BK * BS_LD;
const uint QUADS_A = BM * BK / 4, QUADS_B = BK * BN / 4; /* 4-float pieces per slice */

TW_BUFFER_RO(0, float, a_data)
TW_BUFFER_RO(1, float, b_data)
TW_BUFFER(2, float, c_data)
/* The same buffers as vec4 arrays (descriptors may alias: several variables on one binding). */
TW_BUFFER_RO(0, vec4, a4_data)
TW_BUFFER_RO(1, vec4, b4_data)

layout(push_constant) uniform Push {
    uint m, n, k, batch;
    uint lda, ldb, ldc;
    uint a_off, b_off, c_off;
    uint stride_a, stride_b, stride_c;
    float alpha, beta;
    uint flags;        /* bit 0: A_p stored (k, m); bit 1: B_p stored (n, k); bit 2: vec4 loads */
    uint splits;       /* k ranges (split-K); 1: none */
    uint k_chunk;      /* k per split, a multiple of BK */
    uint split_stride; /* elements between two splits' partial C */
} pc;

shared float As[NBUF * A_SLICE]; /* As[buf * A_SLICE + kk * AS_LD + row]: op(A) slice (BK, BM) */
shared float Bs[NBUF * B_SLICE]; /* Bs[buf * B_SLICE + kk * BS_LD + col]: op(B) slice (BK, BN) */

/* 4 consecutive stored floats at `at` (a multiple of 4 when the vec4 flag is set), `valid` of
 * them inside the matrix (the rest read as 0). */
vec4 load_a4(uint at, uint valid) {
    if ((pc.flags & 4u) != 0u && valid >= 4) return a4_data[at / 4];
    vec4 x = vec4(0.0);
    TW_UNROLL for (uint e = 0; e < 4; e++) if (e < valid) x[e] = a_data[at + e];
    return x;
}

vec4 load_b4(uint at, uint valid) {
    if ((pc.flags & 4u) != 0u && valid >= 4) return b4_data[at / 4];
    vec4 x = vec4(0.0);
    TW_UNROLL for (uint e = 0; e < 4; e++) if (e < valid) x[e] = b_data[at + e];
    return x;
}

/* Copies the op(A) slice rows [row0, row0 + BM) x k [k0, kend) into shared slice `buf`, zeros
 * outside. Consecutive threads take consecutive stored quads (coalesced) either way A is
 * stored. */
void copy_a(uint buf, uint a_base, uint row0, uint k0, uint kend, bool trans_a) {
    TW_UNROLL for (uint q = 0; q < (QUADS_A + THREADS - 1) / THREADS; q++) {
        const uint idx = gl_LocalInvocationID.x + q * THREADS;
        if (QUADS_A % THREADS != 0 && idx >= QUADS_A) break;
        if (!trans_a) { /* A (m, k): quads along k */
            const uint r = idx / (BK / 4), kk = 4 * (idx % (BK / 4));
            const uint row = row0 + r, kg = k0 + kk;
            const uint valid = row < pc.m && kg < kend ? min(kend - kg, 4u) : 0u;
            const vec4 x = load_a4(a_base + row * pc.lda + kg, valid);
            TW_UNROLL for (uint e = 0; e < 4; e++) As[buf * A_SLICE + (kk + e) * AS_LD + r] = x[e];
        } else { /* A (k, m): quads along m */
            const uint kk = idx / (BM / 4), r = 4 * (idx % (BM / 4));
            const uint row = row0 + r, kg = k0 + kk;
            const uint valid = kg < kend && row < pc.m ? min(pc.m - row, 4u) : 0u;
            const vec4 x = load_a4(a_base + kg * pc.lda + row, valid);
            TW_UNROLL for (uint e = 0; e < 4; e++) As[buf * A_SLICE + kk * AS_LD + r + e] = x[e];
        }
    }
}

/* The op(B) slice k [k0, kend) x columns [col0, col0 + BN). */
void copy_b(uint buf, uint b_base, uint col0, uint k0, uint kend, bool trans_b) {
    TW_UNROLL for (uint q = 0; q < (QUADS_B + THREADS - 1) / THREADS; q++) {
        const uint idx = gl_LocalInvocationID.x + q * THREADS;
        if (QUADS_B % THREADS != 0 && idx >= QUADS_B) break;
        if (!trans_b) { /* B (k, n): quads along n */
            const uint kk = idx / (BN / 4), c = 4 * (idx % (BN / 4));
            const uint col = col0 + c, kg = k0 + kk;
            const uint valid = kg < kend && col < pc.n ? min(pc.n - col, 4u) : 0u;
            const vec4 x = load_b4(b_base + kg * pc.ldb + col, valid);
            TW_UNROLL for (uint e = 0; e < 4; e++) Bs[buf * B_SLICE + kk * BS_LD + c + e] = x[e];
        } else { /* B (n, k): quads along k */
            const uint c = idx / (BK / 4), kk = 4 * (idx % (BK / 4));
            const uint col = col0 + c, kg = k0 + kk;
            const uint valid = col < pc.n && kg < kend ? min(kend - kg, 4u) : 0u;
            const vec4 x = load_b4(b_base + col * pc.ldb + kg, valid);
            TW_UNROLL for (uint e = 0; e < 4; e++) Bs[buf * B_SLICE + (kk + e) * BS_LD + c] = x[e];
        }
    }
}

float acc[WMITER * WNITER * TM * TN];

/* acc += the slice in shared buffer `buf`, for this thread's rows and columns. */
void multiply(uint buf, uint row_base, uint col_base) {
    TW_UNROLL for (uint kk = 0; kk < BK; kk++) {
        float av[WMITER * TM], bv[WNITER * TN];
        TW_UNROLL for (uint wm = 0; wm < WMITER; wm++)
            TW_UNROLL for (uint i = 0; i < TM; i++)
                av[wm * TM + i] = As[buf * A_SLICE + kk * AS_LD + row_base + wm * WSUBM + i];
        TW_UNROLL for (uint wn = 0; wn < WNITER; wn++)
            TW_UNROLL for (uint j = 0; j < TN; j++)
                bv[wn * TN + j] = Bs[buf * B_SLICE + kk * BS_LD + col_base + wn * WSUBN + j];
        TW_UNROLL for (uint wm = 0; wm < WMITER; wm++)
            TW_UNROLL for (uint wn = 0; wn < WNITER; wn++)
                TW_UNROLL for (uint i = 0; i < TM; i++)
                    TW_UNROLL for (uint j = 0; j < TN; j++) {
                        const uint at = ((wm * WNITER + wn) * TM + i) * TN + j;
                        acc[at] = fma(av[wm * TM + i], bv[wn * TN + j], acc[at]);
                    }
    }
}

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint warp = tid / WS, lane = tid % WS;
    const uint warp_row = warp / (BN / WN), warp_col = warp % (BN / WN);
    /* This thread's first row and column inside the workgroup tile. */
    const uint row_base = warp_row * WM + (lane / TCOLS) * TM;
    const uint col_base = warp_col * WN + (lane % TCOLS) * TN;
    const bool trans_a = (pc.flags & 1u) != 0u, trans_b = (pc.flags & 2u) != 0u;
    const uint tiles_m = (pc.m + BM - 1) / BM, tiles_n = (pc.n + BN - 1) / BN;

    for (uint pz = gl_WorkGroupID.z; pz < pc.batch * pc.splits; pz += gl_NumWorkGroups.z)
    for (uint tm = gl_WorkGroupID.y; tm < tiles_m; tm += gl_NumWorkGroups.y)
    for (uint tn = gl_WorkGroupID.x; tn < tiles_n; tn += gl_NumWorkGroups.x) {
        const uint p = pz / pc.splits, split = pz % pc.splits;
        const uint row0 = tm * BM, col0 = tn * BN;
        const uint a_base = pc.a_off + p * pc.stride_a, b_base = pc.b_off + p * pc.stride_b;
        const uint k_begin = split * pc.k_chunk;
        const uint k_end = min(pc.k, k_begin + pc.k_chunk);
        const uint steps = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0u;
        TW_UNROLL for (uint i = 0; i < WMITER * WNITER * TM * TN; i++) acc[i] = 0.0;

        if (NBUF == 1) {
            for (uint s = 0; s < steps; s++) {
                const uint k0 = k_begin + s * BK;
                copy_a(0, a_base, row0, k0, k_end, trans_a);
                copy_b(0, b_base, col0, k0, k_end, trans_b);
                barrier();
                multiply(0, row_base, col_base);
                barrier(); /* the next step overwrites the slices */
            }
        } else if (steps > 0) {
            copy_a(0, a_base, row0, k_begin, k_end, trans_a);
            copy_b(0, b_base, col0, k_begin, k_end, trans_b);
            barrier();
            for (uint s = 0; s < steps; s++) {
                /* Slice s + 1 goes to the other buffer, last read in step s - 1 (before the
                 * barrier that ended it); slice s is read here. */
                if (s + 1 < steps) {
                    const uint k0 = k_begin + (s + 1) * BK;
                    copy_a((s + 1) & 1u, a_base, row0, k0, k_end, trans_a);
                    copy_b((s + 1) & 1u, b_base, col0, k0, k_end, trans_b);
                }
                multiply(s & 1u, row_base, col_base);
                barrier();
            }
        }

        const uint c_base = pc.c_off + p * pc.stride_c + split * pc.split_stride;
        TW_UNROLL for (uint wm = 0; wm < WMITER; wm++)
            TW_UNROLL for (uint i = 0; i < TM; i++) {
                const uint row = row0 + row_base + wm * WSUBM + i;
                if (row >= pc.m) continue;
                TW_UNROLL for (uint wn = 0; wn < WNITER; wn++)
                    TW_UNROLL for (uint j = 0; j < TN; j++) {
                        const uint col = col0 + col_base + wn * WSUBN + j;
                        if (col >= pc.n) continue;
                        const uint at = c_base + row * pc.ldc + col;
                        float r = pc.alpha * acc[((wm * WNITER + wn) * TM + i) * TN + j];
                        if (pc.beta != 0.0) r = fma(pc.beta, c_data[at], r);
                        c_data[at] = r;
                    }
            }
    }
}
