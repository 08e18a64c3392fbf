/* twist Vulkan: attention_fwd.comp reading q, k and v as texels (TW_ATTN_TEXEL in
 * attention_common.glsl; host side: backends/vulkan/vk_attention.c). */
#version 450
#define TW_ATTN_TEXEL 1
#include "common.glsl"
#include "attention_common.glsl"
#include "attention_fwd.glsl"
