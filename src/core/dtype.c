/* Element types (twist/backend.h, "Data types") and tw_convert's front end. */
#include <string.h>

#include "core/device.h"
#include "twist/dtype.h"

size_t tw_dtype_size(tw_dtype dtype) {
    switch (dtype) {
    case TW_DTYPE_F32: return 4;
    case TW_DTYPE_F16: return 2;
    case TW_DTYPE_BF16: return 2;
    case TW_DTYPE_I32: return 4;
    case TW_DTYPE_COUNT: break;
    }
    return 0;
}

const char *tw_dtype_name(tw_dtype dtype) {
    switch (dtype) {
    case TW_DTYPE_F32: return "f32";
    case TW_DTYPE_F16: return "f16";
    case TW_DTYPE_BF16: return "bf16";
    case TW_DTYPE_I32: return "i32";
    case TW_DTYPE_COUNT: break;
    }
    return "?";
}

bool tw_dtype_parse(const char *name, tw_dtype *out) {
    static const struct {
        const char *name;
        tw_dtype dtype;
    } names[] = {{"f32", TW_DTYPE_F32},      {"fp32", TW_DTYPE_F32},   {"float32", TW_DTYPE_F32},
                 {"f16", TW_DTYPE_F16},      {"fp16", TW_DTYPE_F16},   {"float16", TW_DTYPE_F16},
                 {"bf16", TW_DTYPE_BF16},    {"bfloat16", TW_DTYPE_BF16}, {"i32", TW_DTYPE_I32},
                 {"int32", TW_DTYPE_I32}};
    if (!name) return false;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i].name) == 0) {
            if (out) *out = names[i].dtype;
            return true;
        }
    return false;
}

#define TW_OP_NAME_(prefix, name, params) #name,
static const char *const op_names[TW_OP_COUNT] = {TW_BACKEND_OPS(TW_OP_NAME_, unused)};

const char *tw_op_name(tw_op_id op) {
    return (unsigned)op < TW_OP_COUNT ? op_names[op] : NULL;
}

bool tw_device_supports_dtype(tw_device *device, const char *op, tw_dtype dtype) {
    if (!device || !op || (unsigned)dtype >= TW_DTYPE_COUNT || dtype == TW_DTYPE_I32) return false;
    for (int id = 0; id < TW_OP_COUNT; id++) {
        if (strcmp(op_names[id], op) != 0) continue;
        const tw_backend_vtable *vtable = device->vtable;
        if (dtype == TW_DTYPE_F32) return true;
        return vtable->supports_dtype &&
               vtable->supports_dtype(device->context, (tw_op_id)id, dtype);
    }
    return false;
}

static bool is_float(tw_dtype dtype) {
    return dtype == TW_DTYPE_F32 || dtype == TW_DTYPE_F16 || dtype == TW_DTYPE_BF16;
}

tw_status tw_convert(tw_device *device, size_t n, tw_mem src, tw_mem dst) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "convert: device is NULL");
    const tw_mem mems[2] = {src, dst};
    const char *names[2] = {"src", "dst"};
    for (int i = 0; i < 2; i++) {
        if (!mems[i].buffer)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "convert: %s has no buffer", names[i]);
        if (mems[i].buffer->device != device)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "convert: %s lives on %s, the op runs on %s",
                            names[i], mems[i].buffer->device->info.spec, device->info.spec);
        if (!is_float(mems[i].dtype))
            return tw_error(TW_ERR_INVALID_ARGUMENT, "convert: %s is %s, not a float type",
                            names[i], tw_dtype_name(mems[i].dtype));
        size_t capacity = mems[i].buffer->bytes / tw_dtype_size(mems[i].dtype);
        if (mems[i].offset > capacity || n > capacity - mems[i].offset)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "convert: %s needs elements [%zu, %zu + %zu) but its buffer holds %zu",
                            names[i], mems[i].offset, mems[i].offset, n, capacity);
    }
    if (n == 0) return TW_OK;
    size_t src_bytes = tw_dtype_size(src.dtype), dst_bytes = tw_dtype_size(dst.dtype);
    if (src.buffer == dst.buffer) {
        size_t src_begin = src.offset * src_bytes, dst_begin = dst.offset * dst_bytes;
        if (src_begin < dst_begin + n * dst_bytes && dst_begin < src_begin + n * src_bytes)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "convert: src and dst overlap");
    }
    if (src.dtype == dst.dtype)
        return tw_buffer_copy(dst.buffer, dst.offset * dst_bytes, src.buffer,
                              src.offset * src_bytes, n * src_bytes);
    if (!device->vtable->convert)
        return tw_error(TW_ERR_UNSUPPORTED, "convert: %s -> %s is not supported on %s (%s backend)",
                        tw_dtype_name(src.dtype), tw_dtype_name(dst.dtype), device->info.spec,
                        tw_backend_name(device->info.backend));
    return device->vtable->convert(device->context, n, src, dst);
}
