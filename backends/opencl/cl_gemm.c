/* twist OpenCL backend: GEMM through twist's own kernel variants (gemm_own.h: cpu, tiled, large,
 * large32, wide, medium, small, splitk) or CLBlast ("vendor"), chosen per device and shape class
 * by a tuner whose choices live in the shared tuning cache (tw_tune_cache in
 * twist/backend_support.h).
 *
 * No variant wins everywhere: CLBlast is tuned for the GPUs in its database and falls back to
 * generic parameters elsewhere (on PoCL CPU devices it runs a 1024^3 SGEMM at ~7 GFLOP/s where
 * the "cpu" micro-kernels reach ~200), and the best own tile depends on the GPU and the shape.
 * So the first GEMM of each shape class
 *     class = transposes + ceil(log2) buckets of m, n, k + whether batch > 1
 *             ("NN-m10-n10-k10-single"; cache key "gemm <class>")
 * times the candidates that suit the class (tw_cl_own_variant_suits, plus CLBlast) on scratch
 * operands of that shape, after checking each one's result on pseudo-random operands against
 * the default own variant ("cpu" on CPU devices, "tiled" on GPUs): a candidate whose program
 * fails to build, that CLBlast refuses, or whose result differs is skipped. The fastest is kept
 * in memory and in the cache file ("gemm <class> <variant>"; when CLBlast wins, the best own
 * variant is also kept as "gemm <class>.own" for tw_device_set_gemm_impl(TW_GEMM_OWN)), keyed
 * by device identity and checked against the driver version, so a later process starts with it.
 *
 * TWIST_TUNE=off: no timing, the default own variant. TWIST_TUNE=verbose (or the older
 * TWIST_GEMM_VERBOSE=1): every measurement on stderr. tw_device_set_gemm_impl: VENDOR forces
 * CLBlast, OWN the tuner's best own variant. tw_device_force_kernel_variant("gemm", name) forces
 * one variant (tests, benchmarks). Test-only environment:
 *     TWIST_CL_TUNE_FAULT=<variant>:build|wrong[,...]   the variant's programs fail to build /
 *                                                       it computes with alpha * 1.25
 *     TWIST_CL_TUNE_CANDIDATES=<variant>[,...]          time exactly these (e.g. GPU tiles on
 *                                                       PoCL, where the tuner skips them)
 *
 * Measurement scratch (three operand-sized buffers) is created directly with clCreateBuffer and
 * released before the call returns: it is not device state and is not counted in the device's
 * bytes.
 *
 * Cases the default own variant always takes: k == 0 or alpha == 0 (C = beta C, which CLBlast
 * may reject), and any call CLBlast refuses (some ld/stride combinations). */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_internal.h"
#include "twist/clock.h"

enum { VENDOR = TW_CL_GEMM_VENDOR_VARIANT };

static const char *variant_name(int variant) {
    return variant == VENDOR ? "vendor" : tw_cl_own_variant_name((tw_cl_own_variant)variant);
}

static int variant_find(const char *name) {
    if (strcmp(name, "vendor") == 0) return VENDOR;
    return tw_cl_own_variant_find(name);
}

/* ------------------------------------------------------------------------------------------------
 * Set-up: tuning cache, test-only faults
 * ---------------------------------------------------------------------------------------------- */

