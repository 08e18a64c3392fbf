/* `twist bench <gemm|attention>`: dispatch of the benchmark subcommands, and `bench gemm`.
 *
 * bench gemm times C = A B (fp32, strided-batched, optional transposes) on one device: the median
 * of --repeat timed runs after one warm-up, each run timed by the wall clock from enqueue to the
 * end of tw_device_sync. With --peer the same shape runs through the device's natural peer
 * (bench_peer.h) on the same inputs, twist and peer alternating run by run (ABAB...) so that a
 * noisy shared machine slows both alike; the ratio twist/peer and the largest difference between
 * their results are printed. With --also SPEC a second twist device runs the same shape and inputs
 * in the same rotation (device, also, peer, device, ...), and the ratio device/also is printed:
 * e.g. vulkan:0 against opencl:0 in one command, so both figures share the machine's noise.
 * --dtype runs A, B and C in bf16 or f16 (inputs rounded from the same fp32 numbers; the peer
 * stays fp32), --also-dtype gives --also its own type, so `--device cpu --dtype bf16 --also cpu
 * --also-dtype f32` times bf16 against fp32 on one device in one command; --variant and
 * --also-variant force a kernel variant of "gemm" on either side (tw_device_kernel_variants). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "bench_peer.h"
#include "cli.h"
#include "output.h"
#include "twist/dtype.h"

/* ---- bench dispatch -------------------------------------------------------------------- */

static void print_bench_usage(FILE *out) {
    fprintf(out,
            "usage: twist bench <benchmark> [options]\n\n"
            "benchmarks:\n"
            "  gemm       GEMM GFLOP/s (f32, bf16, f16) on a device, optionally against its peer\n"
            "  attention  fused against unfused causal attention: time and peak device memory\n"
            "  step       training-step tokens/s of a GPT preset, optionally against PyTorch\n"
            "  all        gemm, attention and step on every device: one table, chart and report\n\n"
            "Run 'twist bench <benchmark> --help' for its options.\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 1) {
        print_bench_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        print_bench_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[0], "gemm") == 0) return cmd_bench_gemm(argc - 1, argv + 1);
    if (strcmp(argv[0], "attention") == 0) return cmd_bench_attention(argc - 1, argv + 1);
    if (strcmp(argv[0], "step") == 0) return cmd_bench_step(argc - 1, argv + 1);
    if (strcmp(argv[0], "all") == 0) return cmd_bench_all(argc - 1, argv + 1);
    fprintf(stderr,
            "twist bench: unknown benchmark '%s'; available: gemm, attention, step, all\n"
            "(run 'twist bench --help')\n",
            argv[0]);
    return CLI_EXIT_USAGE;
}

/* ---- bench gemm ------------------------------------------------------------------------ */

static const char *const PROG = "twist bench gemm";
static const char *const IMPL_CHOICES[] = {"auto", "vendor", "own", NULL};
static const char *const DTYPE_CHOICES[] = {"f32", "bf16", "f16", NULL};
static const tw_dtype DTYPE_VALUES[] = {TW_DTYPE_F32, TW_DTYPE_BF16, TW_DTYPE_F16};
enum { MAX_REPEAT = 10000 };

typedef struct gemm_options {
    const char *device;
    bench_gemm_shape shape;
    int impl; /* index into IMPL_CHOICES == tw_gemm_impl */
    int repeat;
    const char *also; /* a second twist device, or NULL */
    int dtype, also_dtype;               /* indices into DTYPE_CHOICES; also_dtype -1: --dtype's */
    const char *variant, *also_variant; /* forced "gemm" kernel variants, or NULL */
    bool peer;
    const char *json;
} gemm_options;

/* Byte counts of A, B and C for the whole batch, overflow-checked. */
typedef struct gemm_sizes {
    size_t a, b, c, total;
} gemm_sizes;

