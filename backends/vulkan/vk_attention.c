/* twist Vulkan backend: fused causal attention (shaders/attention_fwd.comp,
 * attention_bwd_delta.comp, attention_bwd_dq.comp, attention_bwd_dkdv.comp; shared declarations
 * in shaders/attention_common.glsl).
 *
 * The pipelines are specialised per head dimension D (constant 1: private rows of exactly D
 * floats), built on first use of each D and cached by the host. Forward: one dispatch (O and
 * lse). Backward: delta = rowsum(dO * O) into B*H*T floats of scratch, then dQ per query row and
 * dK, dV per key row; every gradient element is written by exactly one invocation, summing in a
 * fixed order (deterministic, no atomics). Memory beyond the arguments: B*H*T floats in the
 * backward (allocated with tw_buffer_alloc so it counts in the device's bytes), nothing in the
 * forward; nothing of size T x T anywhere. */
#include <string.h>

#include "vk_internal.h"
#include "vk_ops.h"

enum { ATTENTION_WORKGROUP = 64 };

/* Push constants of every attention shader (attention_common.glsl). */
typedef struct attention_push {
    uint32_t batch, heads, seq_len;
    float scale;
    uint32_t q_off, k_off, v_off;
    uint32_t sb, sh, st;
    uint32_t o_off, dout_off;
    uint32_t ob, oh, ot;
    uint32_t lse_off;
    uint32_t dq_off, dk_off, dv_off;
} attention_push;

static bool fits_u32(int64_t value) { return value >= 0 && (uint64_t)value <= TW_VK_MAX_ELEMENTS; }

/* Strides, offsets and buffers must fit the shaders' 32-bit indices. */
static tw_status push_make(const tw_attention_args *args, bool backward, attention_push *p) {
    const int64_t strides[] = {args->qkv_stride.b, args->qkv_stride.h, args->qkv_stride.t,
                               args->out_stride.b, args->out_stride.h, args->out_stride.t};
    for (size_t i = 0; i < sizeof strides / sizeof strides[0]; i++)
        if (!fits_u32(strides[i]))
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: attention: stride %lld exceeds the 32-bit indices of the "
                            "shaders",
                            (long long)strides[i]);
    const tw_mem mems[] = {args->q, args->k, args->v, args->out, args->lse,
                           args->dout, args->dq, args->dk, args->dv};
    int count = backward ? 9 : 5;
    for (int i = 0; i < count; i++)
        if (mems[i].buffer->bytes / sizeof(float) > TW_VK_MAX_ELEMENTS)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: attention: a buffer of %zu bytes exceeds the 32-bit indices "
                            "of the shaders (2^32 floats)",
                            mems[i].buffer->bytes);
    if ((uint64_t)args->batch * (uint64_t)args->heads * (uint64_t)args->seq_len >
        TW_VK_MAX_ELEMENTS)
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan: attention: B*H*T exceeds 2^32 rows");
    *p = (attention_push){
        .batch = (uint32_t)args->batch,
        .heads = (uint32_t)args->heads,
        .seq_len = (uint32_t)args->seq_len,
        .scale = args->scale,
        .q_off = (uint32_t)args->q.offset,
        .k_off = (uint32_t)args->k.offset,
        .v_off = (uint32_t)args->v.offset,
        .sb = (uint32_t)args->qkv_stride.b,
        .sh = (uint32_t)args->qkv_stride.h,
        .st = (uint32_t)args->qkv_stride.t,
        .o_off = (uint32_t)args->out.offset,
        .dout_off = backward ? (uint32_t)args->dout.offset : 0,
        .ob = (uint32_t)args->out_stride.b,
        .oh = (uint32_t)args->out_stride.h,
        .ot = (uint32_t)args->out_stride.t,
        .lse_off = (uint32_t)args->lse.offset,
        .dq_off = backward ? (uint32_t)args->dq.offset : 0,
        .dk_off = backward ? (uint32_t)args->dk.offset : 0,
        .dv_off = backward ? (uint32_t)args->dv.offset : 0,
    };
    return TW_OK;
}

/* One dispatch of `shader` (specialised for the head dimension) over `items` invocations,
 * one item each (tw_vk_dispatch_1d). */
static tw_status attention_dispatch(tw_vk_context *vk, const char *shader,
                                    const tw_attention_args *args, const attention_push *push,
                                    tw_buffer *const *buffers, int buffer_count, uint64_t items) {
    const uint32_t spec[2] = {ATTENTION_WORKGROUP, (uint32_t)args->head_dim};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, shader, buffer_count, sizeof *push, spec, 2, &kernel));
    return tw_vk_dispatch_1d(vk, kernel, buffers, buffer_count, push, sizeof *push, items,
                             ATTENTION_WORKGROUP);
}