static void info_string(cl_device_id device, cl_device_info what, char *out, size_t size) {
    if (clGetDeviceInfo(device, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

static void platform_string(cl_platform_id platform, cl_platform_info what, char *out,
                            size_t size) {
    if (clGetPlatformInfo(platform, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

/* TWIST_CL_TUNE_FAULT=<variant>:build|wrong[,...] (test-only). Unknown entries get a note. */
static void parse_faults(tw_cl_context *cl) {
    const char *spec = getenv("TWIST_CL_TUNE_FAULT");
    if (!spec || !*spec) return;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", spec);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        int variant = -1;
        if (colon) {
            *colon = '\0';
            variant = variant_find(item);
        }
        if (variant < 0 || (strcmp(colon + 1, "build") != 0 && strcmp(colon + 1, "wrong") != 0)) {
            tw_note("TWIST_CL_TUNE_FAULT: ignoring \"%s\" (expected <variant>:build|wrong)", item);
            continue;
        }
        if (strcmp(colon + 1, "wrong") == 0) cl->gemm_fault_wrong[variant] = true;
        else if (variant == VENDOR) cl->gemm_fault_vendor_build = true;
        else tw_cl_own_inject_build_fault(cl->gemm_own, (tw_cl_own_variant)variant);
    }
}

/* Opens the tuning cache on first use: identity = platform and device names and vendor id (so
 * a driver update finds the same file, and the driver check then discards it), driver = the
 * device's driver version and the platform version. */
static void gemm_init(tw_cl_context *cl) {
    if (cl->gemm_ready) return;
    cl->gemm_ready = true;
    char platform[256], platform_version[256], name[256], driver[256];
    platform_string(cl->platform, CL_PLATFORM_NAME, platform, sizeof platform);
    platform_string(cl->platform, CL_PLATFORM_VERSION, platform_version, sizeof platform_version);
    info_string(cl->device_id, CL_DEVICE_NAME, name, sizeof name);
    info_string(cl->device_id, CL_DRIVER_VERSION, driver, sizeof driver);
    cl_uint vendor = 0;
    clGetDeviceInfo(cl->device_id, CL_DEVICE_VENDOR_ID, sizeof vendor, &vendor, NULL);
    char identity[800], driver_full[520];
    snprintf(identity, sizeof identity, "%s|%s|%u", platform, name, (unsigned)vendor);
    snprintf(driver_full, sizeof driver_full, "%s|%s", driver, platform_version);
    cl->tune_cache = tw_tune_cache_open("opencl", identity, driver_full);
    parse_faults(cl);
}

tw_tune_cache *tw_cl_tune_cache(tw_cl_context *cl) {
    gemm_init(cl);
    return cl->tune_cache;
}

void tw_cl_gemm_release(tw_cl_context *cl) {
    tw_tune_cache_close(cl->tune_cache);
    cl->tune_cache = NULL;
}

static tw_tune_mode tune_mode(void) {
    tw_tune_mode mode = tw_tune_mode_from_env();
    const char *old = getenv("TWIST_GEMM_VERBOSE"); /* the older name of TWIST_TUNE=verbose */
    if (mode == TW_TUNE_MODE_AUTO && old && *old && strcmp(old, "0") != 0)
        mode = TW_TUNE_MODE_VERBOSE;
    return mode;
}

/* ------------------------------------------------------------------------------------------------
 * Running one variant
 * ---------------------------------------------------------------------------------------------- */

static tw_status run_own(tw_cl_context *cl, int variant, const tw_gemm_args *args, cl_mem a,
                         cl_mem b, cl_mem c) {
    if (variant >= 0 && variant < TW_CL_OWN_COUNT && cl->gemm_fault_wrong[variant]) {
        tw_gemm_args wrong = *args; /* test-only fault: a kernel with wrong results */
        wrong.alpha *= 1.25f;
        return tw_cl_gemm_own_enqueue(cl->gemm_own, (tw_cl_own_variant)variant, &wrong, a, b, c);
    }
    return tw_cl_gemm_own_enqueue(cl->gemm_own, (tw_cl_own_variant)variant, args, a, b, c);
}

static tw_cl_own_variant default_own(const tw_cl_context *cl) {
    return tw_cl_own_default_variant(cl->gemm_own);
}

/* CLBlast's status for this call; CLBlastSuccess when enqueued. beta == 0 must not read C:
 * CLBlast computes beta * C, so C is first set to 0 by the own kernel with k = 0 (which writes
 * C without reading it, leaving the gaps between rows of a strided C alone). */
static CLBlastStatusCode run_clblast(tw_cl_context *cl, const tw_gemm_args *args, cl_mem a,
                                     cl_mem b, cl_mem c, tw_status *status) {
    *status = TW_OK;
    if (cl->gemm_fault_vendor_build) return CLBlastOpenCLBuildProgramFailure; /* test-only fault */
    if (args->beta == 0.0f) {
        tw_gemm_args zero = *args;
        zero.k = 0;
        zero.alpha = 0.0f;
        *status = run_own(cl, default_own(cl), &zero, a, b, c);
        if (*status != TW_OK) return CLBlastSuccess;
    }
    const float alpha = cl->gemm_fault_wrong[VENDOR] ? args->alpha * 1.25f : args->alpha;
    const CLBlastTranspose ta = args->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = args->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    /* The strided-batched entry rejects batch strides of 0 (CLBlastInvalidDimension), which
     * the front end allows and a single product carries: batch 1 goes through plain Sgemm. */
    if (args->batch == 1)
        return CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)args->m, (size_t)args->n,
                            (size_t)args->k, alpha, a, args->a.offset, (size_t)args->lda, b,
                            args->b.offset, (size_t)args->ldb, args->beta, c, args->c.offset,
                            (size_t)args->ldc, &cl->queue, NULL);
    return CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, ta, tb, (size_t)args->m, (size_t)args->n, (size_t)args->k, alpha,
        a, args->a.offset, (size_t)args->lda, (size_t)args->stride_a, b, args->b.offset,
        (size_t)args->ldb, (size_t)args->stride_b, args->beta, c, args->c.offset,
        (size_t)args->ldc, (size_t)args->stride_c, (size_t)args->batch, &cl->queue, NULL);
}

/* Runs `variant`; *refused is set when CLBlast refused the call (nothing enqueued). */
static tw_status run_variant(tw_cl_context *cl, int variant, const tw_gemm_args *args, cl_mem a,
                             cl_mem b, cl_mem c, CLBlastStatusCode *refused) {
    *refused = CLBlastSuccess;
    if (variant != VENDOR) return run_own(cl, variant, args, a, b, c);
    tw_status status = TW_OK;
    *refused = run_clblast(cl, args, a, b, c, &status);
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * Shape classes
 * ---------------------------------------------------------------------------------------------- */

static int log2_bucket(int value) {
    int bucket = 0;
    while ((1LL << bucket) < value) bucket++;
    return bucket;
}

static void class_name(const tw_gemm_args *args, char *out, size_t size) {
    snprintf(out, size, "%c%c-m%d-n%d-k%d-%s", args->trans_a ? 'T' : 'N',
             args->trans_b ? 'T' : 'N', log2_bucket(args->m), log2_bucket(args->n),
             log2_bucket(args->k), args->batch > 1 ? "batched" : "single");
}

/* Test-only TWIST_CL_TUNE_CANDIDATES: whether it lists `variant` (true when unset). */
static bool listed_candidate(int variant, bool *set) {
    const char *list = getenv("TWIST_CL_TUNE_CANDIDATES");
    *set = list && *list;
    if (!*set) return true;
    const char *name = variant_name(variant);
    const size_t length = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += length) {
        const bool starts = p == list || p[-1] == ',';
        const bool ends = p[length] == '\0' || p[length] == ',';
        if (starts && ends) return true;
    }
    return false;
}

static bool is_candidate(const tw_cl_context *cl, int variant, const tw_gemm_args *args) {
    bool set = false;
    const bool listed = listed_candidate(variant, &set);
    if (variant == VENDOR) return listed;
    if (!tw_cl_own_variant_fits(cl->gemm_own, (tw_cl_own_variant)variant)) return false;
    if (set) return listed;
    return tw_cl_own_variant_suits(cl->gemm_own, (tw_cl_own_variant)variant, args);
}

/* ------------------------------------------------------------------------------------------------
 * Measurement
 * ---------------------------------------------------------------------------------------------- */

typedef struct probe {
    tw_gemm_args args; /* compact operands: lda = k or m, ... */
    cl_mem a, b, c;
    size_t c_floats;
    float *c_init;     /* C before each checked run (beta != 0) */
    float *reference;  /* C after the reference variant */
    float *result;
    double tolerance;
} probe;

static tw_status scratch(tw_cl_context *cl, const float *data, size_t floats, cl_mem *out) {
    cl_int err = CL_SUCCESS;
    *out = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, floats * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clCreateBuffer(gemm measurement)");
    err = clEnqueueWriteBuffer(cl->queue, *out, CL_TRUE, 0, floats * sizeof(float), data, 0, NULL,
                               NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueWriteBuffer(gemm measurement)");
}

/* Values in [-1, 1) from a fixed LCG: every candidate sees the same operands. */
static void fill_random(float *data, size_t count, uint64_t seed) {
    uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < count; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (float)((state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
    }
}

static void probe_release(probe *p) {
    if (p->a) clReleaseMemObject(p->a);
    if (p->b) clReleaseMemObject(p->b);
    if (p->c) clReleaseMemObject(p->c);
    free(p->c_init);
    free(p->reference);
    free(p->result);
    memset(p, 0, sizeof *p);
}

/* Compact operands of the call's shape (enough batches for about 2^28 flops), filled with
 * pseudo-random values; never the caller's buffers. */
static tw_status probe_create(tw_cl_context *cl, const tw_gemm_args *args, probe *p) {
    memset(p, 0, sizeof *p);
    tw_gemm_args *q = &p->args;
    *q = *args;
    const double flops = 2.0 * args->m * (double)args->n * args->k;
    const int batch = (int)fmin((double)args->batch, fmax(1.0, 268435456.0 / flops));
    q->batch = batch;
    q->lda = args->trans_a ? args->m : args->k;
    q->ldb = args->trans_b ? args->k : args->n;
    q->ldc = args->n;
    q->stride_a = (int64_t)args->m * args->k;
    q->stride_b = (int64_t)args->k * args->n;
    q->stride_c = (int64_t)args->m * args->n;
    q->a.offset = q->b.offset = q->c.offset = 0;
    q->alpha = 1.0f;
    q->beta = args->beta == 0.0f ? 0.0f : 0.5f;
    /* Sums of k products of values in [-1, 1): rounding differences between summation orders
     * stay far below 1e-5 * (k + 16), a wrong tile or a missed k step far above. */
    p->tolerance = 1e-5 * ((double)args->k + 16.0);

    const size_t na = (size_t)q->stride_a * batch, nb = (size_t)q->stride_b * batch;
    p->c_floats = (size_t)q->stride_c * batch;
    const size_t largest = na > nb ? (na > p->c_floats ? na : p->c_floats)
                                   : (nb > p->c_floats ? nb : p->c_floats);
    float *host = malloc(largest * sizeof(float));
    p->c_init = malloc(p->c_floats * sizeof(float));
    p->reference = malloc(p->c_floats * sizeof(float));
    p->result = malloc(p->c_floats * sizeof(float));
    if (!host || !p->c_init || !p->reference || !p->result) {
        free(host);
        probe_release(p);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl gemm: out of host memory for tuning");
    }
    fill_random(host, na, 1);
    tw_status status = scratch(cl, host, na, &p->a);
    fill_random(host, nb, 2);
    if (status == TW_OK) status = scratch(cl, host, nb, &p->b);
    fill_random(p->c_init, p->c_floats, 3);
    if (status == TW_OK) status = scratch(cl, p->c_init, p->c_floats, &p->c);
    free(host);
    if (status != TW_OK) probe_release(p);
    return status;
}

/* One run of `variant` from C = c_init, result downloaded into *out. */
static tw_status checked_run(tw_cl_context *cl, probe *p, int variant, float *out,
                             CLBlastStatusCode *refused) {
    cl_int err = clEnqueueWriteBuffer(cl->queue, p->c, CL_TRUE, 0, p->c_floats * sizeof(float),
                                      p->c_init, 0, NULL, NULL);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clEnqueueWriteBuffer(gemm measurement)");
    tw_status status = run_variant(cl, variant, &p->args, p->a, p->b, p->c, refused);
    if (status != TW_OK || *refused != CLBlastSuccess) return status;
    err = clEnqueueReadBuffer(cl->queue, p->c, CL_TRUE, 0, p->c_floats * sizeof(float), out, 0,
                              NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueReadBuffer(gemm measurement)");
}

/* Largest |result - reference| (infinite for a NaN). */
static double max_difference(const probe *p) {
    double worst = 0.0;
    for (size_t i = 0; i < p->c_floats; i++) {
        const double d = fabs((double)p->result[i] - (double)p->reference[i]);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Best time of a few runs in seconds (the checked run before compiled the kernels). Stops early
 * when a run takes over three times `best_so_far`: that candidate has lost. */
static tw_status time_variant(tw_cl_context *cl, probe *p, int variant, double best_so_far,
                              double *seconds) {
    double best = 1e30, total = 0.0;
    for (int run = 0; run < 5 && (run < 2 || total < 0.05); run++) {
        const double start = tw_now_seconds();
        CLBlastStatusCode refused = CLBlastSuccess;
        tw_status status = run_variant(cl, variant, &p->args, p->a, p->b, p->c, &refused);
        if (status != TW_OK) return status;
        if (refused != CLBlastSuccess)
            return tw_error(TW_ERR_BACKEND, "CLBlast refused (status %d)", (int)refused);
        const cl_int err = clFinish(cl->queue);
        if (err != CL_SUCCESS) return tw_cl_fail(err, "clFinish");
        const double elapsed = tw_now_seconds() - start;
        best = elapsed < best ? elapsed : best;
        total += elapsed;
        if (elapsed > 3.0 * best_so_far) break;
    }
    *seconds = best;
    return TW_OK;
}

typedef struct tune_result {
    int best;      /* fastest correct variant */
    int best_own;  /* fastest correct own variant */
    double gflops; /* of best */
} tune_result;

/* Times the candidates of args' class (see the top of the file). */
static tw_status measure(tw_cl_context *cl, const tw_gemm_args *args, const char *class_key,
                         bool verbose, tune_result *out) {
    probe p;
    tw_status status = probe_create(cl, args, &p);
    if (status != TW_OK) return status;
    const double flops = 2.0 * args->m * (double)args->n * args->k * p.args.batch;
    const int reference = default_own(cl);
    CLBlastStatusCode refused = CLBlastSuccess;
    /* The reference: the default variant (what TWIST_TUNE=off runs). Its failure is the
     * call's failure. */
    status = checked_run(cl, &p, reference, p.reference, &refused);
    double best_time = 1e30, best_own_time = 1e30;
    out->best = out->best_own = reference;
    if (status == TW_OK) status = time_variant(cl, &p, reference, best_time, &best_time);
    if (status != TW_OK) {
        probe_release(&p);
        return status;
    }
    best_own_time = best_time;
    if (verbose)
        fprintf(stderr, "twist opencl gemm: %s: %s %.3f ms (%.1f GFLOP/s, reference)\n",
                class_key, variant_name(reference), best_time * 1e3, flops / best_time * 1e-9);

    for (int v = 0; v < TW_CL_GEMM_VARIANTS; v++) {
        if (v == reference || !is_candidate(cl, v, args)) continue;
        status = checked_run(cl, &p, v, p.result, &refused);
        const char *why = NULL;
        char message[160];
        if (status != TW_OK) {
            snprintf(message, sizeof message, "failed (%.120s)", tw_last_error());
            why = message;
        } else if (refused != CLBlastSuccess) {
            snprintf(message, sizeof message, "refused by CLBlast (status %d)", (int)refused);
            why = message;
        } else {
            const double difference = max_difference(&p);
            if (!(difference <= p.tolerance)) {
                snprintf(message, sizeof message,
                         "wrong results (max difference %.3g, tolerance %.3g)", difference,
                         p.tolerance);
                why = message;
            }
        }
        double seconds = 0.0;
        if (!why) {
            status = time_variant(cl, &p, v, best_time, &seconds);
            if (status != TW_OK) {
                snprintf(message, sizeof message, "failed (%.120s)", tw_last_error());
                why = message;
            }
        }
        if (why) {
            if (verbose)
                fprintf(stderr, "twist opencl gemm: %s: %s skipped: %s\n", class_key,
                        variant_name(v), why);
            /* A failed enqueue may have left work queued; let it drain before the next one. */
            clFinish(cl->queue);
            continue;
        }
        if (verbose)
            fprintf(stderr, "twist opencl gemm: %s: %s %.3f ms (%.1f GFLOP/s)\n", class_key,
                    variant_name(v), seconds * 1e3, flops / seconds * 1e-9);
        if (seconds < best_time) {
            best_time = seconds;
            out->best = v;
        }
        if (v != VENDOR && seconds < best_own_time) {
            best_own_time = seconds;
            out->best_own = v;
        }
    }
    probe_release(&p);
    out->gflops = flops / best_time * 1e-9;
    if (verbose)
        fprintf(stderr, "twist opencl gemm: %s -> %s\n", class_key, variant_name(out->best));
    return TW_OK;
}

/* Tunes the class now and stores the choice (with ".own" when CLBlast won). */
static tw_status tune_class(tw_cl_context *cl, const tw_gemm_args *args, const char *class_key,
                            tune_result *result) {
    tw_status status = measure(cl, args, class_key, tune_mode() == TW_TUNE_MODE_VERBOSE, result);
    if (status != TW_OK) return status;
    char key[128];
    snprintf(key, sizeof key, "gemm %s", class_key);
    if (cl->tune_cache) tw_tune_cache_put(cl->tune_cache, key, variant_name(result->best));
    if (result->best == VENDOR && cl->tune_cache) {
        snprintf(key, sizeof key, "gemm %s.own", class_key);
        tw_tune_cache_put(cl->tune_cache, key, variant_name(result->best_own));
    }
    return TW_OK;
}

/* The variant for this call (not k == 0 / alpha == 0). */
static tw_status choose(tw_cl_context *cl, const tw_gemm_args *args, int *variant) {
    if (cl->gemm_forced >= 0) return *variant = cl->gemm_forced, TW_OK;
    if (cl->gemm_impl == TW_GEMM_VENDOR) return *variant = VENDOR, TW_OK;
    *variant = default_own(cl);
    if (tune_mode() == TW_TUNE_MODE_OFF) return TW_OK;
    char class_key[64], key[128];
    class_name(args, class_key, sizeof class_key);
    const bool own_only = cl->gemm_impl == TW_GEMM_OWN;
    const char *cached = NULL;
    if (cl->tune_cache) {
        snprintf(key, sizeof key, "gemm %s", class_key);
        cached = tw_tune_cache_get(cl->tune_cache, key);
        if (cached && own_only && strcmp(cached, "vendor") == 0) {
            snprintf(key, sizeof key, "gemm %s.own", class_key);
            cached = tw_tune_cache_get(cl->tune_cache, key);
        }
    }
    /* A name this build does not know (or that no longer fits) is tuned again. */
    const int known = cached ? variant_find(cached) : -1;
    if (known >= 0 && (known == VENDOR ||
                       tw_cl_own_variant_fits(cl->gemm_own, (tw_cl_own_variant)known)))
        return *variant = known, TW_OK;
    tune_result result;
    tw_status status = tune_class(cl, args, class_key, &result);
    if (status != TW_OK) return status;
    *variant = own_only ? result.best_own : result.best;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_gemm(void *context, const tw_gemm_args *args) {
    tw_cl_context *cl = context;
    gemm_init(cl);
    cl_mem a = tw_cl_mem(args->a), b = tw_cl_mem(args->b), c = tw_cl_mem(args->c);
    /* With k == 0 the front end does not check A and B at all: only C is touched. */
    if (args->k == 0 || args->alpha == 0.0f) return run_own(cl, default_own(cl), args, a, b, c);
    int variant = 0;
    tw_status status = choose(cl, args, &variant);
    if (status != TW_OK) return status;
    CLBlastStatusCode refused = CLBlastSuccess;
    status = run_variant(cl, variant, args, a, b, c, &refused);
    if (status != TW_OK || refused == CLBlastSuccess) return status;
    /* Refused (an ld or stride CLBlast does not take): the own kernels do every case. */
    if (tune_mode() == TW_TUNE_MODE_VERBOSE)
        fprintf(stderr, "twist opencl gemm: CLBlast refused %dx%dx%d (status %d): own kernel\n",
                args->m, args->n, args->k, (int)refused);
    return run_own(cl, default_own(cl), args, a, b, c);
}

tw_status tw_cl_set_gemm_impl(void *context, tw_gemm_impl impl) {
    tw_cl_context *cl = context;
    cl->gemm_impl = impl;
    return TW_OK;
}

int tw_cl_gemm_variants(tw_cl_context *cl, const char **names, int capacity) {
    /* Best guess first: the device kind's usual winner, then the rest. */
    static const int cpu_order[] = {TW_CL_OWN_CPU,    VENDOR,          TW_CL_OWN_TILED,
                                    TW_CL_OWN_LARGE,  TW_CL_OWN_LARGE32, TW_CL_OWN_WIDE,
                                    TW_CL_OWN_MEDIUM, TW_CL_OWN_SMALL, TW_CL_OWN_SPLITK};
    static const int gpu_order[] = {TW_CL_OWN_LARGE,  TW_CL_OWN_LARGE32, TW_CL_OWN_WIDE,
                                    TW_CL_OWN_MEDIUM, TW_CL_OWN_SMALL,   TW_CL_OWN_SPLITK,
                                    VENDOR,           TW_CL_OWN_TILED,   TW_CL_OWN_CPU};
    const int *order = cl->is_cpu ? cpu_order : gpu_order;
    int count = 0;
    for (int i = 0; i < TW_CL_GEMM_VARIANTS; i++) {
        const int v = order[i];
        if (v != VENDOR && !tw_cl_own_variant_fits(cl->gemm_own, (tw_cl_own_variant)v)) continue;
        if (names && count < capacity) names[count] = variant_name(v);
        count++;
    }
    return count;
}

tw_status tw_cl_gemm_force_variant(tw_cl_context *cl, const char *name) {
    gemm_init(cl);
    if (!name) return cl->gemm_forced = -1, TW_OK;
    const char *names[TW_CL_GEMM_VARIANTS];
    const int count = tw_cl_gemm_variants(cl, names, TW_CL_GEMM_VARIANTS);
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0) return cl->gemm_forced = variant_find(name), TW_OK;
    char list[256] = "";
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    return tw_error(TW_ERR_NOT_FOUND, "opencl gemm has no variant \"%s\" on this device (%s)",
                    name, list);
}

/* Representative GEMMs: the 4096^3 and 1024^3 and the linear layers of the tiny
 * (C = 256, N = 16 x 128 positions) and small (C = 512, N = 32 x 256) presets with a 4096-token
 * vocabulary, forward (x W: NN; logits x wte^T: NT) and backward (dW = x^T dout: TN;
 * dx = dout W^T: NT; dx = dlogits wte: NN), as (trans_a, trans_b, m, n, k). */
typedef struct tune_shape {
    bool ta, tb;
    int m, n, k;
} tune_shape;

static int preset_shapes(tune_shape *out, int capacity) {
    int count = 0;
    out[count++] = (tune_shape){false, false, 4096, 4096, 4096};
    out[count++] = (tune_shape){false, false, 1024, 1024, 1024};
    static const int presets[2][2] = {{256, 2048}, {512, 8192}}; /* C, N */
    const int V = 4096;
    for (int p = 0; p < 2; p++) {
        const int C = presets[p][0], N = presets[p][1];
        const int outs[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}}; /* (in, out) */
        for (int l = 0; l < 4 && count + 3 <= capacity; l++) {
            const int in = outs[l][0], o = outs[l][1];
            out[count++] = (tune_shape){false, false, N, o, in}; /* forward */
            out[count++] = (tune_shape){true, false, in, o, N};  /* dW */
            out[count++] = (tune_shape){false, true, N, in, o};  /* dx */
        }
        if (count + 3 > capacity) break;
        out[count++] = (tune_shape){false, true, N, V, C}; /* logits */
        out[count++] = (tune_shape){true, false, V, C, N}; /* dwte */
        out[count++] = (tune_shape){false, false, N, C, V}; /* dx of the logits */
    }
    return count;
}

/* The distinct classes of preset_shapes, in order: their arguments and class names. */
enum { TUNE_SHAPES = 40 };
static int tune_classes(tw_gemm_args list[TUNE_SHAPES], char classes[TUNE_SHAPES][64]) {
    tune_shape shapes[TUNE_SHAPES];
    const int count = preset_shapes(shapes, TUNE_SHAPES);
    int unique = 0;
    for (int i = 0; i < count; i++) {
        const tw_gemm_args args = {.dtype = TW_DTYPE_F32, .trans_a = shapes[i].ta,
                                   .trans_b = shapes[i].tb, .m = shapes[i].m, .n = shapes[i].n,
                                   .k = shapes[i].k, .batch = 1, .alpha = 1.0f, .beta = 0.0f};
        char name[64];
        class_name(&args, name, sizeof name);
        bool seen = false;
        for (int j = 0; j < unique && !seen; j++) seen = strcmp(classes[j], name) == 0;
        if (seen) continue;
        snprintf(classes[unique], 64, "%s", name);
        list[unique++] = args;
    }
    return unique;
}

int tw_cl_gemm_tune_count(void) {
    tw_gemm_args list[TUNE_SHAPES];
    char classes[TUNE_SHAPES][64];
    return tune_classes(list, classes);
}

tw_status tw_cl_gemm_tune(tw_cl_context *cl, const tw_tune_request *request, int *done,
                          int total) {
    gemm_init(cl);
    if (request->retune && cl->tune_cache) tw_tune_cache_clear(cl->tune_cache);
    tw_gemm_args list[TUNE_SHAPES];
    char classes[TUNE_SHAPES][64];
    const int unique = tune_classes(list, classes);
    for (int i = 0; i < unique; i++) {
        tune_result result;
        tw_status status = tune_class(cl, &list[i], classes[i], &result);
        if (status != TW_OK) return status;
        (*done)++;
        if (request->progress) {
            char label[160];
            snprintf(label, sizeof label, "gemm %.63s: %s %.1f GFLOP/s", classes[i],
                     variant_name(result.best), result.gflops);
            request->progress(*done, total, label, request->user);
        }
    }
    return TW_OK;
}
