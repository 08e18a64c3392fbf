#version 450
// twist: GEMM on f16 / bf16 storage with fp32 accumulation (host side:
// backends/vulkan/vk_gpu16.c; built per data type through dtype.glsl, A and B are TW_T).
//
//   for p in [0, batch): C_p (m, n) = alpha * op(A_p) op(B_p) + beta * C_p   (row-major)
//
// A workgroup of TD x TD invocations (constant 0; 16 where the device allows 256 invocations,
// else 8) computes a (TM, TM) tile of C, TM = 4 TD: each invocation owns 4 x 4 elements strided
// by TD, so neighbouring invocations touch neighbouring columns of C. Each k step stages the
// (TM, BK) slice of op(A) and the (BK, TM) slice of op(B) in shared memory as fp32 (zeros outside
// the matrices), read along their contiguous dimension whatever the transpose; 8.5 KB at TD 16.
// Workgroup z is the batch. C is bound twice (binding 2 in the type, binding 3 as fp32) and
// constant 1 (C_F32) says which one the op's C is. beta == 0 never reads C.
#include "common.glsl"
#include "dtype.glsl"

layout(local_size_x_id = 0, local_size_y_id = 0, local_size_z = 1) in;
layout(constant_id = 0) const uint TD = 16;
layout(constant_id = 1) const bool C_F32 = false;
const uint WPT = 4;
const uint TM = TD * WPT;
const uint BK = 16;

TW_BUFFER_RO(0, TW_T, a)
TW_BUFFER_RO(1, TW_T, b)
TW_BUFFER(2, TW_T, c)
TW_BUFFER(3, float, c32)

layout(push_constant) uniform Push {
    uint m, n, k, trans_a, trans_b;
    uint lda, ldb, ldc;
    uint a_off, b_off, c_off;
    uint stride_a, stride_b, stride_c;
    float alpha, beta;
} p;

shared float As[BK][TM + 1];
shared float Bs[BK][TM + 1];

void main() {
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y, lid = ty * TD + tx;
    const uint col0 = gl_WorkGroupID.x * TM, row0 = gl_WorkGroupID.y * TM;
    const uint batch = gl_WorkGroupID.z;
    const uint a_base = p.a_off + batch * p.stride_a, b_base = p.b_off + batch * p.stride_b;
    float acc[WPT][WPT];
    TW_UNROLL for (uint i = 0; i < WPT; i++)
        TW_UNROLL for (uint j = 0; j < WPT; j++) acc[i][j] = 0.0;
    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        for (uint e = lid; e < BK * TM; e += TD * TD) {
            uint r, kk;
            if (p.trans_a != 0) { kk = e / TM; r = e % TM; } else { r = e / BK; kk = e % BK; }
            uint row = row0 + r, kg = k0 + kk;
            float value = 0.0;
            if (row < p.m && kg < p.k)
                value = TW_LD(a, a_base + (p.trans_a != 0 ? kg * p.lda + row : row * p.lda + kg));
            As[kk][r] = value;
        }
        for (uint e = lid; e < BK * TM; e += TD * TD) {
            uint col, kk;
            if (p.trans_b != 0) { col = e / BK; kk = e % BK; } else { kk = e / TM; col = e % TM; }
            uint cg = col0 + col, kg = k0 + kk;
            float value = 0.0;
            if (cg < p.n && kg < p.k)
                value = TW_LD(b, b_base + (p.trans_b != 0 ? cg * p.ldb + kg : kg * p.ldb + cg));
            Bs[kk][col] = value;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float av[WPT], bv[WPT];
            TW_UNROLL for (uint i = 0; i < WPT; i++) av[i] = As[kk][ty + i * TD];
            TW_UNROLL for (uint j = 0; j < WPT; j++) bv[j] = Bs[kk][tx + j * TD];
            TW_UNROLL for (uint i = 0; i < WPT; i++)
                TW_UNROLL for (uint j = 0; j < WPT; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier();
    }
    const uint c_base = p.c_off + batch * p.stride_c;
    TW_UNROLL for (uint i = 0; i < WPT; i++) {
        uint row = row0 + ty + i * TD;
        TW_UNROLL for (uint j = 0; j < WPT; j++) {
            uint col = col0 + tx + j * TD;
            if (row >= p.m || col >= p.n) continue;
            uint at = c_base + row * p.ldc + col;
            float value = p.alpha * acc[i][j];
            if (C_F32) {
                if (p.beta != 0.0) value += p.beta * c32[at];
                c32[at] = value;
            } else {
                if (p.beta != 0.0) value += p.beta * TW_LD(c, at);
                TW_ST(c, at, value);
            }
        }
    }
}
