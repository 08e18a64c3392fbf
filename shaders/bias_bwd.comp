#version 450
// dbias (cols) += column sums of dout (rows, cols) (vk_ops_basic.c): one invocation per column
// summing the rows in order, so the result is the same bits on every run (no atomics).
// Neighbouring invocations read neighbouring columns, so loads coalesce on GPUs.
#include "common.glsl"
#include "dtype.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, TW_T, dout)
TW_BUFFER(1, TW_T, dbias)

layout(push_constant) uniform Push {
    uint rows, cols;
    uint dout_off, dbias_off;
} p;

void main() {
    uint c = tw_global_index();
    if (c >= p.cols) return;
    uint at = p.dout_off + c;
    float sum = 0.0;
    for (uint r = 0; r < p.rows; r++, at += p.cols) sum += TW_LD(dout, at);
    TW_ST(dbias, p.dbias_off + c, TW_LD(dbias, p.dbias_off + c) + (sum));
}
