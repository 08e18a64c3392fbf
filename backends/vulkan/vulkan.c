/* twist Vulkan backend: instance, device enumeration and open/close, validation, the vtable.
 *
 * Enumeration order: vkEnumeratePhysicalDevices of an instance without layers; vulkan:N is the
 * N-th, CPU-type devices (lavapipe) included. No ICD (vkCreateInstance fails) means 0 devices.
 * The library links the loader (libvulkan.so.1), which every Mesa install brings.
 *
 * Each opened device gets its own instance (so TWIST_VK_VALIDATION=1 applies to it alone, with
 * its own messenger), one logical device and one compute queue. Shaders are SPIR-V 1.5
 * (glslc --target-env=vulkan1.2), so a device below Vulkan 1.2 is listed but refuses to open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_host.h"
#include "vk_ops.h"

/* ------------------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------------------- */

const char *tw_vk_result_name(VkResult result) {
    switch (result) {
#define TW_VK_NAME(code) \
    case code: return #code;
        TW_VK_NAME(VK_SUCCESS)
        TW_VK_NAME(VK_NOT_READY)
        TW_VK_NAME(VK_TIMEOUT)
        TW_VK_NAME(VK_INCOMPLETE)
        TW_VK_NAME(VK_ERROR_OUT_OF_HOST_MEMORY)
        TW_VK_NAME(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        TW_VK_NAME(VK_ERROR_INITIALIZATION_FAILED)
        TW_VK_NAME(VK_ERROR_DEVICE_LOST)
        TW_VK_NAME(VK_ERROR_MEMORY_MAP_FAILED)
        TW_VK_NAME(VK_ERROR_LAYER_NOT_PRESENT)
        TW_VK_NAME(VK_ERROR_EXTENSION_NOT_PRESENT)
        TW_VK_NAME(VK_ERROR_FEATURE_NOT_PRESENT)
        TW_VK_NAME(VK_ERROR_INCOMPATIBLE_DRIVER)
        TW_VK_NAME(VK_ERROR_TOO_MANY_OBJECTS)
        TW_VK_NAME(VK_ERROR_FORMAT_NOT_SUPPORTED)
        TW_VK_NAME(VK_ERROR_FRAGMENTED_POOL)
        TW_VK_NAME(VK_ERROR_UNKNOWN)
        TW_VK_NAME(VK_ERROR_OUT_OF_POOL_MEMORY)
        TW_VK_NAME(VK_ERROR_INVALID_EXTERNAL_HANDLE)
        TW_VK_NAME(VK_ERROR_FRAGMENTATION)
        TW_VK_NAME(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
        TW_VK_NAME(VK_ERROR_INVALID_SHADER_NV)
#undef TW_VK_NAME
    default: return "unknown VkResult";
    }
}

tw_status tw_vk_fail(VkResult result, const char *call) {
    const bool memory = result == VK_ERROR_OUT_OF_HOST_MEMORY ||
                        result == VK_ERROR_OUT_OF_DEVICE_MEMORY ||
                        result == VK_ERROR_OUT_OF_POOL_MEMORY;
    return tw_error(memory ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND, "vulkan: %s failed: %s (%d)",
                    call, tw_vk_result_name(result), (int)result);
}

tw_status tw_vk_check_validation(tw_vk_context *vk) {
    if (!vk->validation_error[0]) return TW_OK;
    tw_status status = tw_error(TW_ERR_BACKEND, "vulkan: validation error: %s",
                                vk->validation_error);
    vk->validation_error[0] = '\0';
    return status;
}

/* Keeps the first error-severity message until an entry point reports it. */
static VKAPI_ATTR VkBool32 VKAPI_CALL
validation_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                    VkDebugUtilsMessageTypeFlagsEXT types,
                    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)types;
    tw_vk_context *vk = user;
    if ((severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) && !vk->validation_error[0])
        snprintf(vk->validation_error, sizeof vk->validation_error, "%s",
                 data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

/* ------------------------------------------------------------------------------------------------
 * Instance
 * ---------------------------------------------------------------------------------------------- */

static const char *const VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation";

static bool validation_requested(void) {
    const char *value = getenv("TWIST_VK_VALIDATION");
    return value && strcmp(value, "1") == 0;
}

static bool layer_present(const char *name) {
    uint32_t count = 0;
    if (vkEnumerateInstanceLayerProperties(&count, NULL) != VK_SUCCESS || count == 0) return false;
    VkLayerProperties *layers = calloc(count, sizeof *layers);
    if (!layers) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&count, layers) == VK_SUCCESS)
        for (uint32_t i = 0; i < count && !found; i++)
            found = strcmp(layers[i].layerName, name) == 0;
    free(layers);
    return found;
}

