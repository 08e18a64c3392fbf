/* Op entry points: check every argument once, here, then call the device's backend.
 *
 * Backends trust what arrives (twist/backend_support.h), so this file is where a wrong shape, a
 * tensor that runs past the end of its buffer, a buffer of another device or an unsupported
 * dtype becomes one clear message instead of a crash inside a kernel. Extents are computed in
 * size_t with overflow checks. Index data (tokens, targets, gather indices) live on the device and
 * are not inspected here: callers (the data loader, the IST partitioner) produce them in range. */
#include <math.h>
#include <stdint.h>

#include "core/device.h"
#include "prof/profile_internal.h"

/* An op being checked. `dtype` is the op's data type (twist/backend.h, "Data types"): the type
 * of its principal tensor, which every other data tensor must share. */
typedef struct op_context {
    tw_device *device;
    const char *op;
    tw_op_id id;
    tw_dtype dtype;
} op_context;

/* What a tensor argument holds, for its dtype check. */
typedef enum tensor_role {
    ROLE_DATA,  /* the op's data type */
    ROLE_F32,   /* always fp32: statistics, losses, lse, optimizer state */
    ROLE_INDEX, /* int32 indices: TW_DTYPE_I32, or the zero default TW_DTYPE_F32 (4 bytes too) */
    ROLE_OUTPUT /* the op's data type or fp32 (GEMM's C) */
} tensor_role;

static bool mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static bool add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }

static tw_status check_device(const op_context *op) {
    if (!op->device) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: device is NULL", op->op);
    return TW_OK;
}

static tw_status check_role(const op_context *op, const char *name, tw_mem mem, tensor_role role) {
    bool ok = false;
    const char *wanted = "";
    switch (role) {
    case ROLE_DATA:
        ok = mem.dtype == op->dtype;
        wanted = tw_dtype_name(op->dtype);
        break;
    case ROLE_F32:
        ok = mem.dtype == TW_DTYPE_F32;
        wanted = "f32";
        break;
    case ROLE_INDEX:
        ok = mem.dtype == TW_DTYPE_I32 || mem.dtype == TW_DTYPE_F32;
        wanted = "i32";
        break;
    case ROLE_OUTPUT:
        ok = mem.dtype == op->dtype || mem.dtype == TW_DTYPE_F32;
        wanted = op->dtype == TW_DTYPE_F32 ? "f32" : "the op's type or f32";
        break;
    }
    if (ok) return TW_OK;
    if ((unsigned)mem.dtype >= TW_DTYPE_COUNT)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s has no valid dtype (%d)", op->op, name,
                        (int)mem.dtype);
    return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s is %s but must be %s (the op's data type is %s)",
                    op->op, name, tw_dtype_name(mem.dtype), wanted, tw_dtype_name(op->dtype));
}

/* The tensor touches elements [offset, offset + extent) of its buffer, elements being of the
 * tensor's own dtype; `role` says which dtype it must have. */
static tw_status check_typed(const op_context *op, const char *name, tw_mem mem, size_t extent,
                             tensor_role role) {
    if (!mem.buffer) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s has no buffer", op->op, name);
    if (mem.buffer->device != op->device)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s lives on %s, the op runs on %s", op->op,
                        name, mem.buffer->device->info.spec, op->device->info.spec);
    TW_TRY(check_role(op, name, mem, role));
    size_t capacity = mem.buffer->bytes / tw_dtype_size(mem.dtype), end;
    if (!add_size(mem.offset, extent, &end) || end > capacity)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: %s needs elements [%zu, %zu + %zu) but its buffer holds %zu", op->op,
                        name, mem.offset, mem.offset, extent, capacity);
    return TW_OK;
}

/* A tensor of the op's data type. */
static tw_status check_tensor(const op_context *op, const char *name, tw_mem mem, size_t extent) {
    return check_typed(op, name, mem, extent, ROLE_DATA);
}

static tw_status check_positive(const op_context *op, const char *name, long long value) {
    if (value < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s must be >= 1, got %lld", op->op, name,
                        value);
    return TW_OK;
}

