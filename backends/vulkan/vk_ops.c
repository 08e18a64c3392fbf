/* twist Vulkan backend: launches of the row ops (softmax, layernorm, softmax_xent), embedding,
 * sum_sq, AdamW and gather/scatter. Shaders: shaders/{softmax,layernorm,xent,embedding,reduce,
 * adamw,gather}*.comp; conventions in vk_internal.h.
 *
 * Arguments arrive validated (src/core/ops.c). Each op checks that the element offsets its shader
 * computes fit the 32-bit push constants, fills its push-constant struct (fields in the order of
 * the shader's block, all 4-byte scalars, so the C and std430 layouts agree) and records its
 * dispatches. Row ops run one workgroup per row; elementwise ops one invocation per element.
 * Dispatches are capped at the device's group count limit and the shaders loop over the rest. */
#include <math.h>
#include <stddef.h>

#include "vk_internal.h"
#include "vk_ops.h"

/* Workgroup size of the row and elementwise shaders (specialization constant 0): a power of two
 * (the shared-memory trees need one). GPUs like many invocations per row; lavapipe runs a
 * workgroup on one core as SIMD lanes and pays for every barrier per group of lanes, so it gets
 * smaller groups. */
enum { ROW_WG_GPU = 256, ROW_WG_CPU = 32, ELEMENT_WG = 256 };
/* Partial sums of sum_sq's first level (its second level adds them in one workgroup). */
enum { SUM_SQ_PARTS = 1024 };
/* Columns per workgroup of layernorm_bwd_dw.comp (its local_size_x). */
enum { LAYERNORM_DW_COLS = 32 };

/* ------------------------------------------------------------------------------------------------
 * Launch helpers
 * ---------------------------------------------------------------------------------------------- */

/* Largest power of two <= both cap and the device's invocation limit. */
static uint32_t pow2_wg(const tw_vk_context *vk, uint32_t cap) {
    uint32_t limit = tw_vk_get_limits(vk)->max_workgroup_size;
    if (limit < cap) cap = limit;
    uint32_t wg = 1;
    while (wg * 2 <= cap) wg *= 2;
    return wg;
}

static uint32_t row_wg(const tw_vk_context *vk) {
    return pow2_wg(vk, tw_vk_get_limits(vk)->is_cpu ? ROW_WG_CPU : ROW_WG_GPU);
}

/* Groups for `items` work items of `per_group` each, capped at the device's x limit (the shaders
 * loop over what a capped dispatch leaves). */
static uint32_t group_count(const tw_vk_context *vk, size_t items, uint32_t per_group) {
    size_t groups = (items + per_group - 1) / per_group;
    size_t limit = tw_vk_get_limits(vk)->max_workgroup_count[0];
    return (uint32_t)(groups < limit ? groups : limit);
}

/* Element offsets and indices are uint32 in the shaders: the last element a tensor reaches,
 * offset + extent - 1, must fit. */
static bool fits_u32(tw_mem mem, size_t extent) {
    return mem.offset <= TW_VK_MAX_ELEMENTS && extent <= TW_VK_MAX_ELEMENTS - mem.offset;
}

static tw_status too_large(const char *op) {
    return tw_error(TW_ERR_UNSUPPORTED,
                    "vulkan: %s: tensors reaching 2^32 elements into their buffer are not "
                    "supported (32-bit shader offsets)",
                    op);
}

/* Checks `count` (tensor, extent) pairs for fits_u32. */
typedef struct extent_check {
    tw_mem mem;
    size_t extent;
} extent_check;

static tw_status check_extents(const char *op, const extent_check *checks, int count) {
    for (int i = 0; i < count; i++)
        if (!fits_u32(checks[i].mem, checks[i].extent)) return too_large(op);
    return TW_OK;
}

/* One dispatch of `shader` over groups_x workgroups of wg invocations (wg = 0: the shader fixes
 * its own size and takes no specialization constant). */
