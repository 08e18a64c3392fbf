/* twist Vulkan: attention_bwd_dkdv.comp reading q, k, v and dout as texels (TW_ATTN_TEXEL in
 * attention_common.glsl; host side: backends/vulkan/vk_attention.c). */
#version 450
#define TW_ATTN_TEXEL 1
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_bwd_dkdv.glsl"