/* Sets the op's data type and checks that the device runs the op in it: fp32 everywhere, other
 * types where the backend says so (tw_backend_vtable.supports_dtype). */
static tw_status check_dtype(op_context *op, tw_dtype dtype) {
    op->dtype = dtype;
    if ((unsigned)dtype >= TW_DTYPE_COUNT || dtype == TW_DTYPE_I32)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s is not a data type for this op", op->op,
                        (unsigned)dtype < TW_DTYPE_COUNT ? tw_dtype_name(dtype) : "(invalid)");
    if (dtype == TW_DTYPE_F32) return TW_OK;
    const tw_backend_vtable *vtable = op->device->vtable;
    if (vtable->supports_dtype && vtable->supports_dtype(op->device->context, op->id, dtype))
        return TW_OK;
    return tw_error(TW_ERR_UNSUPPORTED, "%s: %s is not supported on %s (%s backend)", op->op,
                    tw_dtype_name(dtype), op->device->info.spec,
                    tw_backend_name(op->device->info.backend));
}

/* Elements of a (rows, cols) matrix product: rows * cols, overflow-checked. */
static tw_status matrix_extent(const op_context *op, const char *name, size_t rows, size_t cols,
                               size_t *extent) {
    if (!mul_size(rows, cols, extent))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: %s of %zu x %zu elements overflows", op->op,
                        name, rows, cols);
    return TW_OK;
}

static tw_status check_matrix_typed(const op_context *op, const char *name, tw_mem mem,
                                    size_t rows, size_t cols, tensor_role role) {
    size_t extent;
    tw_status status = matrix_extent(op, name, rows, cols, &extent);
    return status != TW_OK ? status : check_typed(op, name, mem, extent, role);
}

static tw_status check_matrix(const op_context *op, const char *name, tw_mem mem, size_t rows,
                              size_t cols) {
    return check_matrix_typed(op, name, mem, rows, cols, ROLE_DATA);
}

/* A NULL slot is an op this backend does not have (twist/backend_support.h). */
static tw_status unsupported(const op_context *op) {
    return tw_error(TW_ERR_UNSUPPORTED, "%s: not supported on the %s backend (device %s)", op->op,
                    tw_backend_name(op->device->info.backend), op->device->info.spec);
}

/* Calls the backend. When the device is profiled (a session was open when it opened), the call
 * goes between the profiler's two timestamps with its FLOPs and bytes, which are evaluated only
 * then; otherwise the profiler costs one predictable branch.
 * Counting: a multiply-add is 2 FLOPs; bytes are the least memory traffic the op needs, each
 * tensor read or written once (a tensor added into: read and write), every element counted at
 * the size of the op's data type (ELEMENT_BYTES; fp32 statistics beside bf16 data are few). */
