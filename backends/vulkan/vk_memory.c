/* twist Vulkan backend: device memory, buffers, upload and download.
 *
 * Sub-allocator: memory comes in blocks of TW_VK_BLOCK_BYTES (a request larger than that gets a
 * block of its own), each one VkDeviceMemory bound to ONE VkBuffer covering the whole block. A
 * tw_buffer is a range of a block (offset aligned to minStorageBufferOffsetAlignment, at least
 * 16), bound to shaders as (block buffer, offset, size). One VkBuffer per block rather than per
 * tw_buffer keeps buffer creation out of the training loop and lets copies between tw_buffers of
 * one block be a single vkCmdCopyBuffer. Free ranges are kept sorted and coalesced; a block that
 * becomes empty is released unless it is the pool's last.
 *
 * Two pools: device buffers (device-local memory; on lavapipe and UMA GPUs that memory is also
 * host-visible and coherent, and is mapped) and staging (host-visible, coherent, preferably
 * cached). A range freed while recorded or submitted commands may still use it returns to its
 * block once the submission that could use it has completed. */
#include <stdlib.h>
#include <string.h>

#include "vk_host.h"

enum { TW_VK_BLOCK_BYTES = 64 << 20 };

/* ------------------------------------------------------------------------------------------------
 * Memory types
 * ---------------------------------------------------------------------------------------------- */

static VkMemoryPropertyFlags type_flags(const tw_vk_context *vk, uint32_t type) {
    return vk->memory.memoryTypes[type].propertyFlags;
}

static VkDeviceSize heap_size(const tw_vk_context *vk, uint32_t type) {
    return vk->memory.memoryHeaps[vk->memory.memoryTypes[type].heapIndex].size;
}

/* Scores a memory type for a pool: higher is better, negative is unusable. */
static int score_type(const tw_vk_context *vk, uint32_t type, bool staging) {
    VkMemoryPropertyFlags f = type_flags(vk, type);
    const VkMemoryPropertyFlags mappable =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if (staging) {
        if ((f & mappable) != mappable) return -1;
        return (f & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) ? 2 : 1; /* cached: fast readback */
    }
    if (!(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) return 0;
    /* Device-local on the big heap; a small host-visible window (PCIe BAR) scores below it. */
    return 1 + ((f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) ? 0 : 1) +
           (heap_size(vk, type) >= (VkDeviceSize)1 << 30 ? 2 : 0);
}

static tw_status pick_type(tw_vk_context *vk, VkBufferUsageFlags usage, bool staging,
                           uint32_t *out) {
    VkBufferCreateInfo info = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                               .size = 4096,
                               .usage = usage,
                               .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkBuffer probe;
    VkResult result = vkCreateBuffer(vk->dev, &info, NULL, &probe);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, probe, &req);
    vkDestroyBuffer(vk->dev, probe, NULL);
    int best = -1;
    for (uint32_t t = 0; t < vk->memory.memoryTypeCount; t++) {
        if (!(req.memoryTypeBits & (1u << t))) continue;
        int score = score_type(vk, t, staging);
        if (score > best) {
            best = score;
            *out = t;
        }
    }
    if (best < 0)
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan:%d has no %s memory type for buffers",
                        vk->index, staging ? "host-visible coherent" : "usable");
    return TW_OK;
}

static void pool_init(tw_vk_context *vk, tw_vk_pool *pool, uint32_t type,
                      VkBufferUsageFlags usage) {
    const VkMemoryPropertyFlags mappable =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    pool->memory_type = type;
    pool->usage = usage;
    pool->host_visible = (type_flags(vk, type) & mappable) == mappable;
    pool->blocks = NULL;
}

