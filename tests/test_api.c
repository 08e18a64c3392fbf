/* The front end: device specs, byte accounting, and the argument checks that turn a bad shape or
 * an out-of-range tensor into one clear error instead of a crash in a kernel. Runs on "cpu". */
#include <math.h>
#include <string.h>

#include "core/device.h" /* white box: a device whose backend lacks some ops */
#include "harness.h"

static void test_registry(void) {
    int count = tw_device_count();
    TW_CHECK(count >= 1, "no devices at all; the cpu backend always lists one");
    tw_device_info info;
    TW_CHECK_OK(tw_device_info_at(0, &info));
    TW_CHECK(strcmp(info.spec, "cpu") == 0, "first device is '%s', expected cpu", info.spec);
    TW_CHECK(info.backend == TW_BACKEND_CPU, "first device is not on the cpu backend");
    TW_CHECK(info.compute_units >= 1, "cpu reports %d compute units", info.compute_units);
    TW_CHECK(info.memory_bytes > 0, "cpu reports no memory");
    TW_CHECK_ERROR(tw_device_info_at(count, &info), TW_ERR_NOT_FOUND, "out of range");
    TW_CHECK(tw_backend_compiled(TW_BACKEND_CPU), "cpu backend not compiled");
    for (int i = 0; i < count; i++) {
        TW_CHECK_OK(tw_device_info_at(i, &info));
        TW_CHECK(tw_backend_compiled(info.backend), "%s listed but its backend is not built",
                 info.spec);
    }
}

/* "auto" opens the device tw_best_device names, which is never a CPU-type OpenCL/Vulkan device. */
static void test_auto(void) {
    tw_device_info best;
    TW_CHECK_OK(tw_best_device(&best));
    TW_CHECK(best.backend == TW_BACKEND_CPU || best.type != TW_DEVICE_TYPE_CPU,
             "auto chose %s, a CPU-type device of another backend", best.spec);
    tw_device *device = NULL;
    TW_CHECK_OK(tw_device_open("auto", &device));
    if (device)
        TW_CHECK(strcmp(tw_device_get_info(device)->spec, best.spec) == 0,
                 "auto opened %s, tw_best_device says %s", tw_device_get_info(device)->spec,
                 best.spec);
    tw_device_close(device);
}

static void test_bad_specs(void) {
    tw_device *device = NULL;
    TW_CHECK_ERROR(tw_device_open("gpu:0", &device), TW_ERR_NOT_FOUND, "gpu:0");
    TW_CHECK_ERROR(tw_device_open("", &device), TW_ERR_INVALID_ARGUMENT, "empty");
    TW_CHECK_ERROR(tw_device_open("opencl:x", &device), TW_ERR_INVALID_ARGUMENT, "opencl:x");
    TW_CHECK_ERROR(tw_device_open("cpu:-1", &device), TW_ERR_INVALID_ARGUMENT, "cpu:-1");
    TW_CHECK_ERROR(tw_device_open("cpu:1", &device), TW_ERR_NOT_FOUND, "cpu:1");
    TW_CHECK_ERROR(tw_device_open("cpu:", &device), TW_ERR_INVALID_ARGUMENT, "cpu:");
    for (int kind = 0; kind < TW_BACKEND_COUNT; kind++) {
        if (tw_backend_compiled((tw_backend_kind)kind)) continue;
        char spec[32];
        snprintf(spec, sizeof spec, "%s:0", tw_backend_name((tw_backend_kind)kind));
        TW_CHECK_ERROR(tw_device_open(spec, &device), TW_ERR_UNSUPPORTED, "not built");
    }
    TW_CHECK(device == NULL, "a failed open left a device behind");
}

