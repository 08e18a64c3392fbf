/* twist Vulkan backend: elementwise ops and the linear-layer bias (shaders/add.comp, scale.comp,
 * gelu_fwd.comp, gelu_bwd.comp, bias_add.comp, bias_bwd.comp).
 *
 * One invocation per element (per column for bias_bwd), laid out by tw_vk_dispatch_1d. */
#include "vk_internal.h"
#include "vk_ops.h"

/* Workgroup size: 256 invocations, or the device's maximum where it is lower (the Vulkan floor
 * for maxComputeWorkGroupInvocations is 128). */
enum { WORKGROUP = 256 };

static uint32_t workgroup_size(tw_vk_context *vk) {
    uint32_t max = tw_vk_get_limits(vk)->max_workgroup_size;
    return max < WORKGROUP ? max : WORKGROUP;
}

/* Element counts and every offset + count must fit the shaders' uint indices. */
static tw_status check_u32(const char *op, size_t n, size_t offset) {
    if (n > TW_VK_MAX_ELEMENTS || offset > TW_VK_MAX_ELEMENTS - n)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: %s over %zu elements at offset %zu: shaders index with 32 bits "
                        "(at most %llu elements)", op, n, offset, TW_VK_MAX_ELEMENTS);
    return TW_OK;
}

/* Records `shader` over n items (elements, or columns for bias_bwd). */
static tw_status launch(tw_vk_context *vk, const char *shader, size_t n, tw_buffer *const *buffers,
                        int buffer_count, const void *push, uint32_t push_bytes) {
    if (n == 0) return TW_OK;
    const uint32_t local = workgroup_size(vk);
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, shader, buffer_count, push_bytes, &local, 1, &kernel));
    return tw_vk_dispatch_1d(vk, kernel, buffers, buffer_count, push, push_bytes, n, local);
}

tw_status tw_vk_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    TW_TRY(check_u32("add", n, a.offset));
    TW_TRY(check_u32("add", n, b.offset));
    TW_TRY(check_u32("add", n, out.offset));
    const struct { uint32_t n, a_off, b_off, out_off; } push = {
        (uint32_t)n, (uint32_t)a.offset, (uint32_t)b.offset, (uint32_t)out.offset};
    tw_buffer *buffers[] = {a.buffer, b.buffer, out.buffer};
    return launch(context, TW_VK_TYPED("add", a.dtype), n, buffers, 3, &push, sizeof push);
}

tw_status tw_vk_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    TW_TRY(check_u32("scale", n, x.offset));
    TW_TRY(check_u32("scale", n, out.offset));
    const struct { uint32_t n, x_off, out_off; float alpha; } push = {
        (uint32_t)n, (uint32_t)x.offset, (uint32_t)out.offset, alpha};
    tw_buffer *buffers[] = {x.buffer, out.buffer};
    return launch(context, TW_VK_TYPED("scale", x.dtype), n, buffers, 2, &push, sizeof push);
}

tw_status tw_vk_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    TW_TRY(check_u32("gelu_fwd", n, x.offset));
    TW_TRY(check_u32("gelu_fwd", n, out.offset));
    const struct { uint32_t n, x_off, out_off; } push = {(uint32_t)n, (uint32_t)x.offset,
                                                         (uint32_t)out.offset};
    tw_buffer *buffers[] = {x.buffer, out.buffer};
    return launch(context, TW_VK_TYPED("gelu_fwd", x.dtype), n, buffers, 2, &push, sizeof push);
}

tw_status tw_vk_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    TW_TRY(check_u32("gelu_bwd", n, x.offset));
    TW_TRY(check_u32("gelu_bwd", n, dout.offset));
    TW_TRY(check_u32("gelu_bwd", n, dx.offset));
    const struct { uint32_t n, x_off, dout_off, dx_off; } push = {
        (uint32_t)n, (uint32_t)x.offset, (uint32_t)dout.offset, (uint32_t)dx.offset};
    tw_buffer *buffers[] = {x.buffer, dout.buffer, dx.buffer};
    return launch(context, TW_VK_TYPED("gelu_bwd", x.dtype), n, buffers, 3, &push, sizeof push);
}

/* out (rows, cols) += bias (cols): one invocation per element. */
tw_status tw_vk_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    const size_t n = (size_t)rows * (size_t)cols;
    TW_TRY(check_u32("bias_add", n, out.offset));
    TW_TRY(check_u32("bias_add", (size_t)cols, bias.offset));
    const struct { uint32_t n, cols, bias_off, out_off; } push = {
        (uint32_t)n, (uint32_t)cols, (uint32_t)bias.offset, (uint32_t)out.offset};
    tw_buffer *buffers[] = {bias.buffer, out.buffer};
    return launch(context, TW_VK_TYPED("bias_add", out.dtype), n, buffers, 2, &push, sizeof push);
}

/* dbias (cols) += column sums of dout (rows, cols): one invocation per column, rows in order. */
tw_status tw_vk_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    TW_TRY(check_u32("bias_bwd", (size_t)rows * (size_t)cols, dout.offset));
    TW_TRY(check_u32("bias_bwd", (size_t)cols, dbias.offset));
    const struct { uint32_t rows, cols, dout_off, dbias_off; } push = {
        (uint32_t)rows, (uint32_t)cols, (uint32_t)dout.offset, (uint32_t)dbias.offset};
    tw_buffer *buffers[] = {dout.buffer, dbias.buffer};
    return launch(context, TW_VK_TYPED("bias_bwd", dout.dtype),
                  (size_t)cols, buffers, 2, &push, sizeof push);
}
