/* twist Vulkan backend: 16-bit data types (f16, bf16).
 *
 * Storage only, fp32 arithmetic inside every shader. Each shader that includes dtype.glsl is
 * built three times (cmake/vulkan_shaders.cmake): <name>, <name>_f16, <name>_bf16; the op files
 * name theirs through TW_VK_TYPED(shader, dtype). Pipelines are created on first use, so a run
 * in one type creates only that type's pipelines.
 *
 * Support, per device: both 16-bit types are stored as uint16_t and need the Vulkan 1.1 feature
 * storageBuffer16BitAccess (VK_KHR_16bit_storage), which vulkan.c enables where the device has
 * it (lavapipe, NVIDIA, AMD and Intel do). Without it no op runs in 16 bits: supports_dtype says
 * no and the front end refuses the op as unsupported. GEMM in 16 bits is shaders/matmul16.comp
 * (tiled, fp32 accumulation, C in the type or fp32), reached through tw_vk_gemm_typed; attention
 * in 16 bits is shaders/attn16_*.comp (workgroups of query or key rows sharing tiles staged in
 * shared memory), reached through tw_vk_attention_*_typed.
 *
 * Cooperative matrices: shaders/gemm_coopmat.comp (GL_KHR_cooperative_matrix, fp16 inputs, fp32
 * accumulation) is left out of the build by Debian 12's glslang (11.x); GL_NV_cooperative_matrix,
 * which it does know, has fp16 inputs only, and bf16 inputs need GL_EXT_bfloat16 with
 * VK_KHR_shader_bfloat16 (glslang 15.3+). So no device gets a cooperative-matrix path in this
 * build; lavapipe has no VK_KHR_cooperative_matrix anyway. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"
#include "vk_ops.h"
#include "../gpu16_via_f32.h"

const char *tw_vk_shader_variant(char *out, size_t size, const char *shader, tw_dtype dtype) {
    const char *suffix = dtype == TW_DTYPE_F16 ? "_f16" : dtype == TW_DTYPE_BF16 ? "_bf16" : "";
    snprintf(out, size, "%s%s", shader, suffix);
    return out;
}

bool tw_vk_supports_dtype(void *context, tw_op_id op, tw_dtype dtype) {
    if (dtype != TW_DTYPE_F16 && dtype != TW_DTYPE_BF16) return false;
    (void)op; /* every op of the list has its 16-bit shaders */
    return tw_vk_get_limits(context)->storage16;
}

/* shaders/convert.comp: each side bound twice (fp32 view, 16-bit view). */
tw_status tw_vk_convert(void *context, size_t n, tw_mem src, tw_mem dst) {
    tw_vk_context *vk = context;
    if (src.dtype != TW_DTYPE_F32 || dst.dtype != TW_DTYPE_F32) {
        if (!tw_vk_get_limits(vk)->storage16)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: this device lacks storageBuffer16BitAccess, so it has no "
                            "f16/bf16 storage to convert to or from");
    }
    if (n == 0) return TW_OK;
    if (n > TW_VK_MAX_ELEMENTS || src.offset > TW_VK_MAX_ELEMENTS - n ||
        dst.offset > TW_VK_MAX_ELEMENTS - n)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: convert over %zu elements: shaders index with 32 bits", n);
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    uint32_t wg = limits->max_workgroup_size < 256 ? limits->max_workgroup_size : 256;
    const uint32_t spec[3] = {wg, (uint32_t)src.dtype, (uint32_t)dst.dtype};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, "convert", 4, 12, spec, 3, &kernel));
    const struct { uint32_t n, src_off, dst_off; } push = {(uint32_t)n, (uint32_t)src.offset,
                                                          (uint32_t)dst.offset};
    tw_buffer *buffers[4] = {src.buffer, src.buffer, dst.buffer, dst.buffer};
    return tw_vk_dispatch_1d(vk, kernel, buffers, 4, &push, sizeof push, n, wg);
}

/* Largest element index a GEMM operand reaches: off + (batch-1) stride + (rows-1) ld + cols - 1. */
static bool operand_fits(tw_mem mem, int batch, int64_t stride, int rows, int cols, int64_t ld) {
    uint64_t last = (uint64_t)mem.offset + (uint64_t)(batch - 1) * (uint64_t)stride +
                    (uint64_t)(rows - 1) * (uint64_t)ld + (uint64_t)cols - 1;
    return last <= TW_VK_MAX_ELEMENTS && (uint64_t)ld <= TW_VK_MAX_ELEMENTS &&
           (uint64_t)stride <= TW_VK_MAX_ELEMENTS;
}