static tw_status launch_2d(tw_vk_context *vk, const char *shader, tw_buffer *const *buffers,
                           int buffer_count, const void *push, uint32_t push_bytes, uint32_t wg,
                           uint32_t groups_x, uint32_t groups_y) {
    if (groups_x == 0 || groups_y == 0) return TW_OK;
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, shader, buffer_count, push_bytes, wg ? &wg : NULL, wg ? 1 : 0,
                            &kernel));
    return tw_vk_dispatch(vk, kernel, buffers, buffer_count, push, push_bytes, groups_x, groups_y,
                          1);
}

static tw_status launch(tw_vk_context *vk, const char *shader, tw_buffer *const *buffers,
                        int buffer_count, const void *push, uint32_t push_bytes, uint32_t wg,
                        uint32_t groups_x) {
    return launch_2d(vk, shader, buffers, buffer_count, push, push_bytes, wg, groups_x, 1);
}

/* One workgroup per row (rows > 0). */
static tw_status launch_rows(tw_vk_context *vk, const char *shader, tw_buffer *const *buffers,
                             int buffer_count, const void *push, uint32_t push_bytes, size_t rows) {
    return launch(vk, shader, buffers, buffer_count, push, push_bytes, row_wg(vk),
                  group_count(vk, rows, 1));
}

/* One invocation per element (the shader guards i < n). */
static tw_status launch_elements(tw_vk_context *vk, const char *shader,
                                 tw_buffer *const *buffers, int buffer_count, const void *push,
                                 uint32_t push_bytes, size_t n) {
    if (n == 0) return TW_OK;
    uint32_t wg = pow2_wg(vk, ELEMENT_WG);
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, shader, buffer_count, push_bytes, &wg, 1, &kernel));
    return tw_vk_dispatch_1d(vk, kernel, buffers, buffer_count, push, push_bytes, n, wg);
}

#define U32(x) ((uint32_t)(x))

/* ------------------------------------------------------------------------------------------------
 * Softmax
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                            tw_mem out) {
    size_t n = (size_t)rows * (size_t)cols;
    const extent_check checks[] = {{in, n}, {out, n}};
    TW_TRY(check_extents("softmax_fwd", checks, 2));
    struct {
        uint32_t rows, cols, causal_t, in_off, out_off;
    } push = {U32(rows), U32(cols), U32(causal_t > 0 ? causal_t : 0), U32(in.offset),
              U32(out.offset)};
    tw_buffer *buffers[] = {in.buffer, out.buffer};
    return launch_rows(context, TW_VK_TYPED("softmax_fwd", in.dtype),
                       buffers, 2, &push, sizeof push, rows);
}

tw_status tw_vk_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx) {
    size_t n = (size_t)rows * (size_t)cols;
    const extent_check checks[] = {{y, n}, {dy, n}, {dx, n}};
    TW_TRY(check_extents("softmax_bwd", checks, 3));
    struct {
        uint32_t rows, cols, y_off, dy_off, dx_off;
    } push = {U32(rows), U32(cols), U32(y.offset), U32(dy.offset), U32(dx.offset)};
    tw_buffer *buffers[] = {y.buffer, dy.buffer, dx.buffer};
    return launch_rows(context, TW_VK_TYPED("softmax_bwd", y.dtype),
                       buffers, 3, &push, sizeof push, rows);
}

/* ------------------------------------------------------------------------------------------------
 * LayerNorm
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                              tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd) {
    size_t n = (size_t)rows * (size_t)cols;
    const extent_check checks[] = {{x, n},        {weight, (size_t)cols}, {bias, (size_t)cols},
                                   {out, n},      {mean, (size_t)rows},   {rstd, (size_t)rows}};
    TW_TRY(check_extents("layernorm_fwd", checks, 6));
    struct {
        uint32_t rows, cols;
        float eps;
        uint32_t x_off, w_off, b_off, out_off, mean_off, rstd_off;
    } push = {U32(rows),         U32(cols),       eps,
              U32(x.offset),     U32(weight.offset), U32(bias.offset),
              U32(out.offset),   U32(mean.offset),   U32(rstd.offset)};
    tw_buffer *buffers[] = {x.buffer, weight.buffer, bias.buffer,
                            out.buffer, mean.buffer, rstd.buffer};
    return launch_rows(context, TW_VK_TYPED("layernorm_fwd", x.dtype),
                       buffers, 6, &push, sizeof push, rows);
}

/* Two dispatches: dx by rows (layernorm_bwd_dx.comp), then dweight and dbias by columns
 * (layernorm_bwd_dw.comp), each a fixed-order sum. */
