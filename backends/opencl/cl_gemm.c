/* twist OpenCL backend: GEMM through CLBlast or twist's own kernels (gemm_own.c), chosen per
 * device and shape class.
 *
 * CLBlast is tuned for the GPUs in its database and falls back to generic parameters elsewhere
 * (on PoCL CPU devices it runs a 1024^3 SGEMM at ~7 GFLOP/s where the own micro-kernels reach
 * ~200), so neither implementation wins everywhere. With TW_GEMM_AUTO the first GEMM of each
 * shape class times both on scratch operands of that shape and keeps the faster:
 *   class = transposes + ceil(log2) buckets of m, n, k + whether batch > 1
 * The choice is kept in memory and in the cache directory (gemm-<device hash>.txt, one
 * "class impl" line each, rewritten atomically), keyed by platform, device and driver, so a
 * later process starts with it. tw_device_set_gemm_impl forces one implementation.
 *
 * Measurement scratch (up to three operand-sized buffers) is created directly with
 * clCreateBuffer and released before the call returns: it is not device state and is not
 * counted in the device's bytes.
 *
 * Cases the own kernel always takes: k == 0 or alpha == 0 (C = beta C, which CLBlast may
 * reject), and any call CLBlast refuses (some ld/stride combinations). */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_internal.h"
#include "twist/clock.h"

/* ------------------------------------------------------------------------------------------------
 * The two implementations
 * ---------------------------------------------------------------------------------------------- */

static tw_status run_own(tw_cl_context *cl, const tw_gemm_args *args, cl_mem a, cl_mem b,
                         cl_mem c) {
    return tw_cl_gemm_own_enqueue(cl->gemm_own, args, a, b, c);
}

/* CLBlast's status for this call; CLBlastSuccess when enqueued. beta == 0 must not read C:
 * CLBlast computes beta * C, so C is first set to 0 by the own kernel with k = 0 (which writes
 * C without reading it, leaving the gaps between rows of a strided C alone). */
static CLBlastStatusCode run_clblast(tw_cl_context *cl, const tw_gemm_args *args, cl_mem a,
                                     cl_mem b, cl_mem c, tw_status *status) {
    *status = TW_OK;
    if (args->beta == 0.0f) {
        tw_gemm_args zero = *args;
        zero.k = 0;
        zero.alpha = 0.0f;
        *status = run_own(cl, &zero, a, b, c);
        if (*status != TW_OK) return CLBlastSuccess;
    }
    const CLBlastTranspose ta = args->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = args->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    /* The strided-batched entry rejects batch strides of 0 (CLBlastInvalidDimension), which
     * the front end allows and a single product carries: batch 1 goes through plain Sgemm. */
    if (args->batch == 1)
        return CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)args->m, (size_t)args->n,
                            (size_t)args->k, args->alpha, a, args->a.offset, (size_t)args->lda, b,
                            args->b.offset, (size_t)args->ldb, args->beta, c, args->c.offset,
                            (size_t)args->ldc, &cl->queue, NULL);
    return CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, ta, tb, (size_t)args->m, (size_t)args->n, (size_t)args->k,
        args->alpha, a, args->a.offset, (size_t)args->lda, (size_t)args->stride_a, b,
        args->b.offset, (size_t)args->ldb, (size_t)args->stride_b, args->beta, c,
        args->c.offset, (size_t)args->ldc, (size_t)args->stride_c, (size_t)args->batch,
        &cl->queue, NULL);
}

/* ------------------------------------------------------------------------------------------------
 * Shape classes and the persisted choices
 * ---------------------------------------------------------------------------------------------- */

static int log2_bucket(int value) {
    int bucket = 0;
    while ((1LL << bucket) < value) bucket++;
    return bucket;
}

static void class_key(const tw_gemm_args *args, char *key, size_t size) {
    snprintf(key, size, "%c%c-m%d-n%d-k%d-%s", args->trans_a ? 'T' : 'N',
             args->trans_b ? 'T' : 'N', log2_bucket(args->m), log2_bucket(args->n),
             log2_bucket(args->k), args->batch > 1 ? "batched" : "single");
}

