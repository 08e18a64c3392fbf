/* twist Vulkan backend: the vtable. (First commit: the registry sees the backend with no
 * devices while the host code is written; the op entry points are in vk_ops.h.) */
#include "vk_internal.h"
#include "vk_ops.h"

static int vk_enumerate(tw_device_info *out, int capacity) {
    (void)out;
    (void)capacity;
    return 0;
}

static tw_status vk_open(int index, tw_device *device, void **context) {
    (void)device;
    (void)context;
    return tw_error(TW_ERR_NOT_FOUND, "vulkan: no device %d", index);
}

static const tw_backend_vtable vk_vtable = {
    .kind = TW_BACKEND_VULKAN,
    .enumerate = vk_enumerate,
    .open = vk_open,
    .gemm = tw_vk_gemm,
    .attention_fwd = tw_vk_attention_fwd,
    .attention_bwd = tw_vk_attention_bwd,
    .softmax_fwd = tw_vk_softmax_fwd,
    .softmax_bwd = tw_vk_softmax_bwd,
    .layernorm_fwd = tw_vk_layernorm_fwd,
    .layernorm_bwd = tw_vk_layernorm_bwd,
    .gelu_fwd = tw_vk_gelu_fwd,
    .gelu_bwd = tw_vk_gelu_bwd,
    .embedding_fwd = tw_vk_embedding_fwd,
    .embedding_bwd = tw_vk_embedding_bwd,
    .softmax_xent_fwd = tw_vk_softmax_xent_fwd,
    .softmax_xent_bwd = tw_vk_softmax_xent_bwd,
    .bias_add = tw_vk_bias_add,
    .bias_bwd = tw_vk_bias_bwd,
    .add = tw_vk_add,
    .scale = tw_vk_scale,
    .sum_sq = tw_vk_sum_sq,
    .adamw_step = tw_vk_adamw_step,
    .gather_rows = tw_vk_gather_rows,
    .scatter_rows = tw_vk_scatter_rows,
    .gather_cols = tw_vk_gather_cols,
    .scatter_cols = tw_vk_scatter_cols,
    .set_gemm_impl = tw_vk_set_gemm_impl,
};

const tw_backend_vtable *tw_vulkan_backend(void) { return &vk_vtable; }
