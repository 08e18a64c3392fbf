/* twist Vulkan backend: GEMM (shaders/gemm_tiled.comp, gemm_reduce.comp, gemm_texel.comp,
 * gemm_direct.comp, gemm_coopmat.comp).
 *
 * Implementations, named through tw_device_set_gemm_impl:
 *   TW_GEMM_OWN, TW_GEMM_AUTO  fp32: one of the named variants below, chosen per call as
 *                   1. the variant forced with tw_device_force_kernel_variant(device, "gemm"),
 *                   2. else, with TWIST_TUNE=off or below 4 MFLOP, the default (default_variant),
 *                   3. else the shape class's entry in the tuning cache, 4. else the tuner
 *                   times the class's candidates now (tune_class) and caches the winner.
 *                   (AUTO never picks the cooperative-matrix shader: tw_gemm's contract is fp32,
 *                   and fp16 inputs give relative errors ~1e-3 where the conformance tolerance
 *                   is 1e-5 * sqrt(k).)
 *   TW_GEMM_VENDOR  shaders/gemm_coopmat.comp: cooperative matrices (VK_KHR_cooperative_matrix),
 *                   A and B rounded to fp16 on their way into shared memory, fp32 accumulation.
 *                   Where the device (or this build's glslc) lacks it: TW_ERR_UNSUPPORTED.
 *
 * The family (VARIANTS below; README "Vulkan GEMM variants and tuner"):
 *   - tiled variants, gemm_tiled.comp with BM x BN workgroup tiles, 32-thread warp tiles WM x WN,
 *     TM x TN register tiles per thread and sub-tile, BK per shared-memory step, fp32 shared
 *     rows padded by 4 floats, optional double buffering and split-K (partials to scratch, then the
 *     fixed-order gemm_reduce.comp: deterministic). One pipeline per variant: transposes and
 *     vec4 loads (where offsets, leading dimensions and strides are multiples of 4) are
 *     push-constant flags. A variant is offered only where its threads and shared memory fit
 *     the device (variant_usable).
 *   - texel / direct: the CPU-device shaders (lavapipe), barrier-free register tiles.
 * Shape class (class_key): transposes, bit lengths of m, n, k, batched or not, rows 4-float
 * aligned or not: "gemm NT-m11-n12-k8-single-a4". Tuning (tune_class): scratch operands of the
 * call's shape, the default variant's result as reference, every candidate run once and
 * compared (relative error <= 4e-5 sqrt(k)), then timed (one run, more up to ~20 ms); a failure
 * or a wrong result skips the candidate (stderr with TWIST_TUNE=verbose). The choice goes to the
 * device's tw_tune_cache (vk_tune.c), which a damaged file or another driver version resets.
 * Test-only environment: TWIST_VK_TUNE_FAULT=<variant>:build|wrong, TWIST_VK_TUNE_AS_GPU=1,
 * TWIST_VK_TUNE_MAX_FLOPS.
 * All shaders share the bindings A = 0, B = 1, C = 2; gemm_tiled's push constants extend the
 * others'. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/clock.h"
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

/* gemm_direct.comp (CPU devices): workgroups of `local` invocations, each owning wm rows and wn
 * columns (scalar path) or wn column quads (vec4 path) of C. The vec4 path needs untransposed
 * operands and A, B offsets, leading dimensions, batch strides, k and n all multiples of 4.
 *
 * Why not a shared-memory tiled shader on CPUs (the former gemm.comp; now gemm_tiled.comp):
 * lavapipe (Mesa 22.3.6, llvmpipe 256-bit, 2 cores here) compiles every storage-buffer and
 * shared-memory load to a loop over the 8 SIMD lanes with a bounds-check branch per component
 * (gallivm emit_load_mem; only one loop per lane for all components of a vector), and splits
 * the workgroup at each barrier. Loads, not fma, bound the speed, so the register tile must
 * maximise fma per load, and vec4 loads amortise the lane loop. At 1024^3, same session,
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

/* ------------------------------------------------------------------------------------------------
 * The variants
 * ---------------------------------------------------------------------------------------------- */

typedef enum gemm_kind { GEMM_TILED, GEMM_TEXEL, GEMM_DIRECT } gemm_kind;

/* A variant of the family. Tiled ones are gemm_tiled.comp with these constants: a (bm, bn) tile
 * per workgroup, bk of k per step, warp tiles (wm, wn) of 32 threads, (tm, tn) per thread in
 * each of the warp tile's sub-tiles (wniter along its columns; the rows follow), nbuf shared
 * slices (2: double buffering), split_k: partial sums over k ranges plus gemm_reduce.comp for
 * shapes with few tiles. Names: t<bm>x<bn>_w<wm>x<wn>_r<tm>x<tn>_k<bk>[_db][_sk]; every tiled
 * variant loads vec4 where the operands' rows are 16-byte aligned, scalars elsewhere. */
typedef struct gemm_variant {
    const char *name;
    gemm_kind kind;
    uint32_t bm, bn, bk, wm, wn, tm, tn, wniter, nbuf;
    bool split_k;
    unsigned sizes; /* the shape sizes whose classes time it (SIZE_*: see candidates()) */
} gemm_variant;

enum { SIZE_S = 1, SIZE_M = 2, SIZE_L = 4 };

