/* twist Vulkan backend: fused causal attention (shaders/attention_fwd.comp,
 * attention_bwd_delta.comp, attention_bwd_dq.comp, attention_bwd_dkdv.comp; shared declarations
 * in shaders/attention_common.glsl).
 *
 * The pipelines are specialised per head dimension D (constant 1: private rows of exactly D
 * floats), built on first use of each D and cached by the host. Forward: one dispatch (O and
 * lse). Backward: delta = rowsum(dO * O) into B*H*T floats of scratch, then dQ per query row and
 * dK, dV per key row. On GPUs each of dQ and dK/dV is one dispatch; on CPU devices each is split
 * into dispatches over consecutive key (dQ) or query (dK/dV) ranges that add into the gradients
 * one after another (see backward_range). Every gradient element is written by one invocation
 * per dispatch, in a fixed order of dispatches and of terms (deterministic, no atomics). Memory
 * beyond the arguments: B*H*T floats in the
 * backward (allocated with tw_buffer_alloc so it counts in the device's bytes), nothing in the
 * forward; nothing of size T x T anywhere. */
#include <stdio.h>
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
    uint32_t range_begin, range_end, pair_count; /* backward: one dispatch's share */
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
        .range_begin = 0,
        .range_end = (uint32_t)args->seq_len,
        .pair_count = (uint32_t)(((uint64_t)args->seq_len + 1) / 2),
    };
    return TW_OK;
}

/* Whether the forward (q, k, v: bindings 0..2) or the backward's dQ and dK/dV shaders (q, k, v,
 * dout: bindings 0..3) can read those as RGBA32F texels (their *_texel variants, TW_ATTN_TEXEL in
 * attention_common.glsl): on CPU devices with texel buffers, when every row starts on a texel.
 * On llvmpipe that replaces lane-by-lane storage-buffer loads with gathers (see vk_gemm.c), and
 * the backward's texel variants also unroll their loops over head_dim (TW_D_UNROLL). lavapipe,
 * B=4 H=8 T=256 D=64: forward 317 -> 50 ms, backward 1010 -> 502 (texels) -> 186 ms (unrolled). */
static bool texel_inputs(tw_vk_context *vk, const tw_attention_args *args, bool backward) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    if (!limits->is_cpu || !limits->texel_buffers || args->head_dim % 4 != 0) return false;
    const int64_t values[] = {(int64_t)args->q.offset, (int64_t)args->k.offset,
                              (int64_t)args->v.offset, args->qkv_stride.b,
                              args->qkv_stride.h,      args->qkv_stride.t,
                              args->out_stride.b,      args->out_stride.h,
                              args->out_stride.t,      backward ? (int64_t)args->dout.offset : 0};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i] % 4 != 0) return false;
    const tw_buffer *buffers[] = {args->q.buffer, args->k.buffer, args->v.buffer,
                                  args->dout.buffer};
    const uint64_t most = limits->max_texel_elements < 0x7FFFFFFFull ? limits->max_texel_elements
                                                                     : 0x7FFFFFFFull;
    for (int i = 0; i < (backward ? 4 : 3); i++)
        if (buffers[i]->bytes / 16 > most) return false;
    return true;
}

/* One dispatch of `shader` (specialised for the head dimension) over `items` invocations,
 * one item each (tw_vk_dispatch_1d); with `texel`, its *_texel variant with bindings 0..3 as
 * texel buffers. */
static tw_status attention_dispatch(tw_vk_context *vk, const char *shader, bool texel,
                                    const tw_attention_args *args, const attention_push *push,
                                    tw_buffer *const *buffers, int buffer_count, uint64_t items) {
    const uint32_t spec[2] = {ATTENTION_WORKGROUP, (uint32_t)args->head_dim};
    char name[48];
    snprintf(name, sizeof name, "%s%s", shader, texel ? "_texel" : "");
    /* q, k, v and (backward) dout are the first bindings; the forward binds out at 3. */
    const uint32_t texels = !texel ? 0u : buffer_count == 5 ? 0x7u : 0xFu;
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get_texel(vk, name, buffer_count, texels, sizeof *push, spec, 2,
                                  &kernel));
    return tw_vk_dispatch_1d(vk, kernel, buffers, buffer_count, push, sizeof *push, items,
                             ATTENTION_WORKGROUP);
}

/* Invocations of the pair-per-invocation shaders (fwd, dq, dkdv): `pairs` per head. */
static uint64_t pair_items(const tw_attention_args *args, uint32_t pairs) {
    return (uint64_t)args->batch * (uint64_t)args->heads * pairs;
}

/* Mesa's llvmpipe (lavapipe) ends every shader invocation's loops after 65535 iterations in
 * total (LP_MAX_TGSI_LOOP_ITERATIONS: one counter per invocation, decremented on every loop
 * back-edge), and the results of a longer invocation are silently wrong. An attention row costs
 * loop iterations in proportion to its keys. The forward shader unrolls its loops over head_dim
 * and stays correct to T = 4096 at D = 64 (measured); T past 8192 is refused on llvmpipe. The
 * backward shaders' storage-buffer variants do not unroll them (the texel variants, used where
 * rows are 4-float aligned, do): one invocation was correct for T x D up to ~45K (700 x 64,
 * 400 x 96, 1500 x 32) and wrong from ~51K (400 x 128, 850 x 64), which fits a cost of about
 * D + D/4 + 3 iterations per key (or query) row plus 3 D for loading and storing its rows (the
 * shaders have since summed their rows 4 floats per iteration, which only lowers it). So on
 * CPU devices the backward sums over ranges of at most backward_range() rows per dispatch, sized
 * for half the limit; other drivers have no such limit and get the whole row in one dispatch. */
enum { LOOP_BUDGET = 32768, BACKWARD_BLOCK = 8 /* RB of the backward shaders */ };

