/* twist Vulkan backend: command recording, submission, dispatch, events.
 *
 * Frames (vk_host.h) are used round-robin: acquiring one waits for its previous submission only
 * if that is still running, so up to TW_VK_FRAMES batches are in flight while the host records the
 * next. Every command starts with a global memory barrier (compute and transfer writes before,
 * compute and transfer reads and writes after), which also orders a command buffer's first
 * command after the previous submission's last: ops see each other's results in queue order, as
 * the backend interface promises, at the cost of no overlap between consecutive dispatches. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twist/clock.h"
#include "vk_host.h"

/* ------------------------------------------------------------------------------------------------
 * Frames
 * ---------------------------------------------------------------------------------------------- */

static tw_status create_descriptor_pool(tw_vk_context *vk, VkDescriptorPool *out) {
    VkDescriptorPoolSize sizes[2] = {
        {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
         .descriptorCount = TW_VK_POOL_SETS * TW_VK_MAX_BINDINGS},
        {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
         .descriptorCount = TW_VK_POOL_SETS * TW_VK_MAX_BINDINGS}};
    VkDescriptorPoolCreateInfo info = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                       .maxSets = TW_VK_POOL_SETS,
                                       .poolSizeCount = vk->limits.texel_buffers ? 2 : 1,
                                       .pPoolSizes = sizes};
    VkResult result = vkCreateDescriptorPool(vk->dev, &info, NULL, out);
    return result == VK_SUCCESS ? TW_OK : tw_vk_fail(result, "vkCreateDescriptorPool");
}

/* Destroys the texel-buffer views of a frame whose commands are done (or were never submitted). */
static void release_views(tw_vk_context *vk, tw_vk_frame *frame) {
    for (int i = 0; i < frame->view_count; i++) vkDestroyBufferView(vk->dev, frame->views[i], NULL);
    frame->view_count = 0;
}

tw_status tw_vk_submit_init(tw_vk_context *vk) {
    vk->next_serial = 1;
    vk->completed_serial = 0;
    VkCommandPoolCreateInfo pool = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                    .queueFamilyIndex = vk->queue_family};
    VkResult result = vkCreateCommandPool(vk->dev, &pool, NULL, &vk->command_pool);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateCommandPool");
    VkCommandBuffer cmds[TW_VK_FRAMES];
    VkCommandBufferAllocateInfo alloc = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                         .commandPool = vk->command_pool,
                                         .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                         .commandBufferCount = TW_VK_FRAMES};
    result = vkAllocateCommandBuffers(vk->dev, &alloc, cmds);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkAllocateCommandBuffers");
    for (int i = 0; i < TW_VK_FRAMES; i++) {
        tw_vk_frame *frame = &vk->frames[i];
        frame->cmd = cmds[i];
        VkFenceCreateInfo fence = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        result = vkCreateFence(vk->dev, &fence, NULL, &frame->fence);
        if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateFence");
        if (!vk->push_descriptors) TW_TRY(create_descriptor_pool(vk, &frame->descriptors));
    }
    return TW_OK;
}

void tw_vk_submit_release(tw_vk_context *vk) {
    for (int i = 0; i < TW_VK_FRAMES; i++) {
        tw_vk_frame *frame = &vk->frames[i];
        if (frame->fence) vkDestroyFence(vk->dev, frame->fence, NULL);
        if (frame->descriptors) vkDestroyDescriptorPool(vk->dev, frame->descriptors, NULL);
        release_views(vk, frame);
        free(frame->views);
        frame->views = NULL;
        frame->view_capacity = 0;
    }
    if (vk->command_pool) vkDestroyCommandPool(vk->dev, vk->command_pool, NULL);
}