#define ELEMENT_BYTES ((double)tw_dtype_size(op.dtype))
#define DISPATCH(op_name, flops, bytes, ...)                                                      \
    __extension__({                                                                           \
        tw_status dispatch_status_;                                                           \
        if (!op.device->vtable->op_name) {                                                    \
            dispatch_status_ = unsupported(&op);                                              \
        } else if (__builtin_expect(op.device->profile == NULL, 1)) {                         \
            dispatch_status_ = op.device->vtable->op_name(op.device->context, __VA_ARGS__);   \
        } else {                                                                              \
            size_t prof_record_ = tw_prof_op_begin(op.device, TW_PROF_OP_##op_name);          \
            dispatch_status_ = op.device->vtable->op_name(op.device->context, __VA_ARGS__);   \
            dispatch_status_ = tw_prof_op_end(op.device, prof_record_, dispatch_status_,      \
                                              (double)(flops), (double)(bytes));              \
        }                                                                                     \
        dispatch_status_;                                                                     \
    })

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Strided-batched operand: `batch` matrices of (rows, cols) with row stride ld, `stride` apart. */
static tw_status check_strided(const op_context *op, const char *name, tw_mem mem, int batch,
                               int rows, int cols, int64_t ld, int64_t stride, tensor_role role) {
    if (ld < cols || ld < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: leading dimension of %s is %lld, below %d",
                        op->op, name, (long long)ld, cols);
    if (stride < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: batch stride of %s is negative", op->op,
                        name);
    size_t last_row, last_batch, extent;
    if (!mul_size((size_t)rows - 1, (size_t)ld, &last_row) ||
        !mul_size((size_t)batch - 1, (size_t)stride, &last_batch) ||
        !add_size(last_row, last_batch, &extent) || !add_size(extent, (size_t)cols, &extent))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: extent of %s overflows", op->op, name);
    return check_typed(op, name, mem, extent, role);
}

tw_status tw_gemm(tw_device *device, const tw_gemm_args *args) {
    op_context op = {device, "gemm", TW_OP_gemm, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    if (!args) return tw_error(TW_ERR_INVALID_ARGUMENT, "gemm: args is NULL");
    TW_TRY(check_dtype(&op, args->dtype));
    TW_TRY(check_positive(&op, "m", args->m));
    TW_TRY(check_positive(&op, "n", args->n));
    TW_TRY(check_positive(&op, "batch", args->batch));
    if (args->k < 0) return tw_error(TW_ERR_INVALID_ARGUMENT, "gemm: k must be >= 0, got %d", args->k);
    if (args->k > 0) {
        int a_rows = args->trans_a ? args->k : args->m, a_cols = args->trans_a ? args->m : args->k;
        int b_rows = args->trans_b ? args->n : args->k, b_cols = args->trans_b ? args->k : args->n;
        TW_TRY(check_strided(&op, "A", args->a, args->batch, a_rows, a_cols, args->lda, args->stride_a, ROLE_DATA));
        TW_TRY(check_strided(&op, "B", args->b, args->batch, b_rows, b_cols, args->ldb, args->stride_b, ROLE_DATA));
    }
    TW_TRY(check_strided(&op, "C", args->c, args->batch, args->m, args->n, args->ldc, args->stride_c, ROLE_OUTPUT));
    /* Batches of C must not overlap, or the result would depend on execution order. */
    if (args->batch > 1 && args->stride_c < (int64_t)(args->m - 1) * args->ldc + args->n)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "gemm: stride_c %lld makes the %d output matrices overlap",
                        (long long)args->stride_c, args->batch);
    return DISPATCH(gemm, 2.0 * args->m * args->n * args->k * args->batch,
                    ELEMENT_BYTES * args->batch *
                        ((double)args->m * args->k + (double)args->k * args->n +
                         (args->beta != 0.0f ? 2.0 : 1.0) * args->m * args->n),
                    args);
}

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static tw_status check_bhtd(const op_context *op, const char *name, tw_mem mem,
                            const tw_attention_args *args, tw_bhtd_stride stride) {
    if (stride.b < 0 || stride.h < 0 || stride.t < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: negative stride for %s", op->op, name);
    size_t extent = (size_t)args->head_dim, term;
    const int64_t counts[3] = {args->batch, args->heads, args->seq_len};
    const int64_t strides[3] = {stride.b, stride.h, stride.t};
    for (int i = 0; i < 3; i++) {
        if (!mul_size((size_t)(counts[i] - 1), (size_t)strides[i], &term) ||
            !add_size(extent, term, &extent))
            return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: extent of %s overflows", op->op, name);
    }
    return check_tensor(op, name, mem, extent);
}

static tw_status check_attention(op_context *op, const tw_attention_args *args,
                                 bool backward) {
    TW_TRY(check_device(op));
    if (!args) return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: args is NULL", op->op);
    TW_TRY(check_dtype(op, args->dtype));
    TW_TRY(check_positive(op, "batch", args->batch));
    TW_TRY(check_positive(op, "heads", args->heads));
    TW_TRY(check_positive(op, "seq_len", args->seq_len));
    TW_TRY(check_positive(op, "head_dim", args->head_dim));
    if (!isfinite(args->scale))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: scale is not finite", op->op);
    TW_TRY(check_bhtd(op, "q", args->q, args, args->qkv_stride));
    TW_TRY(check_bhtd(op, "k", args->k, args, args->qkv_stride));
    TW_TRY(check_bhtd(op, "v", args->v, args, args->qkv_stride));
    TW_TRY(check_bhtd(op, "out", args->out, args, args->out_stride));
    size_t rows = (size_t)args->batch * (size_t)args->heads;
    TW_TRY(check_matrix_typed(op, "lse", args->lse, rows, (size_t)args->seq_len, ROLE_F32));
    if (backward) {
        TW_TRY(check_bhtd(op, "dout", args->dout, args, args->out_stride));
        TW_TRY(check_bhtd(op, "dq", args->dq, args, args->qkv_stride));
        TW_TRY(check_bhtd(op, "dk", args->dk, args, args->qkv_stride));
        TW_TRY(check_bhtd(op, "dv", args->dv, args, args->qkv_stride));
    }
    return TW_OK;
}

tw_status tw_attention_fwd(tw_device *device, const tw_attention_args *args) {
    op_context op = {device, "attention_fwd", TW_OP_attention_fwd, TW_DTYPE_F32};
    TW_TRY(check_attention(&op, args, false));
    return DISPATCH(
        attention_fwd,
        2.0 * (double)args->batch * args->heads * args->seq_len * args->seq_len * args->head_dim,
        ELEMENT_BYTES * (double)args->batch * args->heads * args->seq_len * (4.0 * args->head_dim + 1.0),
        args);
}

tw_status tw_attention_bwd(tw_device *device, const tw_attention_args *args) {
    op_context op = {device, "attention_bwd", TW_OP_attention_bwd, TW_DTYPE_F32};
    TW_TRY(check_attention(&op, args, true));
    return DISPATCH(
        attention_bwd,
        5.0 * (double)args->batch * args->heads * args->seq_len * args->seq_len * args->head_dim,
        ELEMENT_BYTES * (double)args->batch * args->heads * args->seq_len * (11.0 * args->head_dim + 1.0),
        args);
}

/* ------------------------------------------------------------------------------------------ */
/* Row-wise ops                                                                               */
/* ------------------------------------------------------------------------------------------ */

static tw_status check_rows_cols(op_context *op, int rows, int cols, tw_mem principal) {
    TW_TRY(check_device(op));
    TW_TRY(check_dtype(op, principal.dtype));
    TW_TRY(check_positive(op, "rows", rows));
    return check_positive(op, "cols", cols);
}

tw_status tw_softmax_fwd(tw_device *device, int rows, int cols, int causal_t, tw_mem in,
                         tw_mem out) {
    op_context op = {device, "softmax_fwd", TW_OP_softmax_fwd, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, in));
    if (causal_t < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "softmax_fwd: causal_t must be >= 0");
    TW_TRY(check_matrix(&op, "in", in, (size_t)rows, (size_t)cols));
    TW_TRY(check_matrix(&op, "out", out, (size_t)rows, (size_t)cols));
    return DISPATCH(softmax_fwd, 5.0 * rows * cols, 2.0 * ELEMENT_BYTES * rows * cols, rows, cols, causal_t, in,
                    out);
}

tw_status tw_softmax_bwd(tw_device *device, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx) {
    op_context op = {device, "softmax_bwd", TW_OP_softmax_bwd, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, y));
    TW_TRY(check_matrix(&op, "y", y, (size_t)rows, (size_t)cols));
    TW_TRY(check_matrix(&op, "dy", dy, (size_t)rows, (size_t)cols));
    TW_TRY(check_matrix(&op, "dx", dx, (size_t)rows, (size_t)cols));
    return DISPATCH(softmax_bwd, 4.0 * rows * cols, 4.0 * ELEMENT_BYTES * rows * cols, rows, cols, y, dy, dx);
}

