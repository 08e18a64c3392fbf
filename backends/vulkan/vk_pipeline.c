/* twist Vulkan backend: compute pipelines from the embedded SPIR-V, and the on-disk pipeline
 * cache.
 *
 * Pipelines are cached in memory per context, keyed by shader name, specialization constants,
 * binding count and push-constant size. Building goes through a VkPipelineCache loaded from
 * <cache dir>/vulkan/pipelines-<pipelineCacheUUID>-<vendor>-<device>-<driverVersion>.bin (cache
 * dir: $TWIST_CACHE_DIR, $XDG_CACHE_HOME/twist or ~/.cache/twist) and written back at close
 * when it grew; a file whose header does not match this device and driver, or that the driver
 * rejects, is ignored (the cache starts empty and the file is rewritten).
 *
 * TWIST_VK_PIPELINE_LOG=1 prints every pipeline creation (shader, constants, milliseconds) and,
 * at close, how many were built and how long they took in all: on a GPU a cold run's time goes
 * there (the driver compiles each pipeline to machine code). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vk_host.h"
#include "vk_shaders.h"

/* ------------------------------------------------------------------------------------------------
 * Disk cache
 * ---------------------------------------------------------------------------------------------- */

static bool cache_path(const tw_vk_context *vk, char *out, size_t size) {
    char dir[900];
    if (!tw_user_cache_dir(dir, sizeof dir)) return false;
    const VkPhysicalDeviceProperties *p = &vk->properties;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; i++)
        snprintf(uuid + 2 * i, 3, "%02x", p->pipelineCacheUUID[i]);
    int written = snprintf(out, size, "%s/vulkan/pipelines-%s-%04x-%04x-%08x.bin", dir, uuid,
                           p->vendorID, p->deviceID, p->driverVersion);
    return written > 0 && (size_t)written < size;
}

/* VkPipelineCacheHeaderVersionOne: the driver checks it too; checking here keeps a foreign or
 * truncated file from ever reaching a driver that trusts it. */
static bool header_matches(const tw_vk_context *vk, const uint8_t *data, size_t size) {
    if (size < 16 + VK_UUID_SIZE) return false;
    uint32_t words[4];
    memcpy(words, data, sizeof words);
    return words[0] >= 16 + VK_UUID_SIZE && words[0] <= size &&
           words[1] == VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
           words[2] == vk->properties.vendorID && words[3] == vk->properties.deviceID &&
           memcmp(data + 16, vk->properties.pipelineCacheUUID, VK_UUID_SIZE) == 0;
}

static uint8_t *read_file(const char *path, size_t *size) {
    *size = 0;
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    uint8_t *data = NULL;
    if (fseek(file, 0, SEEK_END) == 0) {
        long length = ftell(file);
        if (length > 0 && fseek(file, 0, SEEK_SET) == 0 && (data = malloc((size_t)length))) {
            if (fread(data, 1, (size_t)length, file) == (size_t)length) *size = (size_t)length;
            else {
                free(data);
                data = NULL;
            }
        }
    }
    fclose(file);
    return data;
}

static VkResult create_cache(tw_vk_context *vk, const void *data, size_t size) {
    VkPipelineCacheCreateInfo info = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                      .initialDataSize = size,
                                      .pInitialData = data};
    return vkCreatePipelineCache(vk->dev, &info, NULL, &vk->pipeline_cache);
}

/* Never fails: without a cache (no directory, bad file, driver refusal) pipelines are built
 * from scratch. */
void tw_vk_pipeline_cache_open(tw_vk_context *vk) {
    if (!cache_path(vk, vk->pipeline_cache_path, sizeof vk->pipeline_cache_path))
        vk->pipeline_cache_path[0] = '\0';
    size_t size = 0;
    uint8_t *data = vk->pipeline_cache_path[0] ? read_file(vk->pipeline_cache_path, &size) : NULL;
    if (data && !header_matches(vk, data, size)) size = 0;
    if (create_cache(vk, size ? data : NULL, size) != VK_SUCCESS && size)
        (void)create_cache(vk, NULL, 0); /* the driver rejected the file's contents */
    free(data);
    if (vk->pipeline_cache) vkGetPipelineCacheData(vk->dev, vk->pipeline_cache, &size, NULL);
    vk->pipeline_cache_loaded_bytes = size;
}