/* Vulkan 1.2 where the loader has it, else what it has (1.1 or 1.0). */
static uint32_t instance_version(void) {
    uint32_t version = VK_API_VERSION_1_0;
    PFN_vkEnumerateInstanceVersion query =
        (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    if (query && query(&version) != VK_SUCCESS) version = VK_API_VERSION_1_0;
    return version < VK_API_VERSION_1_2 ? version : VK_API_VERSION_1_2;
}

/* With `vk` non-NULL the instance gets the validation layer and a messenger writing into it. */
static VkResult create_instance(tw_vk_context *vk, uint32_t *api, VkInstance *out) {
    *api = instance_version();
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "twist",
                             .pEngineName = "twist",
                             .apiVersion = *api};
    VkInstanceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                 .pApplicationInfo = &app};
    const char *extensions[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkDebugUtilsMessengerCreateInfoEXT messenger = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT,
        .pfnUserCallback = validation_callback,
        .pUserData = vk};
    if (vk && vk->validation) {
        info.enabledLayerCount = 1;
        info.ppEnabledLayerNames = &VALIDATION_LAYER;
        info.enabledExtensionCount = 1;
        info.ppEnabledExtensionNames = extensions;
        info.pNext = &messenger; /* also covers vkCreateInstance / vkDestroyInstance */
    }
    VkResult result = vkCreateInstance(&info, NULL, out);
    if (result != VK_SUCCESS || !vk || !vk->validation) return result;
    PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
        vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
    if (!create) return VK_ERROR_EXTENSION_NOT_PRESENT;
    return create(*out, &messenger, NULL, &vk->messenger);
}

/* The physical devices of `instance` in enumeration order; caller frees. */
static VkPhysicalDevice *physical_devices(VkInstance instance, uint32_t *count) {
    *count = 0;
    if (vkEnumeratePhysicalDevices(instance, count, NULL) != VK_SUCCESS || *count == 0)
        return NULL;
    VkPhysicalDevice *devices = calloc(*count, sizeof *devices);
    if (devices && vkEnumeratePhysicalDevices(instance, count, devices) < 0) {
        free(devices);
        devices = NULL;
    }
    if (!devices) *count = 0;
    return devices;
}

/* ------------------------------------------------------------------------------------------------
 * Device info
 * ---------------------------------------------------------------------------------------------- */

static const char *vendor_name(uint32_t id) {
    switch (id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x106B: return "Apple";
    case VK_VENDOR_ID_MESA: return "Mesa";
    default: return NULL;
    }
}

static tw_device_type device_type(VkPhysicalDeviceType type) {
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return TW_DEVICE_TYPE_CPU;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return TW_DEVICE_TYPE_GPU;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return TW_DEVICE_TYPE_INTEGRATED_GPU;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return TW_DEVICE_TYPE_GPU;
    default: return TW_DEVICE_TYPE_OTHER;
    }
}

/* "<driverName> <driverInfo>" from VkPhysicalDeviceDriverProperties (Vulkan 1.2), else the
 * packed driverVersion decoded the way the vendor packs it. */