tw_status tw_layernorm_fwd(tw_device *device, int rows, int cols, float eps, tw_mem x,
                           tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd) {
    op_context op = {device, "layernorm_fwd", TW_OP_layernorm_fwd, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, x));
    if (!(eps >= 0.0f) || !isfinite(eps))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "layernorm_fwd: eps must be finite and >= 0");
    TW_TRY(check_matrix(&op, "x", x, (size_t)rows, (size_t)cols));
    TW_TRY(check_tensor(&op, "weight", weight, (size_t)cols));
    TW_TRY(check_tensor(&op, "bias", bias, (size_t)cols));
    TW_TRY(check_matrix(&op, "out", out, (size_t)rows, (size_t)cols));
    TW_TRY(check_typed(&op, "mean", mean, (size_t)rows, ROLE_F32));
    TW_TRY(check_typed(&op, "rstd", rstd, (size_t)rows, ROLE_F32));
    return DISPATCH(layernorm_fwd, 8.0 * rows * cols,
                    ELEMENT_BYTES * (2.0 * rows * cols + 2.0 * cols + 2.0 * rows), rows, cols, eps, x, weight,
                    bias, out, mean, rstd);
}

tw_status tw_layernorm_bwd(tw_device *device, int rows, int cols, tw_mem dout, tw_mem x,
                           tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight,
                           tw_mem dbias) {
    op_context op = {device, "layernorm_bwd", TW_OP_layernorm_bwd, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, x));
    TW_TRY(check_matrix(&op, "dout", dout, (size_t)rows, (size_t)cols));
    TW_TRY(check_matrix(&op, "x", x, (size_t)rows, (size_t)cols));
    TW_TRY(check_tensor(&op, "weight", weight, (size_t)cols));
    TW_TRY(check_typed(&op, "mean", mean, (size_t)rows, ROLE_F32));
    TW_TRY(check_typed(&op, "rstd", rstd, (size_t)rows, ROLE_F32));
    TW_TRY(check_matrix(&op, "dx", dx, (size_t)rows, (size_t)cols));
    TW_TRY(check_tensor(&op, "dweight", dweight, (size_t)cols));
    TW_TRY(check_tensor(&op, "dbias", dbias, (size_t)cols));
    return DISPATCH(layernorm_bwd, 12.0 * rows * cols,
                    ELEMENT_BYTES * (4.0 * rows * cols + 5.0 * cols + 2.0 * rows), rows, cols, dout, x,
                    weight, mean, rstd, dx, dweight, dbias);
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise                                                                                */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_gelu_fwd(tw_device *device, size_t n, tw_mem x, tw_mem out) {
    op_context op = {device, "gelu_fwd", TW_OP_gelu_fwd, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, x.dtype));
    TW_TRY(check_tensor(&op, "x", x, n));
    TW_TRY(check_tensor(&op, "out", out, n));
    return n == 0 ? TW_OK : DISPATCH(gelu_fwd, 10.0 * n, 2.0 * ELEMENT_BYTES * n, n, x, out);
}