/* Written to a temporary file then renamed, so a concurrent reader never sees half a file. */
static void pipeline_cache_save(tw_vk_context *vk) {
    if (!vk->pipeline_cache || !vk->pipeline_cache_path[0]) return;
    size_t size = 0;
    if (vkGetPipelineCacheData(vk->dev, vk->pipeline_cache, &size, NULL) != VK_SUCCESS ||
        size == 0 || size == vk->pipeline_cache_loaded_bytes)
        return;
    uint8_t *data = malloc(size);
    if (!data) return;
    if (vkGetPipelineCacheData(vk->dev, vk->pipeline_cache, &size, data) == VK_SUCCESS) {
        char dir[sizeof vk->pipeline_cache_path], tmp[sizeof vk->pipeline_cache_path + 32];
        snprintf(dir, sizeof dir, "%s", vk->pipeline_cache_path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", vk->pipeline_cache_path, (long)getpid());
        FILE *file = tw_make_dirs(dir) ? fopen(tmp, "wb") : NULL;
        if (file) {
            bool ok = fwrite(data, 1, size, file) == size;
            ok = fclose(file) == 0 && ok;
            if (!ok || rename(tmp, vk->pipeline_cache_path) != 0) remove(tmp);
        }
    }
    free(data);
}

/* ------------------------------------------------------------------------------------------------
 * Pipelines
 * ---------------------------------------------------------------------------------------------- */

static const tw_vk_shader_blob *find_shader(const char *name) {
    for (const tw_vk_shader_blob *s = tw_vk_shaders; s->name; s++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

static tw_vk_kernel *find_kernel(tw_vk_context *vk, const char *name, int buffer_count,
                                 uint32_t texel_mask, uint32_t push_bytes, const uint32_t *spec,
                                 int spec_count) {
    for (tw_vk_kernel *k = vk->kernels; k; k = k->next)
        if (k->buffer_count == buffer_count && k->texel_mask == texel_mask &&
            k->push_bytes == push_bytes &&
            k->spec_count == spec_count && strcmp(k->name, name) == 0 &&
            (spec_count == 0 || memcmp(k->spec, spec, (size_t)spec_count * sizeof *spec) == 0))
            return k;
    return NULL;
}

static void kernel_destroy(tw_vk_context *vk, tw_vk_kernel *k) {
    if (k->pipeline) vkDestroyPipeline(vk->dev, k->pipeline, NULL);
    if (k->layout) vkDestroyPipelineLayout(vk->dev, k->layout, NULL);
    if (k->set_layout) vkDestroyDescriptorSetLayout(vk->dev, k->set_layout, NULL);
    free(k);
}

static tw_status create_layouts(tw_vk_context *vk, tw_vk_kernel *k) {
    VkDescriptorSetLayoutBinding bindings[TW_VK_MAX_BINDINGS];
    for (int i = 0; i < k->buffer_count; i++)
        bindings[i] = (VkDescriptorSetLayoutBinding){
            .binding = (uint32_t)i,
            .descriptorType = (k->texel_mask >> i) & 1u ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                        : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo set = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .flags = vk->push_descriptors ? VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR : 0,
        .bindingCount = (uint32_t)k->buffer_count,
        .pBindings = bindings};
    VkResult result = vkCreateDescriptorSetLayout(vk->dev, &set, NULL, &k->set_layout);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateDescriptorSetLayout");
    VkPushConstantRange push = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
                                .size = k->push_bytes};
    VkPipelineLayoutCreateInfo layout = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                         .setLayoutCount = 1,
                                         .pSetLayouts = &k->set_layout,
                                         .pushConstantRangeCount = k->push_bytes ? 1 : 0,
                                         .pPushConstantRanges = &push};
    result = vkCreatePipelineLayout(vk->dev, &layout, NULL, &k->layout);
    return result == VK_SUCCESS ? TW_OK : tw_vk_fail(result, "vkCreatePipelineLayout");
}

/* SPIR-V must be 4-byte aligned for vkCreateShaderModule; the embedded array is bytes. */
static tw_status create_module(tw_vk_context *vk, const tw_vk_shader_blob *blob,
                               VkShaderModule *module) {
    size_t size = *blob->size;
    uint32_t *words = malloc(size ? size : 4);
    if (!words) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    memcpy(words, blob->bytes, size);
    VkShaderModuleCreateInfo info = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                     .codeSize = size,
                                     .pCode = words};
    VkResult result = vkCreateShaderModule(vk->dev, &info, NULL, module);
    free(words);
    return result == VK_SUCCESS ? TW_OK : tw_vk_fail(result, "vkCreateShaderModule");
}

static bool pipeline_log(void) {
    const char *log = getenv("TWIST_VK_PIPELINE_LOG");
    return log && *log && strcmp(log, "0") != 0;
}