/* Waits for the frame's previous submission (if running) and starts recording into it. */
static tw_status acquire_frame(tw_vk_context *vk) {
    int index = -1;
    /* The frame with the oldest submission (or none): the least likely to make us wait. */
    for (int i = 0; i < TW_VK_FRAMES; i++) {
        const tw_vk_frame *f = &vk->frames[i];
        if (index < 0 || f->serial < vk->frames[index].serial) index = i;
    }
    tw_vk_frame *frame = &vk->frames[index];
    if (frame->serial) {
        TW_TRY(tw_vk_wait_serial(vk, frame->serial));
        VkResult reset = vkResetFences(vk->dev, 1, &frame->fence);
        if (reset != VK_SUCCESS) return tw_vk_fail(reset, "vkResetFences");
        frame->serial = 0;
    }
    release_views(vk, frame);
    if (frame->descriptors) {
        VkResult reset = vkResetDescriptorPool(vk->dev, frame->descriptors, 0);
        if (reset != VK_SUCCESS) return tw_vk_fail(reset, "vkResetDescriptorPool");
    }
    VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                      .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult result = vkBeginCommandBuffer(frame->cmd, &begin);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkBeginCommandBuffer");
    frame->recording = true;
    frame->commands = 0;
    vk->current = index;
    return TW_OK;
}

static void barrier(VkCommandBuffer cmd, VkPipelineStageFlags src_stage, VkAccessFlags src,
                    VkPipelineStageFlags dst_stage, VkAccessFlags dst) {
    VkMemoryBarrier b = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                         .srcAccessMask = src,
                         .dstAccessMask = dst};
    vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, &b, 0, NULL, 0, NULL);
}

static const VkPipelineStageFlags WORK_STAGES =
    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
static const VkAccessFlags WORK_WRITES =
    VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
static const VkAccessFlags WORK_ACCESS = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                         VK_ACCESS_TRANSFER_READ_BIT |
                                         VK_ACCESS_TRANSFER_WRITE_BIT;

tw_status tw_vk_begin_command(tw_vk_context *vk, VkCommandBuffer *cmd) {
    TW_TRY(tw_vk_check_validation(vk));
    if (vk->current >= 0 && vk->frames[vk->current].commands >= TW_VK_BATCH)
        TW_TRY(tw_vk_flush(vk));
    if (vk->current < 0) TW_TRY(acquire_frame(vk));
    tw_vk_frame *frame = &vk->frames[vk->current];
    barrier(frame->cmd, WORK_STAGES, WORK_WRITES, WORK_STAGES, WORK_ACCESS);
    frame->commands++;
    *cmd = frame->cmd;
    return TW_OK;
}

tw_status tw_vk_flush(tw_vk_context *vk) {
    if (vk->current < 0) return TW_OK;
    tw_vk_frame *frame = &vk->frames[vk->current];
    if (frame->commands == 0) return TW_OK; /* stays open for the next command */
    /* Device writes become visible to the host (mapped reads after the fence). */
    barrier(frame->cmd, WORK_STAGES, WORK_WRITES, VK_PIPELINE_STAGE_HOST_BIT,
            VK_ACCESS_HOST_READ_BIT);
    vk->current = -1;
    frame->recording = false;
    VkResult result = vkEndCommandBuffer(frame->cmd);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkEndCommandBuffer");
    VkSubmitInfo submit = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                           .commandBufferCount = 1,
                           .pCommandBuffers = &frame->cmd};
    result = vkQueueSubmit(vk->queue, 1, &submit, frame->fence);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkQueueSubmit");
    frame->serial = vk->next_serial++;
    return tw_vk_check_validation(vk);
}

uint64_t tw_vk_pending_serial(const tw_vk_context *vk) {
    if (vk->current >= 0 && vk->frames[vk->current].commands > 0) return vk->next_serial;
    return vk->next_serial - 1;
}

/* Submissions finish in order on one queue: completed_serial advances over the signalled
 * fences in serial order and stops at the first that is not. */
