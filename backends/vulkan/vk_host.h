/* twist Vulkan backend: what the host-code files (vulkan.c, vk_memory.c, vk_submit.c,
 * vk_pipeline.c) share. Op files use vk_internal.h only.
 *
 * Model: one instance and one logical device per opened tw_device (so TWIST_VK_VALIDATION and
 * its messenger are per context), one compute queue. Commands are recorded into the current
 * "frame" (a command buffer plus its fence and, without push descriptors, a descriptor pool);
 * a frame is submitted at sync, download, event record, or when it holds TW_VK_BATCH commands,
 * and up to TW_VK_FRAMES frames are in flight. Every submission has a serial; work that must
 * outlive the commands using it (staging ranges, freed buffer ranges) is released once the
 * serial it was tagged with has completed. */
#ifndef TW_VK_HOST_H
#define TW_VK_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vk_internal.h"

enum {
    TW_VK_FRAMES = 4,        /* command buffers in flight at once */
    TW_VK_BATCH = 256,       /* commands per command buffer before it is submitted */
    TW_VK_POOL_SETS = 512,   /* descriptor sets per frame without push descriptors */
    TW_VK_MAX_BINDINGS = 16, /* storage buffers one kernel may bind */
    TW_VK_ERROR_CHARS = 1024
};

/* ---- memory (vk_memory.c) ------------------------------------------------------------------ */

typedef struct tw_vk_range {
    VkDeviceSize offset, size;
} tw_vk_range;

/* One VkDeviceMemory with one VkBuffer over all of it; tw_buffers are ranges of it. */
typedef struct tw_vk_block {
    VkDeviceMemory memory;
    VkBuffer buffer;
    VkDeviceSize size;
    uint8_t *mapped;     /* persistent mapping when host-visible and coherent, else NULL */
    tw_vk_range *free;   /* free ranges, sorted by offset, coalesced */
    int free_count, free_capacity;
    VkDeviceSize used;   /* bytes handed out */
    bool dedicated;      /* a single oversized request: freed with its only range */
    struct tw_vk_block *next;
} tw_vk_block;

/* A pool of blocks of one memory type: device buffers, or host-visible staging. */
typedef struct tw_vk_pool {
    uint32_t memory_type;
    bool host_visible; /* mapped (HOST_VISIBLE | HOST_COHERENT) */
    VkBufferUsageFlags usage;
    tw_vk_block *blocks;
} tw_vk_pool;

/* The handle of a tw_buffer (and of a staging range). */
typedef struct tw_vk_alloc {
    tw_vk_pool *pool;
    tw_vk_block *block;
    VkDeviceSize offset, size; /* size as allocated (rounded up) */
    VkDeviceSize bytes;        /* as requested */
} tw_vk_alloc;

/* A range waiting for the submission `serial` to complete before it returns to its block. */
typedef struct tw_vk_deferred {
    tw_vk_alloc *alloc;
    uint64_t serial;
} tw_vk_deferred;

/* ---- pipelines (vk_pipeline.c) ------------------------------------------------------------- */

enum { TW_VK_MAX_SPEC = 16, TW_VK_NAME_CHARS = 64 };

struct tw_vk_kernel {
    char name[TW_VK_NAME_CHARS];
    uint32_t spec[TW_VK_MAX_SPEC];
    int spec_count, buffer_count;
    uint32_t texel_mask; /* bindings that are uniform texel buffers */
    uint32_t push_bytes;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    struct tw_vk_kernel *next;
};

/* ---- submission (vk_submit.c) -------------------------------------------------------------- */

typedef struct tw_vk_frame {
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool descriptors; /* VK_NULL_HANDLE with push descriptors */
    uint64_t serial;              /* of its submission; 0 while recording or idle */
    bool recording;
    int commands;
    VkBufferView *views; /* texel-buffer views its commands use, destroyed once it completes */
    int view_count, view_capacity;
} tw_vk_frame;

/* An event: a one-query timestamp pool, or host time where the queue has no timestamps. */
typedef struct tw_vk_event {
    VkQueryPool pool;
    uint64_t serial; /* submission that wrote it; 0 before the first record */
    double host_ms;  /* fallback time */
} tw_vk_event;

/* ---- the context --------------------------------------------------------------------------- */

struct tw_vk_context {
    tw_device *device;
    int index;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice physical;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    uint32_t api_version;
    VkPhysicalDeviceProperties properties;
    VkPhysicalDeviceMemoryProperties memory;
    tw_vk_limits limits;
    VkDeviceSize max_allocation;   /* maxMemoryAllocationSize */
    VkDeviceSize buffer_alignment; /* minStorageBufferOffsetAlignment, at least 16 */
    bool push_descriptors;         /* VK_KHR_push_descriptor enabled */
    PFN_vkCmdPushDescriptorSetKHR push_descriptor_set;
    bool timestamps;               /* queue family has timestampValidBits */
    double timestamp_ns;           /* timestampPeriod */
    uint64_t timestamp_mask;

