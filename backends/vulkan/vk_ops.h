/* twist Vulkan backend: the op entry points the vtable (vulkan.c) points at.
 *
 * Each tw_vk_<op> has exactly the parameters of the tw_backend_vtable entry of the same name
 * (src/core/backend_impl.h); `context` is the tw_vk_context of the device. The front end has
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

#include "core/backend_impl.h"

tw_status tw_vk_gemm(void *context, const tw_gemm_args *args);
tw_status tw_vk_attention_fwd(void *context, const tw_attention_args *args);
tw_status tw_vk_attention_bwd(void *context, const tw_attention_args *args);
tw_status tw_vk_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                            tw_mem out);
tw_status tw_vk_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx);
tw_status tw_vk_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                              tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd);
tw_status tw_vk_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                              tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                              tw_mem dbias);
tw_status tw_vk_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_vk_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx);
tw_status tw_vk_embedding_fwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out);
tw_status tw_vk_embedding_bwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe);
tw_status tw_vk_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                                 tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct);
tw_status tw_vk_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                                 tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits);
tw_status tw_vk_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out);
tw_status tw_vk_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias);
tw_status tw_vk_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out);
tw_status tw_vk_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out);
tw_status tw_vk_sum_sq(void *context, size_t n, tw_mem x, tw_mem out);
tw_status tw_vk_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                           tw_mem grad, tw_mem m, tw_mem v);
tw_status tw_vk_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst);
tw_status tw_vk_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate);
tw_status tw_vk_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst);
tw_status tw_vk_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate);

/* OPTIONAL entry (vk_gemm.c): TW_GEMM_AUTO lets the device choose between twist's tiled shader
 * and the cooperative-matrix shader; TW_GEMM_OWN forces the tiled shader; TW_GEMM_VENDOR means
 * the cooperative-matrix shader (TW_ERR_UNSUPPORTED where the device lacks it). */
tw_status tw_vk_set_gemm_impl(void *context, tw_gemm_impl impl);

#endif