static void test_accounting(tw_device *cpu) {
    size_t base = tw_device_bytes_in_use(cpu);
    tw_buffer *a = NULL, *b = NULL;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 1000, &a));
    TW_CHECK_OK(tw_buffer_alloc(cpu, 24, &b));
    TW_CHECK(tw_device_bytes_in_use(cpu) == base + 1024, "in use %zu, expected %zu",
             tw_device_bytes_in_use(cpu), base + 1024);
    tw_buffer_free(a);
    TW_CHECK(tw_device_bytes_in_use(cpu) == base + 24, "in use after free %zu",
             tw_device_bytes_in_use(cpu));
    TW_CHECK(tw_device_peak_bytes(cpu) >= base + 1024, "peak %zu forgot the freed buffer",
             tw_device_peak_bytes(cpu));
    tw_device_reset_peak(cpu);
    TW_CHECK(tw_device_peak_bytes(cpu) == base + 24, "peak after reset %zu",
             tw_device_peak_bytes(cpu));
    tw_buffer_free(b);
    TW_CHECK_ERROR(tw_buffer_alloc(cpu, SIZE_MAX / 2, &a), TW_ERR_OUT_OF_MEMORY, "cannot allocate");
}

static void test_buffers(tw_device *cpu) {
    tw_buffer *buffer = NULL;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 16 * sizeof(float), &buffer));
    float values[16], back[16];
    for (int i = 0; i < 16; i++) values[i] = (float)i;
    TW_CHECK_OK(tw_buffer_upload(buffer, 0, values, sizeof values));
    TW_CHECK_OK(tw_buffer_fill_f32(buffer, 4, 4, -1.0f));
    TW_CHECK_OK(tw_buffer_copy(buffer, 12 * 4, buffer, 0, 4 * 4));
    TW_CHECK_OK(tw_buffer_download(buffer, 0, back, sizeof back));
    for (int i = 0; i < 16; i++) {
        float expected = i >= 4 && i < 8 ? -1.0f : i >= 12 ? (float)(i - 12) : (float)i;
        TW_CHECK(back[i] == expected, "element %d is %g, expected %g", i, back[i], expected);
    }
    TW_CHECK_ERROR(tw_buffer_upload(buffer, 8, values, sizeof values), TW_ERR_INVALID_ARGUMENT,
                 "outside");
    TW_CHECK_ERROR(tw_buffer_download(buffer, 60, back, 8), TW_ERR_INVALID_ARGUMENT, "outside");
    TW_CHECK_ERROR(tw_buffer_copy(buffer, 4, buffer, 0, 16), TW_ERR_INVALID_ARGUMENT, "overlap");
    TW_CHECK_ERROR(tw_buffer_fill_f32(buffer, 10, 7, 0.0f), TW_ERR_INVALID_ARGUMENT, "outside");
    tw_buffer_free(buffer);
}

static void test_events(tw_device *cpu) {
    tw_event *start = NULL, *end = NULL;
    TW_CHECK_OK(tw_event_create(cpu, &start));
    TW_CHECK_OK(tw_event_create(cpu, &end));
    double ms = -1;
    TW_CHECK_ERROR(tw_event_elapsed_ms(start, end, &ms), TW_ERR_INVALID_ARGUMENT, "recorded");
    TW_CHECK_OK(tw_event_record(start));
    TW_CHECK_OK(tw_event_record(end));
    TW_CHECK_OK(tw_event_elapsed_ms(start, end, &ms));
    TW_CHECK(ms >= 0.0 && ms < 1000.0, "elapsed %g ms between two adjacent events", ms);
    tw_event_destroy(start);
    tw_event_destroy(end);
}

static tw_gemm_args gemm_4x4(tw_buffer *a, tw_buffer *b, tw_buffer *c) {
    tw_gemm_args args = {.dtype = TW_DTYPE_F32, .m = 4, .n = 4, .k = 4, .batch = 1,
                         .alpha = 1.0f, .beta = 0.0f, .a = tw_at(a, 0), .lda = 4,
                         .b = tw_at(b, 0), .ldb = 4, .c = tw_at(c, 0), .ldc = 4};
    return args;
}

