/* twist OpenCL kernels: conversions between float types (host side: cl_gpu16.c, tw_convert).
 * Built once, after kernels/dtype.cl with TW_DTYPE=2, for its bf16 helpers; f16 goes through the
 * core vload_half / vstore_half_rte. dst (n) = src (n), rounded to nearest even; NaN stays NaN,
 * values past the target's range become +-inf. One work-item per element. */
#define LD_f32(p, i) ((p)[i])
#define LD_f16(p, i) vload_half((i), (p))
#define LD_bf16(p, i) tw_bf16_to_f32((p)[i])
#define ST_f32(p, i, v) ((p)[i] = (v))
#define ST_f16(p, i, v) vstore_half_rte((v), (i), (p))
#define ST_bf16(p, i, v) ((p)[i] = tw_f32_to_bf16(v))
typedef float ty_f32;
typedef half ty_f16;
typedef ushort ty_bf16;

#define TW_CONVERT(from, to)                                                                  \
    __kernel void tw_convert_##from##_##to(ulong n, __global const ty_##from *src,           \
                                          ulong src_off, __global ty_##to *dst,             \
                                          ulong dst_off) {                                  \
        size_t i = get_global_id(0);                                                        \
        if (i >= n) return;                                                                 \
        ST_##to(dst, dst_off + i, LD_##from(src, src_off + i));                             \
    }

TW_CONVERT(f32, f16)
TW_CONVERT(f32, bf16)
TW_CONVERT(f16, f32)
TW_CONVERT(f16, bf16)
TW_CONVERT(bf16, f32)
TW_CONVERT(bf16, f16)
