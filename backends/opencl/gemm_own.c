/* twist OpenCL backend: twist's own SGEMM variants (kernels in kernels/gemm.cl; names and
 * purposes in gemm_own.h).
 *
 * Three kernel families:
 *   - CPU devices (PoCL and the like) run TW_GEMM_VEC / TW_GEMM_DOT (variant "cpu"):
 *     barrier-free register-tiled micro-kernels with explicit vectors as wide as the device
 *     prefers. Local memory on a CPU is ordinary cache, and barriers force a CPU OpenCL compiler
 *     to spill every work-item's accumulators to memory, so staging tiles in local memory only
 *     costs time there.
 *   - TW_GEMM_TILED ("tiled"): the first GPU kernel: local-memory tiles, a scalar register tile
 *     per work-item, padded local arrays; its tile shrinks on devices with small work-groups.
 *   - TW_GEMM_BLOCK ("large", "large32", "wide", "medium", "small", "splitk"): the GPU family
 *     parameterised by -D options (block_configs below): float4 global loads where aligned,
 *     float4 local reads, optional double buffering, optional split-K with a deterministic
 *     reduction (TW_GEMM_REDUCE).
 * Each (kernel, transpose) program is built on first use through the backend's build callback
 * and kept for the life of the object. */
#include "gemm_own.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_internal.h"

/* kernels/gemm.cl, embedded at build time (cmake/embed.cmake). */
extern const char twist_cl_gemm_cl[];
extern const size_t twist_cl_gemm_cl_size;

typedef enum tw_cl_gemm_variant {
    TW_CL_GEMM_VEC_ROWS = 0,    /* TW_GEMM_VEC writing C' = C (C rows are contiguous) */
    TW_CL_GEMM_VEC_COLS,        /* TW_GEMM_VEC writing C' = C^T (strided stores) */
    TW_CL_GEMM_VEC_ROWS_NARROW, /* the same two with 4-wide vectors, for N' narrower than */
    TW_CL_GEMM_VEC_COLS_NARROW, /* one wide vector */
    TW_CL_GEMM_DOT,             /* TW_GEMM_DOT: C = A B^T */
    TW_CL_GEMM_TILED_NN,     /* TW_GEMM_TILED, one per (trans_a, trans_b), in that order */
    TW_CL_GEMM_TILED_NT,
    TW_CL_GEMM_TILED_TN,
    TW_CL_GEMM_TILED_TT,
    TW_CL_GEMM_VARIANT_COUNT
} tw_cl_gemm_variant;

/* Register tile of TW_GEMM_VEC / TW_GEMM_DOT: each work-item computes (wm, wn * vw) outputs
 * (vec) or (wm, wn) outputs with vw-wide k steps (dot), in work-groups of (lx, ly). */
typedef struct tw_cl_gemm_cpu_tile {
    int wm, wn, vw, lx, ly;
} tw_cl_gemm_cpu_tile;

/* A TW_GEMM_BLOCK variant: work-group tile (bm, bn), per-work-item tile (tm, tn), k step bk,
 * global vector width gv, local vector width lv, local padding, double buffering, split-K.
 * Work-items per group: (bn / tn) * (bm / tm); local floats: (db + 1) * bk * (bm + bn + 2 pad). */
typedef struct tw_cl_block_config {
    tw_cl_own_variant variant;
    int bm, bn, bk, tm, tn, gv, lv, pad, db;
    bool split_k;
} tw_cl_block_config;

/* Sizes after the public SGEMMs that reach 0.7-0.9 of cuBLAS with plain FMA: 128x128 tiles of
 * 8x8 per thread with float4 traffic on NVIDIA (256 threads, 33 KiB of the 48 KiB local
 * memory), a 128x64 tile for AMD's 64-wide waves, 64x64 and 32x32 tiles where the output has
 * too few large tiles to fill the device or the work-group size is small (Intel). */
static const tw_cl_block_config block_configs[] = {
    {TW_CL_OWN_LARGE, 128, 128, 16, 8, 8, 4, 4, 4, 1, false},
    {TW_CL_OWN_LARGE32, 128, 128, 32, 8, 8, 4, 4, 4, 0, false},
    {TW_CL_OWN_WIDE, 128, 64, 16, 8, 4, 4, 4, 4, 1, false},
    {TW_CL_OWN_MEDIUM, 64, 64, 16, 4, 4, 4, 4, 4, 1, false},
    {TW_CL_OWN_SMALL, 32, 32, 16, 4, 4, 4, 4, 4, 0, false},
    {TW_CL_OWN_SPLITK, 64, 64, 16, 4, 4, 4, 4, 4, 0, true},
};
enum { TW_CL_BLOCK_COUNT = (int)(sizeof block_configs / sizeof block_configs[0]) };

