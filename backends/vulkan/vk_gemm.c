/* twist Vulkan backend: GEMM (shaders/gemm.comp, gemm_texel.comp, gemm_direct.comp,
 * gemm_coopmat.comp).
 *
 * Two implementations, named through tw_device_set_gemm_impl:
 *   TW_GEMM_OWN     fp32. GPUs: shaders/gemm.comp, shared-memory tiles whose sizes are
 *                   specialization constants chosen per device (gemm_tiles below). CPU devices
 *                   (lavapipe): register tiles with no shared memory and no barriers, reading A
 *                   and B as texel buffers (gemm_texel.comp, ~3x faster than gemm_direct there)
 *                   where rows are 4-float aligned, else as storage buffers (gemm_direct.comp).
 *   TW_GEMM_VENDOR  shaders/gemm_coopmat.comp: cooperative matrices (VK_KHR_cooperative_matrix),
 *                   A and B rounded to fp16 on their way into shared memory, fp32 accumulation.
 *                   Where the device (or this build's glslc) lacks it: TW_ERR_UNSUPPORTED.
 *   TW_GEMM_AUTO    the fp32 shader of TW_GEMM_OWN, always: tw_gemm's contract is fp32, and fp16
 *                   inputs give relative errors ~1e-3 (1e-5 * sqrt(k) is the conformance
 *                   tolerance), so the cooperative-matrix shader is opt-in (benchmarks, tests).
 * All three shaders share one push-constant block and the bindings A = 0, B = 1, C = 2. */
#include <string.h>

#include "vk_internal.h"
#include "vk_ops.h"
#include "vk_shaders.h"

/* Push constants of gemm.comp and gemm_coopmat.comp (element counts and offsets). */
typedef struct gemm_push {
    uint32_t m, n, k, batch;
    uint32_t lda, ldb, ldc;
    uint32_t a_off, b_off, c_off;
    uint32_t stride_a, stride_b, stride_c;
    float alpha, beta;
} gemm_push;

/* Tile shape of gemm.comp: a (tm, tn) tile of C per workgroup, tk of k per shared-memory step,
 * (wm, wn) of C per invocation, so (tm / wm) * (tn / wn) invocations per workgroup. */
typedef struct gemm_tiles {
    uint32_t tm, tn, tk, wm, wn;
} gemm_tiles;

static uint32_t tiles_threads(gemm_tiles t) { return (t.tm / t.wm) * (t.tn / t.wn); }

/* Shared memory gemm.comp declares for these tiles (both slices, rows padded by one float). */
static uint32_t tiles_shared_bytes(gemm_tiles t) {
    return t.tk * (t.tm + 1 + t.tn + 1) * (uint32_t)sizeof(float);
}

static bool tiles_fit(gemm_tiles t, const tw_vk_limits *limits) {
    return tiles_threads(t) <= limits->max_workgroup_size &&
           tiles_shared_bytes(t) <= limits->shared_memory_bytes;
}

/* The tiles for this device. CPU devices (lavapipe: one workgroup per thread, invocations as
 * SIMD lanes of 8) and GPUs prefer different shapes; the table lists, best first, the shapes to
 * try on each, and the first that fits the device's workgroup and shared-memory limits is taken.
 * The last entry fits every Vulkan device (64 invocations, 4 KiB). lavapipe (Mesa 22.3.6, 2
 * cores), 1024^3: {64,64,16,8,8} 2.4 GFLOP/s, {64,64,16,4,4} 1.0, {32,32,16,4,4} 0.9,
 * {64,64,16,2,8} 0.8, {32,32,16,2,2} 0.4, {16,16,16,2,2} 0.4: barriers and per-lane gathers
 * from shared memory dominate there. The GPU table is untested (no GPU with Vulkan here). */
static gemm_tiles gemm_choose_tiles(const tw_vk_limits *limits) {
    static const gemm_tiles cpu[] = {
        {64, 64, 16, 8, 8}, {64, 64, 16, 4, 4}, {32, 32, 16, 4, 4}, {16, 16, 16, 2, 2}};
    static const gemm_tiles gpu[] = {
        {128, 128, 16, 8, 8}, {64, 64, 16, 4, 4}, {32, 32, 16, 4, 4}, {16, 16, 16, 2, 2}};
    const gemm_tiles *table = limits->is_cpu ? cpu : gpu;
    size_t count = limits->is_cpu ? sizeof cpu / sizeof cpu[0] : sizeof gpu / sizeof gpu[0];
    for (size_t i = 0; i < count; i++)
        if (tiles_fit(table[i], limits)) return table[i];
    return table[count - 1];
}

/* Every offset, leading dimension and batch stride must fit the shaders' 32-bit indices; buffers
 * of 2^32 floats or more cannot be indexed at all. */
