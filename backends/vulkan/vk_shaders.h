/* The SPIR-V of every shaders/<name>.comp, embedded at build time (cmake/vulkan_shaders.cmake
 * generates the table). */
#ifndef TW_VK_SHADERS_H
#define TW_VK_SHADERS_H

#include <stddef.h>

typedef struct tw_vk_shader_blob {
    const char *name;   /* the .comp file's base name: "gelu" */
    const char *bytes;  /* SPIR-V words, byte by byte (not necessarily 4-byte aligned) */
    const size_t *size; /* byte count */
} tw_vk_shader_blob;

/* Ends with an entry whose name is NULL. */
extern const tw_vk_shader_blob tw_vk_shaders[];

#endif