tw_status tw_vk_memory_init(tw_vk_context *vk) {
    const VkBufferUsageFlags device_usage =
        VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
        VK_BUFFER_USAGE_TRANSFER_DST_BIT |
        (vk->limits.texel_buffers ? VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT : 0);
    const VkBufferUsageFlags staging_usage =
        VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    uint32_t device_type = 0, staging_type = 0;
    TW_TRY(pick_type(vk, device_usage, false, &device_type));
    TW_TRY(pick_type(vk, staging_usage, true, &staging_type));
    pool_init(vk, &vk->device_pool, device_type, device_usage);
    pool_init(vk, &vk->staging_pool, staging_type, staging_usage);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Blocks
 * ---------------------------------------------------------------------------------------------- */

static void block_destroy(tw_vk_context *vk, tw_vk_block *block) {
    if (block->mapped) vkUnmapMemory(vk->dev, block->memory);
    if (block->buffer) vkDestroyBuffer(vk->dev, block->buffer, NULL);
    if (block->memory) vkFreeMemory(vk->dev, block->memory, NULL);
    free(block->free);
    free(block);
}

static tw_status block_create(tw_vk_context *vk, tw_vk_pool *pool, VkDeviceSize size,
                              tw_vk_block **out) {
    tw_vk_block *block = calloc(1, sizeof *block);
    if (!block) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    block->size = size;
    VkBufferCreateInfo info = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                               .size = size,
                               .usage = pool->usage,
                               .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult result = vkCreateBuffer(vk->dev, &info, NULL, &block->buffer);
    const char *call = "vkCreateBuffer";
    VkMemoryRequirements req = {0};
    if (result == VK_SUCCESS) {
        vkGetBufferMemoryRequirements(vk->dev, block->buffer, &req);
        VkMemoryAllocateInfo alloc = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                      .allocationSize = req.size,
                                      .memoryTypeIndex = pool->memory_type};
        call = "vkAllocateMemory";
        result = vkAllocateMemory(vk->dev, &alloc, NULL, &block->memory);
    }
    if (result == VK_SUCCESS) {
        call = "vkBindBufferMemory";
        result = vkBindBufferMemory(vk->dev, block->buffer, block->memory, 0);
    }
    if (result == VK_SUCCESS && pool->host_visible) {
        call = "vkMapMemory";
        void *mapped = NULL;
        result = vkMapMemory(vk->dev, block->memory, 0, VK_WHOLE_SIZE, 0, &mapped);
        block->mapped = mapped;
    }
    block->free = malloc(sizeof *block->free);
    if (result == VK_SUCCESS && !block->free) result = VK_ERROR_OUT_OF_HOST_MEMORY;
    if (result != VK_SUCCESS) {
        block_destroy(vk, block);
        if (result == VK_ERROR_OUT_OF_DEVICE_MEMORY)
            return tw_error(TW_ERR_OUT_OF_MEMORY,
                            "vulkan:%d: out of device memory allocating a block of %llu bytes "
                            "(vkAllocateMemory: VK_ERROR_OUT_OF_DEVICE_MEMORY)",
                            vk->index, (unsigned long long)size);
        return tw_vk_fail(result, call);
    }
    block->free[0] = (tw_vk_range){0, size};
    block->free_count = block->free_capacity = 1;
    *out = block;
    return TW_OK;
}

/* First fit; the range is split. */
static bool block_take(tw_vk_block *block, VkDeviceSize size, VkDeviceSize *offset) {
    for (int i = 0; i < block->free_count; i++) {
        tw_vk_range *r = &block->free[i];
        if (r->size < size) continue;
        *offset = r->offset;
        r->offset += size;
        r->size -= size;
        if (r->size == 0) {
            memmove(r, r + 1, (size_t)(block->free_count - i - 1) * sizeof *r);
            block->free_count--;
        }
        block->used += size;
        return true;
    }
    return false;
}