static tw_status gemm16(tw_vk_context *vk, const tw_gemm_args *g) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    const int a_rows = g->trans_a ? g->k : g->m, a_cols = g->trans_a ? g->m : g->k;
    const int b_rows = g->trans_b ? g->n : g->k, b_cols = g->trans_b ? g->k : g->n;
    if ((g->k > 0 && (!operand_fits(g->a, g->batch, g->stride_a, a_rows, a_cols, g->lda) ||
                      !operand_fits(g->b, g->batch, g->stride_b, b_rows, b_cols, g->ldb))) ||
        !operand_fits(g->c, g->batch, g->stride_c, g->m, g->n, g->ldc))
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: gemm in %s: operands reaching 2^32 elements into their buffer "
                        "are not supported (32-bit shader offsets)", tw_dtype_name(g->dtype));
    const uint32_t td = limits->max_workgroup_size >= 256 ? 16 : 8, tm = 4 * td;
    const uint32_t groups_x = ((uint32_t)g->n + tm - 1) / tm;
    const uint32_t groups_y = ((uint32_t)g->m + tm - 1) / tm;
    const uint32_t spec[2] = {td, g->c.dtype == TW_DTYPE_F32 ? 1u : 0u};
    tw_vk_kernel *kernel = NULL;
    const struct {
        uint32_t m, n, k, trans_a, trans_b, lda, ldb, ldc, a_off, b_off, c_off;
        uint32_t stride_a, stride_b, stride_c;
        float alpha, beta;
    } push = {(uint32_t)g->m, (uint32_t)g->n, (uint32_t)g->k, g->trans_a ? 1u : 0u,
              g->trans_b ? 1u : 0u, (uint32_t)g->lda, (uint32_t)g->ldb, (uint32_t)g->ldc,
              (uint32_t)g->a.offset, (uint32_t)g->b.offset, (uint32_t)g->c.offset,
              (uint32_t)g->stride_a, (uint32_t)g->stride_b, (uint32_t)g->stride_c, g->alpha,
              g->beta};
    TW_TRY(tw_vk_kernel_get(vk, TW_VK_TYPED("matmul16", g->dtype), 4, sizeof push, spec, 2,
                            &kernel));
    tw_buffer *buffers[4] = {g->a.buffer, g->b.buffer, g->c.buffer, g->c.buffer};
    return tw_vk_dispatch(vk, kernel, buffers, 4, &push, sizeof push, groups_x, groups_y,
                          (uint32_t)g->batch);
}


tw_status tw_vk_gemm_typed(void *context, const tw_gemm_args *args) {
    if (args->dtype == TW_DTYPE_F32) return tw_vk_gemm(context, args);
    if (tw_vk_get_limits(context)->is_cpu && !tw_gpu16_tiled_forced("TWIST_GEMM16") &&
        args->m > 0 && args->n > 0 && args->k > 0 && args->batch > 0)
        return tw_gpu16_gemm_via_f32(context, tw_vk_device(context), args, tw_vk_convert,
                                     tw_vk_gemm);
    return gemm16(context, args);
}

/* ------------------------------------------------------------------------------------------------
 * Attention (shaders/attn16_*.comp)
 * ---------------------------------------------------------------------------------------------- */

typedef struct attn16_push {
    uint32_t heads, seq_len, row_groups;
    float scale;
    uint32_t sb, sh, st, ob, oh, ot;
    uint32_t q_off, k_off, v_off, out_off, lse_off, dout_off, dq_off, dk_off, dv_off;
} attn16_push;

/* Workgroup rows: 64, or the device's limit when smaller (a power of two). */
static uint32_t attn16_wg(const tw_vk_context *vk) {
    uint32_t wg = 64;
    while (wg > 1 && wg > tw_vk_get_limits(vk)->max_workgroup_size) wg /= 2;
    return wg;
}

/* Last element index of a (B, H, T, D) tensor at `mem` with `stride`, as 64 bits. */
static uint64_t bhtd_last(const tw_attention_args *a, tw_mem mem, tw_bhtd_stride stride) {
    return (uint64_t)mem.offset + (uint64_t)(a->batch - 1) * (uint64_t)stride.b +
           (uint64_t)(a->heads - 1) * (uint64_t)stride.h +
           (uint64_t)(a->seq_len - 1) * (uint64_t)stride.t + (uint64_t)a->head_dim - 1;
}

static tw_status attn16_setup(tw_vk_context *vk, const tw_attention_args *a, bool backward,
                              attn16_push *push) {
    const tw_mem qkv[] = {a->q, a->k, a->v, a->dq, a->dk, a->dv};
    const tw_mem outs[] = {a->out, a->dout};
    bool fits = (uint64_t)a->batch * a->heads * a->seq_len <= TW_VK_MAX_ELEMENTS;
    for (int i = 0; i < (backward ? 6 : 3); i++)
        fits = fits && bhtd_last(a, qkv[i], a->qkv_stride) <= TW_VK_MAX_ELEMENTS;
    for (int i = 0; i < (backward ? 2 : 1); i++)
        fits = fits && bhtd_last(a, outs[i], a->out_stride) <= TW_VK_MAX_ELEMENTS;
    fits = fits && a->lse.offset + (uint64_t)a->batch * a->heads * a->seq_len <= TW_VK_MAX_ELEMENTS;
    const uint32_t wg = attn16_wg(vk);
    const uint32_t row_groups = ((uint32_t)a->seq_len + wg - 1) / wg;
    const uint64_t groups = (uint64_t)a->batch * a->heads * row_groups;
    if (!fits || groups > tw_vk_get_limits(vk)->max_workgroup_count[0])
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: attention in %s: B*H*ceil(T/%u) = %llu workgroups or tensors "
                        "reaching 2^32 elements exceed the device's limits",
                        tw_dtype_name(a->dtype), wg, (unsigned long long)groups);
    *push = (attn16_push){(uint32_t)a->heads, (uint32_t)a->seq_len, row_groups, a->scale,
                          (uint32_t)a->qkv_stride.b, (uint32_t)a->qkv_stride.h,
                          (uint32_t)a->qkv_stride.t, (uint32_t)a->out_stride.b,
                          (uint32_t)a->out_stride.h, (uint32_t)a->out_stride.t,
                          (uint32_t)a->q.offset, (uint32_t)a->k.offset, (uint32_t)a->v.offset,
                          (uint32_t)a->out.offset, (uint32_t)a->lse.offset,
                          (uint32_t)a->dout.offset, (uint32_t)a->dq.offset,
                          (uint32_t)a->dk.offset, (uint32_t)a->dv.offset};
    return TW_OK;
}

