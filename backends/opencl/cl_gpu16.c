/* twist OpenCL backend: 16-bit data types (f16, bf16).
 *
 * Storage only: every kernel computes in fp32. The ops of cl_ops.c take the data type of their
 * principal tensor and use that family's program built for it (kernels/dtype.cl + the family's
 * file, -DTW_DTYPE=<n>); GEMM and attention in 16 bits have their own kernels here
 * (kernels/gemm16.cl, kernels/attention16.cl), reached through the vtable entries
 * tw_cl_gemm_typed / tw_cl_attention_*_typed, which leave fp32 to cl_gemm.c / cl_attention.c.
 *
 * Support, per device:
 *   bf16: ushort storage and integer bit operations: every OpenCL 1.2 device.
 *   f16:  `half` pointers with vload_half / vstore_half, which are core OpenCL since 1.0 and do
 *         not need cl_khr_fp16 (that extension adds half arithmetic, which twist does not use):
 *         NVIDIA's driver compiles them without advertising cl_khr_fp16. Since a driver could
 *         still get them wrong, support is decided by a probe on first use: the convert program
 *         must build and round-trip a few values through f16 exactly (PoCL and NVIDIA pass).
 * Programs are built lazily, one per (family, data type) actually used: a run in one type builds
 * only that type's programs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_internal.h"
#include "../gpu16_via_f32.h"

extern const char twist_cl_attention16_cl[];
extern const size_t twist_cl_attention16_cl_size;

/* ------------------------------------------------------------------------------------------------
 * Support and conversions
 * ---------------------------------------------------------------------------------------------- */

static const char *short_name(tw_dtype dtype) {
    return dtype == TW_DTYPE_F16 ? "f16" : dtype == TW_DTYPE_BF16 ? "bf16" : "f32";
}

static tw_status convert_launch(tw_cl_context *cl, size_t n, cl_mem src, size_t src_off,
                                tw_dtype from, cl_mem dst, size_t dst_off, tw_dtype to) {
    /* Kernel names are kept by pointer in the kernel table: string literals. */
    static const char *const names[3][3] = {
        {NULL, "tw_convert_f32_f16", "tw_convert_f32_bf16"},
        {"tw_convert_f16_f32", NULL, "tw_convert_f16_bf16"},
        {"tw_convert_bf16_f32", "tw_convert_bf16_f16", NULL}};
    const char *literal = names[from][to];
    if (!literal)
        return tw_error(TW_ERR_BACKEND, "opencl: no conversion %s -> %s", short_name(from),
                        short_name(to));
    cl_kernel kernel;
    TW_TRY(tw_cl_kernel_typed(cl, TW_CL_CONVERT, TW_DTYPE_BF16, literal, &kernel));
    cl_uint index = 0;
    cl_int err = CL_SUCCESS;
    cl_ulong n64 = n, so = src_off, dof = dst_off;
    TW_CL_ARG(kernel, &index, n64, &err);
    TW_CL_ARG(kernel, &index, src, &err);
    TW_CL_ARG(kernel, &index, so, &err);
    TW_CL_ARG(kernel, &index, dst, &err);
    TW_CL_ARG(kernel, &index, dof, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clSetKernelArg(convert)");
    return tw_cl_launch_1d(cl, kernel, n, literal);
}

/* Round trip of values exact in f16 (and one that must round): f32 -> f16 -> f32. */
static bool half_probe(tw_cl_context *cl) {
    const float in[4] = {1.5f, -0.25f, 65504.0f, 1.0f + 1.0f / 4096.0f};
    const float expect[4] = {1.5f, -0.25f, 65504.0f, 1.0f}; /* 1 + 2^-12 rounds to even: 1 */
    float got[4] = {0};
    cl_int err = CL_SUCCESS;
    cl_mem a = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, sizeof in, NULL, &err);
    cl_mem h = err == CL_SUCCESS ? clCreateBuffer(cl->context, CL_MEM_READ_WRITE, 8, NULL, &err)
                                 : NULL;
    bool ok = err == CL_SUCCESS;
    ok = ok && clEnqueueWriteBuffer(cl->queue, a, CL_TRUE, 0, sizeof in, in, 0, NULL, NULL) ==
                   CL_SUCCESS;
    ok = ok && convert_launch(cl, 4, a, 0, TW_DTYPE_F32, h, 0, TW_DTYPE_F16) == TW_OK;
    ok = ok && convert_launch(cl, 4, h, 0, TW_DTYPE_F16, a, 0, TW_DTYPE_F32) == TW_OK;
    ok = ok && clEnqueueReadBuffer(cl->queue, a, CL_TRUE, 0, sizeof got, got, 0, NULL, NULL) ==
                   CL_SUCCESS;
    ok = ok && memcmp(got, expect, sizeof got) == 0;
    if (h) clReleaseMemObject(h);
    if (a) clReleaseMemObject(a);
    return ok;
}