static tw_status gemm_push_make(const tw_gemm_args *args, gemm_push *push) {
    const int64_t values[] = {args->lda, args->ldb, args->ldc, args->stride_a, args->stride_b,
                              args->stride_c};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i] < 0 || (uint64_t)values[i] > TW_VK_MAX_ELEMENTS)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: gemm: leading dimension or batch stride %lld exceeds the "
                            "32-bit indices of the shader",
                            (long long)values[i]);
    const tw_buffer *buffers[] = {args->a.buffer, args->b.buffer, args->c.buffer};
    for (int i = 0; i < 3; i++)
        if (buffers[i]->bytes / sizeof(float) > TW_VK_MAX_ELEMENTS)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "vulkan: gemm: a buffer of %zu bytes exceeds the 32-bit indices of "
                            "the shader (2^32 floats)",
                            buffers[i]->bytes);
    *push = (gemm_push){(uint32_t)args->m,        (uint32_t)args->n,        (uint32_t)args->k,
                        (uint32_t)args->batch,    (uint32_t)args->lda,      (uint32_t)args->ldb,
                        (uint32_t)args->ldc,      (uint32_t)args->a.offset, (uint32_t)args->b.offset,
                        (uint32_t)args->c.offset, (uint32_t)args->stride_a, (uint32_t)args->stride_b,
                        (uint32_t)args->stride_c, args->alpha,              args->beta};
    return TW_OK;
}

static uint32_t groups_for(uint64_t tiles, uint32_t limit) {
    return tiles < limit ? (uint32_t)tiles : limit; /* the shaders loop over the rest */
}

/* One dispatch: groups over (column tiles, row tiles, batch). */
static tw_status gemm_dispatch(tw_vk_context *vk, tw_vk_kernel *kernel, const tw_gemm_args *args,
                               const gemm_push *push, uint32_t tile_m, uint32_t tile_n) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    tw_buffer *buffers[3] = {args->a.buffer, args->b.buffer, args->c.buffer};
    uint64_t tiles_m = ((uint64_t)args->m + tile_m - 1) / tile_m;
    uint64_t tiles_n = ((uint64_t)args->n + tile_n - 1) / tile_n;
    return tw_vk_dispatch(vk, kernel, buffers, 3, push, sizeof *push,
                          groups_for(tiles_n, limits->max_workgroup_count[0]),
                          groups_for(tiles_m, limits->max_workgroup_count[1]),
                          groups_for((uint64_t)args->batch, limits->max_workgroup_count[2]));
}

static tw_status gemm_tiled(tw_vk_context *vk, const tw_gemm_args *args, const gemm_push *push) {
    gemm_tiles t = gemm_choose_tiles(tw_vk_get_limits(vk));
    /* Constants: 0 workgroup size, 1..5 tiles, 6..7 transposes (gemm.comp). */
    const uint32_t spec[8] = {tiles_threads(t), t.tm, t.tn, t.tk, t.wm, t.wn,
                              args->trans_a ? 1u : 0u, args->trans_b ? 1u : 0u};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, "gemm", 3, sizeof *push, spec, 8, &kernel));
    return gemm_dispatch(vk, kernel, args, push, t.tm, t.tn);
}

/* gemm_direct.comp (CPU devices): workgroups of `local` invocations, each owning wm rows and wn
 * columns (scalar path) or wn column quads (vec4 path) of C. The vec4 path needs untransposed
 * operands and A, B offsets, leading dimensions, batch strides, k and n all multiples of 4.
 *
 * Why not gemm.comp on CPUs: lavapipe (Mesa 22.3.6, llvmpipe 256-bit, 2 cores here) compiles every
 * storage-buffer and shared-memory load to a loop over the 8 SIMD lanes with a bounds-check branch
 * per component (gallivm emit_load_mem; only one loop per lane for all components of a vector),
 * and splits the workgroup at each barrier. Loads, not fma, bound the speed, so the register tile
 * must maximise fma per load, and vec4 loads amortise the lane loop. At 1024^3, same session,
 * OpenBLAS ~90-100 GFLOP/s:
 *   gemm.comp {64,64,16,8,8} (best tile)            1.3 GFLOP/s (2.4 on a quieter machine)
 *   scalar path {local,wm,wn}: {64,8,1} 0.7, {64,4,2} 1.1, {64,8,2} 1.1, {8,8,8} 2.3-3.4,
 *                              {16,8,8} 2.9-3.8, {16,16,4} 3.3, {8,16,4} 3.0, {16,4,16} 2.7
 *   vec4 path: {8,4,2} 4.3, {16,4,2} 4.2, {8,8,1} 2.9-4.9, {8,4,4} 3.9-5.1, {16,8,1} 3.6-5.2,
 *              {8,8,2} 4.5, {8,16,1} 5.0-5.2, {32,8,1} 4.3, {16,6,2} 4.2, {8,4,3} 3.6
 *   tried and dropped: WM/WN as compile-time constants instead of specialization constants
 *   (3.6, no change), 8 floats per load through u64vec4 (5.4: within noise of vec4, and it
 *   needs shaderInt64). (Timings vary by ~30% between runs on this shared machine.)
 * Remaining gap to OpenBLAS: the per-lane load loops, which texel-buffer fetches (vectorised
 * gathers in llvmpipe) avoid: gemm_texel below, used wherever its alignment rules allow. */
