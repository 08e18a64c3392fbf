#version 450
// dbias (cols) += column sums of dout (rows, cols) (vk_ops_basic.c): one invocation per column
// summing the rows in order, so the result is the same bits on every run (no atomics).
// Neighbouring invocations read neighbouring columns, so loads coalesce on GPUs.
#include "common.glsl"

TW_LOCAL_SIZE_X_SPEC
TW_BUFFER_RO(0, float, dout)
TW_BUFFER(1, float, dbias)

layout(push_constant) uniform Push {
    uint rows, cols;
    uint dout_off, dbias_off;
} p;

void main() {
    uint c = tw_global_index();
    if (c >= p.cols) return;
    uint at = p.dout_off + c;
    float sum = 0.0;
    for (uint r = 0; r < p.rows; r++, at += p.cols) sum += dout[at];
    dbias[p.dbias_off + c] += sum;
}