static const char *const own_names[TW_CL_OWN_COUNT] = {
    "cpu", "tiled", "large", "large32", "wide", "medium", "small", "splitk"};

/* TW_GEMM_TILED: a (tm, tn) tile of C per work-group, (wm, wn) per work-item, k staged tk at a
 * time, local rows padded by pad floats. */
typedef struct tw_cl_gemm_gpu_tile {
    int tm, tn, tk, wm, wn, pad;
} tw_cl_gemm_gpu_tile;

struct tw_cl_gemm_own {
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    tw_device *front; /* for split-K scratch (tw_buffer_alloc) */
    size_t max_group;
    cl_ulong local_bytes;
    int compute_units;
    bool fault_build[TW_CL_OWN_COUNT]; /* test-only: build with -DTW_FAULT_BUILD */
    tw_cl_build_fn build;
    void *build_context;
    bool cpu_kernels; /* VEC/DOT rather than TILED */
    bool use_fma;     /* the device has hardware fma */
    tw_cl_gemm_cpu_tile vec, vec_narrow, dot;
    tw_cl_gemm_gpu_tile tiled;
    cl_program programs[TW_CL_GEMM_VARIANT_COUNT];
    cl_kernel kernels[TW_CL_GEMM_VARIANT_COUNT];
    cl_program block_programs[TW_CL_BLOCK_COUNT][4]; /* [config][trans_a * 2 + trans_b] */
    cl_kernel block_kernels[TW_CL_BLOCK_COUNT][4];
    cl_program reduce_program;
    cl_kernel reduce_kernel;
};

/* One kernel launch: the operands as (offset, strides) views and the sizes it computes. */
typedef struct tw_cl_gemm_launch {
    tw_cl_gemm_variant variant;
    int m, n, k;
    float alpha, beta;
    cl_mem a, b, c;
    cl_ulong a_off, b_off, c_off;
    cl_long a_rs, a_ks, b_ks, c_rs, c_cs; /* VEC strides; DOT/TILED use a_rs, b_ks, c_rs as ld */
    cl_long a_batch, b_batch, c_batch;
    int batch;
} tw_cl_gemm_launch;

/* Driver errors in the backend's format (cl_internal.h). */
static tw_status cl_fail(cl_int err, const char *what) { return tw_cl_fail(err, what); }

/* ------------------------------------------------------------------------------------------------
 * Configuration from device properties
 * ---------------------------------------------------------------------------------------------- */

/* The widest float vector the device prefers, as one of the widths the kernels support. */
static int preferred_vector_width(cl_device_id device) {
    cl_uint width = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof(width), &width,
                        NULL) != CL_SUCCESS)
        return 4;
    if (width >= 16) return 16;
    if (width >= 8) return 8;
    return 4;
}

/* CPU micro-kernel tiles, sized to the vector register file: wm * wn accumulators plus the wn
 * (vec) or wm + wn (dot) loaded vectors must fit in 32 registers (AVX-512, which prefers 16-wide
 * floats) or 16 (AVX2/SSE/NEON). On PoCL 3.1 with AVX-512 (Zen 4, 2 cores), 1024^3:
 *   vec (NN, TN, TT): 8x2 vectors of 16 -> ~200 GFLOP/s, best of 6x2, 6x3, 8x2, 10x2, 12x2, 5x3
 *                     at 16 wide and 6x2, 8x2, 6x4 at 8 wide (these 150-210);
 *   dot (NT):         4x4 with 8-wide k steps -> ~185 GFLOP/s, as fast as 16-wide at 1024 and
 *                     faster for k ~ 100 (smaller tail, cheaper horizontal sums).
 * Work-groups of 4x8 (vec) and 8x8 (dot) work-items keep a work-group's panels of A and B in the
 * core's L2 while giving 2 threads enough groups to balance. */
static void choose_cpu_tiles(tw_cl_gemm_own *gemm, cl_device_id device) {
    const int vw = preferred_vector_width(device);
    const bool many_registers = vw >= 16;
    gemm->vec = (tw_cl_gemm_cpu_tile){.wm = many_registers ? 8 : 6, .wn = 2, .vw = vw,
                                      .lx = 4, .ly = 8};
    /* C' narrower than one vector: whole-vector loads need N' >= vw, so a 4-wide variant. */
    gemm->vec_narrow = (tw_cl_gemm_cpu_tile){.wm = gemm->vec.wm, .wn = 2, .vw = 4, .lx = 1,
                                             .ly = 16};
    gemm->dot = (tw_cl_gemm_cpu_tile){.wm = many_registers ? 4 : 2, .wn = 4,
                                      .vw = vw < 8 ? vw : 8, .lx = 8, .ly = 8};
}

/* GPU tiles: 64x64 per work-group and 4x4 per work-item (256 work-items) where the device
 * allows, smaller tiles on devices with small work-groups or little local memory. */
