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
 * no and the front end refuses the op as unsupported. GEMM and attention have no 16-bit shaders
 * here yet (they are fp32 only), so supports_dtype says no for them in both types.
 *
 * Cooperative matrices: shaders/gemm_coopmat.comp (GL_KHR_cooperative_matrix, fp16 inputs, fp32
 * accumulation) is left out of the build by Debian 12's glslang (11.x); GL_NV_cooperative_matrix,
 * which it does know, has fp16 inputs only, and bf16 inputs need GL_EXT_bfloat16 with
 * VK_KHR_shader_bfloat16 (glslang 15.3+). So no device gets a cooperative-matrix path in this
 * build; lavapipe has no VK_KHR_cooperative_matrix anyway. */
#include <stdio.h>

#include "vk_internal.h"
#include "vk_ops.h"

const char *tw_vk_shader_variant(char *out, size_t size, const char *shader, tw_dtype dtype) {
    const char *suffix = dtype == TW_DTYPE_F16 ? "_f16" : dtype == TW_DTYPE_BF16 ? "_bf16" : "";
    snprintf(out, size, "%s%s", shader, suffix);
    return out;
}

bool tw_vk_supports_dtype(void *context, tw_op_id op, tw_dtype dtype) {
    if (dtype != TW_DTYPE_F16 && dtype != TW_DTYPE_BF16) return false;
    if (!tw_vk_get_limits(context)->storage16) return false;
    switch (op) {
    case TW_OP_gemm:
    case TW_OP_attention_fwd:
    case TW_OP_attention_bwd: return false;
    default: return true;
    }
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