static bool is_llvmpipe(tw_vk_context *vk) {
    return tw_vk_get_limits(vk)->is_cpu &&
           strstr(tw_device_get_info(tw_vk_device(vk))->name, "llvmpipe") != NULL;
}

/* Rows per backward dispatch: T on GPUs; on CPU devices the most that keep an invocation's loop
 * iterations within LOOP_BUDGET, a multiple of the shaders' block of 8 rows (0: not even one
 * block fits, so head_dim is too large for this device). */
static uint32_t backward_range(tw_vk_context *vk, const tw_attention_args *args) {
    const uint64_t T = (uint64_t)args->seq_len, D = (uint64_t)args->head_dim;
    if (!tw_vk_get_limits(vk)->is_cpu) return (uint32_t)T;
    const uint64_t per_row = D + D / 4 + D % 4 + 3, fixed = 3 * D;
    if (fixed + BACKWARD_BLOCK * per_row > LOOP_BUDGET) return 0;
    uint64_t rows = (LOOP_BUDGET - fixed) / per_row / BACKWARD_BLOCK * BACKWARD_BLOCK;
    return (uint32_t)(rows < T ? rows : T);
}

static tw_status check_loop_limits(tw_vk_context *vk, const tw_attention_args *args,
                                   bool backward) {
    if (backward) {
        if (backward_range(vk, args) > 0 || args->seq_len == 0) return TW_OK;
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: attention backward with head_dim %d is beyond what this CPU "
                        "Vulkan device computes correctly: its shaders stop after 65535 loop "
                        "iterations and one block of rows needs more; use another device",
                        args->head_dim);
    }
    if (!is_llvmpipe(vk) || args->seq_len <= 8192) return TW_OK;
    return tw_error(TW_ERR_UNSUPPORTED,
                    "vulkan: attention forward with T=%d is beyond what llvmpipe (lavapipe) "
                    "computes correctly: it stops a shader's loops after 65535 iterations in all "
                    "(supported here: T <= 8192); use another device for this shape",
                    args->seq_len);
}

tw_status tw_vk_attention_fwd(void *context, const tw_attention_args *args) {
    tw_vk_context *vk = context;
    TW_TRY(check_loop_limits(vk, args, false));
    attention_push push;
    TW_TRY(push_make(args, false, &push));
    tw_buffer *buffers[5] = {args->q.buffer, args->k.buffer, args->v.buffer, args->out.buffer,
                             args->lse.buffer};
    return attention_dispatch(vk, "attention_fwd", texel_inputs(vk, args, false), args, &push,
                              buffers, 5,
                              pair_items(args, push.pair_count));
}

/* dQ over keys [begin, end): only the query pairs (ia = T-1-2w, ia - 1) with ia >= begin have
 * keys there. */
static tw_status dq_range(tw_vk_context *vk, const tw_attention_args *args, attention_push push,
                          tw_buffer *delta, uint32_t begin, uint32_t end) {
    const uint32_t T = (uint32_t)args->seq_len, all_pairs = (T + 1) / 2;
    const uint32_t pairs = (T - 1 - begin) / 2 + 1;
    push.range_begin = begin;
    push.range_end = end;
    push.pair_count = pairs < all_pairs ? pairs : all_pairs;
    tw_buffer *buffers[7] = {args->q.buffer,    args->k.buffer,   args->v.buffer,
                             args->dout.buffer, args->lse.buffer, delta,
                             args->dq.buffer};
    return attention_dispatch(vk, "attention_bwd_dq", texel_inputs(vk, args, true), args, &push,
                              buffers, 7,
                              pair_items(args, push.pair_count));
}

/* dK, dV over query rows [begin, end): only the key pairs (ja = 2w, ja + 1) with ja < end see
 * rows there. */
static tw_status dkdv_range(tw_vk_context *vk, const tw_attention_args *args,
                            attention_push push, tw_buffer *delta, uint32_t begin,
                            uint32_t end) {
    push.range_begin = begin;
    push.range_end = end;
    push.pair_count = (end + 1) / 2;
    tw_buffer *buffers[8] = {args->q.buffer,    args->k.buffer,   args->v.buffer,
                             args->dout.buffer, args->lse.buffer, delta,
                             args->dk.buffer,   args->dv.buffer};
    return attention_dispatch(vk, "attention_bwd_dkdv", texel_inputs(vk, args, true), args, &push,
                              buffers, 8,
                              pair_items(args, push.pair_count));
}

/* The backward dispatches, given the (B*H*T) delta scratch: delta, then dQ and dK/dV over
 * ranges of `range` rows in increasing order (the host puts a barrier between dispatches, so
 * each range adds onto the sum of the ones before). */
static tw_status backward(tw_vk_context *vk, const tw_attention_args *args,
                          const attention_push *push, tw_buffer *delta) {
    const uint32_t T = (uint32_t)args->seq_len, range = backward_range(vk, args);
    uint64_t rows = (uint64_t)args->batch * (uint64_t)args->heads * T;
    tw_buffer *delta_buffers[3] = {args->out.buffer, args->dout.buffer, delta};
    TW_TRY(attention_dispatch(vk, "attention_bwd_delta", false, args, push, delta_buffers, 3,
                              rows));
    for (uint32_t begin = 0; begin < T; begin += range) {
        uint32_t end = T - begin > range ? begin + range : T;
        TW_TRY(dq_range(vk, args, *push, delta, begin, end));
        TW_TRY(dkdv_range(vk, args, *push, delta, begin, end));
    }
    return TW_OK;
}

tw_status tw_vk_attention_bwd(void *context, const tw_attention_args *args) {
    tw_vk_context *vk = context;
    TW_TRY(check_loop_limits(vk, args, true));
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