static void choose_gpu_tiles(tw_cl_gemm_own *gemm, cl_device_id device) {
    size_t max_group = 0;
    cl_ulong local_bytes = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(max_group), &max_group,
                        NULL) != CL_SUCCESS)
        max_group = 64;
    if (clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(local_bytes), &local_bytes,
                        NULL) != CL_SUCCESS)
        local_bytes = 16384;
    tw_cl_gemm_gpu_tile tile = {.tm = 64, .tn = 64, .tk = 16, .wm = 4, .wn = 4, .pad = 1};
    const size_t tile_local_bytes =
        (size_t)tile.tk * (size_t)(tile.tm + tile.pad + tile.tn + tile.pad) * sizeof(float);
    if (max_group < 256 || local_bytes < tile_local_bytes) {
        tile.tm = 32;
        tile.tn = 32; /* 64 work-items, 4.2 KiB of local memory */
    }
    if (max_group < 64) {
        tile.tm = 16;
        tile.tn = 16; /* 16 work-items */
    }
    gemm->tiled = tile;
}

static bool device_has_fma(cl_device_id device) {
    cl_device_fp_config config = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof(config), &config, NULL) !=
        CL_SUCCESS)
        return false;
    return (config & CL_FP_FMA) != 0;
}

tw_status tw_cl_gemm_own_create(cl_context context, cl_device_id device,
                                cl_command_queue queue, tw_device *front, tw_cl_build_fn build,
                                void *build_context, tw_cl_gemm_own **out) {
    *out = NULL;
    tw_cl_gemm_own *gemm = calloc(1, sizeof(*gemm));
    if (!gemm) return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl gemm: out of host memory");
    gemm->context = context;
    gemm->device = device;
    gemm->queue = queue;
    gemm->front = front;
    cl_uint units = 1;
    if (clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof gemm->max_group,
                        &gemm->max_group, NULL) != CL_SUCCESS)
        gemm->max_group = 64;
    if (clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof gemm->local_bytes,
                        &gemm->local_bytes, NULL) != CL_SUCCESS)
        gemm->local_bytes = 16384;
    if (clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL) !=
            CL_SUCCESS || units == 0)
        units = 1;
    gemm->compute_units = (int)units;
    gemm->build = build;
    gemm->build_context = build_context;

    cl_device_type type = 0;
    cl_int err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
    if (err != CL_SUCCESS) {
        free(gemm);
        return cl_fail(err, "clGetDeviceInfo(CL_DEVICE_TYPE)");
    }
    gemm->cpu_kernels = (type & CL_DEVICE_TYPE_CPU) != 0;
    gemm->use_fma = device_has_fma(device);
    choose_cpu_tiles(gemm, device);
    choose_gpu_tiles(gemm, device);
    *out = gemm;
    return TW_OK;
}

void tw_cl_gemm_own_destroy(tw_cl_gemm_own *gemm) {
    if (!gemm) return;
    for (int v = 0; v < TW_CL_GEMM_VARIANT_COUNT; ++v) {
        if (gemm->kernels[v]) clReleaseKernel(gemm->kernels[v]);
        if (gemm->programs[v]) clReleaseProgram(gemm->programs[v]);
    }
    for (int c = 0; c < TW_CL_BLOCK_COUNT; ++c) {
        for (int t = 0; t < 4; ++t) {
            if (gemm->block_kernels[c][t]) clReleaseKernel(gemm->block_kernels[c][t]);
            if (gemm->block_programs[c][t]) clReleaseProgram(gemm->block_programs[c][t]);
        }
    }
    if (gemm->reduce_kernel) clReleaseKernel(gemm->reduce_kernel);
    if (gemm->reduce_program) clReleaseProgram(gemm->reduce_program);
    free(gemm);
}

/* ------------------------------------------------------------------------------------------------
 * Lazy kernel builds
 * ---------------------------------------------------------------------------------------------- */

static bool variant_is_vec(tw_cl_gemm_variant variant) { return variant < TW_CL_GEMM_DOT; }

/* The tile of a CPU variant (VEC or DOT). */
static const tw_cl_gemm_cpu_tile *variant_cpu_tile(const tw_cl_gemm_own *gemm,
                                                    tw_cl_gemm_variant variant) {
    if (variant == TW_CL_GEMM_DOT) return &gemm->dot;
    if (variant == TW_CL_GEMM_VEC_ROWS_NARROW || variant == TW_CL_GEMM_VEC_COLS_NARROW)
        return &gemm->vec_narrow;
    return &gemm->vec;
}

static const char *variant_kernel_name(tw_cl_gemm_variant variant) {
    if (variant_is_vec(variant)) return "tw_gemm_vec";
    return variant == TW_CL_GEMM_DOT ? "tw_gemm_dot" : "tw_gemm_tiled";
}

