/* twist Vulkan backend: the op entry points the vtable (vulkan.c) points at.
 *
 * Each tw_vk_<op> has exactly the parameters of the tw_backend_vtable entry of the same name
 * (the op list in twist/backend_support.h, from which they are declared here); `context` is the tw_vk_context of the device. The front end has
 * validated every argument; an op records its dispatches with tw_vk_dispatch (vk_internal.h) and
 * returns without waiting.
 *
 * Where each is defined:
 *   vk_ops_basic.c  (vkhost): add, scale, gelu_fwd, gelu_bwd, bias_add, bias_bwd
 *   vk_gemm.c       (vkgemm): gemm, set_gemm_impl
 *   vk_attention.c  (vkgemm): attention_fwd, attention_bwd
 *   vk_ops.c        (vkops):  softmax, layernorm, embedding, softmax_xent, sum_sq, adamw_step,
 *                             gather/scatter rows and cols */
#ifndef TW_VK_OPS_H
#define TW_VK_OPS_H

#include "twist/backend_support.h"

TW_BACKEND_OP_PROTOTYPES(tw_vk)

/* OPTIONAL entry (vk_gemm.c): TW_GEMM_AUTO lets the device choose between twist's tiled shader
 * and the cooperative-matrix shader; TW_GEMM_OWN forces the tiled shader; TW_GEMM_VENDOR means
 * the cooperative-matrix shader (TW_ERR_UNSUPPORTED where the device lacks it). */
tw_status tw_vk_set_gemm_impl(void *context, tw_gemm_impl impl);

/* OPTIONAL entries (vk_tune.c): kernel variants and tuning, dispatched by op name ("gemm":
 * vk_gemm.c, "attention_fwd" / "attention_bwd": vk_attention.c). */
int tw_vk_variants(void *context, const char *op, const char **names, int capacity);
tw_status tw_vk_force_variant(void *context, const char *op, const char *name);
tw_status tw_vk_tune(void *context, const tw_tune_request *request);
/* OPTIONAL entries (vk_gpu16.c): which ops run in f16 / bf16 here, and tw_convert. */
bool tw_vk_supports_dtype(void *context, tw_op_id op, tw_dtype dtype);
tw_status tw_vk_convert(void *context, size_t n, tw_mem src, tw_mem dst);
/* The vtable's gemm entry: f16/bf16 here (shaders/matmul16.comp), fp32 to tw_vk_gemm. */
tw_status tw_vk_gemm_typed(void *context, const tw_gemm_args *args);
/* The vtable's attention entries: f16/bf16 here (shaders/attn16_*.comp), fp32 passed on. */
tw_status tw_vk_attention_fwd_typed(void *context, const tw_attention_args *args);
tw_status tw_vk_attention_bwd_typed(void *context, const tw_attention_args *args);

#endif