/* Invocations of the pair-per-invocation shaders (fwd, dq, dkdv): ceil(T / 2) per head. */
static uint64_t pair_items(const tw_attention_args *args) {
    return (uint64_t)args->batch * (uint64_t)args->heads * (((uint64_t)args->seq_len + 1) / 2);
}

/* Mesa's llvmpipe (lavapipe) ends every shader invocation's loops after 65535 iterations in
 * total (LP_MAX_TGSI_LOOP_ITERATIONS: one counter per invocation, decremented on every loop
 * back-edge), and the results of a longer invocation are silently wrong. An attention row costs
 * loop iterations in proportion to its keys: the forward shader unrolls its loops over head_dim
 * and stays correct to T = 4096 at D = 64 (measured); the backward shaders do not (unrolled,
 * they took minutes to compile on llvmpipe, which keeps no pipeline cache) and were correct on
 * lavapipe for T x D up to ~45K (700 x 64, 400 x 96, 1500 x 32) and wrong from ~51K (400 x 128,
 * 850 x 64). Such shapes are refused on llvmpipe rather than computed wrong; other drivers have
 * no such limit. */
static bool is_llvmpipe(tw_vk_context *vk) {
    return tw_vk_get_limits(vk)->is_cpu &&
           strstr(tw_device_get_info(tw_vk_device(vk))->name, "llvmpipe") != NULL;
}

static tw_status check_llvmpipe_loops(tw_vk_context *vk, const tw_attention_args *args,
                                      bool backward) {
    if (!is_llvmpipe(vk)) return TW_OK;
    const int64_t T = args->seq_len, D = args->head_dim;
    const bool too_long = backward ? T * (D > 16 ? D : 16) > 45000 : T > 8192;
    if (!too_long) return TW_OK;
    return tw_error(TW_ERR_UNSUPPORTED,
                    "vulkan: attention %s with T=%lld, head_dim %lld is beyond what llvmpipe "
                    "(lavapipe) computes correctly: it stops a shader's loops after 65535 "
                    "iterations in all (supported here: %s); use another device for this shape",
                    backward ? "backward" : "forward", (long long)T, (long long)D,
                    backward ? "T x max(head_dim, 16) <= 45000" : "T <= 8192");
}

tw_status tw_vk_attention_fwd(void *context, const tw_attention_args *args) {
    tw_vk_context *vk = context;
    TW_TRY(check_llvmpipe_loops(vk, args, false));
    attention_push push;
    TW_TRY(push_make(args, false, &push));
    tw_buffer *buffers[5] = {args->q.buffer, args->k.buffer, args->v.buffer, args->out.buffer,
                             args->lse.buffer};
    return attention_dispatch(vk, "attention_fwd", args, &push, buffers, 5, pair_items(args));
}

/* The three backward dispatches, given the (B*H*T) delta scratch. */
static tw_status backward(tw_vk_context *vk, const tw_attention_args *args,
                          const attention_push *push, tw_buffer *delta) {
    uint64_t rows = (uint64_t)args->batch * (uint64_t)args->heads * (uint64_t)args->seq_len;
    tw_buffer *delta_buffers[3] = {args->out.buffer, args->dout.buffer, delta};
    TW_TRY(attention_dispatch(vk, "attention_bwd_delta", args, push, delta_buffers, 3, rows));
    tw_buffer *dq_buffers[7] = {args->q.buffer,    args->k.buffer,   args->v.buffer,
                                args->dout.buffer, args->lse.buffer, delta,
                                args->dq.buffer};
    TW_TRY(attention_dispatch(vk, "attention_bwd_dq", args, push, dq_buffers, 7,
                              pair_items(args)));
    tw_buffer *dkdv_buffers[8] = {args->q.buffer,   args->k.buffer, args->v.buffer,
                                  args->dout.buffer, args->lse.buffer, delta,
                                  args->dk.buffer,  args->dv.buffer};
    return attention_dispatch(vk, "attention_bwd_dkdv", args, push, dkdv_buffers, 8,
                              pair_items(args));
}

tw_status tw_vk_attention_bwd(void *context, const tw_attention_args *args) {
    tw_vk_context *vk = context;
    TW_TRY(check_llvmpipe_loops(vk, args, true));
    attention_push push;
    TW_TRY(push_make(args, true, &push));
    size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_device *device = tw_vk_device(vk);
    tw_buffer *delta = NULL;
    TW_TRY(tw_buffer_alloc(device, rows * sizeof(float), &delta));
    tw_status status = backward(vk, args, &push, delta);
    /* The dispatches read delta on the device: wait for them before the memory can be reused. */
    tw_status synced = tw_device_sync(device);
    tw_buffer_free(delta);
    return status != TW_OK ? status : synced;
}