    /* Validation (TWIST_VK_VALIDATION=1): the first error message not yet reported. */
    bool validation;
    char validation_error[TW_VK_ERROR_CHARS];

    tw_vk_pool device_pool, staging_pool;
    tw_vk_deferred *deferred;
    int deferred_count, deferred_capacity;

    VkCommandPool command_pool;
    tw_vk_frame frames[TW_VK_FRAMES];
    int current;                /* the frame being recorded, or -1 */
    uint64_t next_serial;       /* serial the next submission gets */
    uint64_t completed_serial;  /* every submission up to this one has finished */

    VkPipelineCache pipeline_cache;
    char pipeline_cache_path[1024];
    size_t pipeline_cache_loaded_bytes; /* saved at close only when it grew */
    tw_vk_kernel *kernels;
    int pipelines_built;       /* vkCreateComputePipelines calls, for TWIST_VK_PIPELINE_LOG */
    double pipeline_seconds;   /* and the time they took */

    tw_vk_op_settings op_settings; /* the op files' own (vk_internal.h); zero at open */
};

/* vulkan.c */
const char *tw_vk_result_name(VkResult result);
/* tw_error for a failed call: TW_ERR_OUT_OF_MEMORY for the out-of-memory results, else
 * TW_ERR_BACKEND; "vulkan: <call> failed: <name> (<code>)". */
tw_status tw_vk_fail(VkResult result, const char *call);
/* TW_ERR_BACKEND with the pending validation message, if any (and clears it). */
tw_status tw_vk_check_validation(tw_vk_context *vk);

/* vk_memory.c */
tw_status tw_vk_memory_init(tw_vk_context *vk);
void tw_vk_memory_release(tw_vk_context *vk);
tw_status tw_vk_alloc_range(tw_vk_context *vk, tw_vk_pool *pool, VkDeviceSize bytes,
                            tw_vk_alloc **out);
/* Returns the range now when no submitted or recorded command can still use it, else later. */
tw_status tw_vk_free_range(tw_vk_context *vk, tw_vk_alloc *alloc);
/* Returns the deferred ranges whose serial has completed. */
void tw_vk_release_completed(tw_vk_context *vk);
tw_status tw_vk_buffer_alloc(void *context, size_t bytes, void **handle);
void tw_vk_buffer_free(void *context, void *handle);
tw_status tw_vk_upload(void *context, void *handle, size_t offset, const void *src, size_t bytes);
tw_status tw_vk_download(void *context, void *handle, size_t offset, void *dst, size_t bytes);
tw_status tw_vk_copy(void *context, void *dst, size_t dst_offset, void *src, size_t src_offset,
                     size_t bytes);
tw_status tw_vk_fill_f32(void *context, void *handle, size_t offset, size_t count, float value);

/* vk_submit.c */
tw_status tw_vk_submit_init(tw_vk_context *vk);
void tw_vk_submit_release(tw_vk_context *vk);
/* The command buffer being recorded, after a barrier that orders it after every earlier
 * command (compute or transfer, reads and writes). Counts toward the batch. */
tw_status tw_vk_begin_command(tw_vk_context *vk, VkCommandBuffer *cmd);
/* Submits what is recorded (if anything); does not wait. */
tw_status tw_vk_flush(tw_vk_context *vk);
/* Waits until submission `serial` has finished (flushing first if it is being recorded). */
tw_status tw_vk_wait_serial(tw_vk_context *vk, uint64_t serial);
/* Updates completed_serial from the fences, without waiting. */
void tw_vk_poll(tw_vk_context *vk);
/* Flushes and waits for everything. */
tw_status tw_vk_finish(tw_vk_context *vk);
/* Serial of the last command that was recorded or submitted (0: nothing ever), i.e. what
 * a range in use now must wait for. */
uint64_t tw_vk_pending_serial(const tw_vk_context *vk);
tw_status tw_vk_sync(void *context);
tw_status tw_vk_event_create(void *context, void **handle);
void tw_vk_event_destroy(void *context, void *handle);
tw_status tw_vk_event_record(void *context, void *handle);
tw_status tw_vk_event_elapsed_ms(void *context, void *start, void *end, double *ms);

/* vk_pipeline.c */
void tw_vk_pipeline_cache_open(tw_vk_context *vk);
void tw_vk_pipelines_release(tw_vk_context *vk);

#endif