tw_status tw_vk_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                              tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                              tw_mem dbias) {
    tw_vk_context *vk = context;
    size_t n = (size_t)rows * (size_t)cols;
    const extent_check checks[] = {
        {dout, n}, {x, n},  {weight, (size_t)cols},  {mean, (size_t)rows},
        {rstd, (size_t)rows}, {dx, n}, {dweight, (size_t)cols}, {dbias, (size_t)cols}};
    TW_TRY(check_extents("layernorm_bwd", checks, 8));

    struct {
        uint32_t rows, cols, dout_off, x_off, w_off, mean_off, rstd_off, dx_off;
    } push_dx = {U32(rows),        U32(cols),        U32(dout.offset), U32(x.offset),
                 U32(weight.offset), U32(mean.offset), U32(rstd.offset), U32(dx.offset)};
    tw_buffer *dx_buffers[] = {dout.buffer, x.buffer,    weight.buffer,
                               mean.buffer, rstd.buffer, dx.buffer};
    TW_TRY(launch_rows(vk, TW_VK_TYPED("layernorm_bwd_dx", x.dtype),
                       dx_buffers, 6, &push_dx, sizeof push_dx, rows));

    struct {
        uint32_t rows, cols, dout_off, x_off, mean_off, rstd_off, dw_off, db_off;
    } push_dw = {U32(rows),        U32(cols),        U32(dout.offset),    U32(x.offset),
                 U32(mean.offset), U32(rstd.offset), U32(dweight.offset), U32(dbias.offset)};
    tw_buffer *dw_buffers[] = {dout.buffer, x.buffer,       mean.buffer,
                               rstd.buffer, dweight.buffer, dbias.buffer};
    return launch(vk, TW_VK_TYPED("layernorm_bwd_dw", x.dtype),
                  dw_buffers, 6, &push_dw, sizeof push_dw, 0,
                  group_count(vk, (size_t)cols, LAYERNORM_DW_COLS));
}

/* ------------------------------------------------------------------------------------------------
 * Softmax + cross-entropy
 * ---------------------------------------------------------------------------------------------- */

/* logits (rows, ld) of which the first vocab columns are read. */
static size_t logits_extent(int rows, int vocab, int ld) {
    return (size_t)(rows - 1) * (size_t)ld + (size_t)vocab;
}

tw_status tw_vk_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                                 tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct) {
    const extent_check checks[] = {{logits, logits_extent(rows, vocab, ld)},
                                   {targets, (size_t)rows},
                                   {losses, (size_t)rows},
                                   {lse, (size_t)rows},
                                   {correct, (size_t)rows}};
    TW_TRY(check_extents("softmax_xent_fwd", checks, 5));
    struct {
        uint32_t rows, vocab, ld, logits_off, targets_off, losses_off, lse_off, correct_off;
    } push = {U32(rows),           U32(vocab),          U32(ld),
              U32(logits.offset),  U32(targets.offset), U32(losses.offset),
              U32(lse.offset),     U32(correct.offset)};
    tw_buffer *buffers[] = {logits.buffer, targets.buffer, losses.buffer, lse.buffer,
                            correct.buffer};
    return launch_rows(context, TW_VK_TYPED("xent_fwd", logits.dtype),
                       buffers, 5, &push, sizeof push, rows);
}