static bool gemm_bytes(const bench_gemm_shape *s, gemm_sizes *out) {
    size_t batch4 = (size_t)s->batch * sizeof(float), ab, total;
    if (__builtin_mul_overflow(bench_gemm_a_elements(s), batch4, &out->a) ||
        __builtin_mul_overflow(bench_gemm_b_elements(s), batch4, &out->b) ||
        __builtin_mul_overflow(bench_gemm_c_elements(s), batch4, &out->c) ||
        __builtin_add_overflow(out->a, out->b, &ab) || __builtin_add_overflow(ab, out->c, &total))
        return false;
    out->total = total;
    return true;
}

/* Host memory: the cpu device's memory (the registry always lists cpu first). */
static uint64_t host_memory_bytes(void) {
    tw_device_info info;
    if (tw_device_count() > 0 && tw_device_info_at(0, &info) == TW_OK &&
        info.backend == TW_BACKEND_CPU)
        return info.memory_bytes;
    return 0;
}

/* Refuses shapes whose buffers do not fit, before anything is allocated: twist's A, B, C on the
 * device (twice with --peer on a non-cpu device: the peer has its own copies), and the host's
 * inputs, twist's downloaded C and the peer's C (on cpu, device and host are one memory). */
static int check_memory(const gemm_options *o, const tw_device_info *info, const gemm_sizes *z) {
    double device_need = (double)z->total * (o->peer && info->backend != TW_BACKEND_CPU ? 2 : 1);
    double host_need = (double)(z->a + z->b + z->c) + (o->peer ? (double)z->c : 0.0);
    if (info->backend == TW_BACKEND_CPU) host_need += device_need;
    char need[32], have[32];
    if (info->memory_bytes && device_need > (double)info->memory_bytes)
        return cli_runtime_error(PROG,
                                 "--m %d --n %d --k %d --batch %d needs %s of buffers on %s, "
                                 "which has %s",
                                 o->shape.m, o->shape.n, o->shape.k, o->shape.batch,
                                 cli_format_bytes(device_need, need, sizeof need), info->spec,
                                 cli_format_bytes((double)info->memory_bytes, have, sizeof have));
    uint64_t host = host_memory_bytes();
    if (host && host_need > (double)host)
        return cli_runtime_error(PROG,
                                 "--m %d --n %d --k %d --batch %d needs %s of host memory, "
                                 "the machine has %s",
                                 o->shape.m, o->shape.n, o->shape.k, o->shape.batch,
                                 cli_format_bytes(host_need, need, sizeof need),
                                 cli_format_bytes((double)host, have, sizeof have));
    return CLI_EXIT_OK;
}

