/* twist OpenCL backend: fused causal attention (kernels/attention.cl).
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

void tw_cl_attention_release(tw_cl_context *cl) {
    for (int i = 0; i < cl->attention_count; i++) {
        tw_cl_attention_program *p = &cl->attention[i];
        if (p->fwd) clReleaseKernel(p->fwd);
        if (p->delta) clReleaseKernel(p->delta);
        if (p->dq) clReleaseKernel(p->dq);
        if (p->dkdv) clReleaseKernel(p->dkdv);
        if (p->program) clReleaseProgram(p->program);
        memset(p, 0, sizeof *p);
    }
    cl->attention_count = 0;
}

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
    if (cl->attention_count == TW_CL_MAX_ATTENTION_PROGRAMS) tw_cl_attention_release(cl);
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
        tw_cl_attention_release(cl);
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

tw_status tw_cl_attention_fwd(void *context, const tw_attention_args *args) {
    tw_cl_context *cl = context;
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

tw_status tw_cl_attention_bwd(void *context, const tw_attention_args *args) {
    tw_cl_context *cl = context;
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