tw_status tw_gelu_bwd(tw_device *device, size_t n, tw_mem x, tw_mem dout, tw_mem dx) {
    op_context op = {device, "gelu_bwd", TW_OP_gelu_bwd, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, x.dtype));
    TW_TRY(check_tensor(&op, "x", x, n));
    TW_TRY(check_tensor(&op, "dout", dout, n));
    TW_TRY(check_tensor(&op, "dx", dx, n));
    return n == 0 ? TW_OK : DISPATCH(gelu_bwd, 20.0 * n, 4.0 * ELEMENT_BYTES * n, n, x, dout, dx);
}

tw_status tw_add(tw_device *device, size_t n, tw_mem a, tw_mem b, tw_mem out) {
    op_context op = {device, "add", TW_OP_add, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, a.dtype));
    TW_TRY(check_tensor(&op, "a", a, n));
    TW_TRY(check_tensor(&op, "b", b, n));
    TW_TRY(check_tensor(&op, "out", out, n));
    return n == 0 ? TW_OK : DISPATCH(add, 1.0 * n, 3.0 * ELEMENT_BYTES * n, n, a, b, out);
}

tw_status tw_scale(tw_device *device, size_t n, float alpha, tw_mem x, tw_mem out) {
    op_context op = {device, "scale", TW_OP_scale, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, x.dtype));
    TW_TRY(check_tensor(&op, "x", x, n));
    TW_TRY(check_tensor(&op, "out", out, n));
    return n == 0 ? TW_OK : DISPATCH(scale, 1.0 * n, 2.0 * ELEMENT_BYTES * n, n, alpha, x, out);
}

