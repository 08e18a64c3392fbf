/* twist Vulkan backend: fused causal attention, two variants (backends/vulkan/README.md):
 * "rows" (shaders/attention_fwd.comp, attention_bwd_delta.comp, attention_bwd_dq.comp,
 * attention_bwd_dkdv.comp; shared declarations in shaders/attention_common.glsl), described
 * first, and "tiled" for GPUs (shaders/attention_*_tiled.comp; the second half of this file),
 * then the choice between them.
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
#include <stdlib.h>
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

static tw_status fwd_rows(tw_vk_context *vk, const tw_attention_args *args) {
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

/* The backward's dQ and dK/dV dispatches of one variant, given the delta scratch. */
typedef tw_status (*backward_fn)(tw_vk_context *vk, const tw_attention_args *args,
                                const attention_push *push, tw_buffer *delta);

static tw_status backward_with_delta(tw_vk_context *vk, const tw_attention_args *args,
                                     backward_fn passes) {
    attention_push push;
    TW_TRY(push_make(args, true, &push));
    size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_device *device = tw_vk_device(vk);
    tw_buffer *delta = NULL;
    TW_TRY(tw_buffer_alloc(device, rows * sizeof(float), &delta));
    tw_status status = passes(vk, args, &push, delta);
    /* The dispatches read delta on the device: wait for them before the memory can be reused. */
    tw_status synced = tw_device_sync(device);
    tw_buffer_free(delta);
    return status != TW_OK ? status : synced;
}

/* ------------------------------------------------------------------------------------------------
 * The tiled variant (shaders/attention_*_tiled.comp, layout of the work in attention_tiled.glsl):
 * flash-attention tiles for GPUs. A workgroup of TILED_WG invocations per (b, h, block of BLK
 * rows) stages blocks of the other side's rows in shared memory, so every key and value row read
 * from global memory serves BLK query rows (the rows variant reads them once per pair of rows,
 * from every invocation). */
enum { TILED_WG = 128 };

/* Workgroup size of the tiled shaders at block size blk (attention_tiled.glsl). */
static uint32_t tiled_wg(uint32_t blk) { return blk == 8 ? 64 : TILED_WG; }

/* Shared-memory floats of a tiled shader at block size blk (the arrays it declares: tiles of
 * vec4 rows, attention_tiled.glsl). */
static uint64_t tiled_shared_floats(uint64_t blk, uint64_t D, int pass) {
    const uint64_t tile = blk * ((D + 3) / 4 + 1) * 4, scores = blk * (blk / 4 + 1) * 4;
    switch (pass) {
    case 0: return 2 * tile + scores + 16 * blk;       /* forward: Qs, KVs, Ps, red_max/sum */
    case 1: return 4 * tile + scores + 2 * blk;        /* dQ: Qs, Gs, Ks, Vs, Ds, lse, delta */
    default: return 4 * tile + 2 * scores + 2 * blk;   /* dK/dV: also Ps */
    }
}

/* BLK for a pass (0 forward, 1 dQ, 2 dK/dV) at head dimension D: 32, or 16 or 8 where 32 does
 * not fit the device's shared memory (lavapipe has 32 KB: the backward at D = 128 takes 8); 0
 * where none does. */
static uint32_t tiled_block(tw_vk_context *vk, int D, int pass) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    if (limits->max_workgroup_size < TILED_WG) return 0;
    for (uint32_t blk = 32; blk >= 8; blk /= 2)
        if (tiled_shared_floats(blk, (uint64_t)D, pass) * sizeof(float) <=
            limits->shared_memory_bytes)
            return blk;
    return 0;
}

/* Whether the tiled variant computes this call correctly here; else TW_ERR_UNSUPPORTED saying
 * why. On llvmpipe each invocation's loop iterations must stay within LOOP_BUDGET (see
 * backward_range): per block of rows it loops over the tile loads, HD and BLK. */
static tw_status tiled_check(tw_vk_context *vk, const tw_attention_args *args, bool backward) {
    const uint64_t D = (uint64_t)args->head_dim, T = (uint64_t)args->seq_len;
    const int passes[2] = {backward ? 1 : 0, backward ? 2 : 0};
    for (int p = 0; p < 2; p++) {
        const uint32_t blk = tiled_block(vk, args->head_dim, passes[p]);
        if (blk == 0)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: tiled attention with head_dim %d needs more shared memory "
                            "than this device's %u bytes",
                            args->head_dim, tw_vk_get_limits(vk)->shared_memory_bytes);
        const uint64_t loads = (blk * ((D + 3) / 4) + tiled_wg(blk) - 1) / tiled_wg(blk);
        const uint64_t per_block = 2 * loads + (D + 3) / 4 + blk + 8;
        const uint64_t blocks = (T + blk - 1) / blk;
        if (is_llvmpipe(vk) && loads + blocks * per_block > LOOP_BUDGET)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: tiled attention at T=%d, head_dim %d is beyond what llvmpipe "
                            "(lavapipe) computes correctly (it stops a shader's loops after 65535 "
                            "iterations); the rows variant handles it",
                            args->seq_len, args->head_dim);
    }
    return TW_OK;
}