tw_status tw_vk_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                                 tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits) {
    size_t extent = logits_extent(rows, vocab, ld);
    const extent_check checks[] = {
        {logits, extent}, {targets, (size_t)rows}, {lse, (size_t)rows}, {dlogits, extent}};
    TW_TRY(check_extents("softmax_xent_bwd", checks, 4));
    struct {
        uint32_t rows, vocab, ld;
        float grad_scale;
        uint32_t logits_off, targets_off, lse_off, dlogits_off;
    } push = {U32(rows),          U32(vocab),          U32(ld),          grad_scale,
              U32(logits.offset), U32(targets.offset), U32(lse.offset), U32(dlogits.offset)};
    tw_buffer *buffers[] = {logits.buffer, targets.buffer, lse.buffer, dlogits.buffer};
    return launch_rows(context, TW_VK_TYPED("xent_bwd", logits.dtype),
                       buffers, 4, &push, sizeof push, rows);
}

/* ------------------------------------------------------------------------------------------------
 * Embedding
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_embedding_fwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out) {
    size_t bt = (size_t)batch * (size_t)seq_len, n = bt * (size_t)channels;
    const extent_check checks[] = {{tokens, bt},
                                   {wte, (size_t)vocab * (size_t)channels},
                                   {wpe, (size_t)seq_len * (size_t)channels},
                                   {out, n}};
    TW_TRY(check_extents("embedding_fwd", checks, 4));
    struct {
        uint32_t n, seq_len, channels, tokens_off, wte_off, wpe_off, out_off;
    } push = {U32(n),           U32(seq_len),     U32(channels),   U32(tokens.offset),
              U32(wte.offset),  U32(wpe.offset),  U32(out.offset)};
    tw_buffer *buffers[] = {tokens.buffer, wte.buffer, wpe.buffer, out.buffer};
    return launch_elements(context, TW_VK_TYPED("embedding_fwd", wte.dtype),
                           buffers, 4, &push, sizeof push, n);
}

/* Token buckets of embedding_dwte.comp: each (column, bucket) invocation scans all B*T tokens,
 * so more buckets mean more parallel invocations and more redundant scanning. A CPU device has
 * parallelism enough in the columns; a GPU wants about EMBEDDING_INVOCATIONS invocations. */
enum { EMBEDDING_INVOCATIONS = 1 << 16, EMBEDDING_MAX_BUCKETS = 64 };

static uint32_t embedding_buckets(const tw_vk_context *vk, int channels) {
    if (tw_vk_get_limits(vk)->is_cpu) return 1;
    uint32_t buckets = EMBEDDING_INVOCATIONS / (uint32_t)channels;
    if (buckets > EMBEDDING_MAX_BUCKETS) buckets = EMBEDDING_MAX_BUCKETS;
    uint32_t limit = tw_vk_get_limits(vk)->max_workgroup_count[1];
    if (buckets > limit) buckets = limit;
    return buckets ? buckets : 1;
}

/* dwpe (T, C) by one invocation per element summing over the batch (embedding_dwpe.comp), then
 * dwte (vocab, C) by (column, token bucket) invocations that add positions in order
 * (embedding_dwte.comp). Both fixed-order, no atomics; scratch only for a 16-bit dwte. */
