/* twist OpenCL backend: launches of every op but GEMM and attention (kernels in kernels/).
 * Arguments arrive validated (src/core/ops.c); each function sets its kernel's arguments in the
 * order of the kernel signature (tensors as cl_mem + element offset) and enqueues it. */
#include <math.h>
#include <string.h>

#include "cl_internal.h"

/* Kernel lookup plus argument-setting state for one launch. */
typedef struct tw_cl_call {
    tw_cl_context *cl;
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
    const char *name;
} tw_cl_call;

/* dtype: the op's data type (twist/backend.h, "Data types"), which picks the family's build. */
static tw_status call_begin(tw_cl_call *call, void *context, tw_cl_family family,
                            tw_dtype dtype, const char *name) {
    memset(call, 0, sizeof *call);
    call->cl = context;
    call->name = name;
    return tw_cl_kernel_typed(call->cl, family, dtype, name, &call->kernel);
}

static void arg_int(tw_cl_call *call, int value) {
    cl_int v = value;
    TW_CL_ARG(call->kernel, &call->index, v, &call->err);
}
static void arg_float(tw_cl_call *call, float value) {
    cl_float v = value;
    TW_CL_ARG(call->kernel, &call->index, v, &call->err);
}
static void arg_ulong(tw_cl_call *call, size_t value) {
    cl_ulong v = value;
    TW_CL_ARG(call->kernel, &call->index, v, &call->err);
}
static void arg_cl_mem(tw_cl_call *call, cl_mem mem) {
    TW_CL_ARG(call->kernel, &call->index, mem, &call->err);
}
/* A tensor: its buffer and its element offset. */
static void arg_mem(tw_cl_call *call, tw_mem mem) {
    arg_cl_mem(call, tw_cl_mem(mem));
    arg_ulong(call, mem.offset);
}

static tw_status call_launch(tw_cl_call *call, size_t items) {
    if (call->err != CL_SUCCESS) return tw_cl_fail(call->err, "clSetKernelArg");
    return tw_cl_launch_1d(call->cl, call->kernel, items, call->name);
}

/* ------------------------------------------------------------------------------------------------
 * Elementwise and bias
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_add(void *context, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, a.dtype, "tw_add"));
    arg_ulong(&call, n);
    arg_mem(&call, a);
    arg_mem(&call, b);
    arg_mem(&call, out);
    return call_launch(&call, n);
}

tw_status tw_cl_scale(void *context, size_t n, float alpha, tw_mem x, tw_mem out) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, x.dtype, "tw_scale"));
    arg_ulong(&call, n);
    arg_float(&call, alpha);
    arg_mem(&call, x);
    arg_mem(&call, out);
    return call_launch(&call, n);
}

tw_status tw_cl_gelu_fwd(void *context, size_t n, tw_mem x, tw_mem out) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, x.dtype, "tw_gelu_fwd"));
    arg_ulong(&call, n);
    arg_mem(&call, x);
    arg_mem(&call, out);
    return call_launch(&call, n);
}

tw_status tw_cl_gelu_bwd(void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, x.dtype, "tw_gelu_bwd"));
    arg_ulong(&call, n);
    arg_mem(&call, x);
    arg_mem(&call, dout);
    arg_mem(&call, dx);
    return call_launch(&call, n);
}

tw_status tw_cl_bias_add(void *context, int rows, int cols, tw_mem bias, tw_mem out) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, out.dtype, "tw_bias_add"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_mem(&call, bias);
    arg_mem(&call, out);
    return call_launch(&call, (size_t)rows * (size_t)cols);
}

tw_status tw_cl_bias_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem dbias) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ELEMENTWISE, dout.dtype, "tw_bias_bwd"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_mem(&call, dout);
    arg_mem(&call, dbias);
    return call_launch(&call, (size_t)cols);
}

/* ------------------------------------------------------------------------------------------------
 * sum_sq: fixed two-level tree (kernels/reduce.cl)
 * ---------------------------------------------------------------------------------------------- */

enum { SUM_SQ_PARTS = 1024 };

static tw_status sum_sq_launch(tw_cl_context *cl, size_t n, tw_mem x, tw_mem out,
                               cl_mem partials) {
    /* The split depends only on n: the same input always meets the same tree. */
    size_t chunk = (n + SUM_SQ_PARTS - 1) / SUM_SQ_PARTS;
    if (chunk == 0) chunk = 1;
    int parts = (int)((n + chunk - 1) / chunk);
    tw_cl_call call;
    if (parts > 0) {
        TW_TRY(call_begin(&call, cl, TW_CL_REDUCE, x.dtype, "tw_sum_sq_partial"));
        arg_ulong(&call, n);
        arg_ulong(&call, chunk);
        arg_int(&call, parts);
        arg_mem(&call, x);
        arg_cl_mem(&call, partials);
        TW_TRY(call_launch(&call, (size_t)parts));
    }
    TW_TRY(call_begin(&call, cl, TW_CL_REDUCE, x.dtype, "tw_sum_sq_final"));
    arg_int(&call, parts);
    arg_cl_mem(&call, partials);
    arg_mem(&call, out);
    return call_launch(&call, 1);
}