tw_status tw_sum_sq(tw_device *device, size_t n, tw_mem x, tw_mem out) {
    op_context op = {device, "sum_sq", TW_OP_sum_sq, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, x.dtype));
    TW_TRY(check_tensor(&op, "x", x, n));
    TW_TRY(check_typed(&op, "out", out, 1, ROLE_F32));
    return DISPATCH(sum_sq, 2.0 * n, ELEMENT_BYTES * n + 4.0, n, x, out);
}

tw_status tw_adamw_step(tw_device *device, size_t n, const tw_adamw_args *args, tw_mem param,
                        tw_mem grad, tw_mem m, tw_mem v) {
    op_context op = {device, "adamw_step", TW_OP_adamw_step, TW_DTYPE_F32};
    TW_TRY(check_device(&op));
    TW_TRY(check_dtype(&op, grad.dtype));
    if (!args) return tw_error(TW_ERR_INVALID_ARGUMENT, "adamw_step: args is NULL");
    if (args->step < 1)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "adamw_step: step counts from 1, got %d",
                        args->step);
    if (!(args->beta1 >= 0.0f && args->beta1 < 1.0f) || !(args->beta2 >= 0.0f && args->beta2 < 1.0f))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "adamw_step: beta1 and beta2 must lie in [0, 1)");
    if (!isfinite(args->lr) || !isfinite(args->eps) || !isfinite(args->weight_decay) ||
        !isfinite(args->grad_scale))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "adamw_step: a hyperparameter is not finite");
    TW_TRY(check_typed(&op, "param", param, n, ROLE_F32));
    TW_TRY(check_tensor(&op, "grad", grad, n));
    TW_TRY(check_typed(&op, "m", m, n, ROLE_F32));
    TW_TRY(check_typed(&op, "v", v, n, ROLE_F32));
    return n == 0 ? TW_OK : DISPATCH(adamw_step, 16.0 * n, (24.0 + ELEMENT_BYTES) * n, n, args, param, grad, m, v);
}

/* ------------------------------------------------------------------------------------------ */
/* Embedding, cross-entropy, bias                                                             */
/* ------------------------------------------------------------------------------------------ */

static tw_status check_embedding(op_context *op, int batch, int seq_len, int channels,
                                 int vocab, tw_mem tokens, tw_mem principal) {
    TW_TRY(check_device(op));
    TW_TRY(check_dtype(op, principal.dtype));
    TW_TRY(check_positive(op, "batch", batch));
    TW_TRY(check_positive(op, "seq_len", seq_len));
    TW_TRY(check_positive(op, "channels", channels));
    TW_TRY(check_positive(op, "vocab", vocab));
    return check_matrix_typed(op, "tokens", tokens, (size_t)batch, (size_t)seq_len, ROLE_INDEX);
}

tw_status tw_embedding_fwd(tw_device *device, int batch, int seq_len, int channels, int vocab,
                           tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out) {
    op_context op = {device, "embedding_fwd", TW_OP_embedding_fwd, TW_DTYPE_F32};
    TW_TRY(check_embedding(&op, batch, seq_len, channels, vocab, tokens, wte));
    TW_TRY(check_matrix(&op, "wte", wte, (size_t)vocab, (size_t)channels));
    TW_TRY(check_matrix(&op, "wpe", wpe, (size_t)seq_len, (size_t)channels));
    TW_TRY(check_matrix(&op, "out", out, (size_t)batch * (size_t)seq_len, (size_t)channels));
    return DISPATCH(embedding_fwd, 1.0 * batch * seq_len * channels,
                    ELEMENT_BYTES * batch * seq_len * (3.0 * channels + 1.0), batch, seq_len, channels, vocab,
                    tokens, wte, wpe, out);
}