void tw_vk_poll(tw_vk_context *vk) {
    for (;;) {
        uint64_t want = vk->completed_serial + 1;
        if (want >= vk->next_serial) return;
        const tw_vk_frame *frame = NULL;
        for (int i = 0; i < TW_VK_FRAMES; i++)
            if (vk->frames[i].serial == want) frame = &vk->frames[i];
        if (frame && vkGetFenceStatus(vk->dev, frame->fence) != VK_SUCCESS) return;
        vk->completed_serial = want; /* no frame holds it any more: it was waited for */
    }
}

tw_status tw_vk_wait_serial(tw_vk_context *vk, uint64_t serial) {
    if (serial <= vk->completed_serial) return TW_OK;
    if (serial >= vk->next_serial) TW_TRY(tw_vk_flush(vk));
    VkFence fences[TW_VK_FRAMES];
    uint32_t count = 0;
    for (int i = 0; i < TW_VK_FRAMES; i++) {
        const tw_vk_frame *f = &vk->frames[i];
        if (f->serial > vk->completed_serial && f->serial <= serial) fences[count++] = f->fence;
    }
    if (count) {
        VkResult result = vkWaitForFences(vk->dev, count, fences, VK_TRUE, UINT64_MAX);
        if (result != VK_SUCCESS) return tw_vk_fail(result, "vkWaitForFences");
    }
    if (serial > vk->completed_serial) vk->completed_serial = serial;
    tw_vk_release_completed(vk);
    return tw_vk_check_validation(vk);
}

tw_status tw_vk_finish(tw_vk_context *vk) {
    TW_TRY(tw_vk_flush(vk));
    return tw_vk_wait_serial(vk, vk->next_serial - 1);
}

tw_status tw_vk_sync(void *context) {
    tw_vk_context *vk = context;
    TW_TRY(tw_vk_finish(vk));
    return tw_vk_check_validation(vk);
}

/* ------------------------------------------------------------------------------------------------
 * Dispatch (vk_internal.h)
 * ---------------------------------------------------------------------------------------------- */

/* A view of the whole buffer as RGBA32F texels, kept with the current frame until its commands
 * complete (the descriptor refers to it until then). */
static tw_status texel_view(tw_vk_context *vk, const tw_vk_kernel *kernel, const tw_buffer *buffer,
                            VkBufferView *out) {
    const tw_vk_alloc *alloc = buffer->handle;
    VkDeviceSize texels = alloc->size / 16;
    if (texels == 0 || texels > vk->limits.max_texel_elements)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan:%d: shader %s reads a buffer of %llu bytes as texels; the "
                        "device's maxTexelBufferElements allows 1 to %llu texels of 16 bytes",
                        vk->index, kernel->name, (unsigned long long)alloc->size,
                        (unsigned long long)vk->limits.max_texel_elements);
    tw_vk_frame *frame = &vk->frames[vk->current];
    if (frame->view_count == frame->view_capacity) {
        int capacity = frame->view_capacity ? 2 * frame->view_capacity : 64;
        VkBufferView *views = realloc(frame->views, (size_t)capacity * sizeof *views);
        if (!views) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        frame->views = views;
        frame->view_capacity = capacity;
    }
    VkBufferViewCreateInfo info = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                   .buffer = alloc->block->buffer,
                                   .format = VK_FORMAT_R32G32B32A32_SFLOAT,
                                   .offset = alloc->offset,
                                   .range = texels * 16};
    VkResult result = vkCreateBufferView(vk->dev, &info, NULL, out);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkCreateBufferView");
    frame->views[frame->view_count++] = *out;
    return TW_OK;
}