/* The partial sums (4 KiB) are scratch of this call, allocated through tw_buffer_alloc so they
 * count in the device's bytes, and released once the queued kernels are done with them. */
tw_status tw_cl_sum_sq(void *context, size_t n, tw_mem x, tw_mem out) {
    tw_cl_context *cl = context;
    tw_buffer *partials = NULL;
    TW_TRY(tw_buffer_alloc(cl->device, SUM_SQ_PARTS * sizeof(float), &partials));
    tw_status status = sum_sq_launch(cl, n, x, out, (cl_mem)partials->handle);
    tw_buffer_free(partials);
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * AdamW
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_adamw_step(void *context, size_t n, const tw_adamw_args *args, tw_mem param,
                           tw_mem grad, tw_mem m, tw_mem v) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_ADAMW, grad.dtype, "tw_adamw"));
    arg_ulong(&call, n);
    arg_float(&call, args->lr);
    arg_float(&call, args->beta1);
    arg_float(&call, args->beta2);
    arg_float(&call, args->eps);
    arg_float(&call, args->weight_decay);
    arg_float(&call, args->grad_scale);
    arg_float(&call, (float)(1.0 - pow(args->beta1, args->step)));
    arg_float(&call, (float)(1.0 - pow(args->beta2, args->step)));
    arg_mem(&call, param);
    arg_mem(&call, grad);
    arg_mem(&call, m);
    arg_mem(&call, v);
    return call_launch(&call, n);
}

/* ------------------------------------------------------------------------------------------------
 * Row ops: softmax, layernorm, cross-entropy
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_softmax_fwd(void *context, int rows, int cols, int causal_t, tw_mem in,
                            tw_mem out) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_SOFTMAX, in.dtype, "tw_softmax_fwd"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_int(&call, causal_t);
    arg_mem(&call, in);
    arg_mem(&call, out);
    return call_launch(&call, (size_t)rows);
}

tw_status tw_cl_softmax_bwd(void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_SOFTMAX, y.dtype, "tw_softmax_bwd"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_mem(&call, y);
    arg_mem(&call, dy);
    arg_mem(&call, dx);
    return call_launch(&call, (size_t)rows);
}

tw_status tw_cl_layernorm_fwd(void *context, int rows, int cols, float eps, tw_mem x,
                              tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_LAYERNORM, x.dtype, "tw_layernorm_fwd"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_float(&call, eps);
    arg_mem(&call, x);
    arg_mem(&call, weight);
    arg_mem(&call, bias);
    arg_mem(&call, out);
    arg_mem(&call, mean);
    arg_mem(&call, rstd);
    return call_launch(&call, (size_t)rows);
}

tw_status tw_cl_layernorm_bwd(void *context, int rows, int cols, tw_mem dout, tw_mem x,
                              tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                              tw_mem dbias) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_LAYERNORM, x.dtype, "tw_layernorm_bwd_dx"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_mem(&call, dout);
    arg_mem(&call, x);
    arg_mem(&call, weight);
    arg_mem(&call, mean);
    arg_mem(&call, rstd);
    arg_mem(&call, dx);
    TW_TRY(call_launch(&call, (size_t)rows));

    TW_TRY(call_begin(&call, context, TW_CL_LAYERNORM, x.dtype, "tw_layernorm_bwd_dw"));
    arg_int(&call, rows);
    arg_int(&call, cols);
    arg_mem(&call, dout);
    arg_mem(&call, x);
    arg_mem(&call, mean);
    arg_mem(&call, rstd);
    arg_mem(&call, dweight);
    arg_mem(&call, dbias);
    return call_launch(&call, (size_t)cols);
}

tw_status tw_cl_softmax_xent_fwd(void *context, int rows, int vocab, int ld, tw_mem logits,
                                 tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_XENT, logits.dtype, "tw_xent_fwd"));
    arg_int(&call, rows);
    arg_int(&call, vocab);
    arg_int(&call, ld);
    arg_mem(&call, logits);
    arg_mem(&call, targets);
    arg_mem(&call, losses);
    arg_mem(&call, lse);
    arg_mem(&call, correct);
    return call_launch(&call, (size_t)rows);
}

tw_status tw_cl_softmax_xent_bwd(void *context, int rows, int vocab, int ld, float grad_scale,
                                 tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_XENT, logits.dtype, "tw_xent_bwd"));
    arg_int(&call, rows);
    arg_int(&call, vocab);
    arg_int(&call, ld);
    arg_float(&call, grad_scale);
    arg_mem(&call, logits);
    arg_mem(&call, targets);
    arg_mem(&call, lse);
    arg_mem(&call, dlogits);
    return call_launch(&call, (size_t)rows * (size_t)vocab);
}

/* ------------------------------------------------------------------------------------------------
 * Embedding
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_embedding_fwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out) {
    (void)vocab;
    tw_cl_call call;
    int bt = batch * seq_len;
    TW_TRY(call_begin(&call, context, TW_CL_EMBEDDING, wte.dtype, "tw_embedding_fwd"));
    arg_int(&call, bt);
    arg_int(&call, seq_len);
    arg_int(&call, channels);
    arg_mem(&call, tokens);
    arg_mem(&call, wte);
    arg_mem(&call, wpe);
    arg_mem(&call, out);
    return call_launch(&call, (size_t)bt * (size_t)channels);
}

/* dwte through position chains (kernels/embedding.cl); links and has_prev are (B*T) int32 each,
 * one after the other in a device scratch allocated through tw_buffer_alloc, so it counts in
 * the device's bytes. */