tw_status tw_embedding_bwd(tw_device *device, int batch, int seq_len, int channels, int vocab,
                           tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe) {
    op_context op = {device, "embedding_bwd", TW_OP_embedding_bwd, TW_DTYPE_F32};
    TW_TRY(check_embedding(&op, batch, seq_len, channels, vocab, tokens, dout));
    TW_TRY(check_matrix(&op, "dout", dout, (size_t)batch * (size_t)seq_len, (size_t)channels));
    TW_TRY(check_matrix(&op, "dwte", dwte, (size_t)vocab, (size_t)channels));
    TW_TRY(check_matrix(&op, "dwpe", dwpe, (size_t)seq_len, (size_t)channels));
    return DISPATCH(embedding_bwd, 2.0 * batch * seq_len * channels,
                    ELEMENT_BYTES * batch * seq_len * (5.0 * channels + 1.0), batch, seq_len, channels, vocab,
                    tokens, dout, dwte, dwpe);
}

static tw_status check_xent(op_context *op, int rows, int vocab, int ld, tw_mem logits,
                            tw_mem targets, tw_mem lse) {
    TW_TRY(check_device(op));
    TW_TRY(check_dtype(op, logits.dtype));
    TW_TRY(check_positive(op, "rows", rows));
    TW_TRY(check_positive(op, "vocab", vocab));
    if (ld < vocab)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: ld %d is below vocab %d", op->op, ld, vocab);
    /* The last row needs only `vocab` columns, not a full `ld`. */
    size_t extent = (size_t)(rows - 1) * (size_t)ld + (size_t)vocab;
    TW_TRY(check_tensor(op, "logits", logits, extent));
    TW_TRY(check_typed(op, "targets", targets, (size_t)rows, ROLE_INDEX));
    return check_typed(op, "lse", lse, (size_t)rows, ROLE_F32);
}

tw_status tw_softmax_xent_fwd(tw_device *device, int rows, int vocab, int ld, tw_mem logits,
                              tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct) {
    op_context op = {device, "softmax_xent_fwd", TW_OP_softmax_xent_fwd, TW_DTYPE_F32};
    TW_TRY(check_xent(&op, rows, vocab, ld, logits, targets, lse));
    TW_TRY(check_typed(&op, "losses", losses, (size_t)rows, ROLE_F32));
    TW_TRY(check_typed(&op, "correct", correct, (size_t)rows, ROLE_F32));
    return DISPATCH(softmax_xent_fwd, 4.0 * rows * vocab, ELEMENT_BYTES * (1.0 * rows * vocab + 4.0 * rows),
                    rows, vocab, ld, logits, targets, losses, lse, correct);
}

tw_status tw_softmax_xent_bwd(tw_device *device, int rows, int vocab, int ld, float grad_scale,
                              tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits) {
    op_context op = {device, "softmax_xent_bwd", TW_OP_softmax_xent_bwd, TW_DTYPE_F32};
    TW_TRY(check_xent(&op, rows, vocab, ld, logits, targets, lse));
    if (!isfinite(grad_scale))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "softmax_xent_bwd: grad_scale is not finite");
    size_t extent = (size_t)(rows - 1) * (size_t)ld + (size_t)vocab;
    TW_TRY(check_tensor(&op, "dlogits", dlogits, extent));
    return DISPATCH(softmax_xent_bwd, 5.0 * rows * vocab, ELEMENT_BYTES * (3.0 * rows * vocab + 2.0 * rows),
                    rows, vocab, ld, grad_scale, logits, targets, lse, dlogits);
}

tw_status tw_bias_add(tw_device *device, int rows, int cols, tw_mem bias, tw_mem out) {
    op_context op = {device, "bias_add", TW_OP_bias_add, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, out));
    TW_TRY(check_tensor(&op, "bias", bias, (size_t)cols));
    TW_TRY(check_matrix(&op, "out", out, (size_t)rows, (size_t)cols));
    return DISPATCH(bias_add, 1.0 * rows * cols, ELEMENT_BYTES * (2.0 * rows * cols + cols), rows, cols, bias,
                    out);
}

tw_status tw_bias_bwd(tw_device *device, int rows, int cols, tw_mem dout, tw_mem dbias) {
    op_context op = {device, "bias_bwd", TW_OP_bias_bwd, TW_DTYPE_F32};
    TW_TRY(check_rows_cols(&op, rows, cols, dout));
    TW_TRY(check_matrix(&op, "dout", dout, (size_t)rows, (size_t)cols));
    TW_TRY(check_tensor(&op, "dbias", dbias, (size_t)cols));
    return DISPATCH(bias_bwd, 1.0 * rows * cols, ELEMENT_BYTES * (1.0 * rows * cols + 2.0 * cols), rows, cols,
                    dout, dbias);
}