static void test_gemm_checks(tw_device *cpu, tw_device *other_cpu) {
    tw_buffer *a, *b, *c, *foreign;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 16 * 4, &a));
    TW_CHECK_OK(tw_buffer_alloc(cpu, 16 * 4, &b));
    TW_CHECK_OK(tw_buffer_alloc(cpu, 16 * 4, &c));
    TW_CHECK_OK(tw_buffer_alloc(other_cpu, 16 * 4, &foreign));
    TW_CHECK_OK(tw_buffer_fill_f32(a, 0, 16, 1.0f));
    TW_CHECK_OK(tw_buffer_fill_f32(b, 0, 16, 2.0f));
    tw_gemm_args args = gemm_4x4(a, b, c);
    TW_CHECK_OK(tw_gemm(cpu, &args));
    float out[16];
    TW_CHECK_OK(tw_buffer_download(c, 0, out, sizeof out));
    TW_CHECK(out[0] == 8.0f && out[15] == 8.0f, "4x4 ones*twos gave %g, %g", out[0], out[15]);

    args = gemm_4x4(a, b, c);
    args.lda = 3;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "leading dimension of A");
    args = gemm_4x4(a, b, c);
    args.b.offset = 1;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "B needs elements");
    args = gemm_4x4(a, b, c);
    args.m = 0;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "m must be >= 1");
    args = gemm_4x4(a, b, c);
    args.dtype = TW_DTYPE_I32;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "i32 is not a data type");
    args.dtype = (tw_dtype)99;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "not a data type");
    args = gemm_4x4(a, b, c);
    args.b.dtype = TW_DTYPE_BF16; /* B must share the op's type (f32 here) */
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "B is bf16 but must be f32");
    args = gemm_4x4(a, b, foreign);
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "lives on");
    args = gemm_4x4(a, b, c);
    args.batch = 2;
    args.m = 2;
    args.stride_a = 8;
    args.stride_b = 0;
    args.stride_c = 4; /* the two 2x4 outputs would share a row */
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "overlap");
    args = gemm_4x4(a, b, c);
    args.m = 1 << 30;
    args.n = 1 << 30;
    args.ldc = 1 << 30;
    TW_CHECK_ERROR(tw_gemm(cpu, &args), TW_ERR_INVALID_ARGUMENT, "A needs elements");
    TW_CHECK_ERROR(tw_device_set_gemm_impl(cpu, TW_GEMM_OWN), TW_ERR_UNSUPPORTED, "");
    TW_CHECK_OK(tw_device_set_gemm_impl(cpu, TW_GEMM_AUTO));

    tw_buffer_free(a);
    tw_buffer_free(b);
    tw_buffer_free(c);
    tw_buffer_free(foreign);
}