/* One dispatch of attn16 shader `shader` (in the op's type) over `groups` workgroups. */
static tw_status attn16_dispatch(tw_vk_context *vk, const char *shader,
                                 const tw_attention_args *a, tw_buffer *const *buffers,
                                 const attn16_push *push, uint32_t groups) {
    const uint32_t spec[2] = {attn16_wg(vk), (uint32_t)a->head_dim};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, TW_VK_TYPED(shader, a->dtype), 10, sizeof *push, spec, 2,
                            &kernel));
    return tw_vk_dispatch(vk, kernel, buffers, 10, push, sizeof *push, groups, 1, 1);
}

static tw_status attention16_fwd(tw_vk_context *vk, const tw_attention_args *a) {
    attn16_push push;
    TW_TRY(attn16_setup(vk, a, false, &push));
    /* Bindings 5..9 (dout, delta, dq, dk, dv) are not touched by the forward: q stands in. */
    tw_buffer *q = a->q.buffer;
    tw_buffer *buffers[10] = {q, a->k.buffer, a->v.buffer, a->out.buffer, a->lse.buffer,
                              q, q, q, q, q};
    return attn16_dispatch(vk, "attn16_fwd", a, buffers, &push,
                           (uint32_t)a->batch * a->heads * push.row_groups);
}

static tw_status attention16_bwd(tw_vk_context *vk, const tw_attention_args *a) {
    attn16_push push;
    TW_TRY(attn16_setup(vk, a, true, &push));
    const uint32_t rows = (uint32_t)a->batch * a->heads * a->seq_len, wg = attn16_wg(vk);
    if ((rows + wg - 1) / wg > tw_vk_get_limits(vk)->max_workgroup_count[0])
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan: attention_bwd: %u rows exceed the "
                        "device's workgroup count", rows);
    tw_buffer *delta = NULL;
    TW_TRY(tw_buffer_alloc(tw_vk_device(vk), (size_t)rows * sizeof(float), &delta));
    tw_buffer *buffers[10] = {a->q.buffer,    a->k.buffer,    a->v.buffer,  a->out.buffer,
                              a->lse.buffer,  a->dout.buffer, delta,        a->dq.buffer,
                              a->dk.buffer,   a->dv.buffer};
    attn16_push rows_push = push;
    rows_push.row_groups = rows; /* attn16_delta reads its row count there */
    tw_status status = attn16_dispatch(vk, "attn16_delta", a, buffers, &rows_push,
                                       (rows + wg - 1) / wg);
    const uint32_t groups = (uint32_t)a->batch * a->heads * push.row_groups;
    if (status == TW_OK) status = attn16_dispatch(vk, "attn16_dq", a, buffers, &push, groups);
    if (status == TW_OK) status = attn16_dispatch(vk, "attn16_dkdv", a, buffers, &push, groups);
    tw_buffer_free(delta); /* released once the submissions using it complete (vk_memory.c) */
    return status;
}

tw_status tw_vk_attention_fwd_typed(void *context, const tw_attention_args *args) {
    if (args->dtype == TW_DTYPE_F32) return tw_vk_attention_fwd(context, args);
    if (tw_vk_get_limits(context)->is_cpu && !tw_gpu16_tiled_forced("TWIST_ATTENTION16"))
        return tw_gpu16_attention_via_f32(context, tw_vk_device(context), args, false,
                                          tw_vk_convert, tw_vk_attention_fwd);
    return attention16_fwd(context, args);
}

tw_status tw_vk_attention_bwd_typed(void *context, const tw_attention_args *args) {
    if (args->dtype == TW_DTYPE_F32) return tw_vk_attention_bwd(context, args);
    if (tw_vk_get_limits(context)->is_cpu && !tw_gpu16_tiled_forced("TWIST_ATTENTION16"))
        return tw_gpu16_attention_via_f32(context, tw_vk_device(context), args, true,
                                          tw_vk_convert, tw_vk_attention_bwd);
    return attention16_bwd(context, args);
}