bool tw_cl_supports_dtype(void *context, tw_op_id op, tw_dtype dtype) {
    tw_cl_context *cl = context;
    (void)op; /* every op of the list has its f16 and bf16 kernels */
    if (dtype == TW_DTYPE_BF16) return true;
    if (dtype != TW_DTYPE_F16) return false;
    if (cl->half_probe == 0) {
        cl->half_probe = half_probe(cl) ? 1 : -1;
        if (cl->half_probe < 0)
            tw_note("opencl: %s: half loads/stores (vload_half/vstore_half) failed a probe; "
                    "f16 is unsupported on this device",
                    tw_device_get_info(cl->device)->name);
    }
    return cl->half_probe > 0;
}

tw_status tw_cl_convert(void *context, size_t n, tw_mem src, tw_mem dst) {
    tw_cl_context *cl = context;
    if (src.dtype == TW_DTYPE_F16 || dst.dtype == TW_DTYPE_F16) {
        if (!tw_cl_supports_dtype(cl, TW_OP_gemm, TW_DTYPE_F16))
            return tw_error(TW_ERR_UNSUPPORTED, "opencl: %s has no working f16 storage",
                            tw_device_get_info(cl->device)->name);
    }
    if (n == 0) return TW_OK;
    return convert_launch(cl, n, tw_cl_mem(src), src.offset, src.dtype, tw_cl_mem(dst),
                          dst.offset, dst.dtype);
}

/* ------------------------------------------------------------------------------------------------
 * GEMM
 * ---------------------------------------------------------------------------------------------- */

/* Work-items per tile side: 16 (256 per group, 64 x 64 tiles) where the device allows 256 per
 * group, else 8. */
static int gemm16_td(const tw_cl_context *cl) { return cl->max_group >= 256 ? 16 : 8; }

