/* twist OpenCL backend: twist's own SGEMM (kernels in kernels/gemm.cl).
 *
 * Two families of kernels, chosen per device:
 *   - CPU devices (PoCL and the like) run TW_GEMM_VEC / TW_GEMM_DOT: barrier-free register-tiled
 *     micro-kernels with explicit vectors as wide as the device prefers. Local memory on a CPU is
 *     ordinary cache, and barriers force a CPU OpenCL compiler to spill every work-item's
 *     accumulators to memory, so staging tiles in local memory only costs time there.
 *   - GPUs (and anything else) run TW_GEMM_TILED: local-memory tiles, a register tile per
 *     work-item, coalesced loads, padded local arrays.
 * Each (kernel, transpose) variant is built on first use through the backend's build callback
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

/* TW_GEMM_TILED: a (tm, tn) tile of C per work-group, (wm, wn) per work-item, k staged tk at a
 * time, local rows padded by pad floats. */
typedef struct tw_cl_gemm_gpu_tile {
    int tm, tn, tk, wm, wn, pad;
} tw_cl_gemm_gpu_tile;

struct tw_cl_gemm_own {
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    tw_cl_build_fn build;
    void *build_context;
    bool cpu_kernels; /* VEC/DOT rather than TILED */
    bool use_fma;     /* the device has hardware fma */
    tw_cl_gemm_cpu_tile vec, vec_narrow, dot;
    tw_cl_gemm_gpu_tile tiled;
    cl_program programs[TW_CL_GEMM_VARIANT_COUNT];
    cl_kernel kernels[TW_CL_GEMM_VARIANT_COUNT];
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

tw_status tw_cl_gemm_own_create(cl_context context, cl_device_id device, cl_command_queue queue,
                                tw_cl_build_fn build, void *build_context, tw_cl_gemm_own **out) {
    *out = NULL;
    tw_cl_gemm_own *gemm = calloc(1, sizeof(*gemm));
    if (!gemm) return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl gemm: out of host memory");
    gemm->context = context;
    gemm->device = device;
    gemm->queue = queue;
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

static tw_status get_kernel(tw_cl_gemm_own *gemm, tw_cl_gemm_variant variant, cl_kernel *out) {
    if (!gemm->kernels[variant]) {
        char options[256];
        variant_options(gemm, variant, options, sizeof(options));
        cl_program program = NULL;
        tw_status status = gemm->build(gemm->build_context, twist_cl_gemm_cl,
                                       twist_cl_gemm_cl_size, options, &program);
        if (status != TW_OK) return status;
        cl_int err = CL_SUCCESS;
        cl_kernel kernel = clCreateKernel(program, variant_kernel_name(variant), &err);
        if (err != CL_SUCCESS) {
            clReleaseProgram(program);
            return cl_fail(err, "clCreateKernel(gemm)");
        }
        gemm->programs[variant] = program;
        gemm->kernels[variant] = kernel;
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

tw_status tw_cl_gemm_own_enqueue(tw_cl_gemm_own *gemm, const tw_gemm_args *args, cl_mem a,
                                 cl_mem b, cl_mem c) {
    if (args->dtype != TW_DTYPE_F32)
        return tw_error(TW_ERR_UNSUPPORTED, "opencl gemm: only f32 is supported");
    if (args->m <= 0 || args->n <= 0 || args->batch <= 0) return TW_OK;
    tw_cl_gemm_launch l;
    memset(&l, 0, sizeof(l));
    if (gemm->cpu_kernels) {
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