static tw_status bind_buffers(tw_vk_context *vk, VkCommandBuffer cmd, tw_vk_kernel *kernel,
                              VkDescriptorSet set, tw_buffer *const *buffers, int count) {
    VkDescriptorBufferInfo infos[TW_VK_MAX_BINDINGS];
    VkBufferView views[TW_VK_MAX_BINDINGS];
    VkWriteDescriptorSet writes[TW_VK_MAX_BINDINGS];
    for (int i = 0; i < count; i++) {
        if ((kernel->texel_mask >> i) & 1u) {
            TW_TRY(texel_view(vk, kernel, buffers[i], &views[i]));
            writes[i] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = set,
                .dstBinding = (uint32_t)i,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
                .pTexelBufferView = &views[i]};
            continue;
        }
        const tw_vk_alloc *alloc = buffers[i]->handle;
        VkDeviceSize range = alloc->size;
        if (range > vk->limits.max_storage_buffer_range)
            range = vk->limits.max_storage_buffer_range & ~(VkDeviceSize)3;
        infos[i] = (VkDescriptorBufferInfo){alloc->block->buffer, alloc->offset, range};
        writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                           .dstSet = set,
                                           .dstBinding = (uint32_t)i,
                                           .descriptorCount = 1,
                                           .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                           .pBufferInfo = &infos[i]};
    }
    if (vk->push_descriptors) {
        vk->push_descriptor_set(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->layout, 0,
                                (uint32_t)count, writes);
        return TW_OK;
    }
    vkUpdateDescriptorSets(vk->dev, (uint32_t)count, writes, 0, NULL);
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->layout, 0, 1, &set, 0,
                            NULL);
    return TW_OK;
}

static tw_status allocate_set(tw_vk_context *vk, tw_vk_kernel *kernel, VkDescriptorSet *set) {
    *set = VK_NULL_HANDLE;
    if (vk->push_descriptors) return TW_OK;
    VkDescriptorSetAllocateInfo info = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                        .descriptorPool = vk->frames[vk->current].descriptors,
                                        .descriptorSetCount = 1,
                                        .pSetLayouts = &kernel->set_layout};
    VkResult result = vkAllocateDescriptorSets(vk->dev, &info, set);
    return result == VK_SUCCESS ? TW_OK : tw_vk_fail(result, "vkAllocateDescriptorSets");
}

tw_status tw_vk_dispatch(tw_vk_context *vk, tw_vk_kernel *kernel, tw_buffer *const *buffers,
                         int buffer_count, const void *push, uint32_t push_bytes,
                         uint32_t groups_x, uint32_t groups_y, uint32_t groups_z) {
    const uint32_t groups[3] = {groups_x, groups_y, groups_z};
    for (int d = 0; d < 3; d++)
        if (groups[d] > vk->limits.max_workgroup_count[d])
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan:%d: shader %s needs %u workgroups along %c; the device's "
                            "maxComputeWorkGroupCount is %u",
                            vk->index, kernel->name, groups[d], "xyz"[d],
                            vk->limits.max_workgroup_count[d]);
    if (buffer_count != kernel->buffer_count || push_bytes != kernel->push_bytes)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "vulkan: shader %s dispatched with %d buffers and %u push bytes; its "
                        "pipeline has %d and %u", kernel->name, buffer_count, push_bytes,
                        kernel->buffer_count, kernel->push_bytes);
    if (groups_x == 0 || groups_y == 0 || groups_z == 0) return TW_OK; /* nothing to run */
    VkCommandBuffer cmd;
    TW_TRY(tw_vk_begin_command(vk, &cmd));
    VkDescriptorSet set;
    TW_TRY(allocate_set(vk, kernel, &set));
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->pipeline);
    TW_TRY(bind_buffers(vk, cmd, kernel, set, buffers, buffer_count));
    if (push_bytes)
        vkCmdPushConstants(cmd, kernel->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    vkCmdDispatch(cmd, groups_x, groups_y, groups_z);
    return TW_OK;
}