static void choices_file(const tw_cl_context *cl, char *name, size_t size) {
    uint64_t hash = tw_fnv1a64(TW_FNV1A_INIT, cl->identity, strlen(cl->identity));
    snprintf(name, size, "gemm-%016llx.txt", (unsigned long long)hash);
}

static void remember(tw_cl_context *cl, const char *key, tw_gemm_impl impl) {
    if (cl->gemm_choice_count == TW_CL_MAX_GEMM_CLASSES) return;
    tw_cl_gemm_choice *choice = &cl->gemm_choices[cl->gemm_choice_count++];
    snprintf(choice->key, sizeof choice->key, "%s", key);
    choice->impl = impl;
}

/* Lines "<class> vendor|own"; anything else in the file is ignored. */
static void load_choices(tw_cl_context *cl) {
    cl->gemm_choices_loaded = true;
    char name[64];
    choices_file(cl, name, sizeof name);
    const size_t capacity = TW_CL_MAX_GEMM_CLASSES * 64;
    char *text = malloc(capacity + 1);
    size_t length = 0;
    if (!text) return;
    if (!tw_cl_cache_read(cl, name, text, capacity, &length)) {
        free(text);
        return;
    }
    text[length] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[48], impl[16];
        if (sscanf(line, "%47s %15s", key, impl) != 2) continue;
        if (strcmp(impl, "vendor") == 0) remember(cl, key, TW_GEMM_VENDOR);
        else if (strcmp(impl, "own") == 0) remember(cl, key, TW_GEMM_OWN);
    }
    free(text);
}

static void save_choices(const tw_cl_context *cl) {
    char name[64];
    choices_file(cl, name, sizeof name);
    char text[TW_CL_MAX_GEMM_CLASSES * 64];
    size_t length = 0;
    for (int i = 0; i < cl->gemm_choice_count; i++) {
        const tw_cl_gemm_choice *choice = &cl->gemm_choices[i];
        length += (size_t)snprintf(text + length, sizeof text - length, "%s %s\n", choice->key,
                                   choice->impl == TW_GEMM_VENDOR ? "vendor" : "own");
    }
    tw_cl_cache_write(cl, name, text, length);
}

/* ------------------------------------------------------------------------------------------------
 * Measurement
 * ---------------------------------------------------------------------------------------------- */

/* Best of a few runs (after one warm-up that also compiles), in seconds; a negative result when
 * CLBlast refuses the shape. */
static tw_status time_impl(tw_cl_context *cl, tw_gemm_impl impl, const tw_gemm_args *args,
                           cl_mem a, cl_mem b, cl_mem c, double *seconds) {
    *seconds = -1.0;
    double best = 1e30, total = 0.0;
    for (int run = 0; run < 6 && (run < 2 || total < 0.05); run++) {
        double start = tw_now_seconds();
        tw_status status = TW_OK;
        if (impl == TW_GEMM_VENDOR) {
            if (run_clblast(cl, args, a, b, c, &status) != CLBlastSuccess) return TW_OK;
        } else {
            status = run_own(cl, args, a, b, c);
        }
        if (status != TW_OK) return status;
        cl_int err = clFinish(cl->queue);
        if (err != CL_SUCCESS) return tw_cl_fail(err, "clFinish");
        double elapsed = tw_now_seconds() - start;
        if (run > 0) { /* run 0 compiles */
            best = elapsed < best ? elapsed : best;
            total += elapsed;
        }
    }
    *seconds = best;
    return TW_OK;
}

static tw_status scratch(tw_cl_context *cl, size_t floats, cl_mem *out) {
    cl_int err = CL_SUCCESS;
    *out = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, floats * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clCreateBuffer(gemm measurement)");
    float zero = 0.0f;
    err = clEnqueueFillBuffer(cl->queue, *out, &zero, sizeof zero, 0, floats * sizeof(float), 0,
                              NULL, NULL);
    return err == CL_SUCCESS ? TW_OK : tw_cl_fail(err, "clEnqueueFillBuffer(gemm measurement)");
}

/* Times both implementations on compact operands of the call's shape (enough batches for about
 * 2^28 flops), never touching the caller's buffers. */