static void driver_string(VkPhysicalDevice physical, const VkPhysicalDeviceProperties *p,
                          char *out, size_t size) {
    if (p->apiVersion >= VK_API_VERSION_1_2) {
        VkPhysicalDeviceDriverProperties driver = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &driver};
        vkGetPhysicalDeviceProperties2(physical, &p2);
        if (driver.driverInfo[0]) {
            snprintf(out, size, "%.40s %.80s", driver.driverName, driver.driverInfo);
            return;
        }
    }
    uint32_t v = p->driverVersion;
    if (p->vendorID == 0x10DE) /* NVIDIA: 10.8.8.6 bits */
        snprintf(out, size, "%u.%u.%u", v >> 22, (v >> 14) & 0xFF, (v >> 6) & 0xFF);
    else
        snprintf(out, size, "%u.%u.%u", VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v),
                 VK_API_VERSION_PATCH(v));
}

/* Compute units and peak GFLOP/s stay 0: Vulkan reports neither (a vendor extension such as
 * VK_AMD_shader_core_properties would, on one vendor only). Memory is the largest device-local
 * heap. */
static void fill_info(VkPhysicalDevice physical, tw_device_info *info) {
    memset(info, 0, sizeof *info);
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(physical, &p);
    snprintf(info->name, sizeof info->name, "%s", p.deviceName);
    const char *vendor = vendor_name(p.vendorID);
    if (vendor && p.vendorID == VK_VENDOR_ID_MESA && p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU)
        vendor = "Mesa (llvmpipe)";
    if (vendor) snprintf(info->vendor, sizeof info->vendor, "%s", vendor);
    else snprintf(info->vendor, sizeof info->vendor, "vendor 0x%04x", p.vendorID);
    driver_string(physical, &p, info->driver, sizeof info->driver);
    info->backend = TW_BACKEND_VULKAN;
    info->type = device_type(p.deviceType);
    VkPhysicalDeviceMemoryProperties memory;
    vkGetPhysicalDeviceMemoryProperties(physical, &memory);
    for (uint32_t h = 0; h < memory.memoryHeapCount; h++)
        if ((memory.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            memory.memoryHeaps[h].size > info->memory_bytes)
            info->memory_bytes = memory.memoryHeaps[h].size;
}

static int tw_vk_enumerate(tw_device_info *out, int capacity) {
    VkInstance instance;
    uint32_t api;
    if (create_instance(NULL, &api, &instance) != VK_SUCCESS) return 0; /* no ICD */
    uint32_t count = 0;
    VkPhysicalDevice *devices = physical_devices(instance, &count);
    int listed = (int)count < capacity ? (int)count : capacity;
    for (int i = 0; i < listed; i++) fill_info(devices[i], &out[i]);
    free(devices);
    vkDestroyInstance(instance, NULL);
    return listed;
}

/* ------------------------------------------------------------------------------------------------
 * Open
 * ---------------------------------------------------------------------------------------------- */

static bool has_extension(const VkExtensionProperties *list, uint32_t count, const char *name) {
    for (uint32_t i = 0; i < count; i++)
        if (strcmp(list[i].extensionName, name) == 0) return true;
    return false;
}

/* The first queue family with compute (the universal queue on GPUs: its timestamps and
 * throughput are what every driver optimises). */
static tw_status pick_queue(tw_vk_context *vk) {
    uint32_t count = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(vk->physical, &count, NULL);
    VkQueueFamilyProperties *families = calloc(count ? count : 1, sizeof *families);
    if (!families) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    vkGetPhysicalDeviceQueueFamilyProperties(vk->physical, &count, families);
    bool found = false;
    for (uint32_t i = 0; i < count && !found; i++) {
        if (!(families[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
        found = true;
        vk->queue_family = i;
        uint32_t bits = families[i].timestampValidBits;
        vk->timestamps = bits > 0 && vk->properties.limits.timestampPeriod > 0.0f;
        vk->timestamp_mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
    }
    free(families);
    if (!found)
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan:%d has no compute queue", vk->index);
    return TW_OK;
}

static void read_limits(tw_vk_context *vk) {
    const VkPhysicalDeviceLimits *l = &vk->properties.limits;
    VkPhysicalDeviceSubgroupProperties subgroup = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties maintenance3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &subgroup};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &maintenance3};
    vkGetPhysicalDeviceProperties2(vk->physical, &p2);
    tw_vk_limits *out = &vk->limits;
    out->max_workgroup_size = l->maxComputeWorkGroupInvocations;
    if (out->max_workgroup_size > l->maxComputeWorkGroupSize[0])
        out->max_workgroup_size = l->maxComputeWorkGroupSize[0];
    for (int i = 0; i < 3; i++) out->max_workgroup_count[i] = l->maxComputeWorkGroupCount[i];
    out->shared_memory_bytes = l->maxComputeSharedMemorySize;
    out->subgroup_size = subgroup.subgroupSize;
    out->max_storage_buffer_range = l->maxStorageBufferRange;
    out->is_cpu = vk->properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    vk->max_allocation = maintenance3.maxMemoryAllocationSize;
    vk->buffer_alignment = l->minStorageBufferOffsetAlignment < 16
                               ? 16 : l->minStorageBufferOffsetAlignment;
    /* Uniform texel buffers of RGBA32F (tw_vk_kernel_get_texel): every buffer is then created
     * for that use, and sub-allocated at offsets a view may start at. */
    VkFormatProperties rgba32f;
    vkGetPhysicalDeviceFormatProperties(vk->physical, VK_FORMAT_R32G32B32A32_SFLOAT, &rgba32f);
    out->texel_buffers =
        (rgba32f.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) != 0 &&
        l->minTexelBufferOffsetAlignment <= 256 && l->maxTexelBufferElements > 0;
    out->max_texel_elements = out->texel_buffers ? l->maxTexelBufferElements : 0;
    if (out->texel_buffers && vk->buffer_alignment < l->minTexelBufferOffsetAlignment)
        vk->buffer_alignment = l->minTexelBufferOffsetAlignment;
    vk->timestamp_ns = l->timestampPeriod;
}

/* Optional features the shaders may use, enabled where the device has them: 16-bit storage and
 * arithmetic (fp16 GEMM inputs), the Vulkan memory model. */
static void choose_features(VkPhysicalDevice physical, VkPhysicalDeviceVulkan11Features *f11,
                            VkPhysicalDeviceVulkan12Features *f12, VkPhysicalDeviceFeatures2 *f) {
    VkPhysicalDeviceVulkan12Features have12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features have11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &have12};
    VkPhysicalDeviceFeatures2 have = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                      .pNext = &have11};
    vkGetPhysicalDeviceFeatures2(physical, &have);
    f11->storageBuffer16BitAccess = have11.storageBuffer16BitAccess;
    f12->shaderFloat16 = have12.shaderFloat16;
    f12->vulkanMemoryModel = have12.vulkanMemoryModel;
    f12->vulkanMemoryModelDeviceScope = have12.vulkanMemoryModelDeviceScope;
    f12->storageBuffer8BitAccess = have12.storageBuffer8BitAccess;
    f12->shaderInt8 = have12.shaderInt8;
    f->features.shaderInt64 = have.features.shaderInt64;
    f->features.shaderInt16 = have.features.shaderInt16;
}

