/* twist OpenCL backend: fused causal attention, variants "rows" (kernels/attention.cl, described
 * here) and "tiled" (kernels/attention_tiled.cl, for GPUs; second half of this file), and the
 * choice between them (backends/opencl/README.md, "Attention").
 *
 * The kernels are compiled per head dimension D (-DHD=D: private rows of exactly D floats), on
 * first use of each D, through the cached program build. Forward: one launch (O and lse).
 * Backward: delta (B*H*T floats of scratch, allocated through tw_buffer_alloc so it counts in
 * the device's bytes), then dQ per query row and dK, dV per key row; every gradient element is
 * written by exactly one work-item, summing in a fixed order (deterministic, no atomics).
 * Memory beyond the arguments: B*H*T floats in the backward, nothing in the forward. */
#include <stdio.h>
#include <string.h>

#include "cl_internal.h"

extern const char twist_cl_attention_cl[];
extern const size_t twist_cl_attention_cl_size;
extern const char twist_cl_attention_tiled_cl[];
extern const size_t twist_cl_attention_tiled_cl_size;

static void release_programs(tw_cl_context *cl) {
    for (int i = 0; i < cl->attention_count; i++) {
        tw_cl_attention_program *p = &cl->attention[i];
        cl_kernel kernels[] = {p->fwd, p->delta, p->dq, p->dkdv,
                               p->fwd_tiled, p->dq_tiled, p->dkdv_tiled};
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++)
            if (kernels[k]) clReleaseKernel(kernels[k]);
        if (p->program) clReleaseProgram(p->program);
        if (p->tiled) clReleaseProgram(p->tiled);
        memset(p, 0, sizeof *p);
    }
    cl->attention_count = 0;
}

void tw_cl_attention_release(tw_cl_context *cl) { release_programs(cl); }

static bool device_has_fma(cl_device_id device) {
    cl_device_fp_config config = 0;
    return clGetDeviceInfo(device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof config, &config, NULL) ==
               CL_SUCCESS &&
           (config & CL_FP_FMA);
}

static tw_status create_kernels(tw_cl_attention_program *p) {
    cl_int err = CL_SUCCESS;
    p->fwd = clCreateKernel(p->program, "tw_attention_fwd", &err);
    if (err == CL_SUCCESS) p->delta = clCreateKernel(p->program, "tw_attention_delta", &err);
    if (err == CL_SUCCESS) p->dq = clCreateKernel(p->program, "tw_attention_dq", &err);
    if (err == CL_SUCCESS) p->dkdv = clCreateKernel(p->program, "tw_attention_dkdv", &err);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clCreateKernel(attention)");
}

/* The kernels for head dimension D, built on first use. The table keeps the most recent
 * TW_CL_MAX_ATTENTION_PROGRAMS head dimensions (a model has one or two). */
static tw_status attention_program(tw_cl_context *cl, int head_dim,
                                   tw_cl_attention_program **out) {
    for (int i = 0; i < cl->attention_count; i++) {
        if (cl->attention[i].head_dim == head_dim) {
            *out = &cl->attention[i];
            return TW_OK;
        }
    }
    if (cl->attention_count == TW_CL_MAX_ATTENTION_PROGRAMS) release_programs(cl);
    tw_cl_attention_program *p = &cl->attention[cl->attention_count];
    memset(p, 0, sizeof *p);
    char options[64];
    snprintf(options, sizeof options, "-DHD=%d%s", head_dim,
             device_has_fma(cl->device_id) ? " -DUSE_FMA" : "");
    tw_status status = tw_cl_build_program(cl, twist_cl_attention_cl, twist_cl_attention_cl_size,
                                           options, &p->program);
    if (status == TW_OK) status = create_kernels(p);
    if (status != TW_OK) {
        cl->attention_count++; /* so that release frees what was made */
        release_programs(cl);
        return status;
    }
    p->head_dim = head_dim;
    cl->attention_count++;
    *out = p;
    return TW_OK;
}

/* Argument helpers (kernel argument order as in attention.cl). */
typedef struct arg_state {
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
} arg_state;