tw_status tw_vk_embedding_bwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe) {
    tw_vk_context *vk = context;
    size_t bt = (size_t)batch * (size_t)seq_len, tc = (size_t)seq_len * (size_t)channels;
    const extent_check checks[] = {{tokens, bt},
                                   {dout, bt * (size_t)channels},
                                   {dwte, (size_t)vocab * (size_t)channels},
                                   {dwpe, tc}};
    TW_TRY(check_extents("embedding_bwd", checks, 4));

    struct {
        uint32_t n, batch, dout_off, dwpe_off;
    } push_pe = {U32(tc), U32(batch), U32(dout.offset), U32(dwpe.offset)};
    tw_buffer *pe_buffers[] = {dout.buffer, dwpe.buffer};
    TW_TRY(launch_elements(vk, TW_VK_TYPED("embedding_dwpe", dout.dtype),
                           pe_buffers, 2, &push_pe, sizeof push_pe, tc));

    uint32_t buckets = embedding_buckets(vk, channels);
    struct {
        uint32_t bt, channels, buckets, tokens_off, dout_off, dwte_off;
    } push_te = {U32(bt),           U32(channels),  buckets,
                 U32(tokens.offset), U32(dout.offset), U32(dwte.offset)};
    tw_buffer *te_buffers[] = {tokens.buffer, dout.buffer, dwte.buffer};
    uint32_t wg = pow2_wg(vk, ELEMENT_WG);
    const char *dwte_shader = TW_VK_TYPED("embedding_dwte", dout.dtype);
    if (dwte.dtype == TW_DTYPE_F32)
        return launch_2d(vk, dwte_shader, te_buffers, 3, &push_te, sizeof push_te, wg,
                         group_count(vk, (size_t)channels, wg), buckets);
    /* 16-bit dwte: the shader adds into fp32 (embedding_dwte.comp), so the (vocab, C) rows go
     * through fp32 scratch and are rounded once. */
    const size_t rows = (size_t)vocab * (size_t)channels;
    tw_buffer *scratch = NULL;
    TW_TRY(tw_buffer_alloc(tw_vk_device(vk), rows * sizeof(float), &scratch));
    tw_status status = tw_vk_convert(vk, rows, dwte, tw_at(scratch, 0));
    te_buffers[2] = scratch;
    push_te.dwte_off = 0;
    if (status == TW_OK)
        status = launch_2d(vk, dwte_shader, te_buffers, 3, &push_te, sizeof push_te, wg,
                           group_count(vk, (size_t)channels, wg), buckets);
    if (status == TW_OK) status = tw_vk_convert(vk, rows, tw_at(scratch, 0), dwte);
    tw_buffer_free(scratch); /* released once the submissions using it complete */
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * sum_sq: a fixed two-level tree
 * ---------------------------------------------------------------------------------------------- */

/* The first level's workgroups each sum a contiguous chunk into partials (SUM_SQ_PARTS floats);
 * the split depends only on n, so the same input always meets the same tree. */
static tw_status sum_sq_record(tw_vk_context *vk, size_t n, tw_mem x, tw_mem out,
                               tw_buffer *partials) {
    size_t chunk = (n + SUM_SQ_PARTS - 1) / SUM_SQ_PARTS;
    if (chunk == 0) chunk = 1;
    size_t parts = (n + chunk - 1) / chunk;
    struct {
        uint32_t n, chunk, parts, x_off;
    } push1 = {U32(n), U32(chunk), U32(parts), U32(x.offset)};
    tw_buffer *buffers1[] = {x.buffer, partials};
    TW_TRY(launch(vk, TW_VK_TYPED("reduce_sum_sq", x.dtype),
                  buffers1, 2, &push1, sizeof push1, row_wg(vk),
                  group_count(vk, parts, 1)));
    struct {
        uint32_t parts, out_off;
    } push2 = {U32(parts), U32(out.offset)};
    tw_buffer *buffers2[] = {partials, out.buffer};
    return launch(vk, "reduce_sum_sq_final", buffers2, 2, &push2, sizeof push2, row_wg(vk), 1);
}

/* The partial sums (4 KiB) are scratch of this call, allocated through tw_buffer_alloc so they
 * count in the device's bytes. Freeing right after recording is safe: the host returns a range
 * to its pool only once the submissions that may use it have completed (vk_memory.c). */
tw_status tw_vk_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    tw_vk_context *vk = context;
    const extent_check checks[] = {{x, n}, {out, 1}};
    TW_TRY(check_extents("sum_sq", checks, 2));
    tw_buffer *partials = NULL;
    TW_TRY(tw_buffer_alloc(tw_vk_device(vk), SUM_SQ_PARTS * sizeof(float), &partials));
    tw_status status = sum_sq_record(vk, n, x, out, partials);
    tw_buffer_free(partials);
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * AdamW
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                           tw_mem grad, tw_mem m, tw_mem v) {
    const extent_check checks[] = {{param, n}, {grad, n}, {m, n}, {v, n}};
    TW_TRY(check_extents("adamw_step", checks, 4));
    /* Bias corrections exactly as the CPU reference computes them (float powf). */
    struct {
        uint32_t n;
        float lr, beta1, beta2, eps, weight_decay, grad_scale, correction1, correction2;
        uint32_t param_off, grad_off, m_off, v_off;
    } push = {U32(n),
              args->lr,
              args->beta1,
              args->beta2,
              args->eps,
              args->weight_decay,
              args->grad_scale,
              1.0f - powf(args->beta1, (float)args->step),
              1.0f - powf(args->beta2, (float)args->step),
              U32(param.offset),
              U32(grad.offset),
              U32(m.offset),
              U32(v.offset)};
    tw_buffer *buffers[] = {param.buffer, grad.buffer, m.buffer, v.buffer};
    return launch_elements(context, TW_VK_TYPED("adamw", grad.dtype),
                           buffers, 4, &push, sizeof push, n);
}