static void variant_options(const tw_cl_gemm_own *gemm, tw_cl_gemm_variant variant,
                            char *options, size_t size) {
    const char *fma = gemm->use_fma ? " -DUSE_FMA" : "";
    if (variant < TW_CL_GEMM_TILED_NN) {
        const tw_cl_gemm_cpu_tile *t = variant_cpu_tile(gemm, variant);
        const bool c_unit = variant == TW_CL_GEMM_VEC_ROWS || variant == TW_CL_GEMM_VEC_ROWS_NARROW;
        snprintf(options, size, "%s -DWM=%d -DWN=%d -DVW=%d%s%s",
                 variant_is_vec(variant) ? "-DTW_GEMM_VEC" : "-DTW_GEMM_DOT", t->wm, t->wn, t->vw,
                 c_unit ? " -DC_UNIT" : "", fma);
    } else {
        const tw_cl_gemm_gpu_tile *t = &gemm->tiled;
        const int trans = (int)variant - (int)TW_CL_GEMM_TILED_NN;
        snprintf(options, size,
                 "-DTW_GEMM_TILED -DTM=%d -DTN=%d -DTK=%d -DWM=%d -DWN=%d -DPAD=%d -DTRANS_A=%d "
                 "-DTRANS_B=%d%s",
                 t->tm, t->tn, t->tk, t->wm, t->wn, t->pad, trans >> 1, trans & 1, fma);
    }
}

/* Builds gemm.cl with `options` (plus the test-only fault of `owner`) and creates `name`. */
static tw_status build_kernel(tw_cl_gemm_own *gemm, tw_cl_own_variant owner, const char *options,
                              const char *name, cl_program *program_out, cl_kernel *kernel_out) {
    char full[320];
    snprintf(full, sizeof full, "%s%s", options,
             gemm->fault_build[owner] ? " -DTW_FAULT_BUILD" : "");
    cl_program program = NULL;
    tw_status status =
        gemm->build(gemm->build_context, twist_cl_gemm_cl, twist_cl_gemm_cl_size, full, &program);
    if (status != TW_OK) return status;
    cl_int err = CL_SUCCESS;
    cl_kernel kernel = clCreateKernel(program, name, &err);
    if (err != CL_SUCCESS) {
        clReleaseProgram(program);
        return cl_fail(err, "clCreateKernel(gemm)");
    }
    *program_out = program;
    *kernel_out = kernel;
    return TW_OK;
}