static tw_status create_pipeline(tw_vk_context *vk, const tw_vk_shader_blob *blob,
                                 tw_vk_kernel *k) {
    VkShaderModule module;
    TW_TRY(create_module(vk, blob, &module));
    VkSpecializationMapEntry entries[TW_VK_MAX_SPEC];
    for (int i = 0; i < k->spec_count; i++)
        entries[i] = (VkSpecializationMapEntry){(uint32_t)i, (uint32_t)(i * sizeof(uint32_t)),
                                                sizeof(uint32_t)};
    VkSpecializationInfo spec = {.mapEntryCount = (uint32_t)k->spec_count,
                                 .pMapEntries = entries,
                                 .dataSize = (size_t)k->spec_count * sizeof(uint32_t),
                                 .pData = k->spec};
    VkComputePipelineCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = module,
                  .pName = "main",
                  .pSpecializationInfo = k->spec_count ? &spec : NULL},
        .layout = k->layout};
    const double start = tw_now_seconds();
    VkResult result =
        vkCreateComputePipelines(vk->dev, vk->pipeline_cache, 1, &info, NULL, &k->pipeline);
    const double seconds = tw_now_seconds() - start;
    vkDestroyShaderModule(vk->dev, module, NULL);
    vk->pipelines_built++;
    vk->pipeline_seconds += seconds;
    if (pipeline_log()) {
        char constants[TW_VK_MAX_SPEC * 12 + 1] = "";
        for (int i = 0; i < k->spec_count; i++)
            snprintf(constants + strlen(constants), sizeof constants - strlen(constants), "%s%u",
                     i ? "," : "", k->spec[i]);
        fprintf(stderr, "twist: vulkan:%d pipeline %s [%s] built in %.1f ms\n", vk->index,
                k->name, constants, seconds * 1e3);
    }
    if (result != VK_SUCCESS) {
        k->pipeline = VK_NULL_HANDLE;
        return tw_vk_fail(result, "vkCreateComputePipelines");
    }
    return TW_OK;
}

static tw_status check_request(const tw_vk_context *vk, const char *shader, int buffer_count,
                               uint32_t push_bytes, int spec_count) {
    if (strlen(shader) >= TW_VK_NAME_CHARS || buffer_count < 0 ||
        buffer_count > TW_VK_MAX_BINDINGS || spec_count < 0 || spec_count > TW_VK_MAX_SPEC)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "vulkan: shader '%s' asked for %d buffers and %d constants (at most %d "
                        "and %d)", shader, buffer_count, spec_count, TW_VK_MAX_BINDINGS,
                        TW_VK_MAX_SPEC);
    if (push_bytes > vk->properties.limits.maxPushConstantsSize || push_bytes % 4)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: shader '%s' wants %u bytes of push constants; the device allows "
                        "%u (maxPushConstantsSize), in multiples of 4", shader, push_bytes,
                        vk->properties.limits.maxPushConstantsSize);
    return TW_OK;
}

tw_status tw_vk_kernel_get(tw_vk_context *vk, const char *shader, int buffer_count,
                           uint32_t push_bytes, const uint32_t *spec, int spec_count,
                           tw_vk_kernel **out) {
    return tw_vk_kernel_get_texel(vk, shader, buffer_count, 0, push_bytes, spec, spec_count, out);
}

tw_status tw_vk_kernel_get_texel(tw_vk_context *vk, const char *shader, int buffer_count,
                                 uint32_t texel_mask, uint32_t push_bytes, const uint32_t *spec,
                                 int spec_count, tw_vk_kernel **out) {
    *out = find_kernel(vk, shader, buffer_count, texel_mask, push_bytes, spec, spec_count);
    if (*out) return TW_OK;
    TW_TRY(check_request(vk, shader, buffer_count, push_bytes, spec_count));
    if (texel_mask && !vk->limits.texel_buffers)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan:%d: shader '%s' needs uniform texel buffers of RGBA32F, which "
                        "this device lacks", vk->index, shader);
    const tw_vk_shader_blob *blob = find_shader(shader);
    if (!blob)
        return tw_error(TW_ERR_NOT_FOUND, "vulkan: no embedded shader '%s' (shaders/%s.comp)",
                        shader, shader);
    tw_vk_kernel *k = calloc(1, sizeof *k);
    if (!k) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    snprintf(k->name, sizeof k->name, "%s", shader);
    if (spec_count) memcpy(k->spec, spec, (size_t)spec_count * sizeof *spec);
    k->spec_count = spec_count;
    k->buffer_count = buffer_count;
    k->texel_mask = texel_mask;
    k->push_bytes = push_bytes;
    tw_status status = create_layouts(vk, k);
    if (status == TW_OK) status = create_pipeline(vk, blob, k);
    if (status == TW_OK) status = tw_vk_check_validation(vk);
    if (status != TW_OK) {
        kernel_destroy(vk, k);
        return status;
    }
    k->next = vk->kernels;
    vk->kernels = k;
    *out = k;
    return TW_OK;
}

void tw_vk_pipelines_release(tw_vk_context *vk) {
    if (pipeline_log())
        fprintf(stderr, "twist: vulkan:%d built %d pipelines in %.2f s\n", vk->index,
                vk->pipelines_built, vk->pipeline_seconds);
    while (vk->kernels) {
        tw_vk_kernel *next = vk->kernels->next;
        kernel_destroy(vk, vk->kernels);
        vk->kernels = next;
    }
    pipeline_cache_save(vk);
    if (vk->pipeline_cache) vkDestroyPipelineCache(vk->dev, vk->pipeline_cache, NULL);
    vk->pipeline_cache = VK_NULL_HANDLE;
}