typedef struct gemm_direct_shape {
    uint32_t local, wm, wn;
} gemm_direct_shape;

static bool gemm_direct_vec4(const tw_gemm_args *args, const gemm_push *push) {
    return !args->trans_a && !args->trans_b && push->k % 4 == 0 && push->n % 4 == 0 &&
           push->lda % 4 == 0 && push->ldb % 4 == 0 && push->a_off % 4 == 0 &&
           push->b_off % 4 == 0 &&
           (push->batch == 1 || (push->stride_a % 4 == 0 && push->stride_b % 4 == 0));
}

static tw_status gemm_direct(tw_vk_context *vk, const tw_gemm_args *args, const gemm_push *push) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    bool vec4 = gemm_direct_vec4(args, push);
    gemm_direct_shape s = vec4 ? (gemm_direct_shape){8, 16, 1} : (gemm_direct_shape){16, 8, 8};
    if (s.local > limits->max_workgroup_size) s.local = limits->max_workgroup_size;
    /* Constants: 0 workgroup size, 1..2 register tile, 3..4 transposes, 5 vec4 path. */
    const uint32_t spec[6] = {s.local, s.wm, s.wn, args->trans_a ? 1u : 0u,
                              args->trans_b ? 1u : 0u, vec4 ? 1u : 0u};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, "gemm_direct", 3, sizeof *push, spec, 6, &kernel));
    return gemm_dispatch(vk, kernel, args, push, s.wm, s.local * s.wn * (vec4 ? 4 : 1));
}

/* gemm_texel.comp (CPU devices with RGBA32F texel buffers): A and B read as texels of 4 floats,
 * so every row of the stored A and B must start on a texel (offsets, leading dimensions, batch
 * strides multiples of 4), k and n multiples of 4, with TRANS_A m too; texel indices must fit
 * the view (maxTexelBufferElements) and an int. lavapipe at 1024^3, (local, WM, WN), same
 * session, as a fraction of OpenBLAS: {8,4,1} 0.08, {8,8,1} 0.09, {8,12,1} 0.09, {8,16,1}
 * 0.09-0.12, {8,24,1} 0.12, {8,32,1} 0.10, {8,8,2} 0.11, {8,16,2} 0.12, {16,16,1} 0.12,
 * {16,4,1} 0.05, {4,8,1} 0.04; gemm_direct's best vec4 tile 0.036 in the same session. Tried and
 * dropped: A fetched once per lane and shared with subgroupBroadcast (3-4 GFLOP/s: llvmpipe's
 * broadcast is far slower than the redundant fetch). */
static const gemm_direct_shape TEXEL_TILE = {8, 16, 1};

static bool gemm_texel_fits(tw_vk_context *vk, const tw_gemm_args *args, const gemm_push *push) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    const uint64_t texels = (uint64_t)limits->max_texel_elements < 0x7FFFFFFFull
                                ? limits->max_texel_elements : 0x7FFFFFFFull;
    return limits->texel_buffers && push->k % 4 == 0 && push->n % 4 == 0 &&
           (!args->trans_a || push->m % 4 == 0) && push->lda % 4 == 0 && push->ldb % 4 == 0 &&
           push->a_off % 4 == 0 && push->b_off % 4 == 0 &&
           (push->batch == 1 || (push->stride_a % 4 == 0 && push->stride_b % 4 == 0)) &&
           args->a.buffer->bytes / 16 <= texels && args->b.buffer->bytes / 16 <= texels;
}

static tw_status gemm_texel(tw_vk_context *vk, const tw_gemm_args *args, const gemm_push *push) {
    gemm_direct_shape s = TEXEL_TILE;
    const uint32_t max_local = tw_vk_get_limits(vk)->max_workgroup_size;
    if (s.local > max_local) s.local = max_local;
    /* Constants: 0 workgroup size, 1..2 register tile, 3..4 transposes. */
    const uint32_t spec[5] = {s.local, s.wm, s.wn, args->trans_a ? 1u : 0u,
                              args->trans_b ? 1u : 0u};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get_texel(vk, "gemm_texel", 3, 0x3u /* A, B */, sizeof *push, spec, 5,
                                  &kernel));
    return gemm_dispatch(vk, kernel, args, push, s.wm, s.local * s.wn * 4);
}

