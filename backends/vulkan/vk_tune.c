/* twist Vulkan backend: kernel variants and tuning (the vtable's optional `variants`,
 * `force_variant` and `tune` entries), dispatched by op name to the op files: "gemm" to
 * vk_gemm.c, "attention_fwd" / "attention_bwd" to vk_attention.c (whose classes are measured on
 * their first forward call, not by `tune`). The device's tuning cache (tw_tune_cache, shared with every op) lives here.
 *
 * Cache identity: the device name, PCI vendor and device ids and pipelineCacheUUID (the driver's
 * own notion of "same compiled code"); the driver check is the driverVersion. A cache for another
 * driver, or a damaged file, is ignored with a note by tw_tune_cache and rebuilt as classes are
 * timed again. */
#include <stdio.h>
#include <string.h>

#include "vk_host.h"
#include "vk_ops.h"

tw_tune_cache *tw_vk_tune_cache(tw_vk_context *vk) {
    tw_vk_op_settings *settings = tw_vk_op_settings_of(vk);
    if (settings->tune_cache_opened) return settings->tune_cache;
    settings->tune_cache_opened = true;
    const VkPhysicalDeviceProperties *p = &vk->properties;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; i++)
        snprintf(uuid + 2 * i, 3, "%02x", p->pipelineCacheUUID[i]);
    char identity[512], driver[64];
    snprintf(identity, sizeof identity, "%s vendor=%04x device=%04x uuid=%s", p->deviceName,
             p->vendorID, p->deviceID, uuid);
    snprintf(driver, sizeof driver, "%08x", p->driverVersion);
    settings->tune_cache = tw_tune_cache_open("vulkan", identity, driver);
    return settings->tune_cache;
}

void tw_vk_tune_release(tw_vk_context *vk) {
    tw_vk_op_settings *settings = tw_vk_op_settings_of(vk);
    tw_tune_cache_close(settings->tune_cache);
    settings->tune_cache = NULL;
    settings->tune_cache_opened = false;
}

int tw_vk_variants(void *context, const char *op, const char **names, int capacity) {
    tw_vk_context *vk = context;
    if (strcmp(op, "gemm") == 0) return tw_vk_gemm_variants(vk, names, capacity);
    if (strncmp(op, "attention_", 10) == 0)
        return tw_vk_attention_variants(vk, op, names, capacity);
    return 0;
}

tw_status tw_vk_force_variant(void *context, const char *op, const char *name) {
    tw_vk_context *vk = context;
    if (strcmp(op, "gemm") == 0) return tw_vk_gemm_force(vk, name);
    if (strncmp(op, "attention_", 10) == 0) return tw_vk_attention_force_variant(vk, op, name);
    if (!name) return TW_OK;
    return tw_error(TW_ERR_NOT_FOUND, "vulkan:%d has a single %s kernel: no variant \"%s\"",
                    vk->index, op, name);
}

tw_status tw_vk_tune(void *context, const tw_tune_request *request) {
    tw_vk_context *vk = context;
    if (request->retune) tw_tune_cache_clear(tw_vk_tune_cache(vk));
    const int total = tw_vk_gemm_tune_count(vk);
    int done = 0;
    TW_TRY(tw_vk_gemm_tune(vk, request, &done, total));
    return TW_OK;
}