static tw_status create_device(tw_vk_context *vk) {
    uint32_t count = 0;
    vkEnumerateDeviceExtensionProperties(vk->physical, NULL, &count, NULL);
    VkExtensionProperties *available = calloc(count ? count : 1, sizeof *available);
    if (!available) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    vkEnumerateDeviceExtensionProperties(vk->physical, NULL, &count, available);
    const char *extensions[4];
    uint32_t extension_count = 0;
    if (has_extension(available, count, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME)) {
        extensions[extension_count++] = VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME;
        vk->push_descriptors = true;
    }
    free(available);

    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
    VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                          .pNext = &f11};
    choose_features(vk->physical, &f11, &f12, &features);
    vk->limits.storage16 = f11.storageBuffer16BitAccess == VK_TRUE;
    const float priority = 1.0f;
    VkDeviceQueueCreateInfo queue = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                     .queueFamilyIndex = vk->queue_family,
                                     .queueCount = 1,
                                     .pQueuePriorities = &priority};
    VkDeviceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                               .pNext = &features,
                               .queueCreateInfoCount = 1,
                               .pQueueCreateInfos = &queue,
                               .enabledExtensionCount = extension_count,
                               .ppEnabledExtensionNames = extensions};
    VkResult result = vkCreateDevice(vk->physical, &info, NULL, &vk->dev);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateDevice");
    vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    if (vk->push_descriptors) {
        vk->push_descriptor_set = (PFN_vkCmdPushDescriptorSetKHR)vkGetDeviceProcAddr(
            vk->dev, "vkCmdPushDescriptorSetKHR");
        vk->push_descriptors = vk->push_descriptor_set != NULL;
    }
    return TW_OK;
}