static tw_status embedding_dwte(tw_cl_context *cl, int bt, int channels, tw_mem tokens,
                                tw_mem dout, tw_mem dwte, tw_buffer *scratch) {
    cl_mem mem = (cl_mem)scratch->handle;
    cl_int zero = 0;
    cl_int err = clEnqueueFillBuffer(cl->queue, mem, &zero, sizeof zero, (size_t)bt * 4,
                                     (size_t)bt * 4, 0, NULL, NULL);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clEnqueueFillBuffer");
    tw_cl_call call;
    /* links does not touch data tensors; dout's type keeps to one program per run. */
    tw_status status =
        call_begin(&call, cl, TW_CL_EMBEDDING, dout.dtype, "tw_embedding_links");
    if (status == TW_OK) {
        arg_int(&call, bt);
        arg_mem(&call, tokens);
        arg_cl_mem(&call, mem);
        status = call_launch(&call, (size_t)bt);
    }
    if (status == TW_OK)
        status = call_begin(&call, cl, TW_CL_EMBEDDING, dout.dtype, "tw_embedding_dwte");
    if (status == TW_OK) {
        arg_int(&call, bt);
        arg_int(&call, channels);
        arg_mem(&call, tokens);
        arg_cl_mem(&call, mem);
        arg_mem(&call, dout);
        arg_mem(&call, dwte);
        status = call_launch(&call, (size_t)bt * (size_t)channels);
    }
    return status;
}

tw_status tw_cl_embedding_bwd(void *context, int batch, int seq_len, int channels, int vocab,
                              tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe) {
    (void)vocab;
    tw_cl_context *cl = context;
    int bt = batch * seq_len;
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_EMBEDDING, dout.dtype, "tw_embedding_dwpe"));
    arg_int(&call, batch);
    arg_int(&call, seq_len);
    arg_int(&call, channels);
    arg_mem(&call, dout);
    arg_mem(&call, dwpe);
    TW_TRY(call_launch(&call, (size_t)seq_len * (size_t)channels));

    tw_buffer *scratch = NULL;
    TW_TRY(tw_buffer_alloc(cl->device, (size_t)bt * 2 * sizeof(cl_int), &scratch));
    tw_status status = embedding_dwte(cl, bt, channels, tokens, dout, dwte, scratch);
    tw_buffer_free(scratch); /* released once the queued kernels are done with it */
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * Gather / scatter
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_gather_rows(void *context, int src_rows, int cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst) {
    (void)src_rows;
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_GATHER, src.dtype, "tw_gather_rows"));
    arg_int(&call, count);
    arg_int(&call, cols);
    arg_mem(&call, idx);
    arg_mem(&call, src);
    arg_mem(&call, dst);
    return call_launch(&call, (size_t)count * (size_t)cols);
}

tw_status tw_cl_scatter_rows(void *context, int dst_rows, int cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate) {
    (void)dst_rows;
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_GATHER, src.dtype, "tw_scatter_rows"));
    arg_int(&call, count);
    arg_int(&call, cols);
    arg_int(&call, accumulate ? 1 : 0);
    arg_mem(&call, idx);
    arg_mem(&call, src);
    arg_mem(&call, dst);
    return call_launch(&call, (size_t)count * (size_t)cols);
}

tw_status tw_cl_gather_cols(void *context, int rows, int src_cols, int count, tw_mem idx,
                            tw_mem src, tw_mem dst) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_GATHER, src.dtype, "tw_gather_cols"));
    arg_int(&call, rows);
    arg_int(&call, src_cols);
    arg_int(&call, count);
    arg_mem(&call, idx);
    arg_mem(&call, src);
    arg_mem(&call, dst);
    return call_launch(&call, (size_t)rows * (size_t)count);
}

tw_status tw_cl_scatter_cols(void *context, int rows, int dst_cols, int count, tw_mem idx,
                             tw_mem src, tw_mem dst, bool accumulate) {
    tw_cl_call call;
    TW_TRY(call_begin(&call, context, TW_CL_GATHER, src.dtype, "tw_scatter_cols"));
    arg_int(&call, rows);
    arg_int(&call, dst_cols);
    arg_int(&call, count);
    arg_int(&call, accumulate ? 1 : 0);
    arg_mem(&call, idx);
    arg_mem(&call, src);
    arg_mem(&call, dst);
    return call_launch(&call, (size_t)rows * (size_t)count);
}