/* Inserts [offset, offset + size) in order, merging with its neighbours. */
static tw_status block_give(tw_vk_block *block, VkDeviceSize offset, VkDeviceSize size) {
    int i = 0;
    while (i < block->free_count && block->free[i].offset < offset) i++;
    bool joins_prev = i > 0 && block->free[i - 1].offset + block->free[i - 1].size == offset;
    bool joins_next = i < block->free_count && offset + size == block->free[i].offset;
    block->used -= size;
    if (joins_prev && joins_next) {
        block->free[i - 1].size += size + block->free[i].size;
        memmove(&block->free[i], &block->free[i + 1],
                (size_t)(block->free_count - i - 1) * sizeof *block->free);
        block->free_count--;
    } else if (joins_prev) {
        block->free[i - 1].size += size;
    } else if (joins_next) {
        block->free[i].offset = offset;
        block->free[i].size += size;
    } else {
        if (block->free_count == block->free_capacity) {
            int capacity = block->free_capacity * 2;
            tw_vk_range *grown = realloc(block->free, (size_t)capacity * sizeof *grown);
            if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
            block->free = grown;
            block->free_capacity = capacity;
        }
        memmove(&block->free[i + 1], &block->free[i],
                (size_t)(block->free_count - i) * sizeof *block->free);
        block->free[i] = (tw_vk_range){offset, size};
        block->free_count++;
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Ranges
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_alloc_range(tw_vk_context *vk, tw_vk_pool *pool, VkDeviceSize bytes,
                            tw_vk_alloc **out) {
    const VkDeviceSize align = vk->buffer_alignment;
    VkDeviceSize size = (bytes ? bytes + align - 1 : align) / align * align;
    tw_vk_alloc *alloc = calloc(1, sizeof *alloc);
    if (!alloc) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    alloc->pool = pool;
    alloc->size = size;
    alloc->bytes = bytes;
    for (tw_vk_block *b = pool->blocks; b && !alloc->block; b = b->next)
        if (!b->dedicated && block_take(b, size, &alloc->offset)) alloc->block = b;
    if (!alloc->block) {
        tw_vk_block *block = NULL;
        bool dedicated = size > TW_VK_BLOCK_BYTES;
        tw_status status = block_create(vk, pool, dedicated ? size : TW_VK_BLOCK_BYTES, &block);
        if (status != TW_OK) {
            free(alloc);
            return status;
        }
        block->dedicated = dedicated;
        block->next = pool->blocks;
        pool->blocks = block;
        block_take(block, size, &alloc->offset);
        alloc->block = block;
    }
    *out = alloc;
    return TW_OK;
}

static int pool_block_count(const tw_vk_pool *pool) {
    int count = 0;
    for (const tw_vk_block *b = pool->blocks; b; b = b->next) count++;
    return count;
}

/* Returns a range to its block; an emptied block is released unless it is the pool's last
 * shared block (kept to avoid allocating and freeing 64 MiB in a loop). */
static void release_range(tw_vk_context *vk, tw_vk_alloc *alloc) {
    tw_vk_pool *pool = alloc->pool;
    tw_vk_block *block = alloc->block;
    /* Growing the free list is the only failure; the range is then lost to reuse (not leaked:
     * the block still frees it at close). */
    (void)block_give(block, alloc->offset, alloc->size);
    free(alloc);
    if (block->used != 0 || (!block->dedicated && pool_block_count(pool) == 1)) return;
    for (tw_vk_block **link = &pool->blocks; *link; link = &(*link)->next) {
        if (*link != block) continue;
        *link = block->next;
        block_destroy(vk, block);
        return;
    }
}

void tw_vk_release_completed(tw_vk_context *vk) {
    tw_vk_poll(vk);
    int kept = 0;
    for (int i = 0; i < vk->deferred_count; i++) {
        if (vk->deferred[i].serial <= vk->completed_serial) release_range(vk, vk->deferred[i].alloc);
        else vk->deferred[kept++] = vk->deferred[i];
    }
    vk->deferred_count = kept;
}

tw_status tw_vk_free_range(tw_vk_context *vk, tw_vk_alloc *alloc) {
    uint64_t serial = tw_vk_pending_serial(vk);
    if (serial <= vk->completed_serial) {
        release_range(vk, alloc);
        return TW_OK;
    }
    if (vk->deferred_count == vk->deferred_capacity) {
        int capacity = vk->deferred_capacity ? vk->deferred_capacity * 2 : 64;
        tw_vk_deferred *grown = realloc(vk->deferred, (size_t)capacity * sizeof *grown);
        if (!grown) {
            /* Waiting is the way to free the range safely without bookkeeping space. */
            TW_TRY(tw_vk_finish(vk));
            release_range(vk, alloc);
            return TW_OK;
        }
        vk->deferred = grown;
        vk->deferred_capacity = capacity;
    }
    vk->deferred[vk->deferred_count++] = (tw_vk_deferred){alloc, serial};
    return TW_OK;
}

static void pool_release(tw_vk_context *vk, tw_vk_pool *pool) {
    while (pool->blocks) {
        tw_vk_block *next = pool->blocks->next;
        block_destroy(vk, pool->blocks);
        pool->blocks = next;
    }
}

/* At close, after the queue is idle: live tw_buffers belong to the front end, which frees them
 * before closing; their blocks go with the pool either way. */
void tw_vk_memory_release(tw_vk_context *vk) {
    for (int i = 0; i < vk->deferred_count; i++) free(vk->deferred[i].alloc);
    free(vk->deferred);
    vk->deferred = NULL;
    vk->deferred_count = vk->deferred_capacity = 0;
    pool_release(vk, &vk->device_pool);
    pool_release(vk, &vk->staging_pool);
}

/* ------------------------------------------------------------------------------------------------
 * tw_buffer entry points
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_buffer_alloc(void *context, size_t bytes, void **handle) {
    tw_vk_context *vk = context;
    if (bytes > vk->limits.max_storage_buffer_range)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan:%d: a buffer of %zu bytes exceeds the device's "
                        "maxStorageBufferRange (%llu bytes), the most one shader binding covers",
                        vk->index, bytes, (unsigned long long)vk->limits.max_storage_buffer_range);
    if (vk->max_allocation && bytes > vk->max_allocation)
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "vulkan:%d: a buffer of %zu bytes exceeds the device's "
                        "maxMemoryAllocationSize (%llu bytes)",
                        vk->index, bytes, (unsigned long long)vk->max_allocation);
    tw_vk_release_completed(vk);
    tw_vk_alloc *alloc = NULL;
    TW_TRY(tw_vk_alloc_range(vk, &vk->device_pool, bytes, &alloc));
    *handle = alloc;
    return TW_OK;
}

void tw_vk_buffer_free(void *context, void *handle) {
    if (!handle) return;
    /* The only failure (no host memory for the deferred list while the wait failed) leaves the
     * range to be freed with its block at close; nothing to report from a void entry. */
    (void)tw_vk_free_range(context, handle);
}

/* Mapped device memory may be written directly when no command can be using it. */
static bool queue_idle(tw_vk_context *vk) {
    tw_vk_poll(vk);
    return tw_vk_pending_serial(vk) <= vk->completed_serial;
}

static tw_status record_copy(tw_vk_context *vk, const tw_vk_alloc *src, VkDeviceSize src_offset,
                             const tw_vk_alloc *dst, VkDeviceSize dst_offset, VkDeviceSize bytes) {
    VkCommandBuffer cmd;
    TW_TRY(tw_vk_begin_command(vk, &cmd));
    VkBufferCopy region = {.srcOffset = src->offset + src_offset,
                           .dstOffset = dst->offset + dst_offset,
                           .size = bytes};
    vkCmdCopyBuffer(cmd, src->block->buffer, dst->block->buffer, 1, &region);
    return TW_OK;
}

/* Returns once `src` is copied: into the buffer itself (mapped, idle queue) or into a staging
 * range whose copy is recorded and runs in order with the ops around it. */
tw_status tw_vk_upload(void *context, void *handle, size_t offset, const void *src,
                       size_t bytes) {
    tw_vk_context *vk = context;
    tw_vk_alloc *dst = handle;
    TW_TRY(tw_vk_check_validation(vk));
    if (bytes == 0) return TW_OK;
    if (dst->block->mapped && queue_idle(vk)) {
        memcpy(dst->block->mapped + dst->offset + offset, src, bytes);
        return TW_OK;
    }
    tw_vk_alloc *staging = NULL;
    TW_TRY(tw_vk_alloc_range(vk, &vk->staging_pool, bytes, &staging));
    memcpy(staging->block->mapped + staging->offset, src, bytes);
    tw_status status = record_copy(vk, staging, 0, dst, offset, bytes);
    tw_status freed = tw_vk_free_range(vk, staging); /* after the copy's submission */
    return status != TW_OK ? status : freed;
}

/* Waits for every earlier command, then reads mapped memory directly or through staging. */
tw_status tw_vk_download(void *context, void *handle, size_t offset, void *dst, size_t bytes) {
    tw_vk_context *vk = context;
    tw_vk_alloc *src = handle;
    if (bytes == 0) return tw_vk_finish(vk);
    if (src->block->mapped) {
        TW_TRY(tw_vk_finish(vk));
        memcpy(dst, src->block->mapped + src->offset + offset, bytes);
        return TW_OK;
    }
    tw_vk_alloc *staging = NULL;
    TW_TRY(tw_vk_alloc_range(vk, &vk->staging_pool, bytes, &staging));
    tw_status status = record_copy(vk, src, offset, staging, 0, bytes);
    if (status == TW_OK) status = tw_vk_finish(vk);
    if (status == TW_OK) memcpy(dst, staging->block->mapped + staging->offset, bytes);
    tw_status freed = tw_vk_free_range(vk, staging);
    return status != TW_OK ? status : freed;
}

tw_status tw_vk_copy(void *context, void *dst, size_t dst_offset, void *src, size_t src_offset,
                     size_t bytes) {
    tw_vk_context *vk = context;
    TW_TRY(tw_vk_check_validation(vk));
    if (bytes == 0) return TW_OK;
    return record_copy(vk, src, src_offset, dst, dst_offset, bytes);
}

/* vkCmdFillBuffer writes a 32-bit pattern: the float's bits. Offsets are 4-byte multiples
 * (element offsets of a 16-byte-aligned range), as it requires. */
tw_status tw_vk_fill_f32(void *context, void *handle, size_t offset, size_t count, float value) {
    tw_vk_context *vk = context;
    tw_vk_alloc *dst = handle;
    TW_TRY(tw_vk_check_validation(vk));
    if (count == 0) return TW_OK;
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    VkCommandBuffer cmd;
    TW_TRY(tw_vk_begin_command(vk, &cmd));
    vkCmdFillBuffer(cmd, dst->block->buffer, dst->offset + offset * sizeof(float),
                    count * sizeof(float), bits);
    return TW_OK;
}
