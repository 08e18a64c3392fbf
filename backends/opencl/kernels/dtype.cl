/* twist OpenCL kernels: the storage type of an op's data tensors, prepended by the host
 * (cl_program_cache.c) to every kernel file built per data type, with -DTW_DTYPE=<n> chosen from
 * tw_dtype: 0 f32, 1 f16, 2 bf16. Kernels declare data tensors as `__global TW_T *` and touch
 * them only through TW_LD / TW_ST, so one source gives the three variants; arithmetic stays in
 * float whatever the storage (fp32 inside kernels, as tw_dtype's contract asks).
 *
 *   f16:  `half` pointers with vload_half / vstore_half, which are core OpenCL 1.2 (no
 *         cl_khr_fp16 needed: that extension is about half *arithmetic*); vstore_half rounds to
 *         nearest even (the _rte form says so explicitly).
 *   bf16: ushort storage holding the top 16 bits of an fp32; loads shift left by 16, stores
 *         round to nearest even on the dropped 16 bits, keep NaNs quiet NaNs, and overflow to
 *         +-inf like any RNE rounding. */
#ifndef TW_DTYPE
#define TW_DTYPE 0
#endif

#if TW_DTYPE == 0
typedef float TW_T;
#define TW_LD(p, i) ((p)[i])
#define TW_ST(p, i, v) ((p)[i] = (v))
#elif TW_DTYPE == 1
typedef half TW_T;
#define TW_LD(p, i) vload_half((i), (p))
#define TW_ST(p, i, v) vstore_half_rte((v), (i), (p))
#elif TW_DTYPE == 2
typedef ushort TW_T;
inline float tw_bf16_to_f32(ushort bits) { return as_float((uint)bits << 16); }
inline ushort tw_f32_to_bf16(float value) {
    uint u = as_uint(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}
#define TW_LD(p, i) tw_bf16_to_f32((p)[i])
#define TW_ST(p, i, v) ((p)[i] = tw_f32_to_bf16(v))
#else
#error "TW_DTYPE must be 0 (f32), 1 (f16) or 2 (bf16)"
#endif