/* Deterministic inputs in [-1, 1): the same numbers for twist and the peer. */
static void fill_inputs(float *x, size_t n, uint64_t seed) {
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        uint64_t bits = state * 0x2545F4914F6CDD1Dull;
        x[i] = (float)((double)(bits >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
    }
}

/* One twist device of a run: --device, or --also. */
typedef struct gemm_side {
    tw_device *device;
    tw_dtype dtype; /* of A, B and C */
    tw_buffer *a, *b, *c;
    double *ms; /* --repeat timings */
} gemm_side;

/* Everything a run owns, released by gemm_cleanup whatever happened. */
typedef struct gemm_run {
    gemm_side main, also;
    float *host_a, *host_b, *host_c, *also_c, *peer_c;
    bench_peer peer;
    double *peer_ms;
} gemm_run;

static void side_cleanup(gemm_side *side) {
    tw_buffer_free(side->a);
    tw_buffer_free(side->b);
    tw_buffer_free(side->c);
    tw_device_close(side->device);
    free(side->ms);
}

static void gemm_cleanup(gemm_run *r) {
    if (r->peer.destroy) r->peer.destroy(&r->peer);
    side_cleanup(&r->main);
    side_cleanup(&r->also);
    free(r->host_a);
    free(r->host_b);
    free(r->host_c);
    free(r->also_c);
    free(r->peer_c);
    free(r->peer_ms);
}

static int twist_gemm_once(gemm_side *r, const bench_gemm_shape *s, double *ms) {
    tw_gemm_args args = {
        .dtype = r->dtype, .trans_a = s->trans_a, .trans_b = s->trans_b,
        .m = s->m, .n = s->n, .k = s->k, .batch = s->batch, .alpha = 1.0f, .beta = 0.0f,
        .a = tw_at_typed(r->a, 0, r->dtype), .lda = bench_gemm_lda(s),
        .stride_a = (int64_t)bench_gemm_a_elements(s),
        .b = tw_at_typed(r->b, 0, r->dtype), .ldb = bench_gemm_ldb(s),
        .stride_b = (int64_t)bench_gemm_b_elements(s),
        .c = tw_at_typed(r->c, 0, r->dtype), .ldc = s->n,
        .stride_c = (int64_t)bench_gemm_c_elements(s),
    };
    tw_status status = tw_device_sync(r->device);
    double start = cli_now_ms();
    if (status == TW_OK) status = tw_gemm(r->device, &args);
    if (status == TW_OK) status = tw_device_sync(r->device);
    *ms = cli_now_ms() - start;
    return status == TW_OK ? CLI_EXIT_OK : cli_library_error(PROG, status);
}

static int peer_once(gemm_run *r, double *ms) {
    return r->peer.run(&r->peer, ms) ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
}

/* Opens one twist device, sets the implementation (and variant) and checks that the shape and
 * its type fit it. */
static int side_open(const gemm_options *o, const gemm_sizes *z, const char *spec,
                     tw_dtype dtype, const char *variant, gemm_side *side) {
    tw_status status = tw_device_open(spec, &side->device);
    if (status != TW_OK) return cli_library_error(PROG, status);
    side->dtype = dtype;
    status = tw_device_set_gemm_impl(side->device, (tw_gemm_impl)o->impl);
    if (status == TW_OK && variant)
        status = tw_device_force_kernel_variant(side->device, "gemm", variant);
    if (status != TW_OK) return cli_library_error(PROG, status);
    if (!tw_device_supports_dtype(side->device, "gemm", dtype))
        return cli_runtime_error(PROG, "%s does not run gemm in %s", spec, tw_dtype_name(dtype));
    return check_memory(o, tw_device_get_info(side->device), z);
}

/* Uploads `bytes` of fp32 host values to a buffer of `dtype` (rounded when 16-bit). */
static tw_status upload_typed(tw_buffer *dst, const float *src, size_t bytes, tw_dtype dtype) {
    if (dtype == TW_DTYPE_F32) return tw_buffer_upload(dst, 0, src, bytes);
    const size_t count = bytes / sizeof(float);
    uint16_t *narrow = malloc(count * sizeof *narrow);
    if (!narrow) return tw_error(TW_ERR_OUT_OF_MEMORY, "out of host memory for the inputs");
    for (size_t i = 0; i < count; i++)
        narrow[i] = dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(src[i]) : tw_f32_to_f16(src[i]);
    tw_status status = tw_buffer_upload(dst, 0, narrow, count * sizeof *narrow);
    free(narrow);
    return status;
}

/* Downloads C (`bytes` as fp32) from a buffer of `dtype`, widened to fp32. */
static tw_status download_typed(const tw_buffer *src, float *dst, size_t bytes, tw_dtype dtype) {
    if (dtype == TW_DTYPE_F32) return tw_buffer_download(src, 0, dst, bytes);
    const size_t count = bytes / sizeof(float);
    tw_status status = tw_buffer_download(src, 0, dst, count * 2); /* then widened in place */
    const uint16_t *narrow = (const uint16_t *)dst;
    for (size_t i = count; status == TW_OK && i-- > 0;)
        dst[i] = dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(narrow[i]) : tw_f16_to_f32(narrow[i]);
    return status;
}

/* Allocates a device's buffers and uploads the inputs. */
static int side_upload(const gemm_options *o, const gemm_sizes *z, const gemm_run *r,
                       gemm_side *side) {
    tw_status status;
    side->ms = calloc((size_t)o->repeat, sizeof(double));
    if (!side->ms) return cli_runtime_error(PROG, "out of host memory");
    /* z counts fp32 bytes; a 16-bit type needs half. */
    const size_t element = tw_dtype_size(side->dtype);
    if ((status = tw_buffer_alloc(side->device, z->a / 4 * element, &side->a)) != TW_OK ||
        (status = tw_buffer_alloc(side->device, z->b / 4 * element, &side->b)) != TW_OK ||
        (status = tw_buffer_alloc(side->device, z->c / 4 * element, &side->c)) != TW_OK ||
        (status = upload_typed(side->a, r->host_a, z->a, side->dtype)) != TW_OK ||
        (status = upload_typed(side->b, r->host_b, z->b, side->dtype)) != TW_OK)
        return cli_library_error(PROG, status);
    return CLI_EXIT_OK;
}

/* The device (and --also's), checked before anything is allocated; the inputs; the peer. */
static int gemm_prepare(const gemm_options *o, const gemm_sizes *z, gemm_run *r) {
    const tw_dtype dtype = DTYPE_VALUES[o->dtype];
    const tw_dtype also_dtype = o->also_dtype < 0 ? dtype : DTYPE_VALUES[o->also_dtype];
    int rc = side_open(o, z, o->device, dtype, o->variant, &r->main);
    if (rc == CLI_EXIT_OK && o->also)
        rc = side_open(o, z, o->also, also_dtype, o->also_variant, &r->also);
    if (rc != CLI_EXIT_OK) return rc;
    r->host_a = malloc(z->a);
    r->host_b = malloc(z->b);
    r->host_c = malloc(z->c);
    r->peer_ms = calloc((size_t)o->repeat, sizeof(double));
    if (!r->host_a || !r->host_b || !r->host_c || !r->peer_ms)
        return cli_runtime_error(PROG, "out of host memory for the inputs");
    fill_inputs(r->host_a, z->a / sizeof(float), 1);
    fill_inputs(r->host_b, z->b / sizeof(float), 2);
    rc = side_upload(o, z, r, &r->main);
    if (rc == CLI_EXIT_OK && o->also) {
        rc = side_upload(o, z, r, &r->also);
        r->also_c = malloc(z->c);
        if (rc == CLI_EXIT_OK && !r->also_c)
            return cli_runtime_error(PROG, "out of host memory for --also's result");
    }
    if (rc != CLI_EXIT_OK || !o->peer) return rc;
    r->peer_c = malloc(z->c);
    if (!r->peer_c) return cli_runtime_error(PROG, "out of host memory for the peer's result");
    return bench_peer_create(PROG, tw_device_get_info(r->main.device), &o->shape, r->host_a,
                             r->host_b, &r->peer);
}

/* Warm-up (kernel compilation, autotuning, page faults) then timed runs in rotation: device,
 * --also, peer, device, ... */
static int gemm_measure(const gemm_options *o, gemm_run *r) {
    double ignored;
    int rc = twist_gemm_once(&r->main, &o->shape, &ignored);
    if (rc == CLI_EXIT_OK && o->also) rc = twist_gemm_once(&r->also, &o->shape, &ignored);
    if (rc == CLI_EXIT_OK && o->peer) rc = peer_once(r, &ignored);
    for (int i = 0; i < o->repeat && rc == CLI_EXIT_OK; i++) {
        rc = twist_gemm_once(&r->main, &o->shape, &r->main.ms[i]);
        if (rc == CLI_EXIT_OK && o->also)
            rc = twist_gemm_once(&r->also, &o->shape, &r->also.ms[i]);
        if (rc == CLI_EXIT_OK && o->peer) rc = peer_once(r, &r->peer_ms[i]);
    }
    return rc;
}

/* Largest |x - y| over C, and largest |y|, for the sanity lines. */
static void max_difference(const float *x, const float *y, size_t count, double *max_diff,
                           double *max_value) {
    *max_diff = 0.0;
    *max_value = 0.0;
    for (size_t i = 0; i < count; i++) {
        double diff = (double)x[i] - (double)y[i];
        double value = y[i] < 0 ? -(double)y[i] : (double)y[i];
        if (diff < 0) diff = -diff;
        if (!(diff <= *max_diff)) *max_diff = diff; /* NaN propagates into the report */
        if (value > *max_value) *max_value = value;
    }
}

typedef struct gemm_report {
    double flops, twist_ms, also_ms, peer_ms;
    double max_diff, max_value;           /* device against the peer */
    double also_max_diff, also_max_value; /* device against --also */
} gemm_report;

/* Downloads the results and compares the device's with --also's and the peer's. */
static int gemm_compare(const gemm_options *o, const gemm_sizes *z, gemm_run *r, gemm_report *g) {
    tw_status status = download_typed(r->main.c, r->host_c, z->c, r->main.dtype);
    if (status == TW_OK && o->also)
        status = download_typed(r->also.c, r->also_c, z->c, r->also.dtype);
    if (status != TW_OK) return cli_library_error(PROG, status);
    const size_t count = z->c / sizeof(float);
    if (o->also) max_difference(r->host_c, r->also_c, count, &g->also_max_diff, &g->also_max_value);
    if (!o->peer) return CLI_EXIT_OK;
    if (!r->peer.result(&r->peer, r->peer_c)) return CLI_EXIT_RUNTIME;
    max_difference(r->host_c, r->peer_c, count, &g->max_diff, &g->max_value);
    return CLI_EXIT_OK;
}

static void print_gemm_text(const gemm_options *o, const gemm_run *r, const gemm_report *g) {
    const tw_device_info *info = tw_device_get_info(r->main.device);
    const bench_gemm_shape *s = &o->shape;
    printf("gemm on %s (%s): m=%d n=%d k=%d batch=%d%s%s impl=%s%s%s dtype=%s, median of %d "
           "run(s)\n",
           info->spec, info->name, s->m, s->n, s->k, s->batch, s->trans_a ? " trans-a" : "",
           s->trans_b ? " trans-b" : "", IMPL_CHOICES[o->impl], o->variant ? " variant=" : "",
           o->variant ? o->variant : "", tw_dtype_name(r->main.dtype), o->repeat);
    printf("  twist  %10.3f ms  %9.1f GFLOP/s\n", g->twist_ms, g->flops / g->twist_ms * 1e-6);
    if (o->also) {
        const tw_device_info *also = tw_device_get_info(r->also.device);
        printf("  also   %10.3f ms  %9.1f GFLOP/s  (twist on %s: %s, %s%s%s)\n", g->also_ms,
               g->flops / g->also_ms * 1e-6, also->spec, also->name, tw_dtype_name(r->also.dtype),
               o->also_variant ? ", variant " : "", o->also_variant ? o->also_variant : "");
        printf("  ratio %s/%s  %.3f\n", info->spec, also->spec, g->also_ms / g->twist_ms);
        printf("  max |%s - %s| = %.3g  (max |C| = %.3g)\n", info->spec, also->spec,
               g->also_max_diff, g->also_max_value);
    }
    if (!o->peer) return;
    printf("  peer   %10.3f ms  %9.1f GFLOP/s  (%s, f32)\n", g->peer_ms,
           g->flops / g->peer_ms * 1e-6, r->peer.name);
    printf("  ratio twist/peer  %.3f\n", g->peer_ms / g->twist_ms);
    printf("  max |twist - peer| = %.3g  (max |C| = %.3g)\n", g->max_diff, g->max_value);
}

/* A nested object of a record: {"median_ms", "gflops"} of one side of the comparison. */
static cJSON *timing_object(cJSON *record, const char *key, double ms, double flops) {
    cJSON *side = cJSON_AddObjectToObject(record, key);
    tw_record_number(side, "median_ms", ms);
    tw_record_number(side, "gflops", flops / ms * 1e-6);
    return side;
}

static void write_gemm_record(output *out, const gemm_options *o, const gemm_run *r,
                              const gemm_report *g) {
    const tw_device_info *info = tw_device_get_info(r->main.device);
    const bench_gemm_shape *s = &o->shape;
    cJSON *j = output_new(out, "bench");
    tw_record_string(j, "device", info->spec);
    tw_record_string(j, "device_name", info->name);
    tw_record_int(j, "m", s->m);
    tw_record_int(j, "n", s->n);
    tw_record_int(j, "k", s->k);
    tw_record_int(j, "batch", s->batch);
    tw_record_bool(j, "trans_a", s->trans_a);
    tw_record_bool(j, "trans_b", s->trans_b);
    tw_record_string(j, "impl", IMPL_CHOICES[o->impl]);
    tw_record_string(j, "dtype", tw_dtype_name(r->main.dtype));
    if (o->variant) tw_record_string(j, "variant", o->variant);
    tw_record_int(j, "repeat", o->repeat);
    tw_record_number(j, "flops", g->flops);
    if (j) timing_object(j, "twist", g->twist_ms, g->flops);
    if (j && o->also) {
        const tw_device_info *also = tw_device_get_info(r->also.device);
        cJSON *side = timing_object(j, "also", g->also_ms, g->flops);
        tw_record_string(side, "device", also->spec);
        tw_record_string(side, "device_name", also->name);
        tw_record_string(side, "dtype", tw_dtype_name(r->also.dtype));
        if (o->also_variant) tw_record_string(side, "variant", o->also_variant);
        tw_record_number(side, "ratio", g->also_ms / g->twist_ms); /* device / also */
        tw_record_number(side, "max_abs_diff", g->also_max_diff);
    }
    if (j && o->peer) {
        cJSON *side = timing_object(j, "peer", g->peer_ms, g->flops);
        tw_record_string(side, "name", r->peer.name);
        tw_record_number(j, "ratio", g->peer_ms / g->twist_ms);
        tw_record_number(j, "max_abs_diff", g->max_diff);
        tw_record_number(j, "max_abs_c", g->max_value);
    }
    output_record(out, j);
}

static int run_gemm(const gemm_options *o, output *out) {
    gemm_sizes z;
    if (!gemm_bytes(&o->shape, &z))
        return args_usage_error(PROG, "--m %d --n %d --k %d --batch %d: buffer sizes overflow",
                                o->shape.m, o->shape.n, o->shape.k, o->shape.batch);
    gemm_run r;
    memset(&r, 0, sizeof r);
    int rc = gemm_prepare(o, &z, &r);
    if (rc == CLI_EXIT_OK) rc = gemm_measure(o, &r);
    gemm_report g = {0};
    if (rc == CLI_EXIT_OK) rc = gemm_compare(o, &z, &r, &g);
    if (rc == CLI_EXIT_OK) {
        const bench_gemm_shape *s = &o->shape;
        g.flops = 2.0 * s->m * (double)s->n * (double)s->k * (double)s->batch;
        g.twist_ms = cli_median(r.main.ms, o->repeat);
        g.also_ms = o->also ? cli_median(r.also.ms, o->repeat) : 0.0;
        g.peer_ms = o->peer ? cli_median(r.peer_ms, o->repeat) : 0.0;
        if (out->text) print_gemm_text(o, &r, &g);
        if (out->sink) write_gemm_record(out, o, &r, &g);
    }
    gemm_cleanup(&r);
    return rc;
}

int cmd_bench_gemm(int argc, char **argv) {
    gemm_options o = {.shape = {.batch = 1}, .impl = TW_GEMM_AUTO, .repeat = 10,
                      .also_dtype = -1};
    const long long INT_LIMIT = 2147483647;
    arg_spec specs[] = {
        {.name = "--device", .kind = ARG_STRING, .dest = &o.device, .metavar = "SPEC",
         .help = "device to run on: cpu, opencl:N, ... (see 'twist devices')", .required = true},
        {.name = "--m", .kind = ARG_INT, .dest = &o.shape.m, .metavar = "M",
         .help = "rows of C and op(A)", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--n", .kind = ARG_INT, .dest = &o.shape.n, .metavar = "N",
         .help = "columns of C and op(B)", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--k", .kind = ARG_INT, .dest = &o.shape.k, .metavar = "K",
         .help = "inner dimension", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--trans-a", .kind = ARG_FLAG, .dest = &o.shape.trans_a,
         .help = "A is stored (K, M) and used transposed"},
        {.name = "--trans-b", .kind = ARG_FLAG, .dest = &o.shape.trans_b,
         .help = "B is stored (N, K) and used transposed"},
        {.name = "--batch", .kind = ARG_INT, .dest = &o.shape.batch, .metavar = "B",
         .help = "number of matrices (strided batch), default 1", .min = 1, .max = INT_LIMIT},
        {.name = "--impl", .kind = ARG_CHOICE, .dest = &o.impl, .metavar = "auto|vendor|own",
         .help = "GEMM implementation on the device, default auto", .choices = IMPL_CHOICES},
        {.name = "--repeat", .kind = ARG_INT, .dest = &o.repeat, .metavar = "R",
         .help = "timed runs after one warm-up; the median is reported (default 10)", .min = 1,
         .max = MAX_REPEAT},
        {.name = "--peer", .kind = ARG_FLAG, .dest = &o.peer,
         .help = "also run the natural peer (OpenBLAS for cpu and vulkan:N, CLBlast for "
                 "opencl:N, cuBLAS for cuda:N)"},
        {.name = "--also", .kind = ARG_STRING, .dest = &o.also, .metavar = "SPEC",
         .help = "also run twist on a second device in the same rotation and print the ratio "
                 "--device/--also (e.g. --device vulkan:0 --also opencl:0)"},
        {.name = "--dtype", .kind = ARG_CHOICE, .dest = &o.dtype, .metavar = "f32|bf16|f16",
         .help = "type of A, B and C (fp32 accumulation; inputs rounded from the same fp32 "
                 "numbers; the peer stays fp32), default f32", .choices = DTYPE_CHOICES},
        {.name = "--also-dtype", .kind = ARG_CHOICE, .dest = &o.also_dtype,
         .metavar = "f32|bf16|f16", .help = "type for --also's device, default --dtype's",
         .choices = DTYPE_CHOICES},
        {.name = "--variant", .kind = ARG_STRING, .dest = &o.variant, .metavar = "NAME",
         .help = "force this gemm kernel variant on --device (see 'twist devices --ops')"},
        {.name = "--also-variant", .kind = ARG_STRING, .dest = &o.also_variant,
         .metavar = "NAME", .help = "force this gemm kernel variant on --also's device"},
        output_json_spec(&o.json, "a record (JSON) on stdout instead of the text, or appended "
                                  "to FILE"),
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist bench gemm --device SPEC --m M --n N --k K [--trans-a] [--trans-b]\n"
                    "                        [--batch B] [--impl auto|vendor|own] [--repeat R]\n"
                    "                        [--peer] [--also SPEC] [--dtype f32|bf16|f16]\n"
                    "                        [--also-dtype f32|bf16|f16] [--variant NAME]\n"
                    "                        [--also-variant NAME] [--json[=FILE]]",
        .summary = "Times C = op(A) op(B) (fp32, or --dtype) on one device and reports GFLOP/s\n"
                   "(median of R runs after a warm-up). With --peer, the same shape and inputs also run through\n"
                   "the device's natural peer library, alternating with twist run by run, and the\n"
                   "ratio twist/peer and the largest difference of the results are printed.\n"
                   "With --also SPEC, twist on a second device joins the rotation and the ratio\n"
                   "of the two devices (from the same run) is printed as well.",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (!o.also && (o.also_dtype >= 0 || o.also_variant))
        return args_usage_error(PROG, "--also-dtype and --also-variant need --also SPEC");
    output out;
    int rc = output_open(&out, PROG, "bench gemm", o.json);
    if (rc == CLI_EXIT_OK) rc = run_gemm(&o, &out);
    return output_close(&out, rc);
}