static tw_status open_instance(tw_vk_context *vk) {
    vk->validation = validation_requested();
    if (vk->validation && !layer_present(VALIDATION_LAYER))
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: TWIST_VK_VALIDATION=1 needs the %s layer, which is not installed "
                        "(package vulkan-validationlayers)", VALIDATION_LAYER);
    VkResult result = create_instance(vk, &vk->api_version, &vk->instance);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateInstance");
    uint32_t count = 0;
    VkPhysicalDevice *devices = physical_devices(vk->instance, &count);
    if ((uint32_t)vk->index < count) vk->physical = devices[vk->index];
    free(devices);
    if (!vk->physical)
        return tw_error(TW_ERR_NOT_FOUND, "vulkan:%d is no longer present", vk->index);
    return TW_OK;
}

static void tw_vk_close(void *context) {
    tw_vk_context *vk = context;
    if (!vk) return;
    if (vk->dev) {
        tw_vk_finish(vk);
        tw_vk_attention_release(vk);
        tw_vk_tune_release(vk);
        tw_vk_pipelines_release(vk);
        tw_vk_submit_release(vk);
        tw_vk_memory_release(vk);
        vkDestroyDevice(vk->dev, NULL);
    }
    if (vk->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(vk->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(vk->instance, vk->messenger, NULL);
    }
    if (vk->instance) vkDestroyInstance(vk->instance, NULL);
    free(vk);
}

static tw_status open_steps(tw_vk_context *vk) {
    TW_TRY(open_instance(vk));
    vkGetPhysicalDeviceProperties(vk->physical, &vk->properties);
    if (vk->properties.apiVersion < VK_API_VERSION_1_2 || vk->api_version < VK_API_VERSION_1_2)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan:%d (%s) offers Vulkan %u.%u; twist's shaders need Vulkan 1.2",
                        vk->index, vk->properties.deviceName,
                        VK_API_VERSION_MAJOR(vk->properties.apiVersion),
                        VK_API_VERSION_MINOR(vk->properties.apiVersion));
    vkGetPhysicalDeviceMemoryProperties(vk->physical, &vk->memory);
    read_limits(vk);
    TW_TRY(pick_queue(vk));
    TW_TRY(create_device(vk));
    TW_TRY(tw_vk_memory_init(vk));
    TW_TRY(tw_vk_submit_init(vk));
    tw_vk_pipeline_cache_open(vk);
    return tw_vk_check_validation(vk);
}