tw_status tw_vk_dispatch_1d(tw_vk_context *vk, tw_vk_kernel *kernel, tw_buffer *const *buffers,
                            int buffer_count, const void *push, uint32_t push_bytes,
                            uint64_t items, uint32_t local) {
    if (items == 0) return TW_OK;
    const uint64_t groups = (items + local - 1) / local;
    const uint64_t max_x = vk->limits.max_workgroup_count[0];
    const uint64_t x = groups < max_x ? groups : max_x;
    const uint64_t y = (groups + x - 1) / x;
    if (y > vk->limits.max_workgroup_count[1])
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan:%d: shader %s over %llu items needs %llu x %llu workgroups; the "
                        "device allows %u x %u", vk->index, kernel->name,
                        (unsigned long long)items, (unsigned long long)x, (unsigned long long)y,
                        vk->limits.max_workgroup_count[0], vk->limits.max_workgroup_count[1]);
    return tw_vk_dispatch(vk, kernel, buffers, buffer_count, push, push_bytes, (uint32_t)x,
                          (uint32_t)y, 1);
}

/* ------------------------------------------------------------------------------------------------
 * Events: a timestamp written after a barrier, so it is taken once every earlier command has
 * finished. It is written in the current batch of commands, which is submitted as usual. Where the queue family reports no timestamp bits, record waits for the queue and
 * takes the host clock instead: correct elapsed times, but it synchronises.
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_event_create(void *context, void **handle) {
    tw_vk_context *vk = context;
    tw_vk_event *event = calloc(1, sizeof *event);
    if (!event) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    if (vk->timestamps) {
        VkQueryPoolCreateInfo info = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                      .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                      .queryCount = 1};
        VkResult result = vkCreateQueryPool(vk->dev, &info, NULL, &event->pool);
        if (result != VK_SUCCESS) {
            free(event);
            return tw_vk_fail(result, "vkCreateQueryPool");
        }
    }
    *handle = event;
    return TW_OK;
}

void tw_vk_event_destroy(void *context, void *handle) {
    tw_vk_context *vk = context;
    tw_vk_event *event = handle;
    if (!event) return;
    /* A pending timestamp write must finish before its pool goes. */
    if (event->serial) (void)tw_vk_wait_serial(vk, event->serial);
    if (event->pool) vkDestroyQueryPool(vk->dev, event->pool, NULL);
    free(event);
}

tw_status tw_vk_event_record(void *context, void *handle) {
    tw_vk_context *vk = context;
    tw_vk_event *event = handle;
    if (!vk->timestamps) {
        TW_TRY(tw_vk_finish(vk));
        event->host_ms = 1e3 * tw_now_seconds();
        return TW_OK;
    }
    VkCommandBuffer cmd;
    TW_TRY(tw_vk_begin_command(vk, &cmd));
    vkCmdResetQueryPool(cmd, event->pool, 0, 1);
    vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, event->pool, 0);
    /* The timestamp rides in the current batch (the submission that will get next_serial):
     * no flush, so a profiler recording two events per op keeps the batching. Reading it
     * (event_ticks -> tw_vk_wait_serial) flushes when the batch is still open. */
    event->serial = vk->next_serial;
    return TW_OK;
}

static tw_status event_ticks(tw_vk_context *vk, tw_vk_event *event, uint64_t *ticks) {
    TW_TRY(tw_vk_wait_serial(vk, event->serial));
    VkResult result = vkGetQueryPoolResults(vk->dev, event->pool, 0, 1, sizeof *ticks, ticks,
                                            sizeof *ticks,
                                            VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (result != VK_SUCCESS) return tw_vk_fail(result, "vkGetQueryPoolResults");
    *ticks &= vk->timestamp_mask;
    return TW_OK;
}

tw_status tw_vk_event_elapsed_ms(void *context, void *start, void *end, double *ms) {
    tw_vk_context *vk = context;
    tw_vk_event *a = start, *b = end;
    if (!vk->timestamps) {
        *ms = b->host_ms - a->host_ms;
        return TW_OK;
    }
    uint64_t t0 = 0, t1 = 0;
    TW_TRY(event_ticks(vk, a, &t0));
    TW_TRY(event_ticks(vk, b, &t1));
    *ms = ((double)t1 - (double)t0) * vk->timestamp_ns * 1e-6;
    return TW_OK;
}