/* One dispatch of tiled shader `shader` over B*H*ceil(T/blk) workgroups (x, then y). */
static tw_status tiled_dispatch(tw_vk_context *vk, const char *shader, uint32_t blk,
                                const tw_attention_args *args, const attention_push *push,
                                tw_buffer *const *buffers, int buffer_count) {
    const uint32_t spec[3] = {tiled_wg(blk), (uint32_t)args->head_dim, blk};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, shader, buffer_count, sizeof *push, spec, 3, &kernel));
    const uint64_t blocks = ((uint64_t)args->seq_len + blk - 1) / blk;
    const uint64_t groups = (uint64_t)args->batch * (uint64_t)args->heads * blocks;
    if (groups == 0) return TW_OK;
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    const uint64_t x = groups < limits->max_workgroup_count[0] ? groups
                                                               : limits->max_workgroup_count[0];
    const uint64_t y = (groups + x - 1) / x;
    if (y > limits->max_workgroup_count[1])
        return tw_error(TW_ERR_UNSUPPORTED, "vulkan: %s: %llu workgroups exceed the device's grid",
                        shader, (unsigned long long)groups);
    return tw_vk_dispatch(vk, kernel, buffers, buffer_count, push, sizeof *push, (uint32_t)x,
                          (uint32_t)y, 1);
}

static tw_status fwd_tiled(tw_vk_context *vk, const tw_attention_args *args) {
    TW_TRY(tiled_check(vk, args, false));
    attention_push push;
    TW_TRY(push_make(args, false, &push));
    tw_buffer *buffers[5] = {args->q.buffer, args->k.buffer, args->v.buffer, args->out.buffer,
                             args->lse.buffer};
    return tiled_dispatch(vk, "attention_fwd_tiled", tiled_block(vk, args->head_dim, 0), args,
                          &push, buffers, 5);
}

/* delta, then dK/dV over key blocks, then dQ over query blocks (both read delta). */
static tw_status backward_tiled(tw_vk_context *vk, const tw_attention_args *args,
                                const attention_push *push, tw_buffer *delta) {
    uint64_t rows = (uint64_t)args->batch * (uint64_t)args->heads * (uint64_t)args->seq_len;
    tw_buffer *delta_buffers[3] = {args->out.buffer, args->dout.buffer, delta};
    TW_TRY(attention_dispatch(vk, "attention_bwd_delta", false, args, push, delta_buffers, 3,
                              rows));
    tw_buffer *dkdv[8] = {args->q.buffer,    args->k.buffer,   args->v.buffer,
                          args->dout.buffer, args->lse.buffer, delta,
                          args->dk.buffer,   args->dv.buffer};
    TW_TRY(tiled_dispatch(vk, "attention_bwd_dkdv_tiled", tiled_block(vk, args->head_dim, 2),
                          args, push, dkdv, 8));
    tw_buffer *dq[7] = {args->q.buffer,    args->k.buffer, args->v.buffer, args->dout.buffer,
                        args->lse.buffer, delta,          args->dq.buffer};
    return tiled_dispatch(vk, "attention_bwd_dq_tiled", tiled_block(vk, args->head_dim, 1), args,
                          push, dq, 7);
}

static tw_status bwd_rows(tw_vk_context *vk, const tw_attention_args *args) {
    TW_TRY(check_loop_limits(vk, args, true));
    return backward_with_delta(vk, args, backward);
}

static tw_status bwd_tiled(tw_vk_context *vk, const tw_attention_args *args) {
    TW_TRY(tiled_check(vk, args, true));
    return backward_with_delta(vk, args, backward_tiled);
}

/* ------------------------------------------------------------------------------------------------
 * Variants and their choice. "rows" (the pair-of-rows shaders, reading texels where rows are
 * aligned) suits CPU devices; "tiled" suits GPUs. Unless forced (tw_device_force_kernel_variant),
 * the first forward call of a shape class (tw_attention_class_key: D, T bucket) measures both in
 * place (tw_attention_measure: no extra device memory) and caches the faster in tw_tune_cache for
 * the forward and the backward of the class (a backward before any forward of its class takes
 * the default below without caching).
 * CPU devices measure only classes up to T = 64 (and tiled must win there by 10%): on lavapipe
 * tiled ran 7-12x slower than rows (`twist bench attention --device vulkan:0 --batch 4 --heads 8
 * --seq 256 --head-dim 64 --variants`: fwd 260 vs 30 ms, bwd 1.78 s vs 0.15 s; barriers and
 * shared memory are costly on llvmpipe), and measuring tiled at T = 2048 there would take long;
 * larger classes get rows. TWIST_TUNE=off skips measuring: tiled on GPUs, rows on CPU
 * devices. */