enum { WARP_THREADS = 32, CPU_GEMM_K_CHUNK = 16384, SPLIT_GROUPS = 256, SPLIT_MAX = 32 };

/* Best guess first within each group. Shared memory of a tiled variant: nbuf * bk * (bm + 4 +
 * bn + 4) floats; every one fits 32 KiB (lavapipe's limit, so the conformance suite runs each
 * there) and the Vulkan minimum of 128 invocations except t128x128_w32x64 (256 threads).
 *   t128x128_w64x64_r4x4_k16      llama.cpp's large NVIDIA tile (128 threads, 128 x 128, warp
 *                                 tile 64 x 64, 4 x 4 per thread and sub-tile, 128 accumulators)
 *                                 with BK 16: its BK 32 needs 34 KiB in fp32, over the 32 KiB
 *                                 of lavapipe, where every variant must run to be tested
 *   t128x128_w64x64_r4x4_k8_db    the same, double-buffered (17 KiB)
 *   t128x128_w32x64_r4x4_k16      256 threads, 64 accumulators: for GPUs with fewer registers
 *                                 per thread (AMD, Intel)
 *   t128x64_w64x32_r4x4_k16_db    tall tiles, double-buffered
 *   t64x64_w32x32_r4x4_k16[_db]   medium shapes
 *   t32x32_w16x16_r2x2_k16        small shapes (many workgroups), any Vulkan device
 *   t64x64_w32x32_r4x4_k16_sk, t32x32_w16x16_r2x2_k16_sk   split-K for few tiles and long k
 *   texel, direct                 the CPU-device shaders (gemm_texel.comp where the rows are
 *                                 4-float aligned, else gemm_direct.comp; direct: always the
 *                                 latter): barrier-free register tiles, lavapipe's fastest */
static const gemm_variant VARIANTS[] = {
    {"t128x128_w64x64_r4x4_k16", GEMM_TILED, 128, 128, 16, 64, 64, 4, 4, 2, 1, false, SIZE_L},
    {"t128x128_w64x64_r4x4_k8_db", GEMM_TILED, 128, 128, 8, 64, 64, 4, 4, 2, 2, false, SIZE_L},
    {"t128x128_w32x64_r4x4_k16", GEMM_TILED, 128, 128, 16, 32, 64, 4, 4, 2, 1, false, SIZE_L},
    {"t128x64_w64x32_r4x4_k16_db", GEMM_TILED, 128, 64, 16, 64, 32, 4, 4, 1, 2, false,
     SIZE_L | SIZE_M},
    {"t64x64_w32x32_r4x4_k16", GEMM_TILED, 64, 64, 16, 32, 32, 4, 4, 1, 1, false, SIZE_M | SIZE_S},
    {"t64x64_w32x32_r4x4_k16_db", GEMM_TILED, 64, 64, 16, 32, 32, 4, 4, 1, 2, false,
     SIZE_L | SIZE_M},
    {"t32x32_w16x16_r2x2_k16", GEMM_TILED, 32, 32, 16, 16, 16, 2, 2, 1, 1, false, SIZE_M | SIZE_S},
    {"t64x64_w32x32_r4x4_k16_sk", GEMM_TILED, 64, 64, 16, 32, 32, 4, 4, 1, 1, true,
     SIZE_M | SIZE_S},
    {"t32x32_w16x16_r2x2_k16_sk", GEMM_TILED, 32, 32, 16, 16, 16, 2, 2, 1, 1, true,
     SIZE_M | SIZE_S},
    {"texel", GEMM_TEXEL, 0, 0, 0, 0, 0, 0, 0, 0, 0, false, SIZE_L | SIZE_M | SIZE_S},
    {"direct", GEMM_DIRECT, 0, 0, 0, 0, 0, 0, 0, 0, 0, false, SIZE_L | SIZE_M | SIZE_S},
};
enum { VARIANT_COUNT = (int)(sizeof VARIANTS / sizeof VARIANTS[0]) };

static uint32_t variant_threads(const gemm_variant *v) {
    return (v->bm / v->wm) * (v->bn / v->wn) * WARP_THREADS;
}

static uint32_t variant_shared_bytes(const gemm_variant *v) {
    return v->nbuf * v->bk * (v->bm + 4 + v->bn + 4) * (uint32_t)sizeof(float);
}

/* Whether the tile sizes divide the way gemm_tiled.comp derives its layout (tested over the
 * table by test_vk_gemm_variants, which forces every variant). */
static bool variant_consistent(const gemm_variant *v) {
    if (v->kind != GEMM_TILED) return true;
    if (v->bm % v->wm || v->bn % v->wn || v->wn % v->wniter || v->bk % 4 || v->bm % 4 ||
        v->bn % 4 || (v->nbuf != 1 && v->nbuf != 2))
        return false;
    uint32_t wsubn = v->wn / v->wniter;
    if (wsubn % v->tn) return false;
    uint32_t tcols = wsubn / v->tn;
    if (tcols == 0 || WARP_THREADS % tcols) return false;
    uint32_t wsubm = (WARP_THREADS / tcols) * v->tm;
    return wsubm > 0 && v->wm % wsubm == 0;
}