/* ------------------------------------------------------------------------------------------------
 * Gather / scatter (one shader, gather.comp, with a mode)
 * ---------------------------------------------------------------------------------------------- */

enum { GATHER_ROWS = 0, SCATTER_ROWS, GATHER_COLS, SCATTER_COLS };

/* big (rows, cols) is the full matrix, small the packed one: (count, cols) when moving rows,
 * (rows, count) when moving columns. */
static tw_status gather_launch(tw_vk_context *vk, const char *op, int mode, int rows, int cols,
                               int count, bool accumulate, tw_mem idx, tw_mem src, tw_mem dst) {
    bool by_rows = mode == GATHER_ROWS || mode == SCATTER_ROWS;
    bool scatter = mode == SCATTER_ROWS || mode == SCATTER_COLS;
    size_t big = (size_t)rows * (size_t)cols;
    size_t small = (size_t)count * (size_t)(by_rows ? cols : rows);
    const extent_check checks[] = {
        {idx, (size_t)count}, {src, scatter ? small : big}, {dst, scatter ? big : small}};
    TW_TRY(check_extents(op, checks, 3));
    struct {
        uint32_t n, mode, accumulate, cols, count, idx_off, src_off, dst_off;
    } push = {U32(small),      U32(mode),       accumulate ? 1u : 0u, U32(cols), U32(count),
              U32(idx.offset), U32(src.offset), U32(dst.offset)};
    tw_buffer *buffers[] = {idx.buffer, src.buffer, dst.buffer};
    return launch_elements(vk, TW_VK_TYPED("gather", src.dtype),
                           buffers, 3, &push, sizeof push, small);
}

tw_status tw_vk_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst) {
    return gather_launch(context, "gather_rows", GATHER_ROWS, src_rows, cols, count, false, idx,
                         src, dst);
}

tw_status tw_vk_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate) {
    return gather_launch(context, "scatter_rows", SCATTER_ROWS, dst_rows, cols, count, accumulate,
                         idx, src, dst);
}

tw_status tw_vk_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst) {
    return gather_launch(context, "gather_cols", GATHER_COLS, rows, src_cols, count, false, idx,
                         src, dst);
}

tw_status tw_vk_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate) {
    return gather_launch(context, "scatter_cols", SCATTER_COLS, rows, dst_cols, count, accumulate,
                         idx, src, dst);
}
