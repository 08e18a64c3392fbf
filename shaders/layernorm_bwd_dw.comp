#version 450
// twist: LayerNorm backward, weight and bias gradients (host side: backends/vulkan/vk_ops.c).
// dweight (cols) += sum_r dout xhat;  dbias (cols) += sum_r dout, over rows of (rows, cols).
// A workgroup owns COLS adjacent columns (x) and splits the rows among LANES row lanes (y): lane
// l sums rows l, l + LANES, ... in order, then the lanes combine in a fixed tree. Reads of a row
// segment are contiguous across x.
#include "common.glsl"
#include "dtype.glsl"
layout(local_size_x = 32, local_size_y = 8) in;
#define COLS 32
#define LANES 8

layout(std430, set = 0, binding = 0) readonly buffer DOut { TW_T dout[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { TW_T x[]; };
layout(std430, set = 0, binding = 2) readonly buffer Mean { float mean[]; };
layout(std430, set = 0, binding = 3) readonly buffer Rstd { float rstd[]; };
layout(std430, set = 0, binding = 4) buffer DW { TW_T dweight[]; };
layout(std430, set = 0, binding = 5) buffer DB { TW_T dbias[]; };

layout(push_constant) uniform Push {
    uint rows, cols;
    uint dout_off, x_off, mean_off, rstd_off, dw_off, db_off;
} p;

shared float s_dw[LANES][COLS];
shared float s_db[LANES][COLS];

void main() {
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    for (uint c0 = gl_WorkGroupID.x * COLS; c0 < p.cols; c0 += gl_NumWorkGroups.x * COLS) {
        uint c = c0 + lx;
        float dw = 0.0, db = 0.0;
        if (c < p.cols) {
            for (uint r = ly; r < p.rows; r += LANES) {
                uint e = r * p.cols + c;
                float dy = TW_LD(dout, p.dout_off + e);
                dw += dy * ((TW_LD(x, p.x_off + e) - mean[p.mean_off + r]) * rstd[p.rstd_off + r]);
                db += dy;
            }
        }
        s_dw[ly][lx] = dw;
        s_db[ly][lx] = db;
        barrier();
        for (uint s = LANES / 2; s > 0; s >>= 1) {
            if (ly < s) {
                s_dw[ly][lx] += s_dw[ly + s][lx];
                s_db[ly][lx] += s_db[ly + s][lx];
            }
            barrier();
        }
        if (ly == 0 && c < p.cols) {
            TW_ST(dweight, p.dw_off + c, TW_LD(dweight, p.dw_off + c) + (s_dw[0][lx]));
            TW_ST(dbias, p.db_off + c, TW_LD(dbias, p.db_off + c) + (s_db[0][lx]));
        }
        barrier();
    }
}