/* Whether this device can run the variant at all. */
static bool variant_usable(tw_vk_context *vk, const gemm_variant *v) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    switch (v->kind) {
    case GEMM_TILED:
        return variant_consistent(v) && variant_threads(v) <= limits->max_workgroup_size &&
               variant_shared_bytes(v) <= limits->shared_memory_bytes;
    case GEMM_TEXEL: return limits->texel_buffers;
    case GEMM_DIRECT: return true;
    }
    return false;
}

static int variant_index(const char *name) {
    for (int i = 0; i < VARIANT_COUNT; i++)
        if (strcmp(VARIANTS[i].name, name) == 0) return i;
    return -1;
}

/* Push constants of gemm_tiled.comp: gemm_push, then the transposes and split-K. */
typedef struct tiled_push {
    gemm_push g;
    uint32_t flags, splits, k_chunk, split_stride; /* flags: 1 trans_a, 2 trans_b, 4 vec4 */
} tiled_push;

typedef struct reduce_push {
    uint32_t m, n, batch, ldc, c_off, stride_c, splits, split_stride;
    float alpha, beta;
} reduce_push;

/* The k ranges of a split-K variant: enough (batch, tile, split) groups to fill a large GPU
 * (SPLIT_GROUPS) where k is long enough for at least two steps per split; 1 when splitting
 * would not help or the partial sums would exceed the 32-bit indices. */
static uint32_t split_count(const gemm_variant *v, const tw_gemm_args *args, uint32_t *k_chunk) {
    uint64_t tiles = ((uint64_t)args->m + v->bm - 1) / v->bm *
                     (((uint64_t)args->n + v->bn - 1) / v->bn) * (uint64_t)args->batch;
    uint64_t splits = 1;
    if (v->split_k && (uint64_t)args->k >= 4ull * v->bk) {
        splits = (SPLIT_GROUPS + tiles - 1) / tiles;
        uint64_t most = (uint64_t)args->k / (2ull * v->bk);
        if (splits > most) splits = most;
        if (splits > SPLIT_MAX) splits = SPLIT_MAX;
    }
    if (splits < 1) splits = 1;
    uint64_t chunk = ((uint64_t)args->k + splits - 1) / splits;
    chunk = (chunk + v->bk - 1) / v->bk * v->bk;
    if (chunk == 0) chunk = v->bk;
    splits = ((uint64_t)args->k + chunk - 1) / chunk;
    if (splits < 1) splits = 1;
    if (splits * (uint64_t)args->batch * (uint64_t)args->m * (uint64_t)args->n >
        TW_VK_MAX_ELEMENTS)
        splits = 1;
    if (splits == 1) chunk = args->k > 0 ? (uint64_t)args->k : 1;
    *k_chunk = (uint32_t)chunk;
    return (uint32_t)splits;
}

static bool tiled_vec4(const tw_gemm_args *args, const gemm_push *push) {
    return push->lda % 4 == 0 && push->ldb % 4 == 0 && push->a_off % 4 == 0 &&
           push->b_off % 4 == 0 &&
           (args->batch == 1 || (push->stride_a % 4 == 0 && push->stride_b % 4 == 0));
}

static tw_status run_tiled(tw_vk_context *vk, const gemm_variant *v, const tw_gemm_args *args,
                           const gemm_push *push) {
    const tw_vk_limits *limits = tw_vk_get_limits(vk);
    /* Constants: 0 workgroup size, 1..9 tiles, 10 shared slices (gemm_tiled.comp). */
    const uint32_t spec[11] = {variant_threads(v), v->bm, v->bn, v->bk, v->wm, v->wn, v->tm,
                               v->tn, v->wniter, WARP_THREADS, v->nbuf};
    tw_vk_kernel *kernel = NULL;
    TW_TRY(tw_vk_kernel_get(vk, "gemm_tiled", 3, sizeof(tiled_push), spec, 11, &kernel));
    tiled_push tp = {.g = *push,
                     .flags = (args->trans_a ? 1u : 0u) | (args->trans_b ? 2u : 0u) |
                              (tiled_vec4(args, push) ? 4u : 0u)};
    tp.splits = split_count(v, args, &tp.k_chunk);
    uint64_t tiles_m = ((uint64_t)args->m + v->bm - 1) / v->bm;
    uint64_t tiles_n = ((uint64_t)args->n + v->bn - 1) / v->bn;
    uint32_t gx = groups_for(tiles_n, limits->max_workgroup_count[0]);
    uint32_t gy = groups_for(tiles_m, limits->max_workgroup_count[1]);
    if (tp.splits == 1) {
        tw_buffer *buffers[3] = {args->a.buffer, args->b.buffer, args->c.buffer};
        return tw_vk_dispatch(vk, kernel, buffers, 3, &tp, sizeof tp, gx, gy,
                              groups_for((uint64_t)args->batch, limits->max_workgroup_count[2]));
    }
    /* Split-K: partial sums (splits, batch, m, n) in scratch, then the fixed-order reduction.
     * The scratch is freed at once: the allocator keeps the range until the commands that use
     * it have completed. */
    const uint64_t mn = (uint64_t)args->m * (uint64_t)args->n;
    const uint64_t items = mn * (uint64_t)args->batch;
    tw_vk_kernel *reduce = NULL;
    const uint32_t local = limits->max_workgroup_size < 256 ? limits->max_workgroup_size : 256;
    TW_TRY(tw_vk_kernel_get(vk, "gemm_reduce", 2, sizeof(reduce_push), &local, 1, &reduce));
    tw_buffer *partial = NULL;
    TW_TRY(tw_buffer_alloc(tw_vk_device(vk), (size_t)(items * tp.splits * sizeof(float)),
                           &partial));
    tp.g.c_off = 0;
    tp.g.ldc = (uint32_t)args->n;
    tp.g.stride_c = (uint32_t)mn;
    tp.g.alpha = 1.0f;
    tp.g.beta = 0.0f;
    tp.split_stride = (uint32_t)items;
    tw_buffer *buffers[3] = {args->a.buffer, args->b.buffer, partial};
    tw_status status = tw_vk_dispatch(
        vk, kernel, buffers, 3, &tp, sizeof tp, gx, gy,
        groups_for((uint64_t)args->batch * tp.splits, limits->max_workgroup_count[2]));
    if (status == TW_OK) {
        reduce_push rp = {(uint32_t)args->m, (uint32_t)args->n, (uint32_t)args->batch,
                          push->ldc, push->c_off, push->stride_c, tp.splits, (uint32_t)items,
                          args->alpha, args->beta};
        tw_buffer *rb[2] = {partial, args->c.buffer};
        status = tw_vk_dispatch_1d(vk, reduce, rb, 2, &rp, sizeof rp, items, local);
    }
    tw_buffer_free(partial);
    return status;
}