static void put_int(arg_state *s, int value) {
    cl_int v = value;
    TW_CL_ARG(s->kernel, &s->index, v, &s->err);
}
static void put_float(arg_state *s, float value) {
    cl_float v = value;
    TW_CL_ARG(s->kernel, &s->index, v, &s->err);
}
static void put_long(arg_state *s, int64_t value) {
    cl_long v = value;
    TW_CL_ARG(s->kernel, &s->index, v, &s->err);
}
static void put_cl_mem(arg_state *s, cl_mem mem) { TW_CL_ARG(s->kernel, &s->index, mem, &s->err); }
static void put_mem(arg_state *s, tw_mem mem) {
    cl_ulong offset = mem.offset;
    put_cl_mem(s, tw_cl_mem(mem));
    TW_CL_ARG(s->kernel, &s->index, offset, &s->err);
}
static void put_stride(arg_state *s, tw_bhtd_stride stride) {
    put_long(s, stride.b);
    put_long(s, stride.h);
    put_long(s, stride.t);
}
/* batch, heads, seq_len (every attention kernel starts with them). */
static void put_shape(arg_state *s, const tw_attention_args *args) {
    put_int(s, args->batch);
    put_int(s, args->heads);
    put_int(s, args->seq_len);
}
/* scale, q, k, v and their stride. */
static void put_qkv(arg_state *s, const tw_attention_args *args) {
    put_float(s, args->scale);
    put_mem(s, args->q);
    put_mem(s, args->k);
    put_mem(s, args->v);
    put_stride(s, args->qkv_stride);
}

/* rows_per_item: query rows one work-item handles (2 in the forward, 1 elsewhere). */
static tw_status launch(tw_cl_context *cl, const arg_state *s, const tw_attention_args *args,
                        int rows_per_item, const char *what) {
    if (s->err != CL_SUCCESS) return tw_cl_fail(s->err, "clSetKernelArg(attention)");
    size_t per_head = ((size_t)args->seq_len + rows_per_item - 1) / rows_per_item;
    size_t items = (size_t)args->batch * (size_t)args->heads * per_head;
    return tw_cl_launch_1d(cl, s->kernel, items, what);
}

static tw_status fwd_rows(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    tw_status status = attention_program(cl, args->head_dim, &p);
    if (status != TW_OK) return status;
    arg_state s = {p->fwd, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->out);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    return launch(cl, &s, args, 2, "attention_fwd");
}