/* ------------------------------------------------------------------------------------------ */
/* Gather / scatter                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* idx (count); src and dst are (src_rows, src_cols) and (dst_rows, dst_cols). */
static tw_status check_gather(op_context *op, int count, tw_mem idx, tw_mem src,
                              size_t src_rows, size_t src_cols, tw_mem dst, size_t dst_rows,
                              size_t dst_cols) {
    TW_TRY(check_device(op));
    TW_TRY(check_dtype(op, src.dtype));
    if (count < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: count must be >= 0, got %d", op->op, count);
    if (src_rows < 1 || src_cols < 1 || dst_rows < 1 || dst_cols < 1)
        if (count > 0)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: matrix dimensions must be >= 1", op->op);
    TW_TRY(check_typed(op, "idx", idx, (size_t)count, ROLE_INDEX));
    if (count == 0) return TW_OK;
    TW_TRY(check_matrix(op, "src", src, src_rows, src_cols));
    return check_matrix(op, "dst", dst, dst_rows, dst_cols);
}

tw_status tw_gather_rows(tw_device *device, int src_rows, int cols, int count, tw_mem idx,
                         tw_mem src, tw_mem dst) {
    op_context op = {device, "gather_rows", TW_OP_gather_rows, TW_DTYPE_F32};
    TW_TRY(check_gather(&op, count, idx, src, (size_t)src_rows, (size_t)cols, dst, (size_t)count,
                     (size_t)cols));
    return count == 0 ? TW_OK
                      : DISPATCH(gather_rows, 0.0, ELEMENT_BYTES * (2.0 * count * cols + count), src_rows,
                                 cols, count, idx, src, dst);
}

tw_status tw_scatter_rows(tw_device *device, int dst_rows, int cols, int count, tw_mem idx,
                          tw_mem src, tw_mem dst, bool accumulate) {
    op_context op = {device, "scatter_rows", TW_OP_scatter_rows, TW_DTYPE_F32};
    TW_TRY(check_gather(&op, count, idx, src, (size_t)count, (size_t)cols, dst, (size_t)dst_rows,
                     (size_t)cols));
    return count == 0 ? TW_OK
                      : DISPATCH(scatter_rows, (accumulate ? 1.0 * count * cols : 0.0),
                                 ELEMENT_BYTES * ((accumulate ? 3.0 : 2.0) * count * cols + count), dst_rows,
                                 cols, count, idx, src, dst, accumulate);
}

tw_status tw_gather_cols(tw_device *device, int rows, int src_cols, int count, tw_mem idx,
                         tw_mem src, tw_mem dst) {
    op_context op = {device, "gather_cols", TW_OP_gather_cols, TW_DTYPE_F32};
    TW_TRY(check_gather(&op, count, idx, src, (size_t)rows, (size_t)src_cols, dst, (size_t)rows,
                     (size_t)count));
    return count == 0 ? TW_OK
                      : DISPATCH(gather_cols, 0.0, ELEMENT_BYTES * (2.0 * rows * count + count), rows,
                                 src_cols, count, idx, src, dst);
}

tw_status tw_scatter_cols(tw_device *device, int rows, int dst_cols, int count, tw_mem idx,
                          tw_mem src, tw_mem dst, bool accumulate) {
    op_context op = {device, "scatter_cols", TW_OP_scatter_cols, TW_DTYPE_F32};
    TW_TRY(check_gather(&op, count, idx, src, (size_t)rows, (size_t)count, dst, (size_t)rows,
                     (size_t)dst_cols));
    return count == 0 ? TW_OK
                      : DISPATCH(scatter_cols, (accumulate ? 1.0 * rows * count : 0.0),
                                 ELEMENT_BYTES * ((accumulate ? 3.0 : 2.0) * rows * count + count), rows,
                                 dst_cols, count, idx, src, dst, accumulate);
}