static void test_op_checks(tw_device *cpu) {
    tw_buffer *small;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 64 * 4, &small));
    tw_mem m = tw_at(small, 0);
    TW_CHECK_ERROR(tw_layernorm_fwd(cpu, 8, 16, 1e-5f, m, m, m, m, m, m), TW_ERR_INVALID_ARGUMENT,
                 "x needs elements");
    TW_CHECK_ERROR(tw_layernorm_fwd(cpu, 2, 4, NAN, m, m, m, m, m, m), TW_ERR_INVALID_ARGUMENT,
                 "eps");
    /* Data types: statistics stay f32 whatever the op's type; a bf16 byte count bounds a bf16
     * tensor's elements (64 floats of bytes hold 128 bf16 elements); a type the device lacks
     * is refused naming it, the op and the device. */
    tw_mem bf16 = tw_at_typed(small, 0, TW_DTYPE_BF16);
    TW_CHECK_ERROR(tw_layernorm_fwd(cpu, 2, 4, 1e-5f, m, m, m, m, bf16, m), TW_ERR_INVALID_ARGUMENT,
                   "mean is bf16 but must be f32");
    TW_CHECK_ERROR(tw_gelu_fwd(cpu, 8, m, bf16), TW_ERR_INVALID_ARGUMENT, "out is bf16 but must be f32");
    if (!tw_device_supports_dtype(cpu, "gelu_fwd", TW_DTYPE_F16))
        TW_CHECK_ERROR(tw_gelu_fwd(cpu, 4, tw_at_typed(small, 0, TW_DTYPE_F16),
                                   tw_at_typed(small, 8, TW_DTYPE_F16)),
                       TW_ERR_UNSUPPORTED, "gelu_fwd: f16 is not supported on cpu");
    TW_CHECK(tw_device_supports_dtype(cpu, "gemm", TW_DTYPE_F32), "every op runs in f32");
    TW_CHECK(!tw_device_supports_dtype(cpu, "no_such_op", TW_DTYPE_F32), "unknown op names: false");
    TW_CHECK(tw_dtype_size(TW_DTYPE_BF16) == 2 && tw_dtype_size(TW_DTYPE_F32) == 4, "dtype sizes");
    tw_dtype parsed = TW_DTYPE_F32;
    TW_CHECK(tw_dtype_parse("bfloat16", &parsed) && parsed == TW_DTYPE_BF16, "dtype names");
    TW_CHECK(!tw_dtype_parse("f8", &parsed), "unknown dtype names are refused");
    /* tw_convert: f32 -> f32 is a copy everywhere; overlapping or non-float tensors are refused. */
    TW_CHECK_OK(tw_buffer_fill_f32(small, 0, 8, 2.5f));
    TW_CHECK_OK(tw_convert(cpu, 8, tw_at(small, 0), tw_at(small, 8)));
    float copied[16];
    TW_CHECK_OK(tw_buffer_download(small, 0, copied, sizeof copied));
    TW_CHECK(copied[15] == 2.5f, "convert f32 -> f32 copies");
    TW_CHECK_ERROR(tw_convert(cpu, 8, tw_at(small, 0), tw_at(small, 4)), TW_ERR_INVALID_ARGUMENT,
                   "overlap");
    TW_CHECK_ERROR(tw_convert(cpu, 8, tw_at_typed(small, 0, TW_DTYPE_I32), tw_at(small, 8)),
                   TW_ERR_INVALID_ARGUMENT, "i32, not a float type");
    TW_CHECK_ERROR(tw_convert(cpu, 200, tw_at(small, 0), bf16), TW_ERR_INVALID_ARGUMENT,
                   "needs elements");
    TW_CHECK_ERROR(tw_softmax_fwd(cpu, 0, 4, 0, m, m), TW_ERR_INVALID_ARGUMENT, "rows");
    TW_CHECK_ERROR(tw_softmax_xent_fwd(cpu, 2, 8, 4, m, m, m, m, m), TW_ERR_INVALID_ARGUMENT,
                 "ld 4 is below vocab 8");
    TW_CHECK_ERROR(tw_gelu_fwd(cpu, 65, m, m), TW_ERR_INVALID_ARGUMENT, "needs elements");
    TW_CHECK_ERROR(tw_gather_rows(cpu, 4, 4, -1, m, m, m), TW_ERR_INVALID_ARGUMENT, "count");
    tw_adamw_args adam = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                          .grad_scale = 1.0f, .step = 0};
    TW_CHECK_ERROR(tw_adamw_step(cpu, 4, &adam, m, m, m, m), TW_ERR_INVALID_ARGUMENT, "step");
    adam.step = 1;
    adam.beta2 = 1.0f;
    TW_CHECK_ERROR(tw_adamw_step(cpu, 4, &adam, m, m, m, m), TW_ERR_INVALID_ARGUMENT, "beta");

    tw_attention_args attention = {.dtype = TW_DTYPE_F32, .batch = 1, .heads = 1, .seq_len = 4,
                                   .head_dim = 0, .scale = 0.5f};
    attention.q = attention.k = attention.v = attention.out = attention.lse = m;
    TW_CHECK_ERROR(tw_attention_fwd(cpu, &attention), TW_ERR_INVALID_ARGUMENT, "head_dim");
    attention.head_dim = 4;
    attention.qkv_stride = (tw_bhtd_stride){16, 16, 4};
    attention.out_stride = (tw_bhtd_stride){16, 16, 4};
    attention.k.offset = 60; /* k would run to element 76 of 64 */
    TW_CHECK_ERROR(tw_attention_fwd(cpu, &attention), TW_ERR_INVALID_ARGUMENT, "k needs elements");
    /* Zero-sized elementwise work is a no-op, not an error. */
    TW_CHECK_OK(tw_gelu_fwd(cpu, 0, m, m));
    TW_CHECK_OK(tw_gather_rows(cpu, 4, 4, 0, m, m, m));
    tw_buffer_free(small);
}