/* The three backward launches, given the delta scratch. */
static tw_status backward(tw_cl_context *cl, tw_cl_attention_program *p,
                          const tw_attention_args *args, cl_mem delta) {
    arg_state s = {p->delta, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_mem(&s, args->out);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_cl_mem(&s, delta);
    tw_status status = launch(cl, &s, args, 1, "attention_delta");
    if (status != TW_OK) return status;

    s = (arg_state){p->dq, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    put_cl_mem(&s, delta);
    put_mem(&s, args->dq);
    status = launch(cl, &s, args, 2, "attention_dq");
    if (status != TW_OK) return status;

    s = (arg_state){p->dkdv, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    put_cl_mem(&s, delta);
    put_mem(&s, args->dk);
    put_mem(&s, args->dv);
    return launch(cl, &s, args, 2, "attention_dkdv");
}

static tw_status bwd_rows(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    tw_status status = attention_program(cl, args->head_dim, &p);
    if (status != TW_OK) return status;
    size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_buffer *delta = NULL;
    status = tw_buffer_alloc(cl->device, rows * sizeof(float), &delta);
    if (status != TW_OK) return status;
    status = backward(cl, p, args, (cl_mem)delta->handle);
    tw_buffer_free(delta); /* OpenCL keeps it alive until the queued kernels finish */
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * The tiled variant (kernels/attention_tiled.cl): flash-attention tiles in local memory for GPUs,
 * the same work split as the Vulkan shaders. Work-groups of 128 work-items (64 at block 8) per
 * (b, h, block of BLK rows). */

/* Local-memory floats of a tiled kernel at block size blk: pass 0 forward, 1 dQ, 2 dK/dV
 * (float4 tiles, kernels/attention_tiled.cl). */
static uint64_t tiled_local_floats(uint64_t blk, uint64_t D, int pass) {
    const uint64_t tile = blk * ((D + 3) / 4 + 1) * 4, scores = blk * (blk / 4 + 1) * 4;
    switch (pass) {
    case 0: return 2 * tile + scores + 16 * blk;
    case 1: return 4 * tile + scores + 2 * blk;
    default: return 4 * tile + 2 * scores + 2 * blk;
    }
}

static size_t tiled_wg(int blk) { return blk == 8 ? 64 : 128; }

/* The largest block of 32, 16, 8 whose tiles fit `local_bytes`; 0 if none. */
static int tiled_block(cl_ulong local_bytes, size_t max_group, int D, int pass) {
    for (int blk = 32; blk >= 8; blk /= 2)
        if (tiled_wg(blk) <= max_group &&
            tiled_local_floats((uint64_t)blk, (uint64_t)D, pass) * sizeof(float) <= local_bytes)
            return blk;
    return 0;
}

static cl_ulong local_memory(const tw_cl_context *cl) {
    cl_ulong bytes = 0;
    if (clGetDeviceInfo(cl->device_id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof bytes, &bytes, NULL) !=
        CL_SUCCESS)
        return 0;
    return bytes;
}

/* Whether the tiled kernels fit this device at head dimension D. */
static bool tiled_fits(const tw_cl_context *cl, int D) {
    const cl_ulong local = local_memory(cl);
    for (int pass = 0; pass < 3; pass++)
        if (tiled_block(local, cl->max_group, D, pass) == 0) return false;
    return true;
}

/* The rows program of the head dimension with the tiled kernels built beside it. */
static tw_status tiled_program(tw_cl_context *cl, int head_dim, tw_cl_attention_program **out) {
    tw_cl_attention_program *p = NULL;
    TW_TRY(attention_program(cl, head_dim, &p));
    if (!p->tiled) {
        const cl_ulong local = local_memory(cl);
        for (int pass = 0; pass < 3; pass++) {
            p->tiled_blk[pass] = tiled_block(local, cl->max_group, head_dim, pass);
            if (p->tiled_blk[pass] == 0)
                return tw_error(TW_ERR_UNSUPPORTED,
                                "opencl: tiled attention with head_dim %d needs more local memory "
                                "than this device's %llu bytes",
                                head_dim, (unsigned long long)local);
        }
        char options[160];
        snprintf(options, sizeof options, "-DHD=%d -DBLK_FWD=%d -DBLK_DQ=%d -DBLK_DKDV=%d%s",
                 head_dim, p->tiled_blk[0], p->tiled_blk[1], p->tiled_blk[2],
                 device_has_fma(cl->device_id) ? " -DUSE_FMA" : "");
        TW_TRY(tw_cl_build_program(cl, twist_cl_attention_tiled_cl,
                                   twist_cl_attention_tiled_cl_size, options, &p->tiled));
        cl_int err = CL_SUCCESS;
        p->fwd_tiled = clCreateKernel(p->tiled, "tw_attention_fwd_tiled", &err);
        if (err == CL_SUCCESS) p->dq_tiled = clCreateKernel(p->tiled, "tw_attention_dq_tiled", &err);
        if (err == CL_SUCCESS)
            p->dkdv_tiled = clCreateKernel(p->tiled, "tw_attention_dkdv_tiled", &err);
        if (err != CL_SUCCESS) {
            cl_kernel kernels[3] = {p->fwd_tiled, p->dq_tiled, p->dkdv_tiled};
            for (int k = 0; k < 3; k++)
                if (kernels[k]) clReleaseKernel(kernels[k]);
            clReleaseProgram(p->tiled);
            p->tiled = NULL;
            p->fwd_tiled = p->dq_tiled = p->dkdv_tiled = NULL;
            return tw_cl_fail(err, "clCreateKernel(attention tiled)");
        }
    }
    *out = p;
    return TW_OK;
}

/* B*H*ceil(T/blk) work-groups of tiled_wg(blk) work-items. */
static tw_status launch_tiled(tw_cl_context *cl, const arg_state *s, const tw_attention_args *args,
                              int blk, const char *what) {
    if (s->err != CL_SUCCESS) return tw_cl_fail(s->err, "clSetKernelArg(attention tiled)");
    const size_t blocks = ((size_t)args->seq_len + (size_t)blk - 1) / (size_t)blk;
    const size_t groups = (size_t)args->batch * (size_t)args->heads * blocks;
    if (groups == 0) return TW_OK;
    size_t local = tiled_wg(blk), global = groups * local;
    cl_int err = clEnqueueNDRangeKernel(cl->queue, s->kernel, 1, NULL, &global, &local, 0, NULL,
                                        NULL);
    if (err != CL_SUCCESS) {
        char message[160];
        snprintf(message, sizeof message, "clEnqueueNDRangeKernel(%s)", what);
        return tw_cl_fail(err, message);
    }
    return TW_OK;
}

static tw_status fwd_tiled(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    TW_TRY(tiled_program(cl, args->head_dim, &p));
    arg_state s = {p->fwd_tiled, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->out);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    return launch_tiled(cl, &s, args, p->tiled_blk[0], "attention_fwd_tiled");
}

/* delta (the rows program's kernel), then dK/dV over key blocks, then dQ over query blocks. */
static tw_status backward_tiled(tw_cl_context *cl, tw_cl_attention_program *p,
                                const tw_attention_args *args, cl_mem delta) {
    arg_state s = {p->delta, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_mem(&s, args->out);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_cl_mem(&s, delta);
    TW_TRY(launch(cl, &s, args, 1, "attention_delta"));

    s = (arg_state){p->dkdv_tiled, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    put_cl_mem(&s, delta);
    put_mem(&s, args->dk);
    put_mem(&s, args->dv);
    TW_TRY(launch_tiled(cl, &s, args, p->tiled_blk[2], "attention_dkdv_tiled"));

    s = (arg_state){p->dq_tiled, 0, CL_SUCCESS};
    put_shape(&s, args);
    put_qkv(&s, args);
    put_mem(&s, args->dout);
    put_stride(&s, args->out_stride);
    put_mem(&s, args->lse);
    put_cl_mem(&s, delta);
    put_mem(&s, args->dq);
    return launch_tiled(cl, &s, args, p->tiled_blk[1], "attention_dq_tiled");
}

static tw_status bwd_tiled(tw_cl_context *cl, const tw_attention_args *args) {
    tw_cl_attention_program *p = NULL;
    TW_TRY(tiled_program(cl, args->head_dim, &p));
    size_t rows = (size_t)args->batch * (size_t)args->heads * (size_t)args->seq_len;
    tw_buffer *delta = NULL;
    TW_TRY(tw_buffer_alloc(cl->device, rows * sizeof(float), &delta));
    tw_status status = backward_tiled(cl, p, args, (cl_mem)delta->handle);
    tw_buffer_free(delta); /* OpenCL keeps it alive until the queued kernels finish */
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * Variants and their choice: the same policy as the Vulkan backend (vk_attention.c). Forced, or
 * the measured choice per shape class (tw_attention_class_key) cached in tw_tune_cache, measured
 * in place on the first forward call of the class (tw_attention_measure) and used for its
 * backward too; CPU devices measure only classes up to
 * T = 64, where tiled must also win by 10%: on PoCL tiled ran 7x slower than rows
 * (README, "OpenCL"), and larger classes get rows. TWIST_TUNE=off: tiled on GPUs, rows on CPU
 * devices. */
enum { VARIANT_ROWS = 0, VARIANT_TILED = 1, VARIANT_COUNT = 2 };
enum { CPU_MEASURED_T = 64 };
static const char *const VARIANT_NAMES[VARIANT_COUNT] = {"rows", "tiled"};

static int forced_of(tw_cl_context *cl, int which) {
    return cl->attention_forced_set ? cl->attention_forced[which] : -1;
}

static tw_status run_variant(tw_cl_context *cl, const tw_attention_args *args, bool backward,
                             int variant) {
    if (variant == VARIANT_TILED) return backward ? bwd_tiled(cl, args) : fwd_tiled(cl, args);
    return backward ? bwd_rows(cl, args) : fwd_rows(cl, args);
}

static tw_status run_fwd(void *context, const tw_attention_args *args, int variant) {
    return run_variant(context, args, false, variant);
}

static tw_status choose(tw_cl_context *cl, const tw_attention_args *args, bool backward,
                        int *variant) {
    const int forced = forced_of(cl, backward);
    if (forced >= 0) {
        *variant = forced;
        return TW_OK;
    }
    const bool cpu = cl->is_cpu;
    *variant = VARIANT_ROWS;
    if (!tiled_fits(cl, args->head_dim)) return TW_OK;
    *variant = cpu ? VARIANT_ROWS : VARIANT_TILED;
    const tw_tune_mode mode = tw_tune_mode_from_env();
    if (mode == TW_TUNE_MODE_OFF || (cpu && args->seq_len > CPU_MEASURED_T)) return TW_OK;
    const tw_attention_tuning tuning = {
        .device = cl->device, .cache = tw_cl_tune_cache(cl), /* shared with GEMM */
        .backend = "opencl", .names = VARIANT_NAMES, .count = VARIANT_COUNT, .fwd = run_fwd,
        .context = cl, .reference = *variant, .margin = cpu ? 0.9 : 1.0};
    return tw_attention_tuned_variant(&tuning, args, backward, variant);
}

tw_status tw_cl_attention_fwd(void *context, const tw_attention_args *args) {
    int variant = VARIANT_ROWS;
    TW_TRY(choose(context, args, false, &variant));
    return run_variant(context, args, false, variant);
}

tw_status tw_cl_attention_bwd(void *context, const tw_attention_args *args) {
    int variant = VARIANT_ROWS;
    TW_TRY(choose(context, args, true, &variant));
    return run_variant(context, args, true, variant);
}

int tw_cl_attention_variants(tw_cl_context *cl, const char *op, const char **names,
                             int capacity) {
    if (tw_attention_op_index(op) < 0) return 0;
    const char *order[VARIANT_COUNT] = {VARIANT_NAMES[cl->is_cpu ? VARIANT_ROWS : VARIANT_TILED],
                                        VARIANT_NAMES[cl->is_cpu ? VARIANT_TILED : VARIANT_ROWS]};
    for (int i = 0; i < VARIANT_COUNT && i < capacity; i++) names[i] = order[i];
    return VARIANT_COUNT;
}

tw_status tw_cl_attention_force_variant(tw_cl_context *cl, const char *op, const char *name) {
    if (!cl->attention_forced_set) {
        cl->attention_forced[0] = cl->attention_forced[1] = -1;
        cl->attention_forced_set = true;
    }
    return tw_attention_force(cl->attention_forced, "opencl", op, name, VARIANT_NAMES,
                              VARIANT_COUNT);
}