/* One call of variant v (texel falls back to direct where its alignment rules fail). */
static tw_status run_variant(tw_vk_context *vk, const gemm_variant *v, const tw_gemm_args *args,
                             const gemm_push *push) {
    switch (v->kind) {
    case GEMM_TILED: return run_tiled(vk, v, args, push);
    case GEMM_TEXEL:
        if (gemm_texel_fits(vk, args, push)) return gemm_texel(vk, args, push);
        return gemm_direct(vk, args, push);
    case GEMM_DIRECT: return gemm_direct(vk, args, push);
    }
    return tw_error(TW_ERR_INVALID_ARGUMENT, "vulkan: gemm: unknown variant kind");
}

/* Mesa's llvmpipe stops a shader invocation's loops after 65535 iterations in all
 * (LP_MAX_TGSI_LOOP_ITERATIONS), and gemm_direct's scalar path spends about one per k: correct
 * at k = 32768 on lavapipe, wrong at 70000 (measured). On CPU devices a long k is therefore split
 * into chunks that accumulate into C (beta 1 after the first), whichever variant runs. */
static tw_status run_chunked(tw_vk_context *vk, const gemm_variant *v, const tw_gemm_args *args) {
    gemm_push push;
    if (!tw_vk_get_limits(vk)->is_cpu || args->k <= CPU_GEMM_K_CHUNK) {
        TW_TRY(gemm_push_make(args, &push));
        return run_variant(vk, v, args, &push);
    }
    tw_gemm_args chunk = *args;
    for (int k0 = 0; k0 < args->k; k0 += CPU_GEMM_K_CHUNK) {
        chunk.k = args->k - k0 < CPU_GEMM_K_CHUNK ? args->k - k0 : CPU_GEMM_K_CHUNK;
        /* Column k0 of op(A) and row k0 of op(B). */
        chunk.a.offset = args->a.offset + (size_t)k0 * (args->trans_a ? (size_t)args->lda : 1);
        chunk.b.offset = args->b.offset + (size_t)k0 * (args->trans_b ? 1 : (size_t)args->ldb);
        chunk.beta = k0 == 0 ? args->beta : 1.0f;
        TW_TRY(gemm_push_make(&chunk, &push));
        TW_TRY(run_variant(vk, v, &chunk, &push));
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Choosing a variant: forced, cached, tuned, or the default
 * ---------------------------------------------------------------------------------------------- */

/* The variant when nothing is tuned (TWIST_TUNE=off, tiny shapes, failed tuning): CPU devices
 * texel (direct where the rows are not aligned), GPUs the largest tile that still gives 64
 * workgroups, among those the device can run. */
/* Whether the tuner treats the device as a CPU device. TWIST_VK_TUNE_AS_GPU=1 (test-only:
 * tests/vk_gemm_tune_test.sh) makes it pick defaults and candidates as on a GPU, so lavapipe
 * proves the GPU side of the tuner (a conformance run so shows the GEMM pipelines a GPU builds). */
static bool tune_as_cpu(tw_vk_context *vk) {
    const char *as_gpu = getenv("TWIST_VK_TUNE_AS_GPU");
    return tw_vk_get_limits(vk)->is_cpu && !(as_gpu && strcmp(as_gpu, "1") == 0);
}

static int default_variant(tw_vk_context *vk, const tw_gemm_args *args) {
    if (tune_as_cpu(vk))
        return variant_index(tw_vk_get_limits(vk)->texel_buffers ? "texel" : "direct");
    static const char *const by_size[] = {"t128x128_w64x64_r4x4_k16", "t64x64_w32x32_r4x4_k16",
                                          "t32x32_w16x16_r2x2_k16"};
    int fallback = variant_index("direct");
    for (size_t i = 0; i < sizeof by_size / sizeof by_size[0]; i++) {
        int at = variant_index(by_size[i]);
        const gemm_variant *v = &VARIANTS[at];
        if (!variant_usable(vk, v)) continue;
        uint64_t groups = ((uint64_t)args->m + v->bm - 1) / v->bm *
                          (((uint64_t)args->n + v->bn - 1) / v->bn) * (uint64_t)args->batch;
        fallback = at;
        if (groups >= 64) return at;
    }
    return fallback;
}

/* Rows of op(A) and op(B) texel-aligned (what texel and the vec4 paths want). */
static bool class_aligned(const tw_gemm_args *args) {
    bool strides = args->batch == 1 || (args->stride_a % 4 == 0 && args->stride_b % 4 == 0);
    return args->lda % 4 == 0 && args->ldb % 4 == 0 && args->a.offset % 4 == 0 &&
           args->b.offset % 4 == 0 && strides && args->k % 4 == 0 && args->n % 4 == 0 &&
           (!args->trans_a || args->m % 4 == 0);
}

static int bit_length(int64_t x) {
    int bits = 0;
    while (x > 0) {
        bits++;
        x >>= 1;
    }
    return bits;
}

/* "gemm NT-m11-n12-k8-single-a4": transposes, bit lengths of m, n, k (log2 buckets), batched
 * or not, rows 4-float aligned (a4) or not (a1). */
static void class_key(const tw_gemm_args *args, char *out, size_t size) {
    snprintf(out, size, "gemm %c%c-m%d-n%d-k%d-%s-%s", args->trans_a ? 'T' : 'N',
             args->trans_b ? 'T' : 'N', bit_length(args->m), bit_length(args->n),
             bit_length(args->k), args->batch > 1 ? "batched" : "single",
             class_aligned(args) ? "a4" : "a1");
}

/* Shapes below this many flops are not worth timing: the default runs them. */
static const double TUNE_MIN_FLOPS = 4.0e6;

static double gemm_flops(const tw_gemm_args *args) {
    return 2.0 * args->m * (double)args->n * args->k * args->batch;
}

/* The variants the tuner times for this shape: on CPU devices the CPU shaders (texel only where
 * it applies); on GPUs the tiled ones made for the shape's size (large: 32 or more 128 x 128
 * tiles; medium: 32 or more 64 x 64 tiles; small: the rest), split-K only where the 64 x 64 tiles
 * give few workgroups and k is long. Fewer candidates per class means fewer pipelines to build
 * on a cold start (each is a driver compilation). */
static int candidates(tw_vk_context *vk, const tw_gemm_args *args, int *out) {
    const bool cpu = tune_as_cpu(vk);
    const uint64_t tiles64 = ((uint64_t)args->m + 63) / 64 * (((uint64_t)args->n + 63) / 64) *
                             (uint64_t)args->batch;
    const uint64_t tiles128 = ((uint64_t)args->m + 127) / 128 *
                              (((uint64_t)args->n + 127) / 128) * (uint64_t)args->batch;
    const unsigned size = tiles128 >= 32 ? SIZE_L : tiles64 >= 32 ? SIZE_M : SIZE_S;
    const bool skinny = tiles64 < 128 && args->k >= 1024;
    int count = 0;
    for (int i = 0; i < VARIANT_COUNT; i++) {
        const gemm_variant *v = &VARIANTS[i];
        if (!variant_usable(vk, v)) continue;
        if (cpu != (v->kind != GEMM_TILED)) continue;
        if (v->kind == GEMM_TEXEL && !class_aligned(args)) continue;
        if (v->split_k ? !skinny : !(v->sizes & size)) continue;
        out[count++] = i;
    }
    return count;
}

/* Test-only fault injection (tests/vk_gemm_tune_test.sh): TWIST_VK_TUNE_FAULT=<variant>:build
 * makes the tuner treat that variant's pipeline as failing to build, <variant>:wrong makes its
 * tuning run compute a wrong result (alpha doubled). Never set it otherwise. */
static bool fault_injected(const char *variant, const char *what) {
    const char *fault = getenv("TWIST_VK_TUNE_FAULT");
    if (!fault || !*fault) return false;
    size_t length = strlen(variant);
    return strncmp(fault, variant, length) == 0 && fault[length] == ':' &&
           strcmp(fault + length + 1, what) == 0;
}

static uint64_t tune_rng(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 33;
}

/* Scratch operands of the class's shape: compact rows, offset by 1 float when the class is
 * unaligned so the candidates meet the same alignment as the real call. */
typedef struct tune_operands {
    tw_gemm_args args;
    tw_buffer *a, *b, *c;
    float *ref, *got;
    size_t c_count;
} tune_operands;

static void operands_free(tune_operands *o) {
    tw_buffer_free(o->a);
    tw_buffer_free(o->b);
    tw_buffer_free(o->c);
    free(o->ref);
    free(o->got);
    memset(o, 0, sizeof *o);
}

static tw_status operands_make(tw_vk_context *vk, const tw_gemm_args *shape, tune_operands *o) {
    memset(o, 0, sizeof *o);
    tw_gemm_args g = *shape;
    const size_t off = class_aligned(shape) ? 0 : 1;
    g.lda = g.trans_a ? g.m : g.k;
    g.ldb = g.trans_b ? g.k : g.n;
    g.ldc = g.n;
    if (g.lda < 1) g.lda = 1;
    if (g.ldb < 1) g.ldb = 1;
    g.stride_a = (int64_t)g.m * g.k;
    g.stride_b = (int64_t)g.k * g.n;
    g.stride_c = (int64_t)g.m * g.n;
    g.alpha = 1.0f;
    g.beta = 0.0f;
    g.a.offset = g.b.offset = off;
    g.c.offset = 0;
    const size_t a_count = off + (size_t)g.batch * (size_t)g.m * (size_t)g.k + 1;
    const size_t b_count = off + (size_t)g.batch * (size_t)g.k * (size_t)g.n + 1;
    o->c_count = (size_t)g.batch * (size_t)g.m * (size_t)g.n;
    tw_device *device = tw_vk_device(vk);
    float *host = malloc((a_count > b_count ? a_count : b_count) * sizeof(float));
    o->ref = malloc(o->c_count * sizeof(float));
    o->got = malloc(o->c_count * sizeof(float));
    tw_status status = host && o->ref && o->got
                           ? TW_OK
                           : tw_error(TW_ERR_OUT_OF_MEMORY, "vulkan: gemm tuning: out of memory");
    if (status == TW_OK) status = tw_buffer_alloc(device, a_count * sizeof(float), &o->a);
    if (status == TW_OK) status = tw_buffer_alloc(device, b_count * sizeof(float), &o->b);
    if (status == TW_OK) status = tw_buffer_alloc(device, o->c_count * sizeof(float), &o->c);
    uint64_t state = 20261204;
    for (int pass = 0; status == TW_OK && pass < 2; pass++) {
        size_t count = pass == 0 ? a_count : b_count;
        for (size_t i = 0; i < count; i++)
            host[i] = (float)((double)tune_rng(&state) / 2147483648.0 - 1.0);
        status = tw_buffer_upload(pass == 0 ? o->a : o->b, 0, host, count * sizeof(float));
    }
    free(host);
    g.a.buffer = o->a;
    g.b.buffer = o->b;
    g.c.buffer = o->c;
    o->args = g;
    if (status != TW_OK) operands_free(o);
    return status;
}

/* Largest |got - ref| relative to the largest |ref|; infinite for a NaN. */
static double relative_error(const float *got, const float *ref, size_t count) {
    double scale = 0.0, err = 0.0;
    for (size_t i = 0; i < count; i++) {
        if (got[i] != got[i] || ref[i] != ref[i]) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        if (d > err) err = d;
        if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
    }
    return err == 0.0 ? 0.0 : err / (scale > 0 ? scale : 1e-30);
}

static tw_status run_and_wait(tw_vk_context *vk, const gemm_variant *v, const tw_gemm_args *g,
                              int times) {
    for (int i = 0; i < times; i++) TW_TRY(run_chunked(vk, v, g));
    return tw_device_sync(tw_vk_device(vk));
}

/* Times the candidates for `shape`'s class on scratch operands and stores (and returns the
 * index of) the fastest that built and agreed with the default variant (within 4e-5 sqrt(k) of
 * the largest value: two fp32 summation orders), if it beat the default by 10%; else the
 * default. A candidate that fails is skipped (a line on stderr with TWIST_TUNE=verbose).
 * `label` (may be NULL) receives "<key>: <variant> <GFLOP/s>". */
static tw_status tune_class(tw_vk_context *vk, const tw_gemm_args *shape, const char *key,
                            bool verbose, int *chosen, char *label, size_t label_size) {
    int list[VARIANT_COUNT];
    int count = candidates(vk, shape, list);
    int fallback = default_variant(vk, shape);
    *chosen = fallback;
    if (label) snprintf(label, label_size, "%s: %s (default)", key, VARIANTS[fallback].name);
    if (count < 2) { /* nothing to compare: the only candidate, else the default */
        if (count == 1) *chosen = list[0];
        if (label) snprintf(label, label_size, "%s: %s (only candidate)", key,
                            VARIANTS[*chosen].name);
        tw_tune_cache_put(tw_vk_tune_cache(vk), key, VARIANTS[*chosen].name);
        return TW_OK;
    }
    const char *spec = tw_device_get_info(tw_vk_device(vk))->spec;
    tune_operands o;
    TW_TRY(operands_make(vk, shape, &o));
    tw_status status = run_and_wait(vk, &VARIANTS[fallback], &o.args, 1);
    if (status == TW_OK) status = tw_buffer_download(o.c, 0, o.ref, o.c_count * sizeof(float));
    if (status != TW_OK) {
        operands_free(&o);
        return status;
    }
    const double tol = 4e-5 * sqrt(shape->k > 1 ? (double)shape->k : 1.0);
    const double flops = gemm_flops(&o.args);
    double best_seconds = INFINITY, default_seconds = INFINITY;
    int best = -1;
    for (int c = 0; c < count; c++) {
        const gemm_variant *v = &VARIANTS[list[c]];
        tw_gemm_args g = o.args;
        if (fault_injected(v->name, "wrong")) g.alpha = 2.0f;
        const char *why = NULL;
        char because[300] = "";
        if (fault_injected(v->name, "build")) {
            why = "its pipeline failed to build (fault injected by TWIST_VK_TUNE_FAULT)";
        } else if (run_and_wait(vk, v, &g, 1) != TW_OK ||
                   tw_buffer_download(o.c, 0, o.got, o.c_count * sizeof(float)) != TW_OK) {
            snprintf(because, sizeof because, "it failed: %s", tw_last_error());
            tw_clear_error();
            why = because;
        } else {
            double err = relative_error(o.got, o.ref, o.c_count);
            if (!(err <= tol)) {
                snprintf(because, sizeof because, "wrong result (error %.3g, tolerance %.3g)",
                         err, tol);
                why = because;
            }
        }
        if (why) {
            if (verbose)
                fprintf(stderr, "twist: %s tune %s: %s skipped: %s\n", spec, key,
                        v->name, why);
            continue;
        }
        /* One timed run, then enough more to fill ~20 ms (at most 10 in all). */
        double start = tw_now_seconds();
        if (run_and_wait(vk, v, &g, 1) != TW_OK) {
            tw_clear_error();
            continue;
        }
        double seconds = tw_now_seconds() - start;
        int more = seconds > 0 ? (int)(0.02 / seconds) : 10;
        if (more > 9) more = 9;
        if (more > 0) {
            start = tw_now_seconds();
            if (run_and_wait(vk, v, &g, more) != TW_OK) {
                tw_clear_error();
                continue;
            }
            seconds = (tw_now_seconds() - start) / more;
        }
        if (verbose)
            fprintf(stderr, "twist: %s tune %s: %s %.3f ms, %.2f GFLOP/s\n", spec, key,
                    v->name, seconds * 1e3, flops / seconds * 1e-9);
        if (list[c] == fallback) default_seconds = seconds;
        if (seconds < best_seconds) {
            best_seconds = seconds;
            best = list[c];
        }
    }
    operands_free(&o);
    /* The default stays unless a candidate beats it by 10%: timing noise (a loaded machine) must
     * not flip the choice between processes, since variants round differently. */
    if (best >= 0 && default_seconds < INFINITY && best_seconds > 0.9 * default_seconds) {
        best = fallback;
        best_seconds = default_seconds;
    }
    if (best >= 0) *chosen = best;
    if (verbose)
        fprintf(stderr, "twist: %s tune %s: chose %s\n", spec, key,
                VARIANTS[*chosen].name);
    if (label) {
        if (best >= 0)
            snprintf(label, label_size, "%s: %s %.1f GFLOP/s", key, VARIANTS[best].name,
                     flops / best_seconds * 1e-9);
        else
            snprintf(label, label_size, "%s: %s (no candidate ran)", key,
                     VARIANTS[*chosen].name);
    }
    tw_tune_cache_put(tw_vk_tune_cache(vk), key, VARIANTS[*chosen].name);
    return TW_OK;
}

/* The variant for this call: the forced one, else (TWIST_TUNE off: the default) the cached
 * choice of the shape class, tuned now when it has none. */
static tw_status choose_variant(tw_vk_context *vk, const tw_gemm_args *args, int *out) {
    int forced = tw_vk_op_settings_of(vk)->gemm_forced;
    if (forced > 0) {
        *out = forced - 1;
        return TW_OK;
    }
    *out = default_variant(vk, args);
    tw_tune_mode mode = tw_tune_mode_from_env();
    if (mode == TW_TUNE_MODE_OFF || gemm_flops(args) < TUNE_MIN_FLOPS) return TW_OK;
    char key[96];
    class_key(args, key, sizeof key);
    const char *cached = tw_tune_cache_get(tw_vk_tune_cache(vk), key);
    int at = cached ? variant_index(cached) : -1;
    if (at >= 0 && variant_usable(vk, &VARIANTS[at])) {
        *out = at;
        return TW_OK;
    }
    if (tune_class(vk, args, key, mode == TW_TUNE_MODE_VERBOSE, out, NULL, 0) != TW_OK) {
        /* Tuning needs scratch operands of the call's size: without the memory (a
         * --device-memory cap), the call still runs, with the default. */
        *out = default_variant(vk, args);
        tw_note("%s: tuning gemm %s failed (%s); using %s",
                tw_device_get_info(tw_vk_device(vk))->spec, key, tw_last_error(),
                VARIANTS[*out].name);
        tw_clear_error();
    }
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_vk_gemm(void *context, const tw_gemm_args *args) {
    tw_vk_context *vk = context;
    if (args->m == 0 || args->n == 0 || args->batch == 0) return TW_OK;
    gemm_push push;
    TW_TRY(gemm_push_make(args, &push));
    if (tw_vk_op_settings_of(vk)->gemm_impl == TW_GEMM_VENDOR)
        return gemm_coopmat(vk, args, &push);
    int at;
    TW_TRY(choose_variant(vk, args, &at));
    return run_chunked(vk, &VARIANTS[at], args);
}

tw_status tw_vk_set_gemm_impl(void *context, tw_gemm_impl impl) {
    tw_vk_context *vk = context;
    if (impl == TW_GEMM_VENDOR) TW_TRY(coopmat_available(vk));
    tw_vk_op_settings_of(vk)->gemm_impl = (int)impl;
    return TW_OK;
}

int tw_vk_gemm_variants(tw_vk_context *vk, const char **names, int capacity) {
    int count = 0;
    for (int i = 0; i < VARIANT_COUNT; i++) {
        if (!variant_usable(vk, &VARIANTS[i])) continue;
        if (count < capacity) names[count] = VARIANTS[i].name;
        count++;
    }
    return count;
}

tw_status tw_vk_gemm_force(tw_vk_context *vk, const char *name) {
    if (!name) {
        tw_vk_op_settings_of(vk)->gemm_forced = 0;
        return TW_OK;
    }
    int at = variant_index(name);
    if (at < 0 || !variant_usable(vk, &VARIANTS[at])) {
        char list[1024] = "";
        for (int i = 0; i < VARIANT_COUNT; i++)
            if (variant_usable(vk, &VARIANTS[i]) && strlen(list) + 100 < sizeof list) {
                if (list[0]) strcat(list, ", ");
                strcat(list, VARIANTS[i].name);
            }
        return tw_error(TW_ERR_NOT_FOUND,
                        "vulkan: gemm has no variant \"%s\" on this device; it has: %s", name,
                        list);
    }
    tw_vk_op_settings_of(vk)->gemm_forced = at + 1;
    return TW_OK;
}

/* The GEMM shapes `twist tune` times: 4096^3 and 1024^3, and those of the tiny and small
 * presets' forward and backward (N = batch * seq rows: tiny 16 * 128, small 32 * 256; widths C,
 * 3C, 4C; vocabulary 4096): linear layers NN (N, out, in), their dX NT (N, in, out) and dW TN
 * (in, out, N), the logits NT (N, V, C) and their gradients. CPU devices skip shapes above 2^33
 * flops (4096^3 would take minutes on lavapipe). */
typedef struct tune_shape {
    bool ta, tb;
    int m, n, k;
} tune_shape;

static tw_gemm_args shape_args(const tune_shape *s) {
    tw_gemm_args g = {.dtype = TW_DTYPE_F32, .trans_a = s->ta, .trans_b = s->tb, .m = s->m,
                      .n = s->n, .k = s->k, .batch = 1, .alpha = 1.0f, .beta = 0.0f};
    g.lda = s->ta ? s->m : s->k;
    g.ldb = s->tb ? s->k : s->n;
    g.ldc = s->n;
    return g;
}

static int tune_shapes(tw_vk_context *vk, tune_shape *out, int capacity) {
    int count = 0;
    const bool cpu = tw_vk_get_limits(vk)->is_cpu;
    static const int cubes[] = {4096, 1024};
    for (size_t i = 0; i < 2; i++)
        if (count < capacity)
            out[count++] = (tune_shape){false, false, cubes[i], cubes[i], cubes[i]};
    static const int presets[][2] = {{16 * 128, 256}, {32 * 256, 512}}; /* N, C */
    const int vocab = 4096;
    for (size_t p = 0; p < 2; p++) {
        const int N = presets[p][0], C = presets[p][1];
        const int layers[][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, vocab}};
        for (size_t l = 0; l < 5; l++) {
            const int in = layers[l][0], out_f = layers[l][1];
            const bool logits = l == 4;
            tune_shape s[3] = {{false, logits, N, out_f, in},
                               {false, !logits, N, in, out_f},
                               {true, false, logits ? out_f : in, logits ? in : out_f, N}};
            for (int j = 0; j < 3 && count < capacity; j++) out[count++] = s[j];
        }
    }
    /* TWIST_VK_TUNE_MAX_FLOPS (test-only: test_vk_gemm_variants) lowers the cap. */
    double cap = cpu ? 8589934592.0 : INFINITY;
    const char *max_flops = getenv("TWIST_VK_TUNE_MAX_FLOPS");
    if (max_flops && *max_flops && atof(max_flops) > 0) cap = atof(max_flops);
    int kept = 0;
    for (int i = 0; i < count; i++) {
        if (2.0 * out[i].m * (double)out[i].n * out[i].k > cap) continue;
        /* Classes met twice (two shapes in one bucket) are tuned once. */
        char key[96], other[96];
        tw_gemm_args g = shape_args(&out[i]);
        class_key(&g, key, sizeof key);
        bool seen = false;
        for (int j = 0; j < kept && !seen; j++) {
            tw_gemm_args h = shape_args(&out[j]);
            class_key(&h, other, sizeof other);
            seen = strcmp(key, other) == 0;
        }
        if (!seen) out[kept++] = out[i];
    }
    return kept;
}

int tw_vk_gemm_tune_count(tw_vk_context *vk) {
    tune_shape shapes[64];
    return tune_shapes(vk, shapes, 64);
}

tw_status tw_vk_gemm_tune(tw_vk_context *vk, const tw_tune_request *request, int *done,
                          int total) {
    tune_shape shapes[64];
    int count = tune_shapes(vk, shapes, 64);
    const bool verbose = tw_tune_mode_from_env() == TW_TUNE_MODE_VERBOSE;
    for (int i = 0; i < count; i++) {
        tw_gemm_args g = shape_args(&shapes[i]);
        char key[96], label[300];
        class_key(&g, key, sizeof key);
        const char *cached = tw_tune_cache_get(tw_vk_tune_cache(vk), key);
        if (cached && variant_index(cached) >= 0) {
            snprintf(label, sizeof label, "%s: %s (cached)", key, cached);
        } else {
            int chosen;
            TW_TRY(tune_class(vk, &g, key, verbose, &chosen, label, sizeof label));
        }
        ++*done;
        if (request->progress) request->progress(*done, total, label, request->user);
    }
    return TW_OK;
}