/* A backend that lacks an op leaves its slot NULL (twist/backend_support.h): the front end refuses
 * the op with TW_ERR_UNSUPPORTED naming the op and the backend, after the argument checks, and
 * the device's other ops still run. Simulated on a cpu device given a copy of its table with
 * three slots cleared. */
static void test_null_slots(tw_device *cpu) {
    const tw_backend_vtable *full = cpu->vtable;
    tw_backend_vtable partial = *full;
    partial.gemm = NULL;
    partial.gelu_fwd = NULL;
    partial.attention_bwd = NULL;
    cpu->vtable = &partial;

    tw_buffer *buf;
    TW_CHECK_OK(tw_buffer_alloc(cpu, 64 * 4, &buf));
    tw_mem m = tw_at(buf, 0);
    TW_CHECK_OK(tw_buffer_fill_f32(buf, 0, 64, 1.5f));
    TW_CHECK_ERROR(tw_gelu_fwd(cpu, 16, m, tw_at(buf, 16)), TW_ERR_UNSUPPORTED,
                   "gelu_fwd: not supported on the cpu backend (device cpu)");
    tw_gemm_args gemm = {.dtype = TW_DTYPE_F32, .m = 2, .n = 2, .k = 2, .batch = 1,
                         .alpha = 1.0f, .a = m, .lda = 2, .b = m, .ldb = 2,
                         .c = tw_at(buf, 8), .ldc = 2};
    TW_CHECK_ERROR(tw_gemm(cpu, &gemm), TW_ERR_UNSUPPORTED, "gemm: not supported on the cpu backend");
    tw_attention_args attention = {.dtype = TW_DTYPE_F32, .batch = 1, .heads = 1, .seq_len = 2,
                                   .head_dim = 2, .scale = 0.5f,
                                   .qkv_stride = {4, 4, 2}, .out_stride = {4, 4, 2}};
    attention.q = attention.k = attention.v = attention.out = attention.lse = m;
    attention.dout = attention.dq = attention.dk = attention.dv = m;
    TW_CHECK_OK(tw_attention_fwd(cpu, &attention));
    TW_CHECK_ERROR(tw_attention_bwd(cpu, &attention), TW_ERR_UNSUPPORTED,
                   "attention_bwd: not supported on the cpu backend");
    /* Bad arguments are still named first. */
    TW_CHECK_ERROR(tw_gelu_fwd(cpu, 65, m, m), TW_ERR_INVALID_ARGUMENT, "needs elements");
    /* The ops it has still run: 1.5 + 1.5 = 3. */
    TW_CHECK_OK(tw_buffer_fill_f32(buf, 0, 64, 1.5f));
    TW_CHECK_OK(tw_add(cpu, 4, m, m, tw_at(buf, 32)));
    float sum[4];
    TW_CHECK_OK(tw_buffer_download(buf, 32 * 4, sum, sizeof sum));
    for (int i = 0; i < 4; i++) TW_CHECK(sum[i] == 3.0f, "add gave %g, expected 3", sum[i]);

    cpu->vtable = full;
    TW_CHECK_OK(tw_gelu_fwd(cpu, 16, m, tw_at(buf, 16)));
    tw_buffer_free(buf);
}

int main(void) {
    test_registry();
    test_auto();
    test_bad_specs();
    tw_device *cpu = NULL, *other_cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    TW_CHECK_OK(tw_device_open("cpu:0", &other_cpu));
    if (!cpu || !other_cpu) return tw_test_finish("api");
    test_accounting(cpu);
    test_buffers(cpu);
    test_events(cpu);
    test_gemm_checks(cpu, other_cpu);
    test_op_checks(cpu);
    test_null_slots(cpu);
    TW_CHECK(tw_device_bytes_in_use(cpu) == 0, "%zu bytes leaked on cpu",
             tw_device_bytes_in_use(cpu));
    tw_device_close(other_cpu);
    tw_device_close(cpu);
    return tw_test_finish("api");
}