enum { CPU_MEASURED_T = 64 };
enum { VARIANT_ROWS = 0, VARIANT_TILED = 1, VARIANT_COUNT = 2 };
static const char *const VARIANT_NAMES[VARIANT_COUNT] = {"rows", "tiled"};

struct tw_vk_attention_state {
    int forced[2]; /* per op (0 forward, 1 backward): a variant, or -1 */
};

static tw_vk_attention_state *state_of(tw_vk_context *vk) {
    tw_vk_op_settings *settings = tw_vk_op_settings_of(vk);
    if (!settings->attention) {
        settings->attention = calloc(1, sizeof *settings->attention);
        if (!settings->attention) return NULL;
        settings->attention->forced[0] = settings->attention->forced[1] = -1;
    }
    return settings->attention;
}

void tw_vk_attention_release(tw_vk_context *vk) {
    tw_vk_op_settings *settings = tw_vk_op_settings_of(vk);
    if (!settings->attention) return;
    free(settings->attention);
    settings->attention = NULL;
}

static tw_status run_variant(tw_vk_context *vk, const tw_attention_args *args, bool backward,
                             int variant) {
    if (variant == VARIANT_TILED) return backward ? bwd_tiled(vk, args) : fwd_tiled(vk, args);
    return backward ? bwd_rows(vk, args) : fwd_rows(vk, args);
}

static tw_status run_fwd(void *context, const tw_attention_args *args, int variant) {
    return run_variant(context, args, false, variant);
}

/* Whether the tiled variant can run this call, without reporting why not. */
static bool tiled_usable(tw_vk_context *vk, const tw_attention_args *args, bool backward) {
    const uint32_t passes[2] = {backward ? 1u : 0u, backward ? 2u : 0u};
    for (int p = 0; p < 2; p++)
        if (tiled_block(vk, args->head_dim, (int)passes[p]) == 0) return false;
    if (!is_llvmpipe(vk)) return true;
    return tiled_check(vk, args, backward) == TW_OK; /* its message stays unreported */
}

/* The variant for this call: forced, cached, measured now, or the default. */
static tw_status choose(tw_vk_context *vk, const tw_attention_args *args, bool backward,
                        int *variant) {
    tw_vk_attention_state *state = state_of(vk);
    if (!state) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: attention: out of memory");
    if (state->forced[backward] >= 0) {
        *variant = state->forced[backward];
        return TW_OK;
    }
    const bool cpu = tw_vk_get_limits(vk)->is_cpu;
    if (!tiled_usable(vk, args, backward)) {
        *variant = VARIANT_ROWS;
        return TW_OK;
    }
    *variant = cpu ? VARIANT_ROWS : VARIANT_TILED;
    const tw_tune_mode mode = tw_tune_mode_from_env();
    if (mode == TW_TUNE_MODE_OFF || (cpu && args->seq_len > CPU_MEASURED_T)) return TW_OK;
    const tw_attention_tuning tuning = {
        .device = tw_vk_device(vk), .cache = tw_vk_tune_cache(vk), /* shared with GEMM */
        .backend = "vulkan", .names = VARIANT_NAMES, .count = VARIANT_COUNT, .fwd = run_fwd,
        .context = vk, .reference = *variant, .margin = cpu ? 0.9 : 1.0};
    return tw_attention_tuned_variant(&tuning, args, backward, variant);
}

tw_status tw_vk_attention_fwd(void *context, const tw_attention_args *args) {
    int variant = VARIANT_ROWS;
    TW_TRY(choose(context, args, false, &variant));
    return run_variant(context, args, false, variant);
}

tw_status tw_vk_attention_bwd(void *context, const tw_attention_args *args) {
    int variant = VARIANT_ROWS;
    TW_TRY(choose(context, args, true, &variant));
    return run_variant(context, args, true, variant);
}

int tw_vk_attention_variants(tw_vk_context *vk, const char *op, const char **names,
                             int capacity) {
    if (tw_attention_op_index(op) < 0) return 0;
    /* Best guess first: tiled on GPUs, rows on CPU devices. */
    const bool cpu = tw_vk_get_limits(vk)->is_cpu;
    const char *order[VARIANT_COUNT] = {VARIANT_NAMES[cpu ? VARIANT_ROWS : VARIANT_TILED],
                                        VARIANT_NAMES[cpu ? VARIANT_TILED : VARIANT_ROWS]};
    for (int i = 0; i < VARIANT_COUNT && i < capacity; i++) names[i] = order[i];
    return VARIANT_COUNT;
}

tw_status tw_vk_attention_force_variant(tw_vk_context *vk, const char *op, const char *name) {
    tw_vk_attention_state *state = state_of(vk);
    if (!state) return tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: attention: out of memory");
    return tw_attention_force(state->forced, "vulkan", op, name, VARIANT_NAMES, VARIANT_COUNT);
}