static tw_status measure(tw_cl_context *cl, const tw_gemm_args *args, const char *key,
                         tw_gemm_impl *winner) {
    tw_gemm_args probe = *args;
    double flops = 2.0 * args->m * (double)args->n * args->k;
    int batch = (int)fmin((double)args->batch, fmax(1.0, 268435456.0 / flops));
    probe.batch = batch;
    probe.lda = args->trans_a ? args->m : args->k;
    probe.ldb = args->trans_b ? args->k : args->n;
    probe.ldc = args->n;
    probe.stride_a = (int64_t)args->m * args->k;
    probe.stride_b = (int64_t)args->k * args->n;
    probe.stride_c = (int64_t)args->m * args->n;
    probe.a.offset = probe.b.offset = probe.c.offset = 0;
    probe.alpha = 1.0f;
    probe.beta = args->beta == 0.0f ? 0.0f : 1.0f;

    cl_mem a = NULL, b = NULL, c = NULL;
    tw_status status = scratch(cl, (size_t)probe.stride_a * batch, &a);
    if (status == TW_OK) status = scratch(cl, (size_t)probe.stride_b * batch, &b);
    if (status == TW_OK) status = scratch(cl, (size_t)probe.stride_c * batch, &c);
    double own = -1.0, vendor = -1.0;
    if (status == TW_OK) status = time_impl(cl, TW_GEMM_OWN, &probe, a, b, c, &own);
    if (status == TW_OK) status = time_impl(cl, TW_GEMM_VENDOR, &probe, a, b, c, &vendor);
    if (a) clReleaseMemObject(a);
    if (b) clReleaseMemObject(b);
    if (c) clReleaseMemObject(c);
    if (status != TW_OK) return status;
    *winner = (vendor > 0.0 && vendor < own) ? TW_GEMM_VENDOR : TW_GEMM_OWN;
    if (getenv("TWIST_GEMM_VERBOSE"))
        fprintf(stderr, "twist opencl gemm: class %s: own %.3f ms, clblast %.3f ms -> %s\n",
                key, own * 1e3, vendor * 1e3,
                *winner == TW_GEMM_VENDOR ? "clblast" : "own");
    return TW_OK;
}

static tw_status choose(tw_cl_context *cl, const tw_gemm_args *args, tw_gemm_impl *impl) {
    if (!cl->gemm_choices_loaded) load_choices(cl);
    char key[48];
    class_key(args, key, sizeof key);
    for (int i = 0; i < cl->gemm_choice_count; i++) {
        if (strcmp(cl->gemm_choices[i].key, key) == 0) {
            *impl = cl->gemm_choices[i].impl;
            return TW_OK;
        }
    }
    tw_status status = measure(cl, args, key, impl);
    if (status != TW_OK) return status;
    remember(cl, key, *impl);
    save_choices(cl);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_cl_gemm(void *context, const tw_gemm_args *args) {
    tw_cl_context *cl = context;
    cl_mem a = tw_cl_mem(args->a), b = tw_cl_mem(args->b), c = tw_cl_mem(args->c);
    /* With k == 0 the front end does not check A and B at all: only C is touched. */
    if (args->k == 0 || args->alpha == 0.0f) return run_own(cl, args, a, b, c);
    tw_gemm_impl impl = cl->gemm_impl;
    if (impl == TW_GEMM_AUTO) {
        tw_status status = choose(cl, args, &impl);
        if (status != TW_OK) return status;
    }
    if (impl == TW_GEMM_VENDOR) {
        tw_status status = TW_OK;
        CLBlastStatusCode code = run_clblast(cl, args, a, b, c, &status);
        if (status != TW_OK) return status;
        if (code == CLBlastSuccess) return TW_OK;
        if (getenv("TWIST_GEMM_VERBOSE"))
            fprintf(stderr, "twist opencl gemm: CLBlast refused %dx%dx%d (status %d): own kernel\n",
                    args->m, args->n, args->k, (int)code);
        /* Refused (an ld or stride CLBlast does not take): the own kernel does every case. */
    }
    return run_own(cl, args, a, b, c);
}

tw_status tw_cl_set_gemm_impl(void *context, tw_gemm_impl impl) {
    tw_cl_context *cl = context;
    cl->gemm_impl = impl;
    return TW_OK;
}