/* Whether this build embedded gemm_coopmat.comp (glslc older than glslang 13 cannot compile
 * GL_KHR_cooperative_matrix, and the build leaves it out; cmake/vulkan_shaders.cmake). */
static bool coopmat_shader_built(void) {
    for (const tw_vk_shader_blob *s = tw_vk_shaders; s->name; s++)
        if (strcmp(s->name, "gemm_coopmat") == 0) return true;
    return false;
}

static tw_status coopmat_available(tw_vk_context *vk) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    if (!limits->cooperative_matrix)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: this device has no VK_KHR_cooperative_matrix with an "
                        "f16 x f16 -> f32 shape (TW_GEMM_VENDOR is the cooperative-matrix GEMM; "
                        "TW_GEMM_OWN and TW_GEMM_AUTO use the fp32 shaders)");
    if (!coopmat_shader_built())
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: the cooperative-matrix GEMM shader was not built (this build's "
                        "glslc lacks GL_KHR_cooperative_matrix: glslang 13 or newer has it)");
    if (limits->subgroup_size == 0 || 4 * limits->subgroup_size > limits->max_workgroup_size)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "vulkan: cooperative-matrix GEMM needs workgroups of 4 subgroups "
                        "(subgroup size %u, workgroup limit %u)",
                        limits->subgroup_size, limits->max_workgroup_size);
    return TW_OK;
}

static tw_status gemm_coopmat(tw_vk_context *vk, const tw_gemm_args *args,
                              const gemm_push *push) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    /* Constants: 0 workgroup size (4 subgroups), 1..3 fragment shape, 4..5 transposes. Each
     * workgroup covers (2 * 2 * coopmat_m, 2 * 2 * coopmat_n) of C (gemm_coopmat.comp). */
    const uint32_t spec[6] = {4 * limits->subgroup_size, limits->coopmat_m, limits->coopmat_n,
                              limits->coopmat_k, args->trans_a ? 1u : 0u,
                              args->trans_b ? 1u : 0u};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, "gemm_coopmat", 3, sizeof *push, spec, 6, &kernel));
    return gemm_dispatch(vk, kernel, args, push, 4 * limits->coopmat_m, 4 * limits->coopmat_n);
}

/* Mesa's llvmpipe stops a shader invocation's loops after 65535 iterations in all
 * (LP_MAX_TGSI_LOOP_ITERATIONS), and gemm_direct's scalar path spends about one per k: correct
 * at k = 32768 on lavapipe, wrong at 70000 (measured). On CPU devices a long k is therefore split
 * into chunks that accumulate into C (beta 1 after the first). */
enum { CPU_GEMM_K_CHUNK = 16384 };

static tw_status gemm_direct_chunked(tw_vk_context *vk, const tw_gemm_args *args) {
    tw_gemm_args chunk = *args;
    gemm_push push;
    for (int k0 = 0; k0 < args->k || k0 == 0; k0 += CPU_GEMM_K_CHUNK) {
        chunk.k = args->k - k0 < CPU_GEMM_K_CHUNK ? args->k - k0 : CPU_GEMM_K_CHUNK;
        /* Column k0 of op(A) and row k0 of op(B). */
        chunk.a.offset = args->a.offset + (size_t)k0 * (args->trans_a ? (size_t)args->lda : 1);
        chunk.b.offset = args->b.offset + (size_t)k0 * (args->trans_b ? 1 : (size_t)args->ldb);
        chunk.beta = k0 == 0 ? args->beta : 1.0f;
        TW_TRY(gemm_push_make(&chunk, &push));
        if (gemm_texel_fits(vk, &chunk, &push))
            TW_TRY(gemm_texel(vk, &chunk, &push));
        else
            TW_TRY(gemm_direct(vk, &chunk, &push));
        if (args->k == 0) break;
    }
    return TW_OK;
}

tw_status tw_vk_gemm(void *context, const tw_gemm_args *args) {
    tw_vk_context *vk = context;
    if (args->m == 0 || args->n == 0 || args->batch == 0) return TW_OK;
    gemm_push push;
    TW_TRY(gemm_push_make(args, &push));
    if (tw_vk_op_settings_of(vk)->gemm_impl == TW_GEMM_VENDOR)
        return gemm_coopmat(vk, args, &push);
    if (tw_vk_get_limits(vk)->is_cpu) return gemm_direct_chunked(vk, args);
    return gemm_tiled(vk, args, &push);
}

tw_status tw_vk_set_gemm_impl(void *context, tw_gemm_impl impl) {
    tw_vk_context *vk = context;
    if (impl == TW_GEMM_VENDOR) TW_TRY(coopmat_available(vk));
    tw_vk_op_settings_of(vk)->gemm_impl = (int)impl;
    return TW_OK;
}