static tw_status tw_vk_open(int index, tw_device *device, void **context) {
    *context = NULL;
    tw_vk_context *vk = calloc(1, sizeof *vk);
    if (!vk) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    vk->device = device;
    vk->index = index;
    vk->current = -1;
    tw_status status = open_steps(vk);
    if (status != TW_OK) {
        tw_vk_close(vk);
        return status;
    }
    *context = vk;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Op-facing accessors (vk_internal.h)
 * ---------------------------------------------------------------------------------------------- */

tw_device *tw_vk_device(tw_vk_context *vk) { return vk->device; }

const tw_vk_limits *tw_vk_get_limits(const tw_vk_context *vk) { return &vk->limits; }

tw_vk_op_settings *tw_vk_op_settings_of(tw_vk_context *vk) { return &vk->op_settings; }

/* ------------------------------------------------------------------------------------------------
 * Vtable
 * ---------------------------------------------------------------------------------------------- */

/* Free memory from VK_EXT_memory_budget: the largest device-local heap's budget less its usage
 * (both for this process, as the driver estimates them). Without the extension (or Vulkan 1.1
 * for vkGetPhysicalDeviceMemoryProperties2) TW_ERR_UNSUPPORTED: the front end then takes the
 * heap size less what twist allocated. */
static tw_status tw_vk_free_memory(int index, uint64_t *free_bytes) {
    VkInstance instance;
    uint32_t api = 0;
    if (create_instance(NULL, &api, &instance) != VK_SUCCESS)
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan: no instance");
    uint32_t count = 0;
    VkPhysicalDevice *devices = physical_devices(instance, &count);
    tw_status status = tw_error(TW_ERR_UNSUPPORTED, "vulkan: no VK_EXT_memory_budget");
    if (devices && (uint32_t)index < count && api >= VK_API_VERSION_1_1) {
        VkPhysicalDevice physical = devices[index];
        uint32_t extensions = 0;
        vkEnumerateDeviceExtensionProperties(physical, NULL, &extensions, NULL);
        VkExtensionProperties *list = calloc(extensions ? extensions : 1, sizeof *list);
        if (list && vkEnumerateDeviceExtensionProperties(physical, NULL, &extensions, list) ==
                        VK_SUCCESS &&
            has_extension(list, extensions, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
            VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
                .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
            VkPhysicalDeviceMemoryProperties2 memory = {
                .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                .pNext = &budget};
            vkGetPhysicalDeviceMemoryProperties2(physical, &memory);
            uint64_t best = 0, best_size = 0;
            for (uint32_t h = 0; h < memory.memoryProperties.memoryHeapCount; h++) {
                const VkMemoryHeap *heap = &memory.memoryProperties.memoryHeaps[h];
                if (!(heap->flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) || heap->size <= best_size)
                    continue;
                best_size = heap->size;
                best = budget.heapBudget[h] > budget.heapUsage[h]
                           ? budget.heapBudget[h] - budget.heapUsage[h] : 0;
            }
            if (best_size > 0) {
                *free_bytes = best;
                status = TW_OK;
            }
        }
        free(list);
    }
    free(devices);
    vkDestroyInstance(instance, NULL);
    return status;
}

/* Later designated initialisers override the op list's .gemm and .attention_* (below), on
 * purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const tw_backend_vtable vk_vtable = {
    .kind = TW_BACKEND_VULKAN,
    TW_BACKEND_DEVICE_INITIALISERS(tw_vk) /* tw_vk_enumerate, tw_vk_open, ... */
    TW_BACKEND_OP_INITIALISERS(tw_vk) /* every op, from the list in twist/backend_support.h */
    .set_gemm_impl = tw_vk_set_gemm_impl,
    .free_memory = tw_vk_free_memory,
    .variants = tw_vk_variants,
    .force_variant = tw_vk_force_variant,
    .tune = tw_vk_tune,
    .supports_dtype = tw_vk_supports_dtype,
    .convert = tw_vk_convert,
    /* f16/bf16 in vk_gpu16.c, fp32 passed on to tw_vk_gemm / tw_vk_attention_*: */
    .gemm = tw_vk_gemm_typed,
    .attention_fwd = tw_vk_attention_fwd_typed,
    .attention_bwd = tw_vk_attention_bwd_typed,
};
#pragma GCC diagnostic pop

const tw_backend_vtable *tw_vulkan_backend(void) { return &vk_vtable; }