tw_status tw_cl_gemm16(tw_cl_context *cl, const tw_gemm_args *args) {
    const int td = gemm16_td(cl), tm = td * 4;
    cl_program *program = &cl->programs[TW_CL_GEMM16][args->dtype];
    if (!*program) {
        extern const char twist_cl_gemm16_cl[];
        extern const size_t twist_cl_gemm16_cl_size;
        char options[32];
        snprintf(options, sizeof options, "-DTD=%d", td);
        TW_TRY(tw_cl_build_typed(cl, twist_cl_gemm16_cl, twist_cl_gemm16_cl_size, args->dtype,
                                 options, program));
    }
    const bool c_f32 = args->c.dtype == TW_DTYPE_F32;
    cl_kernel kernel;
    TW_TRY(tw_cl_kernel_typed(cl, TW_CL_GEMM16, args->dtype,
                              c_f32 ? "tw_gemm16_cf" : "tw_gemm16_ct", &kernel));
    cl_uint index = 0;
    cl_int err = CL_SUCCESS;
    cl_int m = args->m, n = args->n, k = args->k;
    cl_int ta = args->trans_a, tb = args->trans_b;
    cl_float alpha = args->alpha, beta = args->beta;
    cl_mem a = tw_cl_mem(args->a), b = tw_cl_mem(args->b), c = tw_cl_mem(args->c);
    cl_ulong a_off = args->a.offset, b_off = args->b.offset, c_off = args->c.offset;
    cl_long lda = args->lda, ldb = args->ldb, ldc = args->ldc;
    cl_long sa = args->stride_a, sb = args->stride_b, sc = args->stride_c;
    TW_CL_ARG(kernel, &index, m, &err);
    TW_CL_ARG(kernel, &index, n, &err);
    TW_CL_ARG(kernel, &index, k, &err);
    TW_CL_ARG(kernel, &index, ta, &err);
    TW_CL_ARG(kernel, &index, tb, &err);
    TW_CL_ARG(kernel, &index, alpha, &err);
    TW_CL_ARG(kernel, &index, beta, &err);
    TW_CL_ARG(kernel, &index, a, &err);
    TW_CL_ARG(kernel, &index, a_off, &err);
    TW_CL_ARG(kernel, &index, lda, &err);
    TW_CL_ARG(kernel, &index, sa, &err);
    TW_CL_ARG(kernel, &index, b, &err);
    TW_CL_ARG(kernel, &index, b_off, &err);
    TW_CL_ARG(kernel, &index, ldb, &err);
    TW_CL_ARG(kernel, &index, sb, &err);
    TW_CL_ARG(kernel, &index, c, &err);
    TW_CL_ARG(kernel, &index, c_off, &err);
    TW_CL_ARG(kernel, &index, ldc, &err);
    TW_CL_ARG(kernel, &index, sc, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clSetKernelArg(gemm16)");
    size_t local[3] = {(size_t)td, (size_t)td, 1};
    size_t global[3] = {(size_t)((args->n + tm - 1) / tm) * td,
                        (size_t)((args->m + tm - 1) / tm) * td, (size_t)args->batch};
    err = clEnqueueNDRangeKernel(cl->queue, kernel, 3, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clEnqueueNDRangeKernel(gemm16)");
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Attention
 * ---------------------------------------------------------------------------------------------- */

/* Work-group size: 64 rows, or the device's limit when smaller (a power of two). */
static int attention16_wg(const tw_cl_context *cl) {
    int wg = 64;
    while (wg > 1 && (size_t)wg > cl->max_group) wg /= 2;
    return wg;
}

static tw_status attention16_program(tw_cl_context *cl, tw_dtype dtype, int head_dim,
                                     tw_cl_attention_program **out) {
    int t = dtype == TW_DTYPE_F16 ? 0 : 1;
    for (int i = 0; i < cl->attention16_count[t]; i++) {
        if (cl->attention16[t][i].head_dim == head_dim) {
            *out = &cl->attention16[t][i];
            return TW_OK;
        }
    }
    if (cl->attention16_count[t] == TW_CL_MAX_ATTENTION_PROGRAMS)
        return tw_error(TW_ERR_BACKEND, "opencl: too many attention head dimensions");
    tw_cl_attention_program p = {.head_dim = head_dim};
    char options[64];
    snprintf(options, sizeof options, "-DHD=%d -DWG=%d", head_dim, attention16_wg(cl));
    TW_TRY(tw_cl_build_typed(cl, twist_cl_attention16_cl, twist_cl_attention16_cl_size, dtype,
                             options, &p.program));
    cl_int err = CL_SUCCESS;
    p.fwd = clCreateKernel(p.program, "tw_attention16_fwd", &err);
    if (err == CL_SUCCESS) p.delta = clCreateKernel(p.program, "tw_attention16_delta", &err);
    if (err == CL_SUCCESS) p.dq = clCreateKernel(p.program, "tw_attention16_dq", &err);
    if (err == CL_SUCCESS) p.dkdv = clCreateKernel(p.program, "tw_attention16_dkdv", &err);
    if (err != CL_SUCCESS) {
        if (p.fwd) clReleaseKernel(p.fwd);
        if (p.delta) clReleaseKernel(p.delta);
        if (p.dq) clReleaseKernel(p.dq);
        clReleaseProgram(p.program);
        return tw_cl_fail(err, "clCreateKernel(attention16)");
    }
    cl->attention16[t][cl->attention16_count[t]] = p;
    *out = &cl->attention16[t][cl->attention16_count[t]++];
    return TW_OK;
}

typedef struct args16 {
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
} args16;

static void put(args16 *s, size_t size, const void *value) {
    if (s->err == CL_SUCCESS) s->err = clSetKernelArg(s->kernel, s->index, size, value);
    s->index++;
}
static void put_int(args16 *s, int v) { cl_int x = v; put(s, sizeof x, &x); }
static void put_long(args16 *s, int64_t v) { cl_long x = v; put(s, sizeof x, &x); }
static void put_float(args16 *s, float v) { cl_float x = v; put(s, sizeof x, &x); }
static void put_cl(args16 *s, cl_mem m) { put(s, sizeof m, &m); }
static void put_mem(args16 *s, tw_mem m) {
    put_cl(s, tw_cl_mem(m));
    cl_ulong off = m.offset;
    put(s, sizeof off, &off);
}

/* heads, seq_len, row_groups, scale, both strides: the head of the three tiled kernels. */
static void put_head(args16 *s, const tw_attention_args *args, int row_groups) {
    put_int(s, args->heads);
    put_int(s, args->seq_len);
    put_int(s, row_groups);
    put_float(s, args->scale);
    put_long(s, args->qkv_stride.b);
    put_long(s, args->qkv_stride.h);
    put_long(s, args->qkv_stride.t);
    put_long(s, args->out_stride.b);
    put_long(s, args->out_stride.h);
    put_long(s, args->out_stride.t);
}

/* One work-group per (b, h, row group of wg rows). */
static tw_status launch_groups(tw_cl_context *cl, const args16 *s, const tw_attention_args *args,
                               int row_groups, const char *what) {
    if (s->err != CL_SUCCESS) return tw_cl_fail(s->err, "clSetKernelArg(attention16)");
    size_t local = (size_t)attention16_wg(cl);
    size_t global = (size_t)args->batch * (size_t)args->heads * (size_t)row_groups * local;
    cl_int err = clEnqueueNDRangeKernel(cl->queue, s->kernel, 1, NULL, &global, &local, 0, NULL,
                                        NULL);
    if (err != CL_SUCCESS) {
        char message[96];
        snprintf(message, sizeof message, "clEnqueueNDRangeKernel(%s)", what);
        return tw_cl_fail(err, message);
    }
    return TW_OK;
}

static int row_groups_of(const tw_cl_context *cl, const tw_attention_args *args) {
    int wg = attention16_wg(cl);
    return (args->seq_len + wg - 1) / wg;
}

tw_status tw_cl_attention16_fwd(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    TW_TRY(attention16_program(cl, args->dtype, args->head_dim, &p));
    int groups = row_groups_of(cl, args);
    args16 s = {p->fwd, 0, CL_SUCCESS};
    put_head(&s, args, groups);
    put_mem(&s, args->q);
    put_mem(&s, args->k);
    put_mem(&s, args->v);
    put_mem(&s, args->out);
    put_mem(&s, args->lse);
    return launch_groups(cl, &s, args, groups, "attention16_fwd");
}

static tw_status backward16(tw_cl_context *cl, tw_cl_attention_program *p,
                            const tw_attention_args *args, cl_mem delta) {
    int rows = args->batch * args->heads * args->seq_len;
    args16 s = {p->delta, 0, CL_SUCCESS};
    put_int(&s, args->heads);
    put_int(&s, args->seq_len);
    put_int(&s, rows);
    put_long(&s, args->out_stride.b);
    put_long(&s, args->out_stride.h);
    put_long(&s, args->out_stride.t);
    put_mem(&s, args->out);
    put_mem(&s, args->dout);
    put_cl(&s, delta);
    if (s.err != CL_SUCCESS) return tw_cl_fail(s.err, "clSetKernelArg(attention16_delta)");
    TW_TRY(tw_cl_launch_1d(cl, p->delta, (size_t)rows, "attention16_delta"));

    int groups = row_groups_of(cl, args);
    s = (args16){p->dq, 0, CL_SUCCESS};
    put_head(&s, args, groups);
    put_mem(&s, args->q);
    put_mem(&s, args->k);
    put_mem(&s, args->v);
    put_mem(&s, args->dout);
    put_mem(&s, args->lse);
    put_cl(&s, delta);
    put_mem(&s, args->dq);
    TW_TRY(launch_groups(cl, &s, args, groups, "attention16_dq"));

    s = (args16){p->dkdv, 0, CL_SUCCESS};
    put_head(&s, args, groups);
    put_mem(&s, args->q);
    put_mem(&s, args->k);
    put_mem(&s, args->v);
    put_mem(&s, args->dout);
    put_mem(&s, args->lse);
    put_cl(&s, delta);
    put_mem(&s, args->dk);
    put_mem(&s, args->dv);
    return launch_groups(cl, &s, args, groups, "attention16_dkdv");
}

tw_status tw_cl_attention16_bwd(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    TW_TRY(attention16_program(cl, args->dtype, args->head_dim, &p));
    size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_buffer *delta = NULL;
    TW_TRY(tw_buffer_alloc(cl->device, rows * sizeof(float), &delta));
    tw_status status = backward16(cl, p, args, (cl_mem)delta->handle);
    tw_buffer_free(delta); /* OpenCL keeps it alive until the queued kernels finish */
    return status;
}

void tw_cl_gpu16_release(tw_cl_context *cl) {
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < cl->attention16_count[t]; i++) {
            tw_cl_attention_program *p = &cl->attention16[t][i];
            clReleaseKernel(p->fwd);
            clReleaseKernel(p->delta);
            clReleaseKernel(p->dq);
            clReleaseKernel(p->dkdv);
            clReleaseProgram(p->program);
        }
        cl->attention16_count[t] = 0;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Vtable entries: 16-bit GEMM and attention here, fp32 in cl_gemm.c / cl_attention.c.
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_gemm_typed(void *context, const tw_gemm_args *args) {
    tw_cl_context *cl = context;
    if (args->dtype == TW_DTYPE_F32) return tw_cl_gemm(context, args);
    if (cl->is_cpu && !tw_gpu16_tiled_forced("TWIST_GEMM16") && args->m > 0 && args->n > 0 &&
        args->k > 0 && args->batch > 0)
        return tw_gpu16_gemm_via_f32(cl, cl->device, args, tw_cl_convert, tw_cl_gemm);
    return tw_cl_gemm16(cl, args);
}

tw_status tw_cl_attention_fwd_typed(void *context, const tw_attention_args *args) {
    tw_cl_context *cl = context;
    if (args->dtype == TW_DTYPE_F32) return tw_cl_attention_fwd(context, args);
    if (cl->is_cpu && !tw_gpu16_tiled_forced("TWIST_ATTENTION16"))
        return tw_gpu16_attention_via_f32(cl, cl->device, args, false, tw_cl_convert,
                                          tw_cl_attention_fwd);
    return tw_cl_attention16_fwd(cl, args);
}

tw_status tw_cl_attention_bwd_typed(void *context, const tw_attention_args *args) {
    tw_cl_context *cl = context;
    if (args->dtype == TW_DTYPE_F32) return tw_cl_attention_bwd(context, args);
    if (cl->is_cpu && !tw_gpu16_tiled_forced("TWIST_ATTENTION16"))
        return tw_gpu16_attention_via_f32(cl, cl->device, args, true, tw_cl_convert,
                                          tw_cl_attention_bwd);
    return tw_cl_attention16_bwd(cl, args);
}