static tw_status get_kernel(tw_cl_gemm_own *gemm, tw_cl_gemm_variant variant, cl_kernel *out) {
    if (!gemm->kernels[variant]) {
        char options[256];
        variant_options(gemm, variant, options, sizeof(options));
        tw_status status = build_kernel(
            gemm, variant < TW_CL_GEMM_TILED_NN ? TW_CL_OWN_CPU : TW_CL_OWN_TILED, options,
            variant_kernel_name(variant), &gemm->programs[variant], &gemm->kernels[variant]);
        if (status != TW_OK) return status;
    }
    *out = gemm->kernels[variant];
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Launch
 * ---------------------------------------------------------------------------------------------- */

static size_t round_up(size_t value, size_t multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

static size_t ceil_div(size_t value, size_t divisor) { return (value + divisor - 1) / divisor; }

/* Global and local sizes: work-items along x cover columns, along y rows, along z the batch. */
static void launch_geometry(const tw_cl_gemm_own *gemm, const tw_cl_gemm_launch *l,
                            size_t global[3], size_t local[3]) {
    if (l->variant >= TW_CL_GEMM_TILED_NN) {
        const tw_cl_gemm_gpu_tile *t = &gemm->tiled;
        local[0] = (size_t)(t->tn / t->wn);
        local[1] = (size_t)(t->tm / t->wm);
        global[0] = ceil_div((size_t)l->n, (size_t)t->tn) * local[0];
        global[1] = ceil_div((size_t)l->m, (size_t)t->tm) * local[1];
    } else {
        const tw_cl_gemm_cpu_tile *t = variant_cpu_tile(gemm, l->variant);
        const size_t columns = (size_t)(variant_is_vec(l->variant) ? t->wn * t->vw : t->wn);
        const size_t items_x = ceil_div((size_t)l->n, columns);
        const size_t items_y = ceil_div((size_t)l->m, (size_t)t->wm);
        /* Small problems get small work-groups rather than mostly idle padding. */
        local[0] = items_x < (size_t)t->lx ? items_x : (size_t)t->lx;
        local[1] = items_y < (size_t)t->ly ? items_y : (size_t)t->ly;
        global[0] = round_up(items_x, local[0]);
        global[1] = round_up(items_y, local[1]);
    }
    local[2] = 1;
    global[2] = (size_t)l->batch;
}

static tw_status launch(tw_cl_gemm_own *gemm, const tw_cl_gemm_launch *l) {
    cl_kernel kernel = NULL;
    tw_status status = get_kernel(gemm, l->variant, &kernel);
    if (status != TW_OK) return status;

    const bool vec = variant_is_vec(l->variant);
    const cl_int m = l->m, n = l->n, k = l->k;
    cl_uint i = 0;
    cl_int err = CL_SUCCESS;
    /* Arguments in the order of the kernels' signatures; the first failure is kept. */
#define TW_ARG(value) \
    if (err == CL_SUCCESS) err = clSetKernelArg(kernel, i++, sizeof(value), &(value))
    TW_ARG(m);
    TW_ARG(n);
    TW_ARG(k);
    TW_ARG(l->alpha);
    TW_ARG(l->beta);
    TW_ARG(l->a);
    TW_ARG(l->a_off);
    TW_ARG(l->a_rs);
    if (vec) TW_ARG(l->a_ks);
    TW_ARG(l->a_batch);
    TW_ARG(l->b);
    TW_ARG(l->b_off);
    TW_ARG(l->b_ks);
    TW_ARG(l->b_batch);
    TW_ARG(l->c);
    TW_ARG(l->c_off);
    TW_ARG(l->c_rs);
    if (vec) TW_ARG(l->c_cs);
    TW_ARG(l->c_batch);
#undef TW_ARG
    if (err != CL_SUCCESS) return cl_fail(err, "clSetKernelArg(gemm)");

    size_t global[3], local[3];
    launch_geometry(gemm, l, global, local);
    err = clEnqueueNDRangeKernel(gemm->queue, kernel, 3, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_fail(err, "clEnqueueNDRangeKernel(gemm)");
    return TW_OK;
}

/* Operands as given: A' = op(A), B' = op(B), C' = C; A' and B' strides are set per variant. */
static void plan_direct(const tw_gemm_args *args, cl_mem a, cl_mem b, tw_cl_gemm_launch *l) {
    l->m = args->m;
    l->n = args->n;
    l->a = a;
    l->a_off = args->a.offset;
    l->a_rs = args->lda;
    l->a_ks = 1;
    l->a_batch = args->stride_a;
    l->b = b;
    l->b_off = args->b.offset;
    l->b_ks = args->ldb;
    l->b_batch = args->stride_b;
    l->c_rs = args->ldc;
    l->c_cs = 1;
}

/* TT on the CPU: C^T (n, m) = op(B)^T op(A)^T = B A with B stored (n, k) and A stored (k, m),
 * so A' = B (rows j, unit stride along k), B' = A (contiguous along m), C'[j][i] = C[i][j]. */
static void plan_swapped(const tw_gemm_args *args, cl_mem a, cl_mem b, tw_cl_gemm_launch *l) {
    l->m = args->n;
    l->n = args->m;
    l->a = b;
    l->a_off = args->b.offset;
    l->a_rs = args->ldb;
    l->a_ks = 1;
    l->a_batch = args->stride_b;
    l->b = a;
    l->b_off = args->a.offset;
    l->b_ks = args->lda;
    l->b_batch = args->stride_a;
    l->c_rs = 1;
    l->c_cs = args->ldc;
}

/* Which kernel computes this product on a CPU device (see the top of the file):
 *   NN, TN: VEC with B' = B, contiguous along n; for TN A'[i][k] = A[k][i].
 *   TT:     VEC on C^T (plan_swapped).
 *   NT:     DOT, both operands contiguous along k.
 * and the narrow VEC variant when C' has fewer columns than one wide vector. */
static void plan_cpu(const tw_cl_gemm_own *gemm, const tw_gemm_args *args, cl_mem a, cl_mem b,
                     tw_cl_gemm_launch *l) {
    if (args->trans_a && args->trans_b) {
        plan_swapped(args, a, b, l);
        l->variant = TW_CL_GEMM_VEC_COLS;
    } else {
        plan_direct(args, a, b, l);
        l->variant = args->trans_b ? TW_CL_GEMM_DOT : TW_CL_GEMM_VEC_ROWS;
        if (args->trans_a) { /* A stored (k, m) */
            l->a_rs = 1;
            l->a_ks = args->lda;
        }
    }
    if (variant_is_vec(l->variant) && l->n < gemm->vec.vw && gemm->vec_narrow.vw < gemm->vec.vw)
        l->variant = l->variant == TW_CL_GEMM_VEC_ROWS ? TW_CL_GEMM_VEC_ROWS_NARROW
                                                       : TW_CL_GEMM_VEC_COLS_NARROW;
}

/* ------------------------------------------------------------------------------------------------
 * TW_GEMM_BLOCK variants
 * ---------------------------------------------------------------------------------------------- */

static const tw_cl_block_config *block_config(tw_cl_own_variant variant) {
    for (int c = 0; c < TW_CL_BLOCK_COUNT; ++c)
        if (block_configs[c].variant == variant) return &block_configs[c];
    return NULL;
}

static size_t block_threads(const tw_cl_block_config *b) {
    return (size_t)(b->bn / b->tn) * (size_t)(b->bm / b->tm);
}

/* The kernel's __local arrays: (db + 1) * bk * (bm + pad) floats for A and the same for B, each
 * rounded to float4 plus one. */
static size_t block_local_bytes(const tw_cl_block_config *b) {
    const size_t a = (size_t)(b->db + 1) * b->bk * (b->bm + b->pad) / 4 + 1;
    const size_t bb = (size_t)(b->db + 1) * b->bk * (b->bn + b->pad) / 4 + 1;
    return (a + bb) * 4 * sizeof(float);
}

static tw_status get_block_kernel(tw_cl_gemm_own *gemm, int config, int trans, cl_kernel *out) {
    if (!gemm->block_kernels[config][trans]) {
        const tw_cl_block_config *b = &block_configs[config];
        char options[256];
        snprintf(options, sizeof options,
                 "-DTW_GEMM_BLOCK -DBM=%d -DBN=%d -DBK=%d -DTM=%d -DTN=%d -DGV=%d -DLV=%d "
                 "-DPAD=%d -DDB=%d -DTRANS_A=%d -DTRANS_B=%d%s%s",
                 b->bm, b->bn, b->bk, b->tm, b->tn, b->gv, b->lv, b->pad, b->db, trans >> 1,
                 trans & 1, gemm->use_fma ? " -DUSE_FMA" : "",
                 /* CPU devices vectorise across work-items; unrolling only costs build time. */
                 gemm->cpu_kernels ? " -DTW_NO_UNROLL" : "");
        cl_program program = NULL;
        cl_kernel kernel = NULL;
        tw_status status = build_kernel(gemm, b->variant, options, "tw_gemm_block", &program,
                                        &kernel);
        if (status != TW_OK) return status;
        /* The compiler may need more registers than the work-group leaves (the kernel then
         * cannot run at its required size): a clear error, which the tuner skips. */
        size_t most = 0;
        if (clGetKernelWorkGroupInfo(kernel, gemm->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                     &most, NULL) == CL_SUCCESS &&
            most < block_threads(b)) {
            clReleaseKernel(kernel);
            clReleaseProgram(program);
            return tw_error(TW_ERR_UNSUPPORTED,
                            "opencl gemm: variant %s needs work-groups of %zu, the compiled "
                            "kernel allows %zu on this device",
                            own_names[b->variant], block_threads(b), most);
        }
        gemm->block_programs[config][trans] = program;
        gemm->block_kernels[config][trans] = kernel;
    }
    *out = gemm->block_kernels[config][trans];
    return TW_OK;
}

/* Splits along k for a split-K variant: enough work-groups for two per compute unit (at least
 * 8), each split at least 4 steps of bk long. Returns the split count and its k_chunk (a
 * multiple of bk, so every split's global loads stay 4-float aligned). */
static int split_count(const tw_cl_gemm_own *gemm, const tw_cl_block_config *b,
                       const tw_gemm_args *args, int *k_chunk) {
    const long tiles = (long)((args->m + b->bm - 1) / b->bm) * ((args->n + b->bn - 1) / b->bn) *
                       args->batch;
    const long target = gemm->compute_units * 2 > 8 ? gemm->compute_units * 2 : 8;
    long splits = 1;
    if (b->split_k && tiles < target) {
        splits = (target + tiles - 1) / tiles;
        const long most = args->k / (4 * b->bk);
        if (splits > most) splits = most;
        if (splits > 64) splits = 64;
        if (splits < 1) splits = 1;
    }
    long chunk = (args->k + splits - 1) / splits;
    chunk = (chunk + b->bk - 1) / b->bk * b->bk;
    *k_chunk = (int)chunk;
    return (int)((args->k + chunk - 1) / chunk);
}

/* Whether an operand allows aligned float4 loads/stores: element offset, leading dimension and
 * (with more than one product) batch stride multiples of 4. */
static cl_int vec_aligned(size_t offset, int64_t ld, int64_t stride, int batch) {
    return offset % 4 == 0 && ld % 4 == 0 && (batch == 1 || stride % 4 == 0);
}

static tw_status enqueue_block(tw_cl_gemm_own *gemm, const tw_cl_block_config *b,
                               const tw_gemm_args *args, cl_mem a, cl_mem bmem, cl_mem c) {
    const int config = (int)(b - block_configs);
    const int trans = (args->trans_a ? 2 : 0) + (args->trans_b ? 1 : 0);
    cl_kernel kernel = NULL;
    tw_status status = get_block_kernel(gemm, config, trans, &kernel);
    if (status != TW_OK) return status;

    int k_chunk = args->k;
    const cl_int splits = split_count(gemm, b, args, &k_chunk);
    tw_buffer *scratch = NULL;
    cl_mem w = c; /* unused by the kernel when splits == 1, but must be a valid cl_mem */
    if (splits > 1) {
        /* (batch, splits, m, n) partial sums. */
        const size_t floats = (size_t)args->batch * (size_t)splits * (size_t)args->m *
                              (size_t)args->n;
        status = tw_buffer_alloc(gemm->front, floats * sizeof(float), &scratch);
        if (status != TW_OK) return status;
        w = (cl_mem)scratch->handle;
    }

    const cl_int m = args->m, n = args->n, k = args->k;
    const cl_ulong a_off = args->a.offset, b_off = args->b.offset, c_off = args->c.offset;
    const cl_long lda = args->lda, ldb = args->ldb, ldc = args->ldc;
    const cl_long a_batch = args->stride_a, b_batch = args->stride_b, c_batch = args->stride_c;
    const cl_int a_vec = vec_aligned(args->a.offset, args->lda, args->stride_a, args->batch);
    const cl_int b_vec = vec_aligned(args->b.offset, args->ldb, args->stride_b, args->batch);
    const cl_int c_vec = vec_aligned(args->c.offset, args->ldc, args->stride_c, args->batch);
    const cl_int chunk = k_chunk;
    cl_uint i = 0;
    cl_int err = CL_SUCCESS;
    TW_CL_ARG(kernel, &i, m, &err);
    TW_CL_ARG(kernel, &i, n, &err);
    TW_CL_ARG(kernel, &i, k, &err);
    TW_CL_ARG(kernel, &i, args->alpha, &err);
    TW_CL_ARG(kernel, &i, args->beta, &err);
    TW_CL_ARG(kernel, &i, a, &err);
    TW_CL_ARG(kernel, &i, a_off, &err);
    TW_CL_ARG(kernel, &i, lda, &err);
    TW_CL_ARG(kernel, &i, a_batch, &err);
    TW_CL_ARG(kernel, &i, a_vec, &err);
    TW_CL_ARG(kernel, &i, bmem, &err);
    TW_CL_ARG(kernel, &i, b_off, &err);
    TW_CL_ARG(kernel, &i, ldb, &err);
    TW_CL_ARG(kernel, &i, b_batch, &err);
    TW_CL_ARG(kernel, &i, b_vec, &err);
    TW_CL_ARG(kernel, &i, c, &err);
    TW_CL_ARG(kernel, &i, c_off, &err);
    TW_CL_ARG(kernel, &i, ldc, &err);
    TW_CL_ARG(kernel, &i, c_batch, &err);
    TW_CL_ARG(kernel, &i, c_vec, &err);
    TW_CL_ARG(kernel, &i, splits, &err);
    TW_CL_ARG(kernel, &i, chunk, &err);
    TW_CL_ARG(kernel, &i, w, &err);
    if (err != CL_SUCCESS) status = cl_fail(err, "clSetKernelArg(gemm block)");

    const size_t local[3] = {(size_t)(b->bn / b->tn), (size_t)(b->bm / b->tm), 1};
    const size_t global[3] = {ceil_div((size_t)n, (size_t)b->bn) * local[0],
                              ceil_div((size_t)m, (size_t)b->bm) * local[1],
                              (size_t)args->batch * (size_t)splits};
    if (status == TW_OK) {
        err = clEnqueueNDRangeKernel(gemm->queue, kernel, 3, NULL, global, local, 0, NULL, NULL);
        if (err != CL_SUCCESS) status = cl_fail(err, "clEnqueueNDRangeKernel(gemm block)");
    }
    if (status == TW_OK && splits > 1) {
        if (!gemm->reduce_kernel)
            status = build_kernel(gemm, b->variant, "-DTW_GEMM_REDUCE", "tw_gemm_reduce",
                                  &gemm->reduce_program, &gemm->reduce_kernel);
        if (status == TW_OK) {
            cl_kernel reduce = gemm->reduce_kernel;
            i = 0;
            TW_CL_ARG(reduce, &i, m, &err);
            TW_CL_ARG(reduce, &i, n, &err);
            TW_CL_ARG(reduce, &i, args->alpha, &err);
            TW_CL_ARG(reduce, &i, args->beta, &err);
            TW_CL_ARG(reduce, &i, splits, &err);
            TW_CL_ARG(reduce, &i, w, &err);
            TW_CL_ARG(reduce, &i, c, &err);
            TW_CL_ARG(reduce, &i, c_off, &err);
            TW_CL_ARG(reduce, &i, ldc, &err);
            TW_CL_ARG(reduce, &i, c_batch, &err);
            if (err != CL_SUCCESS) status = cl_fail(err, "clSetKernelArg(gemm reduce)");
            /* One work-item per element of C, exact global size: the driver picks the
             * work-group (any size is valid here). */
            const size_t rglobal[3] = {(size_t)n, (size_t)m, (size_t)args->batch};
            if (status == TW_OK) {
                err = clEnqueueNDRangeKernel(gemm->queue, reduce, 3, NULL, rglobal, NULL, 0, NULL,
                                             NULL);
                if (err != CL_SUCCESS) status = cl_fail(err, "clEnqueueNDRangeKernel(gemm reduce)");
            }
        }
    }
    /* Safe with the kernels still queued: OpenCL keeps the object until they finish. */
    if (scratch) tw_buffer_free(scratch);
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * Variants
 * ---------------------------------------------------------------------------------------------- */

const char *tw_cl_own_variant_name(tw_cl_own_variant variant) {
    return (int)variant >= 0 && variant < TW_CL_OWN_COUNT ? own_names[variant] : "?";
}

int tw_cl_own_variant_find(const char *name) {
    for (int v = 0; v < TW_CL_OWN_COUNT; ++v)
        if (strcmp(own_names[v], name) == 0) return v;
    return -1;
}

bool tw_cl_own_variant_fits(const tw_cl_gemm_own *gemm, tw_cl_own_variant variant) {
    const tw_cl_block_config *b = block_config(variant);
    if (!b) return true; /* cpu and tiled size themselves from the device */
    return block_threads(b) <= gemm->max_group && block_local_bytes(b) <= gemm->local_bytes;
}

tw_cl_own_variant tw_cl_own_default_variant(const tw_cl_gemm_own *gemm) {
    return gemm->cpu_kernels ? TW_CL_OWN_CPU : TW_CL_OWN_TILED;
}

bool tw_cl_own_variant_suits(const tw_cl_gemm_own *gemm, tw_cl_own_variant variant,
                             const tw_gemm_args *args) {
    if (!tw_cl_own_variant_fits(gemm, variant)) return false;
    /* On CPU devices the local-memory kernels run at 3-7 GFLOP/s where "cpu" reaches ~200: not
     * worth timing (they are still run by the tests through tw_device_force_kernel_variant). */
    if (gemm->cpu_kernels) return variant == TW_CL_OWN_CPU;
    if (variant == TW_CL_OWN_CPU) return false;
    const tw_cl_block_config *b = block_config(variant);
    if (!b) return true;
    /* A tile much larger than the output computes mostly padding. */
    if (args->m < b->bm / 2 || args->n < b->bn / 2) return false;
    if (b->split_k) {
        int chunk = 0;
        return split_count(gemm, b, args, &chunk) > 1;
    }
    return true;
}

void tw_cl_own_inject_build_fault(tw_cl_gemm_own *gemm, tw_cl_own_variant variant) {
    if ((int)variant >= 0 && variant < TW_CL_OWN_COUNT) gemm->fault_build[variant] = true;
}

tw_status tw_cl_gemm_own_enqueue(tw_cl_gemm_own *gemm, tw_cl_own_variant variant,
                                 const tw_gemm_args *args, cl_mem a, cl_mem b, cl_mem c) {
    if (args->dtype != TW_DTYPE_F32)
        return tw_error(TW_ERR_UNSUPPORTED, "opencl gemm: only f32 is supported");
    if (args->m <= 0 || args->n <= 0 || args->batch <= 0) return TW_OK;
    const tw_cl_block_config *block = block_config(variant);
    /* k == 0 or alpha == 0 (C = beta C, A and B unread) go to the simplest kernel. */
    if (block && args->k > 0 && args->alpha != 0.0f)
        return enqueue_block(gemm, block, args, a, b, c);
    tw_cl_gemm_launch l;
    memset(&l, 0, sizeof(l));
    if (variant == TW_CL_OWN_CPU || (block && gemm->cpu_kernels)) {
        plan_cpu(gemm, args, a, b, &l);
    } else {
        plan_direct(args, a, b, &l);
        l.variant = (tw_cl_gemm_variant)(TW_CL_GEMM_TILED_NN + (args->trans_a ? 2 : 0) +
                                         (args->trans_b ? 1 : 0));
    }
    /* alpha == 0 reads neither A nor B (as BLAS does): C = beta C. */
    l.k = args->alpha == 0.0f ? 0 : args->k;
    l.alpha = args->alpha;
    l.beta = args->beta;
    l.batch = args->batch;
    l.c = c;
    l.c_off = args->c.offset;
    l.c_batch = args->stride_c;
    return launch(gemm, &l);
}
