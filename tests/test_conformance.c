/* twist op conformance suite: every op of twist/backend.h on one device, against a reference.
 *
 *   test_conformance --device SPEC [--dtype f32|bf16|f16|all]
 *                                         (SPEC: cpu, opencl:0, vulkan:0, cuda:0, ...)
 *
 * Data types (--dtype, default f32): in bf16 and f16 every op runs with its data tensors in the
 * type and its always-fp32 tensors (lse, LayerNorm mean/rstd, cross-entropy losses/lse/correct,
 * sum_sq's out, AdamW's param/m/v; GEMM's C in about half the cases) in fp32. Inputs are rounded
 * to the type on the host first, so the reference (the fp32 cpu backend, on the device under
 * test's rounded inputs) sees the same values; tolerances are per dtype (tensor_tol below). An
 * op the device does not run in the type is reported ("vulkan:0 gemm f16: unsupported") and
 * does not fail.
 *
 * Written once and parameterised by the device, so every backend runs it unchanged. A device this
 * machine lacks (backend not built, or no device behind it) prints "SKIP: <reason>" and exits 77;
 * a spec that names no backend at all ("foo") is a failure.
 *
 * References
 *   - device under test != cpu: the CPU backend (device "cpu") on the same inputs, for every op.
 *   - device under test == cpu: forward ops against tests/reference.c (naive double precision);
 *     backward ops against their own accumulate semantics (result with a pre-filled gradient ==
 *     pre-fill + result into zeros) and against finite differences in test_gradcheck.
 *
 * Every tensor lives in a buffer with NaN padding around it (non-zero offsets, padded leading
 * dimensions and strides, guard elements after the end). The whole buffer is compared, so an op
 * that writes outside its tensor, or reads padding into a result, fails. Inputs must come back
 * bit for bit unchanged. Backward ops ADD into gradients: gradient buffers are pre-filled with
 * random values.
 *
 * Error measure, per output tensor (norm-based, relative to the tensor's largest value):
 *   outputs:    err = max_i |got_i - want_i| / max_i |want_i|
 *   gradients:  err = max_i |got_i - want_i| / max(max_i |want_i - pre_i|, max_i |pre_i|)
 * where pre is the random pre-fill, drawn at the scale of what the op adds, so that the scale is
 * that of the gradient and not inflated by the pre-fill, while the pre-fill's own rounding in the
 * accumulate (half an ulp) stays far below tol. gelu_fwd divides by max(1, max|want|): tanh-form
 * GELU in fp32 has an absolute error ~eps |x| in its negative tail (1 + tanh(u) cancels), which
 * is no fault of a backend and would dominate a case whose outputs are all tiny. A case passes
 * when err <= tol.
 *
 *   op                           tol (fp32)              why
 *   gemm                         1e-5 * sqrt(max(k, 1))  k-term dot products: rounding grows ~sqrt(k)
 *   attention_fwd (out, lse)     1e-4                    online softmax, exp, T-term sums
 *   attention_bwd (dq, dk, dv)   2e-4                    recomputed P, (dP - delta) cancellation
 *   softmax_fwd                  1e-4                    exp + a row sum (50257 columns)
 *   softmax_bwd                  1e-4                    row reduction with cancellation
 *   layernorm_fwd (out,mean,rstd) 1e-4                   row mean / variance
 *   layernorm_bwd (dx, dw, db)   1e-4                    row and column reductions
 *   gelu_fwd, gelu_bwd           1e-5                    elementwise tanh (fwd: see above)
 *   embedding_fwd                1e-6                    one rounded add
 *   embedding_bwd (dwte, dwpe)   1e-5                    sums over repeated tokens
 *   softmax_xent_fwd (loss, lse) 1e-4; correct: exact   exp-sum over the vocabulary; argmax
 *   softmax_xent_bwd             1e-4                    softmax - onehot
 *   bias_add                     1e-6                    one rounded add
 *   bias_bwd                     1e-4                    column sums over rows
 *   add, scale                   1e-6                    one rounded operation
 *   sum_sq                       1e-5                    fixed-tree fp32 (CPU: double) reduction
 *   adamw_step (param, m, v)     1e-5                    a short chain with sqrt and divide
 *   gather_rows/cols, scatter    exact (accumulate: 1e-6)  copies (one rounded add)
 *
 * Every case runs twice on the device: the repeat must not leave device memory allocated, and
 * for every op except gemm (whose implementation a backend may pick by timing on first use) the
 * two runs must give identical bits (reductions are deterministic: sum_sq, embedding_bwd,
 * bias_bwd, layernorm_bwd, attention_bwd, ...).
 * attention_fwd must not allocate more than 64 KiB + 16 B*H*T bytes of device scratch (a (T, T)
 * score matrix at T = 512 would be megabytes); attention_bwd not more than that plus 12 B*H*T*D.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "reference.h"
#include "twist/clock.h"
#include "twist/dtype.h"

enum { MAX_TENSORS = 8, GUARD = 3 };

/* ------------------------------------------------------------------------------------------ */
/* Test cases: host tensors, how to run them on a device, how to compare                      */
/* ------------------------------------------------------------------------------------------ */

typedef enum role {
    ROLE_IN,  /* read by the op: must come back bit for bit */
    ROLE_OUT, /* written (or updated in place) by the op */
    ROLE_GRAD /* added into by the op: pre-filled with random values */
} role;

typedef struct tensor {
    const char *name;
    size_t count; /* elements in the buffer, padding included */
    bool is_int;
    role role;
    bool fixed;   /* always fp32 whatever the op's data type (statistics, lse, optimizer state) */
    double tol;   /* OUT and GRAD: tolerance of err (0: exact) */
    double floor; /* lower bound of err's denominator (see gelu) */
    float *f;   /* initial contents (float tensors), NaN where nothing is written */
    int32_t *i; /* initial contents (int tensors) */
} tensor;

typedef struct op_case {
    char shape[200]; /* full description, for failure messages */
    char dims[48];   /* short form, for the per-family list */
    int count;
    tensor t[MAX_TENSORS];
    bool deterministic;
    size_t extra_bytes_limit; /* 0: device scratch not checked */
} op_case;

/* Runs the op on `device` with buf[j] holding tensor j. */
typedef tw_status (*run_fn)(tw_device *device, const void *params, tw_buffer *const *buf);
/* Computes the op in double: d[j] holds float tensor j widened (NULL for int tensors), i[j] the
 * int tensors. Writes the outputs in place. */
typedef void (*ref_fn)(const void *params, double *const *d, int32_t *const *i);

typedef struct family {
    char name[40];
    int cases, failures;
    double worst_ratio, worst_err, worst_tol;
    char worst_shape[200];
    char shapes[420];
    double start;
    size_t max_extra_bytes, extra_limit; /* device scratch seen, and the allowance (0: none) */
} family;

static struct {
    tw_device *dut; /* device under test */
    tw_device *cpu; /* reference device; NULL when the device under test is the cpu */
    tw_test_rng rng;
    family fam;
    int total_cases;
    tw_dtype dtype;                    /* the data type the device under test runs the ops in */
    tw_dtype mem_dtype[MAX_TENSORS];   /* per tensor, for the run in progress (AT below) */
} S;

/* Tensor j of the run in progress at element `off`, tagged with its type on this run. */
#define AT(buf, j, off) tw_at_typed((buf)[j], (off), S.mem_dtype[j])

static float uniform(float lo, float hi) { return tw_test_rng_uniform(&S.rng, lo, hi); }
static int rand_int(int n) { return tw_test_rng_int(&S.rng, n); }

static void fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = uniform(lo, hi);
}

static op_case *case_new(bool deterministic) {
    op_case *c = calloc(1, sizeof *c);
    c->deterministic = deterministic;
    return c;
}

/* A float tensor of `count` elements (plus guard elements), all NaN until the caller fills it. */
static float *case_f32(op_case *c, const char *name, size_t count, role r, double tol) {
    tensor *t = &c->t[c->count++];
    t->name = name;
    t->count = count + GUARD;
    t->role = r;
    t->tol = tol;
    t->f = malloc(t->count * sizeof *t->f);
    for (size_t i = 0; i < t->count; i++) t->f[i] = NAN;
    return t->f;
}

/* A float tensor that stays fp32 in every data type of the op (twist/backend.h, "Data types"). */
static float *case_f32_fixed(op_case *c, const char *name, size_t count, role r, double tol) {
    float *x = case_f32(c, name, count, r, tol);
    c->t[c->count - 1].fixed = true;
    return x;
}

static int32_t *case_i32(op_case *c, const char *name, size_t count) {
    tensor *t = &c->t[c->count++];
    t->name = name;
    t->count = count + GUARD;
    t->is_int = true;
    t->role = ROLE_IN;
    t->i = calloc(t->count, sizeof *t->i);
    return t->i;
}

static void case_free(op_case *c) {
    for (int j = 0; j < c->count; j++) {
        free(c->t[j].f);
        free(c->t[j].i);
    }
    free(c);
}

typedef struct results {
    void *data[MAX_TENSORS]; /* count 4-byte elements per tensor */
    size_t extra_bytes;      /* device bytes allocated by the op beyond its tensors (peak) */
    size_t held_before, held_after; /* device bytes in use before and after the whole run */
} results;

static void results_free(results *r) {
    for (int j = 0; j < MAX_TENSORS; j++) free(r->data[j]);
}

/* What gets uploaded for tensor j: its initial contents, or zeros in place of a gradient's
 * pre-fill (NaN padding kept) when measuring what the op alone contributes. */
static const void *upload_source(const tensor *t, bool zero_grads, float **scratch) {
    if (t->is_int) return t->i;
    if (!zero_grads || t->role != ROLE_GRAD) return t->f;
    *scratch = malloc(t->count * sizeof **scratch);
    for (size_t i = 0; i < t->count; i++) (*scratch)[i] = isnan(t->f[i]) ? t->f[i] : 0.0f;
    return *scratch;
}

/* The type tensor j has when the op runs in `dtype`: its own for int and fixed-fp32 tensors. */
static tw_dtype tensor_dtype(const tensor *t, tw_dtype dtype) {
    return t->is_int ? TW_DTYPE_I32 : t->fixed ? TW_DTYPE_F32 : dtype;
}

static uint16_t narrow16(tw_dtype dtype, float value) {
    return dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(value) : tw_f32_to_f16(value);
}

static float widen16(tw_dtype dtype, uint16_t value) {
    return dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
}

static bool upload_case(tw_device *device, const op_case *c, bool zero_grads, tw_buffer **buf) {
    for (int j = 0; j < c->count; j++) {
        const tensor *t = &c->t[j];
        float *scratch = NULL;
        const tw_dtype dtype = S.mem_dtype[j];
        const size_t bytes = t->count * tw_dtype_size(dtype);
        const void *source = upload_source(t, zero_grads, &scratch);
        uint16_t *narrow = NULL;
        if (tw_dtype_size(dtype) == 2) { /* 16-bit: the values rounded (check_case did that) */
            narrow = malloc(t->count * sizeof *narrow);
            for (size_t i = 0; i < t->count; i++) narrow[i] = narrow16(dtype, ((const float *)source)[i]);
            source = narrow;
        }
        tw_status status = tw_buffer_alloc(device, bytes, &buf[j]);
        if (status == TW_OK) status = tw_buffer_upload(buf[j], 0, source, bytes);
        free(scratch);
        free(narrow);
        if (status != TW_OK) {
            tw_test_fail(__FILE__, __LINE__, "%s %s: allocating/uploading %s on %s: %s",
                         S.fam.name, c->shape, t->name, tw_device_get_info(device)->spec,
                         tw_last_error());
            return false;
        }
    }
    return true;
}

/* Uploads the case's tensors to `device`, runs the op in data type `dtype`, downloads every
 * tensor into r (16-bit tensors widened to fp32). */
static bool run_on(tw_device *device, const op_case *c, run_fn run, const void *params,
                   bool zero_grads, tw_dtype dtype, results *r) {
    tw_buffer *buf[MAX_TENSORS] = {0};
    for (int j = 0; j < c->count; j++) S.mem_dtype[j] = tensor_dtype(&c->t[j], dtype);
    memset(r, 0, sizeof *r);
    r->held_before = tw_device_bytes_in_use(device);
    bool ok = upload_case(device, c, zero_grads, buf);
    if (ok) {
        tw_status status = tw_device_sync(device);
        tw_device_reset_peak(device);
        size_t base = tw_device_bytes_in_use(device);
        if (status == TW_OK) status = run(device, params, buf);
        if (status == TW_OK) status = tw_device_sync(device);
        r->extra_bytes = tw_device_peak_bytes(device) - base;
        if (status != TW_OK) {
            tw_test_fail(__FILE__, __LINE__, "%s %s on %s: %s: %s", S.fam.name, c->shape,
                         tw_device_get_info(device)->spec, tw_status_name(status), tw_last_error());
            ok = false;
        }
    }
    for (int j = 0; ok && j < c->count; j++) {
        r->data[j] = malloc(c->t[j].count * 4);
        const tw_dtype type = tensor_dtype(&c->t[j], dtype);
        if (tw_buffer_download(buf[j], 0, r->data[j], c->t[j].count * tw_dtype_size(type)) != TW_OK) {
            tw_test_fail(__FILE__, __LINE__, "%s %s: download of %s: %s", S.fam.name, c->shape,
                         c->t[j].name, tw_last_error());
            ok = false;
        } else if (tw_dtype_size(type) == 2) { /* widen in place, from the back */
            const uint16_t *narrow = r->data[j];
            float *wide = r->data[j];
            for (size_t i = c->t[j].count; i-- > 0;) wide[i] = widen16(type, narrow[i]);
        }
    }
    for (int j = 0; j < c->count; j++) tw_buffer_free(buf[j]);
    r->held_after = tw_device_bytes_in_use(device);
    if (!ok) results_free(r);
    return ok;
}

/* err of one tensor (see the top of the file); NaN where the other has a number is infinite. */
static double tensor_error(const tensor *t, const float *got, const double *want, size_t *at) {
    double scale = 0.0, err = 0.0;
    *at = 0;
    for (size_t i = 0; i < t->count; i++) {
        double g = got[i], w = want[i];
        if (isnan(g) || isnan(w)) {
            if (isnan(g) && isnan(w)) continue;
            *at = i;
            return INFINITY;
        }
        double base = t->role == ROLE_GRAD ? (double)t->f[i] : 0.0;
        scale = fmax(scale, fmax(fabs(w - base), fabs(base)));
        if (fabs(g - w) > err) {
            err = fabs(g - w);
            *at = i;
        }
    }
    return err == 0.0 ? 0.0 : err / fmax(scale, fmax(t->floor, 1e-30));
}

/* The expected contents of every tensor, in double (int tensors: NULL). */
static bool expected_values(const op_case *c, run_fn run, ref_fn ref, const void *params,
                            double **want) {
    results r;
    if (S.dtype != TW_DTYPE_F32) {
        /* A 16-bit run: the fp32 CPU backend on the same (rounded) inputs is the reference. */
        if (!run_on(S.cpu ? S.cpu : S.dut, c, run, params, false, TW_DTYPE_F32, &r)) return false;
        for (int j = 0; j < c->count; j++) {
            if (c->t[j].is_int) continue;
            const float *v = r.data[j];
            for (size_t i = 0; i < c->t[j].count; i++) want[j][i] = v[i];
        }
        results_free(&r);
        return true;
    }
    bool from_device = S.cpu != NULL || ref == NULL;
    if (from_device) {
        /* The CPU backend's result; or, for a backward op on the cpu itself, what the op adds
         * into zeros, to which the pre-fill is added here. */
        bool self = S.cpu == NULL;
        if (!run_on(self ? S.dut : S.cpu, c, run, params, self, TW_DTYPE_F32, &r)) return false;
        for (int j = 0; j < c->count; j++) {
            const tensor *t = &c->t[j];
            if (t->is_int) continue;
            const float *v = r.data[j];
            for (size_t i = 0; i < t->count; i++)
                want[j][i] = (double)v[i] + (self && t->role == ROLE_GRAD ? (double)t->f[i] : 0.0);
        }
        results_free(&r);
        return true;
    }
    int32_t *ints[MAX_TENSORS] = {0};
    for (int j = 0; j < c->count; j++) {
        const tensor *t = &c->t[j];
        if (t->is_int) ints[j] = t->i;
        else
            for (size_t i = 0; i < t->count; i++) want[j][i] = t->f[i];
    }
    ref(params, want, ints);
    return true;
}

static void note_shape(const op_case *c) {
    family *f = &S.fam;
    char item[52];
    snprintf(item, sizeof item, "%s ", c->dims);
    if (strstr(f->shapes, item)) return;
    if (strlen(f->shapes) + strlen(item) + 4 < sizeof f->shapes) strcat(f->shapes, item);
    else if (!strstr(f->shapes, "..."))
        strcat(f->shapes, "...");
}

/* Per-dtype tolerances: in bf16 and f16 every output tolerance that is not exact becomes
 * unit(dtype) * factor(op), whatever its fp32 value: unit 1e-2 for bf16 (8 significant bits:
 * one rounding is off by up to 2^-8 = 3.9e-3 of the value), 1e-3 for f16 (11 bits: 2^-11 =
 * 4.9e-4); factor 1 for elementwise ops
 * and copies with one rounding, 2 for GEMM, the row/column reductions and gradients added into
 * (the sum can be twice the scale err is measured against, and so its rounding), 4 for
 * attention_bwd (P and dS may be rounded to the type before their products on GPUs). Exact checks stay
 * exact (gathers, scatters without accumulate, cross-entropy's correct). The table in the
 * README ("Data types") is this one. */
static const struct {
    const char *op;
    double factor;
} dtype_factors[] = {
    {"gemm", 2},          {"attention_fwd", 2},    {"attention_bwd", 4},    {"softmax_fwd", 1},
    {"softmax_bwd", 2},   {"layernorm_fwd", 2},    {"layernorm_bwd", 2},    {"gelu_fwd", 1},
    {"gelu_bwd", 2},      {"embedding_fwd", 1},    {"embedding_bwd", 2},    {"softmax_xent_fwd", 2},
    {"softmax_xent_bwd", 2}, {"bias_add", 1},      {"bias_bwd", 2},         {"add", 1},
    {"scale", 1},         {"sum_sq", 2},           {"adamw_step", 1},       {"gather_rows", 1},
    {"scatter_rows", 1},  {"gather_cols", 1},      {"scatter_cols", 1}};

/* The op a family tests: its name up to a "[variant]" suffix. */
static void family_op(const char *family_name, char *op, size_t size) {
    snprintf(op, size, "%.*s", (int)strcspn(family_name, "["), family_name);
}

static double tensor_tol(const tensor *t) {
    if (S.dtype == TW_DTYPE_F32 || t->tol == 0.0) return t->tol;
    const double unit = S.dtype == TW_DTYPE_BF16 ? 1e-2 : 1e-3;
    char op[40];
    family_op(S.fam.name, op, sizeof op);
    for (size_t i = 0; i < sizeof dtype_factors / sizeof *dtype_factors; i++)
        if (strcmp(dtype_factors[i].op, op) == 0) return unit * dtype_factors[i].factor;
    return unit;
}

static bool compare_tensor(const op_case *c, const tensor *t, const void *got, const double *want) {
    if (t->role == ROLE_IN) {
        const void *initial = t->is_int ? (const void *)t->i : (const void *)t->f;
        if (memcmp(got, initial, t->count * 4) == 0) return true;
        tw_test_fail(__FILE__, __LINE__, "%s %s: input %s was modified", S.fam.name, c->shape,
                     t->name);
        return false;
    }
    size_t at;
    double err = tensor_error(t, got, want, &at);
    const double tol = tensor_tol(t);
    double ratio = tol > 0 ? err / tol : (err == 0.0 ? 0.0 : INFINITY);
    family *f = &S.fam;
    if (ratio >= f->worst_ratio) {
        f->worst_ratio = ratio;
        f->worst_err = err;
        f->worst_tol = tol;
        snprintf(f->worst_shape, sizeof f->worst_shape, "%s [%s]", c->dims, t->name);
    }
    if (ratio <= 1.0) return true;
    tw_test_fail(__FILE__, __LINE__,
                 "%s %s: %s err %.3g > tol %.3g (element %zu: got %.9g, want %.9g, initial %.9g)",
                 f->name, c->shape, t->name, err, tol, at, (double)((const float *)got)[at],
                 want[at], (double)t->f[at]);
    return false;
}

/* Runs one case on the device under test and checks it; frees the case. */
static void check_case(op_case *c, run_fn run, ref_fn ref, const void *params) {
    family *f = &S.fam;
    f->cases++;
    S.total_cases++;
    note_shape(c);
    int failures_before = tw_test_failures();
    results got;
    double *want[MAX_TENSORS] = {0};
    if (S.dtype != TW_DTYPE_F32) {
        /* Inputs rounded to the type first, so the fp32 reference sees the device's values;
         * a backend may widen its 16-bit tensors to fp32 scratch (4 bytes per element). */
        for (int j = 0; j < c->count; j++) {
            tensor *t = &c->t[j];
            if (t->is_int || t->fixed) continue;
            for (size_t i = 0; i < t->count; i++) t->f[i] = widen16(S.dtype, narrow16(S.dtype, t->f[i]));
            if (c->extra_bytes_limit) c->extra_bytes_limit += 4 * t->count;
        }
    }
    if (run_on(S.dut, c, run, params, false, S.dtype, &got)) {
        for (int j = 0; j < c->count; j++)
            if (!c->t[j].is_int) want[j] = malloc(c->t[j].count * sizeof(double));
        if (expected_values(c, run, ref, params, want))
            for (int j = 0; j < c->count; j++) compare_tensor(c, &c->t[j], got.data[j], want[j]);
        if (c->extra_bytes_limit && got.extra_bytes >= f->max_extra_bytes) {
            f->max_extra_bytes = got.extra_bytes;
            f->extra_limit = c->extra_bytes_limit;
        }
        if (c->extra_bytes_limit && got.extra_bytes > c->extra_bytes_limit)
            tw_test_fail(__FILE__, __LINE__,
                         "%s %s: the op allocated %zu bytes of device scratch, allowed %zu",
                         f->name, c->shape, got.extra_bytes, c->extra_bytes_limit);
        /* A second run: the same bits where the op is deterministic, and no device memory
         * kept (a backend may grow its scratch on a first call, never on a repeat). */
        results again;
        if (run_on(S.dut, c, run, params, false, S.dtype, &again)) {
            for (int j = 0; c->deterministic && j < c->count; j++)
                if (memcmp(got.data[j], again.data[j], c->t[j].count * 4) != 0)
                    tw_test_fail(__FILE__, __LINE__, "%s %s: %s differs between two runs",
                                 f->name, c->shape, c->t[j].name);
            if (again.held_after != again.held_before)
                tw_test_fail(__FILE__, __LINE__,
                             "%s %s: device bytes in use went from %zu to %zu over a repeat run",
                             f->name, c->shape, again.held_before, again.held_after);
            results_free(&again);
        }
        results_free(&got);
    }
    for (int j = 0; j < MAX_TENSORS; j++) free(want[j]);
    if (tw_test_failures() > failures_before) f->failures++;
    case_free(c);
}

static void family_begin(const char *name) {
    memset(&S.fam, 0, sizeof S.fam);
    snprintf(S.fam.name, sizeof S.fam.name, "%s", name);
    S.fam.start = tw_now_seconds();
}

static void family_end(void) {
    const family *f = &S.fam;
    printf("%-18s %3d cases %6.2fs  %s  worst err %.2e / tol %.1e at %s\n    shapes: %s\n",
           f->name, f->cases, tw_now_seconds() - f->start, f->failures ? "FAIL" : "ok  ",
           f->worst_err, f->worst_tol, f->worst_shape, f->shapes);
    if (f->extra_limit)
        printf("    device scratch: at most %zu bytes (allowance at that shape: %zu)\n",
               f->max_extra_bytes, f->extra_limit);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct gemm_params {
    tw_gemm_args args; /* buffers filled in at run time; offsets set */
} gemm_params;

static tw_status gemm_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    tw_gemm_args args = ((const gemm_params *)params)->args;
    args.dtype = S.mem_dtype[0];
    args.a.buffer = buf[0];
    args.b.buffer = buf[1];
    args.c.buffer = buf[2];
    args.a.dtype = S.mem_dtype[0];
    args.b.dtype = S.mem_dtype[1];
    args.c.dtype = S.mem_dtype[2];
    return tw_gemm(device, &args);
}

static void gemm_ref(const void *params, double *const *d, int32_t *const *i) {
    const tw_gemm_args *g = &((const gemm_params *)params)->args;
    ref_gemm(g->trans_a, g->trans_b, g->m, g->n, g->k, g->batch, g->alpha, d[0] + g->a.offset,
             g->lda, g->stride_a, d[1] + g->b.offset, g->ldb, g->stride_b, g->beta,
             d[2] + g->c.offset, g->ldc, g->stride_c);
}

/* Elements spanned by `batch` (rows, cols) matrices with row stride ld, `stride` apart. */
static size_t strided_extent(size_t offset, int batch, int rows, int cols, int64_t ld,
                             int64_t stride) {
    if (rows == 0 || cols == 0) return offset + 1;
    return offset + (size_t)(batch - 1) * (size_t)stride + (size_t)(rows - 1) * (size_t)ld +
           (size_t)cols;
}

static void fill_strided(float *x, size_t offset, int batch, int rows, int cols, int64_t ld,
                         int64_t stride) {
    for (int p = 0; p < batch; p++)
        for (int r = 0; r < rows; r++)
            fill(x + offset + (size_t)p * (size_t)stride + (size_t)r * (size_t)ld, (size_t)cols,
                 -1.0f, 1.0f);
}

/* One strided operand: row stride padded by `pad`, batches `gap` apart beyond that (or 0 apart
 * when broadcast: every batch reads the same matrix). */
static float *gemm_operand(op_case *c, const char *name, int batch, int rows, int cols, int pad,
                           size_t offset, bool broadcast, int64_t *ld, int64_t *stride, role r,
                           double tol, bool filled) {
    *ld = cols + pad > 0 ? cols + pad : 1;
    *stride = broadcast ? 0 : (int64_t)rows * *ld + pad;
    float *x = case_f32(c, name, strided_extent(offset, batch, rows, cols, *ld, *stride), r, tol);
    if (filled) fill_strided(x, offset, batch, rows, cols, *ld, *stride);
    return x;
}

static void gemm_case(int m, int n, int k, int batch, bool ta, bool tb) {
    static const float alphas[] = {1.0f, 0.5f, -1.25f, 2.0f};
    static const float betas[] = {0.0f, 1.0f, -0.5f};
    static const int pads[] = {0, 0, 1, 3, 16};
    static const size_t offsets[] = {0, 1, 7, 33};
    gemm_params p = {{.dtype = TW_DTYPE_F32, .trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                      .batch = batch}};
    tw_gemm_args *g = &p.args;
    g->alpha = alphas[rand_int(4)];
    g->beta = k == 0 ? (ta ? 0.0f : -0.5f) : betas[rand_int(3)];
    int pad = pads[rand_int(5)];
    g->a.offset = offsets[rand_int(4)];
    g->b.offset = offsets[rand_int(4)];
    g->c.offset = offsets[rand_int(4)];
    bool broadcast_b = batch > 1 && rand_int(3) == 0;
    op_case *c = case_new(false);
    double tol = 1e-5 * sqrt(k > 1 ? (double)k : 1.0);
    gemm_operand(c, "A", batch, ta ? k : m, ta ? m : k, pad, g->a.offset, false, &g->lda,
                 &g->stride_a, ROLE_IN, 0, true);
    gemm_operand(c, "B", batch, tb ? n : k, tb ? k : n, pad + 1, g->b.offset, broadcast_b,
                 &g->ldb, &g->stride_b, ROLE_IN, 0, true);
    /* beta == 0: C stays NaN, which must not reach the result. */
    gemm_operand(c, "C", batch, m, n, pad, g->c.offset, false, &g->ldc, &g->stride_c, ROLE_OUT,
                 tol, g->beta != 0.0f);
    /* 16-bit inputs: C is fp32 (low-precision inputs, fp32 output) in about half the cases. */
    bool c_f32 = S.dtype != TW_DTYPE_F32 && rand_int(2) == 0;
    c->t[c->count - 1].fixed = c_f32;
    if (batch > 1) snprintf(c->dims, sizeof c->dims, "%dx%dx%d*%d", m, n, k, batch);
    else snprintf(c->dims, sizeof c->dims, "%dx%dx%d", m, n, k);
    snprintf(c->shape, sizeof c->shape,
             "m=%d n=%d k=%d batch=%d op=%c%c alpha=%g beta=%g ld=%lld,%lld,%lld "
             "strides=%lld,%lld,%lld offsets=%zu,%zu,%zu%s",
             m, n, k, batch, ta ? 'T' : 'N', tb ? 'T' : 'N', g->alpha, g->beta,
             (long long)g->lda, (long long)g->ldb, (long long)g->ldc, (long long)g->stride_a,
             (long long)g->stride_b, (long long)g->stride_c, g->a.offset, g->b.offset,
             g->c.offset, c_f32 ? " C=f32" : "");
    check_case(c, gemm_run, gemm_ref, &p);
}

static void gemm_family(const char *name) {
    static const int shapes[][4] = {
        {1, 1, 1, 1},     {1, 1, 0, 1},    {3, 5, 7, 1},      {17, 1, 127, 1},  {1, 17, 3, 2},
        {127, 3, 17, 1},  {65, 129, 257, 1}, {129, 65, 17, 3}, {64, 64, 64, 1},  {128, 96, 80, 2},
        {257, 33, 65, 1}, {33, 257, 9, 1}, {7, 7, 0, 2},      {256, 256, 256, 1}, {100, 1, 300, 1},
        {1, 300, 100, 1}, {5, 3, 1000, 1}, {31, 63, 31, 4},   {2, 2, 2, 5},     {200, 120, 64, 1},
        {48, 48, 48, 8},  {96, 384, 128, 1}, {384, 96, 129, 1}};
    family_begin(name);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            gemm_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], t & 1, t >> 1);
    family_end();
}

/* Every GEMM implementation the device offers (OpenCL: CLBlast and twist's own kernels). */
static void gemm_families(void) {
    static const tw_gemm_impl impls[] = {TW_GEMM_AUTO, TW_GEMM_VENDOR, TW_GEMM_OWN};
    static const char *const names[] = {"gemm", "gemm[vendor]", "gemm[own]"};
    for (int i = 0; i < 3; i++) {
        if (i > 0 && tw_device_set_gemm_impl(S.dut, impls[i]) != TW_OK) {
            printf("%-18s not on this device (%s)\n", names[i], tw_last_error());
            tw_clear_error();
            continue;
        }
        gemm_family(names[i]);
    }
    TW_CHECK_OK(tw_device_set_gemm_impl(S.dut, TW_GEMM_AUTO));
    /* The cpu's 16-bit GEMM has two paths (widened to fp32 for OpenBLAS, and AVX512-BF16 dot
     * products for bf16): each forced in turn. (Other backends' variants: --all-variants.) */
    if (S.dtype == TW_DTYPE_F32 || tw_device_get_info(S.dut)->backend != TW_BACKEND_CPU) return;
    const char *variants[8];
    int count = tw_device_kernel_variants(S.dut, "gemm", variants, 8);
    for (int i = 0; i < count && i < 8; i++) {
        char name[40];
        snprintf(name, sizeof name, "gemm[%s]", variants[i]);
        TW_CHECK_OK(tw_device_force_kernel_variant(S.dut, "gemm", variants[i]));
        gemm_family(name);
    }
    TW_CHECK_OK(tw_device_force_kernel_variant(S.dut, "gemm", NULL));
}

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { LAYOUT_PACKED, LAYOUT_CONTIGUOUS, LAYOUT_PADDED, LAYOUT_COUNT };
static const char *const layout_names[] = {"packed", "contiguous", "padded"};

/* Where q, k, v (one buffer) and out live, and how many elements each buffer needs. */
typedef struct attention_layout {
    tw_bhtd_stride qkv, out;
    size_t q, k, v, o, lse;
    size_t qkv_count, out_count, lse_count;
} attention_layout;

static size_t bhtd_extent(tw_bhtd_stride s, int B, int H, int T, int D) {
    return (size_t)(B - 1) * (size_t)s.b + (size_t)(H - 1) * (size_t)s.h +
           (size_t)(T - 1) * (size_t)s.t + (size_t)D;
}

static attention_layout attention_layout_make(int kind, int B, int H, int T, int D) {
    attention_layout l = {0};
    int64_t C = (int64_t)H * D;
    if (kind == LAYOUT_PACKED) {
        /* The model's (B, T, 3C) QKV projection and (B, T, C) output. */
        l.qkv = (tw_bhtd_stride){T * 3 * C, D, 3 * C};
        l.out = (tw_bhtd_stride){T * C, D, C};
        l.q = 2, l.k = 2 + (size_t)C, l.v = 2 + 2 * (size_t)C, l.o = 1, l.lse = 1;
    } else if (kind == LAYOUT_CONTIGUOUS) {
        /* (B, H, T, D), q, k and v back to back, no offsets. */
        l.qkv = l.out = (tw_bhtd_stride){(int64_t)H * T * D, (int64_t)T * D, D};
        size_t n = bhtd_extent(l.qkv, B, H, T, D);
        l.q = 0, l.k = n, l.v = 2 * n, l.o = 0, l.lse = 0;
    } else {
        /* Every stride padded, odd offsets. */
        l.qkv.t = D + 3, l.qkv.h = (int64_t)T * l.qkv.t + 5, l.qkv.b = H * l.qkv.h + 7;
        l.out.t = D + 1, l.out.h = (int64_t)T * l.out.t + 2, l.out.b = H * l.out.h + 1;
        size_t n = bhtd_extent(l.qkv, B, H, T, D);
        l.q = 5, l.k = l.q + n + 4, l.v = l.k + n + 1, l.o = 3, l.lse = 3;
    }
    l.qkv_count = l.v + bhtd_extent(l.qkv, B, H, T, D);
    l.out_count = l.o + bhtd_extent(l.out, B, H, T, D);
    l.lse_count = l.lse + (size_t)B * H * T;
    return l;
}

static void fill_bhtd(float *x, size_t offset, tw_bhtd_stride s, int B, int H, int T, int D,
                      float lo, float hi) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                fill(x + offset + (size_t)(b * s.b + h * s.h + t * s.t), (size_t)D, lo, hi);
}

typedef struct attention_params {
    tw_attention_args args; /* offsets set; buffers filled in at run time */
} attention_params;

/* Tensors: 0 qkv, 1 out, 2 lse, and for the backward 3 dout, 4 dqkv (dq, dk, dv). */
static tw_attention_args attention_bind(const void *params, tw_buffer *const *buf, bool backward) {
    tw_attention_args a = ((const attention_params *)params)->args;
    a.dtype = S.mem_dtype[0];
    a.q.buffer = a.k.buffer = a.v.buffer = buf[0];
    a.q.dtype = a.k.dtype = a.v.dtype = S.mem_dtype[0];
    a.out = tw_at_typed(buf[1], a.out.offset, S.mem_dtype[1]);
    a.lse = tw_at_typed(buf[2], a.lse.offset, S.mem_dtype[2]);
    if (backward) {
        a.dout = tw_at_typed(buf[3], a.dout.offset, S.mem_dtype[3]);
        a.dq.buffer = a.dk.buffer = a.dv.buffer = buf[4];
        a.dq.dtype = a.dk.dtype = a.dv.dtype = S.mem_dtype[4];
    }
    return a;
}

static tw_status attention_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    tw_attention_args a = attention_bind(params, buf, false);
    return tw_attention_fwd(device, &a);
}

static tw_status attention_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    tw_attention_args a = attention_bind(params, buf, true);
    return tw_attention_bwd(device, &a);
}

static void attention_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const tw_attention_args *a = &((const attention_params *)params)->args;
    ref_attention_fwd(a->batch, a->heads, a->seq_len, a->head_dim, a->scale, a->qkv_stride,
                      a->out_stride, d[0] + a->q.offset, d[0] + a->k.offset, d[0] + a->v.offset,
                      d[1] + a->out.offset, d[2] + a->lse.offset);
}

/* The backward's inputs O and lse: the double reference forward, rounded to float. */
static void attention_forward_inputs(const attention_params *p, const float *qkv, size_t qkv_count,
                                     float *out, size_t out_count, float *lse, size_t lse_count) {
    double *d[3];
    size_t counts[3] = {qkv_count, out_count, lse_count};
    const float *src[3] = {qkv, out, lse};
    for (int j = 0; j < 3; j++) {
        d[j] = malloc(counts[j] * sizeof(double));
        for (size_t i = 0; i < counts[j]; i++) d[j][i] = src[j][i];
    }
    attention_fwd_ref(p, d, NULL);
    for (size_t i = 0; i < out_count; i++) out[i] = (float)d[1][i];
    for (size_t i = 0; i < lse_count; i++) lse[i] = (float)d[2][i];
    for (int j = 0; j < 3; j++) free(d[j]);
}

static void attention_case(int B, int H, int T, int D, int layout, float scale, bool backward) {
    attention_layout l = attention_layout_make(layout, B, H, T, D);
    attention_params p = {{.dtype = TW_DTYPE_F32, .batch = B, .heads = H, .seq_len = T,
                           .head_dim = D, .scale = scale, .qkv_stride = l.qkv, .out_stride = l.out}};
    tw_attention_args *a = &p.args;
    a->q.offset = l.q, a->k.offset = l.k, a->v.offset = l.v, a->out.offset = l.o;
    a->lse.offset = l.lse, a->dout.offset = l.o;
    a->dq.offset = l.q, a->dk.offset = l.k, a->dv.offset = l.v;
    size_t bht = (size_t)B * H * T;
    op_case *c = case_new(true);
    c->extra_bytes_limit = 65536 + 16 * bht + (backward ? 12 * bht * (size_t)D : 0);
    float *qkv = case_f32(c, "qkv", l.qkv_count, ROLE_IN, 0);
    for (int j = 0; j < 3; j++)
        fill_bhtd(qkv, j == 0 ? l.q : j == 1 ? l.k : l.v, l.qkv, B, H, T, D, -2.0f, 2.0f);
    role forward_role = backward ? ROLE_IN : ROLE_OUT;
    float *out = case_f32(c, "out", l.out_count, forward_role, 1e-4);
    float *lse = case_f32_fixed(c, "lse", l.lse_count, forward_role, 1e-4);
    if (backward) {
        attention_forward_inputs(&p, qkv, c->t[0].count, out, c->t[1].count, lse, c->t[2].count);
        float *dout = case_f32(c, "dout", l.out_count, ROLE_IN, 0);
        fill_bhtd(dout, l.o, l.out, B, H, T, D, -1.0f, 1.0f);
        float *dqkv = case_f32(c, "dqkv", l.qkv_count, ROLE_GRAD, 2e-4);
        for (int j = 0; j < 3; j++)
            fill_bhtd(dqkv, j == 0 ? l.q : j == 1 ? l.k : l.v, l.qkv, B, H, T, D, -0.5f, 0.5f);
    }
    snprintf(c->dims, sizeof c->dims, "%dx%dx%dx%d", B, H, T, D);
    snprintf(c->shape, sizeof c->shape, "B=%d H=%d T=%d D=%d scale=%g layout=%s", B, H, T, D,
             scale, layout_names[layout]);
    check_case(c, backward ? attention_bwd_run : attention_fwd_run,
               backward ? NULL : attention_fwd_ref, &p);
}

static void attention_family(bool backward) {
    static const int shapes[][4] = {
        {1, 1, 1, 1},    {1, 1, 2, 1},    {1, 1, 3, 3},     {1, 1, 17, 7},   {2, 3, 17, 7},
        {1, 2, 127, 33}, {1, 1, 64, 64},  {2, 2, 65, 16},   {1, 4, 128, 32}, {1, 1, 129, 8},
        {1, 2, 256, 64}, {3, 1, 31, 4},   {1, 3, 100, 12},  {2, 1, 257, 16}, {1, 2, 33, 1},
        {4, 2, 8, 8},    {1, 1, 255, 5},  {2, 4, 48, 24},   {1, 1, 200, 80}, {1, 1, 96, 128},
        /* Past one loop-limited dispatch on CPU Vulkan devices (vk_attention.c splits the
         * backward into key and query ranges there): rows of 999 keys at D = 64. */
        {1, 2, 999, 64},
        {1, 4, 512, 16}};
    family_begin(backward ? "attention_bwd" : "attention_fwd");
    int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < n; s++) {
        const int *x = shapes[s];
        /* Mostly 1/sqrt(D); a large scale drives exp past the float range without the max. */
        float scale = s % 7 == 6 ? 3.0f : s % 7 == 3 ? 0.5f : 1.0f / sqrtf((float)x[3]);
        int layout = s == n - 1 ? LAYOUT_PACKED : s % LAYOUT_COUNT;
        attention_case(x[0], x[1], x[2], x[3], layout, scale, backward);
        /* Small shapes in every layout. */
        if (x[2] <= 17)
            attention_case(x[0], x[1], x[2], x[3], (layout + 1) % LAYOUT_COUNT, scale, backward);
    }
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct softmax_params {
    int rows, cols, causal_t;
    size_t in_off, out_off, dx_off;
    bool alias; /* out is in */
} softmax_params;

static tw_status softmax_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const softmax_params *p = params;
    tw_mem in = AT(buf, 0, p->in_off);
    tw_mem out = p->alias ? in : AT(buf, 1, p->out_off);
    return tw_softmax_fwd(device, p->rows, p->cols, p->causal_t, in, out);
}

static void softmax_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const softmax_params *p = params;
    double *in = d[0] + p->in_off;
    ref_softmax_fwd(p->rows, p->cols, p->causal_t, in, p->alias ? in : d[1] + p->out_off);
}

static tw_status softmax_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const softmax_params *p = params;
    return tw_softmax_bwd(device, p->rows, p->cols, AT(buf, 0, p->in_off),
                          AT(buf, 1, p->out_off), AT(buf, 2, p->dx_off));
}

static const int softmax_shapes[][3] = {
    {1, 1, 0},    {1, 3, 0},     {3, 17, 0},    {17, 1, 0},     {127, 65, 0},   {65, 129, 0},
    {4, 257, 0},  {2, 1000, 0},  {64, 64, 0},   {1, 4097, 0},   {34, 17, 17},   {15, 5, 5},
    {127, 127, 127}, {128, 64, 64}, {1, 1, 1},  {3, 3, 3},      {9, 2, 0},      {300, 30, 0},
    {2, 50257, 0}, {256, 256, 256}, {66, 33, 33}};

static void softmax_case(int rows, int cols, int causal_t, bool backward, int index) {
    size_t n = (size_t)rows * cols;
    softmax_params p = {rows, cols, causal_t, (size_t)(index % 3), (size_t)(index % 5),
                        (size_t)(index % 2), !backward && index % 2 == 1};
    op_case *c = case_new(true);
    /* Wide logits now and then: exp overflows in float without the row max. */
    float range = index % 4 == 3 ? 100.0f : 8.0f;
    if (!backward) {
        float *in = case_f32(c, "in", p.in_off + n, p.alias ? ROLE_OUT : ROLE_IN, 1e-4);
        fill(in + p.in_off, n, -range, range);
        if (!p.alias) case_f32(c, "out", p.out_off + n, ROLE_OUT, 1e-4);
    } else {
        /* y: a softmax output (masked entries exactly 0 when causal). */
        float *y = case_f32(c, "y", p.in_off + n, ROLE_IN, 0);
        double *logits = malloc(n * sizeof *logits);
        for (size_t i = 0; i < n; i++) logits[i] = uniform(-range, range);
        ref_softmax_fwd(rows, cols, causal_t, logits, logits);
        for (size_t i = 0; i < n; i++) y[p.in_off + i] = (float)logits[i];
        free(logits);
        fill(case_f32(c, "dy", p.out_off + n, ROLE_IN, 0) + p.out_off, n, -1.0f, 1.0f);
        fill(case_f32(c, "dx", p.dx_off + n, ROLE_GRAD, 1e-4) + p.dx_off, n, -0.02f, 0.02f);
    }
    snprintf(c->dims, sizeof c->dims, causal_t ? "%dx%dc" : "%dx%d", rows, cols);
    snprintf(c->shape, sizeof c->shape, "rows=%d cols=%d causal_t=%d range=%g%s", rows, cols,
             causal_t, range, p.alias ? " in-place" : "");
    check_case(c, backward ? softmax_bwd_run : softmax_fwd_run, backward ? NULL : softmax_fwd_ref,
               &p);
}

static void softmax_family(bool backward) {
    family_begin(backward ? "softmax_bwd" : "softmax_fwd");
    for (size_t s = 0; s < sizeof softmax_shapes / sizeof softmax_shapes[0]; s++)
        softmax_case(softmax_shapes[s][0], softmax_shapes[s][1], softmax_shapes[s][2], backward,
                     (int)s);
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNorm                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct layernorm_params {
    int rows, cols;
    float eps;
    size_t off; /* every tensor starts at this offset in its buffer */
} layernorm_params;

/* Forward tensors: 0 x, 1 weight, 2 bias, 3 out, 4 mean, 5 rstd. */
static tw_status layernorm_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const layernorm_params *p = params;
    size_t o = p->off;
    return tw_layernorm_fwd(device, p->rows, p->cols, p->eps, AT(buf, 0, o), AT(buf, 1, o),
                            AT(buf, 2, o), AT(buf, 3, o), AT(buf, 4, o), AT(buf, 5, o));
}

static void layernorm_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const layernorm_params *p = params;
    size_t o = p->off;
    ref_layernorm_fwd(p->rows, p->cols, p->eps, d[0] + o, d[1] + o, d[2] + o, d[3] + o, d[4] + o,
                      d[5] + o);
}

/* Backward tensors: 0 dout, 1 x, 2 weight, 3 mean, 4 rstd, 5 dx, 6 dweight, 7 dbias. */
static tw_status layernorm_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const layernorm_params *p = params;
    size_t o = p->off;
    return tw_layernorm_bwd(device, p->rows, p->cols, AT(buf, 0, o), AT(buf, 1, o),
                            AT(buf, 2, o), AT(buf, 3, o), AT(buf, 4, o), AT(buf, 5, o),
                            AT(buf, 6, o), AT(buf, 7, o));
}

/* x (rows, cols): each row around its own mean, so mean and variance both matter. */
static void layernorm_inputs(const layernorm_params *p, float *x, float *w, float *b) {
    for (int r = 0; r < p->rows; r++) {
        float shift = uniform(-4.0f, 4.0f), spread = uniform(0.1f, 2.0f);
        fill(x + p->off + (size_t)r * p->cols, (size_t)p->cols, shift - spread, shift + spread);
    }
    fill(w + p->off, (size_t)p->cols, 0.5f, 1.5f);
    if (b) fill(b + p->off, (size_t)p->cols, -0.5f, 0.5f);
}

static void layernorm_case(int rows, int cols, bool backward, int index) {
    layernorm_params p = {rows, cols, 1e-5f, (size_t)(index % 4)};
    size_t n = (size_t)rows * cols, o = p.off;
    op_case *c = case_new(true);
    if (!backward) {
        float *x = case_f32(c, "x", o + n, ROLE_IN, 0);
        float *w = case_f32(c, "weight", o + cols, ROLE_IN, 0);
        float *b = case_f32(c, "bias", o + cols, ROLE_IN, 0);
        layernorm_inputs(&p, x, w, b);
        case_f32(c, "out", o + n, ROLE_OUT, 1e-4);
        case_f32_fixed(c, "mean", o + rows, ROLE_OUT, 1e-4);
        case_f32_fixed(c, "rstd", o + rows, ROLE_OUT, 1e-4);
    } else {
        fill(case_f32(c, "dout", o + n, ROLE_IN, 0) + o, n, -1.0f, 1.0f);
        float *x = case_f32(c, "x", o + n, ROLE_IN, 0);
        float *w = case_f32(c, "weight", o + cols, ROLE_IN, 0);
        layernorm_inputs(&p, x, w, NULL);
        float *mean = case_f32_fixed(c, "mean", o + rows, ROLE_IN, 0);
        float *rstd = case_f32_fixed(c, "rstd", o + rows, ROLE_IN, 0);
        /* mean and rstd as the forward saves them (double reference, rounded). */
        double *xd = malloc(n * sizeof *xd), *ones = malloc((size_t)cols * sizeof *ones);
        double *md = malloc((size_t)rows * sizeof *md), *rd = malloc((size_t)rows * sizeof *rd);
        for (size_t i = 0; i < n; i++) xd[i] = x[o + i];
        for (int i = 0; i < cols; i++) ones[i] = 1.0;
        double *outd = malloc(n * sizeof *outd);
        ref_layernorm_fwd(rows, cols, p.eps, xd, ones, ones, outd, md, rd);
        for (int r = 0; r < rows; r++) mean[o + r] = (float)md[r], rstd[o + r] = (float)rd[r];
        free(xd), free(ones), free(md), free(rd), free(outd);
        fill(case_f32(c, "dx", o + n, ROLE_GRAD, 1e-4) + o, n, -1.0f, 1.0f);
        fill(case_f32(c, "dweight", o + cols, ROLE_GRAD, 1e-4) + o, (size_t)cols, -1.0f, 1.0f);
        fill(case_f32(c, "dbias", o + cols, ROLE_GRAD, 1e-4) + o, (size_t)cols, -1.0f, 1.0f);
    }
    snprintf(c->dims, sizeof c->dims, "%dx%d", rows, cols);
    snprintf(c->shape, sizeof c->shape, "rows=%d cols=%d offset=%zu", rows, cols, o);
    check_case(c, backward ? layernorm_bwd_run : layernorm_fwd_run,
               backward ? NULL : layernorm_fwd_ref, &p);
}

static void layernorm_family(bool backward) {
    static const int shapes[][2] = {
        {1, 1},   {1, 3},     {3, 17},  {17, 1},   {2, 127}, {127, 65}, {65, 129},
        {8, 257}, {4, 768},   {3, 1023}, {64, 64}, {1, 4097}, {31, 96}, {16, 2048},
        {5, 5},   {100, 7},   {7, 100}, {1, 2},    {2, 1},   {33, 513}, {256, 128}};
    family_begin(backward ? "layernorm_bwd" : "layernorm_fwd");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        layernorm_case(shapes[s][0], shapes[s][1], backward, (int)s);
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise: gelu, add, scale, sum_sq, adamw                                               */
/* ------------------------------------------------------------------------------------------ */

static const size_t element_counts[] = {1,    2,    3,     17,    65,     127,    128,
                                        129,  255,  257,   1000,  1023,   1024,   4097,
                                        9999, 65536, 65537, 100003, 262147, 1048579};
enum { ELEMENT_CASES = sizeof element_counts / sizeof element_counts[0] };

typedef struct elementwise_params {
    size_t n;
    size_t off[3];
    int alias; /* per op, see its run function */
    float alpha;
    tw_adamw_args adamw;
} elementwise_params;

static tw_status gelu_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    tw_mem x = AT(buf, 0, p->off[0]);
    return tw_gelu_fwd(device, p->n, x, p->alias ? x : AT(buf, 1, p->off[1]));
}

static void gelu_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const elementwise_params *p = params;
    double *x = d[0] + p->off[0];
    ref_gelu_fwd(p->n, x, p->alias ? x : d[1] + p->off[1]);
}

static tw_status gelu_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    return tw_gelu_bwd(device, p->n, AT(buf, 0, p->off[0]), AT(buf, 1, p->off[1]),
                       AT(buf, 2, p->off[2]));
}

static void elementwise_offsets(elementwise_params *p, int index) {
    p->off[0] = (size_t)(index % 3);
    p->off[1] = (size_t)(index % 4) * 5;
    p->off[2] = (size_t)(index % 2) * 3;
}

static void gelu_family(bool backward) {
    family_begin(backward ? "gelu_bwd" : "gelu_fwd");
    for (int s = 0; s < ELEMENT_CASES; s++) {
        elementwise_params p = {.n = element_counts[s], .alias = !backward && s % 3 == 1};
        elementwise_offsets(&p, s);
        size_t n = p.n;
        op_case *c = case_new(true);
        /* Mostly [-6, 6]; sometimes far into tanh's saturation. */
        float range = s % 5 == 4 ? 30.0f : 6.0f;
        float *x = case_f32(c, "x", p.off[0] + n, p.alias ? ROLE_OUT : ROLE_IN, 1e-5);
        fill(x + p.off[0], n, -range, range);
        if (!backward && !p.alias) case_f32(c, "out", p.off[1] + n, ROLE_OUT, 1e-5);
        if (!backward) c->t[c->count - 1].floor = 1.0;
        if (backward) {
            fill(case_f32(c, "dout", p.off[1] + n, ROLE_IN, 0) + p.off[1], n, -1.0f, 1.0f);
            fill(case_f32(c, "dx", p.off[2] + n, ROLE_GRAD, 1e-5) + p.off[2], n, -1.0f, 1.0f);
        }
        snprintf(c->dims, sizeof c->dims, "%zu", n);
        snprintf(c->shape, sizeof c->shape, "n=%zu range=%g%s", n, range,
                 p.alias ? " in-place" : "");
        check_case(c, backward ? gelu_bwd_run : gelu_fwd_run, backward ? NULL : gelu_fwd_ref, &p);
    }
    family_end();
}

/* alias: 0 separate out, 1 out is a, 2 out is b, 3 a, b and out are one tensor. */
static tw_status add_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    tw_mem a = AT(buf, 0, p->off[0]);
    tw_mem b = p->alias == 3 ? a : AT(buf, 1, p->off[1]);
    tw_mem out = p->alias == 0 ? AT(buf, 2, p->off[2]) : p->alias == 2 ? b : a;
    return tw_add(device, p->n, a, b, out);
}

static void add_ref(const void *params, double *const *d, int32_t *const *i) {
    const elementwise_params *p = params;
    double *a = d[0] + p->off[0];
    double *b = p->alias == 3 ? a : d[1] + p->off[1];
    ref_add(p->n, a, b, p->alias == 0 ? d[2] + p->off[2] : p->alias == 2 ? b : a);
}

static void add_family(void) {
    family_begin("add");
    for (int s = 0; s < ELEMENT_CASES; s++) {
        elementwise_params p = {.n = element_counts[s], .alias = s % 4};
        elementwise_offsets(&p, s);
        size_t n = p.n;
        op_case *c = case_new(true);
        role ra = p.alias == 1 || p.alias == 3 ? ROLE_OUT : ROLE_IN;
        role rb = p.alias == 2 ? ROLE_OUT : ROLE_IN;
        fill(case_f32(c, "a", p.off[0] + n, ra, 1e-6) + p.off[0], n, -1.0f, 1.0f);
        fill(case_f32(c, "b", p.off[1] + n, rb, 1e-6) + p.off[1], n, -1.0f, 1.0f);
        case_f32(c, "out", p.off[2] + n, p.alias == 0 ? ROLE_OUT : ROLE_IN, 1e-6);
        snprintf(c->dims, sizeof c->dims, "%zu", n);
        snprintf(c->shape, sizeof c->shape, "n=%zu alias=%d", n, p.alias);
        check_case(c, add_run, add_ref, &p);
    }
    family_end();
}

static tw_status scale_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    tw_mem x = AT(buf, 0, p->off[0]);
    return tw_scale(device, p->n, p->alpha, x, p->alias ? x : AT(buf, 1, p->off[1]));
}

static void scale_ref(const void *params, double *const *d, int32_t *const *i) {
    const elementwise_params *p = params;
    double *x = d[0] + p->off[0];
    ref_scale(p->n, p->alpha, x, p->alias ? x : d[1] + p->off[1]);
}

static void scale_family(void) {
    static const float alphas[] = {2.0f, -0.5f, 0.0f, 1e-3f, 1.0f, -3.25f};
    family_begin("scale");
    for (int s = 0; s < ELEMENT_CASES; s++) {
        elementwise_params p = {.n = element_counts[s], .alias = s % 2, .alpha = alphas[s % 6]};
        elementwise_offsets(&p, s);
        op_case *c = case_new(true);
        fill(case_f32(c, "x", p.off[0] + p.n, p.alias ? ROLE_OUT : ROLE_IN, 1e-6) + p.off[0], p.n,
             -10.0f, 10.0f);
        if (!p.alias) case_f32(c, "out", p.off[1] + p.n, ROLE_OUT, 1e-6);
        snprintf(c->dims, sizeof c->dims, "%zu", p.n);
        snprintf(c->shape, sizeof c->shape, "n=%zu alpha=%g alias=%d", p.n, p.alpha, p.alias);
        check_case(c, scale_run, scale_ref, &p);
    }
    family_end();
}

static tw_status sum_sq_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    return tw_sum_sq(device, p->n, AT(buf, 0, p->off[0]), AT(buf, 1, p->off[1]));
}

static void sum_sq_ref(const void *params, double *const *d, int32_t *const *i) {
    const elementwise_params *p = params;
    d[1][p->off[1]] = ref_sum_sq(p->n, d[0] + p->off[0]);
}

static void sum_sq_family(void) {
    family_begin("sum_sq");
    for (int s = 0; s < ELEMENT_CASES; s++) {
        elementwise_params p = {.n = element_counts[s]};
        elementwise_offsets(&p, s);
        op_case *c = case_new(true);
        float range = s % 4 == 3 ? 100.0f : 1.0f;
        fill(case_f32(c, "x", p.off[0] + p.n, ROLE_IN, 0) + p.off[0], p.n, -range, range);
        case_f32_fixed(c, "out", p.off[1] + 1, ROLE_OUT, 1e-5);
        snprintf(c->dims, sizeof c->dims, "%zu", p.n);
        snprintf(c->shape, sizeof c->shape, "n=%zu range=%g", p.n, range);
        check_case(c, sum_sq_run, sum_sq_ref, &p);
    }
    family_end();
}

/* Tensors: 0 param, 1 grad, 2 m, 3 v. */
static tw_status adamw_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const elementwise_params *p = params;
    return tw_adamw_step(device, p->n, &p->adamw, AT(buf, 0, p->off[0]),
                         AT(buf, 1, p->off[1]), AT(buf, 2, p->off[2]),
                         AT(buf, 3, p->off[0]));
}

static void adamw_ref(const void *params, double *const *d, int32_t *const *i) {
    const elementwise_params *p = params;
    ref_adamw_step(p->n, &p->adamw, d[0] + p->off[0], d[1] + p->off[1], d[2] + p->off[2],
                   d[3] + p->off[0]);
}

static void adamw_family(void) {
    static const tw_adamw_args configs[] = {
        {1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1},
        {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 7},
        {3e-3f, 0.8f, 0.99f, 1e-6f, 0.01f, 0.5f, 1000},
        {1e-1f, 0.0f, 0.0f, 1e-8f, 0.1f, 0.25f, 2}};
    family_begin("adamw_step");
    for (int s = 0; s < ELEMENT_CASES; s++) {
        elementwise_params p = {.n = element_counts[s], .adamw = configs[s % 4]};
        elementwise_offsets(&p, s);
        size_t n = p.n;
        op_case *c = case_new(true);
        fill(case_f32_fixed(c, "param", p.off[0] + n, ROLE_OUT, 1e-5) + p.off[0], n, -1.0f, 1.0f);
        fill(case_f32(c, "grad", p.off[1] + n, ROLE_IN, 0) + p.off[1], n, -0.1f, 0.1f);
        fill(case_f32_fixed(c, "m", p.off[2] + n, ROLE_OUT, 1e-5) + p.off[2], n, -0.01f, 0.01f);
        fill(case_f32_fixed(c, "v", p.off[0] + n, ROLE_OUT, 1e-5) + p.off[0], n, 0.0f, 1e-3f);
        snprintf(c->dims, sizeof c->dims, "%zu", n);
        snprintf(c->shape, sizeof c->shape, "n=%zu lr=%g betas=%g,%g wd=%g grad_scale=%g step=%d",
                 n, p.adamw.lr, p.adamw.beta1, p.adamw.beta2, p.adamw.weight_decay,
                 p.adamw.grad_scale, p.adamw.step);
        check_case(c, adamw_run, adamw_ref, &p);
    }
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Embedding                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct embedding_params {
    int batch, seq_len, channels, vocab;
    size_t off;
} embedding_params;

/* Forward tensors: 0 tokens, 1 wte, 2 wpe, 3 out. Backward: 0 tokens, 1 dout, 2 dwte, 3 dwpe. */
static tw_status embedding_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const embedding_params *p = params;
    size_t o = p->off;
    return tw_embedding_fwd(device, p->batch, p->seq_len, p->channels, p->vocab, AT(buf, 0, o),
                            AT(buf, 1, o), AT(buf, 2, o), AT(buf, 3, o));
}

static void embedding_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const embedding_params *p = params;
    size_t o = p->off;
    ref_embedding_fwd(p->batch, p->seq_len, p->channels, i[0] + o, d[1] + o, d[2] + o, d[3] + o);
}

static tw_status embedding_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const embedding_params *p = params;
    size_t o = p->off;
    return tw_embedding_bwd(device, p->batch, p->seq_len, p->channels, p->vocab, AT(buf, 0, o),
                            AT(buf, 1, o), AT(buf, 2, o), AT(buf, 3, o));
}

static void embedding_case(int B, int T, int C, int V, bool backward, int index) {
    embedding_params p = {B, T, C, V, (size_t)(index % 3)};
    size_t o = p.off, bt = (size_t)B * T;
    /* wpe holds more positions than T (a model's context can exceed the batch's T). */
    size_t wte_n = (size_t)V * C, wpe_n = (size_t)(T + 3) * C, out_n = bt * C;
    op_case *c = case_new(true);
    int32_t *tokens = case_i32(c, "tokens", o + bt);
    for (size_t i = 0; i < bt; i++) tokens[o + i] = rand_int(V);
    if (!backward) {
        fill(case_f32(c, "wte", o + wte_n, ROLE_IN, 0) + o, wte_n, -1.0f, 1.0f);
        fill(case_f32(c, "wpe", o + wpe_n, ROLE_IN, 0) + o, wpe_n, -1.0f, 1.0f);
        case_f32(c, "out", o + out_n, ROLE_OUT, 1e-6);
    } else {
        fill(case_f32(c, "dout", o + out_n, ROLE_IN, 0) + o, out_n, -1.0f, 1.0f);
        fill(case_f32(c, "dwte", o + wte_n, ROLE_GRAD, 1e-5) + o, wte_n, -1.0f, 1.0f);
        fill(case_f32(c, "dwpe", o + wpe_n, ROLE_GRAD, 1e-5) + o, wpe_n, -1.0f, 1.0f);
    }
    snprintf(c->dims, sizeof c->dims, "%dx%dx%d/%d", B, T, C, V);
    snprintf(c->shape, sizeof c->shape, "B=%d T=%d C=%d vocab=%d offset=%zu", B, T, C, V, o);
    check_case(c, backward ? embedding_bwd_run : embedding_fwd_run,
               backward ? NULL : embedding_fwd_ref, &p);
}

static void embedding_family(bool backward) {
    /* Small vocabularies make tokens repeat a lot (the backward sums them). */
    static const int shapes[][4] = {
        {1, 1, 1, 1},     {1, 3, 3, 5},     {2, 17, 7, 3},    {4, 127, 65, 50},
        {2, 64, 129, 1000}, {1, 257, 16, 10}, {3, 5, 768, 50},  {8, 32, 64, 2},
        {1, 1, 4097, 7},  {16, 16, 16, 16}, {2, 100, 1, 1},   {5, 9, 33, 257},
        {1, 1024, 8, 4},  {7, 3, 127, 1},   {2, 2, 2, 100},   {4, 65, 96, 300},
        {1, 17, 1000, 17}, {3, 33, 65, 129}, {6, 10, 48, 6},  {2, 128, 32, 65}};
    family_begin(backward ? "embedding_bwd" : "embedding_fwd");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        embedding_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], backward, (int)s);
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Fused softmax + cross-entropy                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct xent_params {
    int rows, vocab, ld;
    float grad_scale;
    size_t off;
} xent_params;

/* Forward tensors: 0 logits, 1 targets, 2 losses, 3 lse, 4 correct.
 * Backward: 0 logits, 1 targets, 2 lse, 3 dlogits. */
static tw_status xent_fwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const xent_params *p = params;
    size_t o = p->off;
    return tw_softmax_xent_fwd(device, p->rows, p->vocab, p->ld, AT(buf, 0, o),
                               AT(buf, 1, o), AT(buf, 2, o), AT(buf, 3, o),
                               AT(buf, 4, o));
}

static void xent_fwd_ref(const void *params, double *const *d, int32_t *const *i) {
    const xent_params *p = params;
    size_t o = p->off;
    ref_softmax_xent_fwd(p->rows, p->vocab, p->ld, d[0] + o, i[1] + o, d[2] + o, d[3] + o,
                         d[4] + o);
}

static tw_status xent_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const xent_params *p = params;
    size_t o = p->off;
    return tw_softmax_xent_bwd(device, p->rows, p->vocab, p->ld, p->grad_scale, AT(buf, 0, o),
                               AT(buf, 1, o), AT(buf, 2, o), AT(buf, 3, o));
}

/* Logits (rows, ld) with NaN in the padding columns; ties at the maximum now and then (the first
 * maximum is the prediction); targets with ignored rows (< 0) and targets on a later tie. */
static void xent_inputs(const xent_params *p, float *logits, int32_t *targets, float range) {
    for (int r = 0; r < p->rows; r++) {
        float *x = logits + p->off + (size_t)r * p->ld;
        fill(x, (size_t)p->vocab, -range, range);
        int argmax = 0;
        for (int c = 1; c < p->vocab; c++)
            if (x[c] > x[argmax]) argmax = c;
        int kind = rand_int(6), target = rand_int(p->vocab);
        if (kind == 0 && p->vocab > 1) { /* a tie: the same maximum later in the row */
            int later = argmax + 1 + rand_int(p->vocab - argmax - 1 > 0 ? p->vocab - argmax - 1 : 1);
            if (later < p->vocab) x[later] = x[argmax];
            target = rand_int(2) ? argmax : (later < p->vocab ? later : argmax);
        } else if (kind == 1) {
            target = r % 2 ? -1 : -100; /* ignored */
        } else if (kind == 2) {
            target = argmax; /* a correct prediction */
        }
        targets[p->off + r] = target;
    }
}

static void xent_case(int rows, int vocab, int ld, bool backward, int index) {
    static const float scales[] = {1.0f, -0.5f, 2.0f, 0.0f};
    xent_params p = {rows, vocab, ld, index % 4 == 0 ? 1.0f / rows : scales[index % 4],
                     (size_t)(index % 3)};
    if (p.grad_scale == 0.0f) p.grad_scale = 0.125f;
    size_t o = p.off, extent = (size_t)(rows - 1) * ld + vocab;
    float range = index % 5 == 4 ? 60.0f : 5.0f;
    op_case *c = case_new(true);
    float *logits = case_f32(c, "logits", o + extent, ROLE_IN, 0);
    int32_t *targets = case_i32(c, "targets", o + rows);
    xent_inputs(&p, logits, targets, range);
    if (!backward) {
        case_f32_fixed(c, "losses", o + rows, ROLE_OUT, 1e-4);
        case_f32_fixed(c, "lse", o + rows, ROLE_OUT, 1e-4);
        case_f32_fixed(c, "correct", o + rows, ROLE_OUT, 0);
    } else {
        float *lse = case_f32_fixed(c, "lse", o + rows, ROLE_IN, 0);
        for (int r = 0; r < rows; r++) { /* lse as the forward saves it (double, rounded) */
            const float *x = logits + o + (size_t)r * ld;
            double max = x[0], sum = 0.0;
            for (int j = 1; j < vocab; j++) max = fmax(max, x[j]);
            for (int j = 0; j < vocab; j++) sum += exp(x[j] - max);
            lse[o + r] = (float)(max + log(sum));
        }
        float *d = case_f32(c, "dlogits", o + extent, ROLE_GRAD, 1e-4);
        float pre = 0.01f * fabsf(p.grad_scale);
        for (int r = 0; r < rows; r++) fill(d + o + (size_t)r * ld, (size_t)vocab, -pre, pre);
    }
    if (ld > vocab) snprintf(c->dims, sizeof c->dims, "%dx%d/%d", rows, vocab, ld);
    else snprintf(c->dims, sizeof c->dims, "%dx%d", rows, vocab);
    snprintf(c->shape, sizeof c->shape, "rows=%d vocab=%d ld=%d range=%g grad_scale=%g offset=%zu",
             rows, vocab, ld, range, p.grad_scale, o);
    check_case(c, backward ? xent_bwd_run : xent_fwd_run, backward ? NULL : xent_fwd_ref, &p);
}

static void xent_family(bool backward) {
    static const int shapes[][3] = {
        {1, 1, 1},      {1, 2, 2},      {3, 17, 17},   {17, 3, 8},     {127, 65, 65},
        {65, 129, 130}, {4, 257, 260},  {8, 1000, 1024}, {2, 4097, 4100}, {32, 50, 64},
        {100, 10, 10},  {5, 1, 4},      {16, 33, 33},  {1, 50257, 50304}, {3, 128, 128},
        {64, 256, 256}, {9, 7, 7},      {200, 5, 5},   {2, 3, 3},      {40, 511, 512}};
    family_begin(backward ? "softmax_xent_bwd" : "softmax_xent_fwd");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        xent_case(shapes[s][0], shapes[s][1], shapes[s][2], backward, (int)s);
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Bias                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct bias_params {
    int rows, cols;
    size_t off[2];
} bias_params;

/* Tensors: 0 bias (or dout), 1 out (or dbias). */
static tw_status bias_add_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const bias_params *p = params;
    return tw_bias_add(device, p->rows, p->cols, AT(buf, 0, p->off[0]), AT(buf, 1, p->off[1]));
}

static void bias_add_ref(const void *params, double *const *d, int32_t *const *i) {
    const bias_params *p = params;
    ref_bias_add(p->rows, p->cols, d[0] + p->off[0], d[1] + p->off[1]);
}

static tw_status bias_bwd_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const bias_params *p = params;
    return tw_bias_bwd(device, p->rows, p->cols, AT(buf, 0, p->off[0]), AT(buf, 1, p->off[1]));
}

static void bias_family(bool backward) {
    static const int shapes[][2] = {
        {1, 1},    {1, 3},    {3, 17},    {17, 1},    {127, 65}, {65, 129}, {8, 257},
        {1000, 3}, {64, 768}, {2, 3072},  {256, 256}, {5, 1023}, {33, 33},  {1, 4097},
        {4096, 2}, {100, 100}, {7, 2304}, {129, 127}, {1024, 65}, {3, 1}};
    family_begin(backward ? "bias_bwd" : "bias_add");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        bias_params p = {rows, cols, {s % 3, (s % 4) * 2}};
        op_case *c = case_new(true);
        if (!backward) {
            fill(case_f32(c, "bias", p.off[0] + cols, ROLE_IN, 0) + p.off[0], (size_t)cols, -1, 1);
            fill(case_f32(c, "out", p.off[1] + n, ROLE_OUT, 1e-6) + p.off[1], n, -1, 1);
        } else {
            fill(case_f32(c, "dout", p.off[0] + n, ROLE_IN, 0) + p.off[0], n, -1, 1);
            fill(case_f32(c, "dbias", p.off[1] + cols, ROLE_GRAD, 1e-4) + p.off[1], (size_t)cols,
                 -1, 1);
        }
        snprintf(c->dims, sizeof c->dims, "%dx%d", rows, cols);
        snprintf(c->shape, sizeof c->shape, "rows=%d cols=%d", rows, cols);
        check_case(c, backward ? bias_bwd_run : bias_add_run, backward ? NULL : bias_add_ref, &p);
    }
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Gather / scatter of rows and columns                                                       */
/* ------------------------------------------------------------------------------------------ */

enum { GATHER_ROWS, SCATTER_ROWS, GATHER_COLS, SCATTER_COLS };

typedef struct gather_params {
    int kind;
    int rows, cols, count; /* the big matrix is (rows, cols); count rows or columns move */
    bool accumulate;
    size_t off[3];
} gather_params;

/* Tensors: 0 idx, 1 src, 2 dst. */
static tw_status gather_run(tw_device *device, const void *params, tw_buffer *const *buf) {
    const gather_params *p = params;
    tw_mem idx = AT(buf, 0, p->off[0]), src = AT(buf, 1, p->off[1]),
           dst = AT(buf, 2, p->off[2]);
    switch (p->kind) {
    case GATHER_ROWS: return tw_gather_rows(device, p->rows, p->cols, p->count, idx, src, dst);
    case SCATTER_ROWS:
        return tw_scatter_rows(device, p->rows, p->cols, p->count, idx, src, dst, p->accumulate);
    case GATHER_COLS: return tw_gather_cols(device, p->rows, p->cols, p->count, idx, src, dst);
    default:
        return tw_scatter_cols(device, p->rows, p->cols, p->count, idx, src, dst, p->accumulate);
    }
}

static void gather_ref(const void *params, double *const *d, int32_t *const *i) {
    const gather_params *p = params;
    const int32_t *idx = i[0] + p->off[0];
    double *src = d[1] + p->off[1], *dst = d[2] + p->off[2];
    switch (p->kind) {
    case GATHER_ROWS: ref_gather_rows(p->cols, p->count, idx, src, dst); break;
    case SCATTER_ROWS: ref_scatter_rows(p->cols, p->count, idx, src, dst, p->accumulate); break;
    case GATHER_COLS: ref_gather_cols(p->rows, p->cols, p->count, idx, src, dst); break;
    default: ref_scatter_cols(p->rows, p->cols, p->count, idx, src, dst, p->accumulate); break;
    }
}

/* count indices into [0, n): repeats allowed for gathers, distinct for scatters. */
static void gather_indices(int32_t *idx, int count, int n, bool distinct) {
    int *perm = malloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = 0; i < count; i++) {
        if (distinct) {
            int j = i + rand_int(n - i);
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            idx[i] = perm[i];
        } else {
            idx[i] = rand_int(n);
        }
    }
    free(perm);
}

static void gather_case(int kind, int rows, int cols, int count, bool accumulate, int index) {
    static const char *const names[] = {"gather_rows", "scatter_rows", "gather_cols",
                                        "scatter_cols"};
    gather_params p = {kind, rows, cols, count, accumulate,
                       {(size_t)(index % 3), (size_t)(index % 2) * 5, (size_t)(index % 4)}};
    bool scatter = kind == SCATTER_ROWS || kind == SCATTER_COLS;
    bool by_rows = kind == GATHER_ROWS || kind == SCATTER_ROWS;
    size_t big = (size_t)rows * cols, small = (size_t)count * (by_rows ? cols : rows);
    op_case *c = case_new(true);
    gather_indices(case_i32(c, "idx", p.off[0] + count) + p.off[0], count, by_rows ? rows : cols,
                   scatter);
    fill(case_f32(c, "src", p.off[1] + (scatter ? small : big), ROLE_IN, 0) + p.off[1],
         scatter ? small : big, -1.0f, 1.0f);
    float *dst = case_f32(c, "dst", p.off[2] + (scatter ? big : small), ROLE_OUT,
                          accumulate ? 1e-6 : 0.0);
    /* A gather's dst starts NaN (every element must be written); a scatter's keeps the rest. */
    if (scatter) fill(dst + p.off[2], big, -1.0f, 1.0f);
    snprintf(c->dims, sizeof c->dims, "%dx%d:%d", rows, cols, count);
    snprintf(c->shape, sizeof c->shape, "%s rows=%d cols=%d count=%d%s", names[kind], rows, cols,
             count, accumulate ? " accumulate" : "");
    check_case(c, gather_run, gather_ref, &p);
}

static void gather_family(int kind) {
    static const char *const names[] = {"gather_rows", "scatter_rows", "gather_cols",
                                        "scatter_cols"};
    static const int shapes[][3] = {
        {1, 1, 1},    {3, 17, 2},    {17, 3, 17},   {127, 65, 31},  {65, 129, 64},
        {257, 8, 100}, {8, 257, 5},  {64, 768, 16}, {768, 64, 700}, {100, 100, 0},
        {2, 1, 1},    {1, 2, 1},     {33, 33, 33},  {300, 7, 150},  {7, 300, 299},
        {128, 128, 1}, {50, 1023, 25}, {1023, 50, 512}, {5, 5, 3}, {256, 96, 192}};
    family_begin(names[kind]);
    bool scatter = kind == SCATTER_ROWS || kind == SCATTER_COLS;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1], count = shapes[s][2];
        int limit = kind == GATHER_ROWS || kind == SCATTER_ROWS ? rows : cols;
        if (scatter && count > limit) count = limit;
        gather_case(kind, rows, cols, count, scatter && s % 2 == 1, (int)s);
    }
    family_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Main                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Whether the spec names a backend twist knows ("opencl:3" does, "foo" does not). */
static bool names_backend(const char *spec) {
    size_t length = strcspn(spec, ":");
    for (int k = 0; k < TW_BACKEND_COUNT; k++) {
        const char *name = tw_backend_name((tw_backend_kind)k);
        if (strlen(name) == length && strncmp(spec, name, length) == 0) return true;
    }
    return false;
}

static tw_device *open_device_under_test(const char *spec) {
    tw_device *device = NULL;
    tw_status status = tw_device_open(spec, &device);
    if (status == TW_OK) return device;
    /* Not built, or nothing behind it on this machine: skipped. A malformed spec is a failure. */
    if (names_backend(spec) && (status == TW_ERR_UNSUPPORTED || status == TW_ERR_NOT_FOUND))
        tw_test_skip("%s", tw_last_error());
    fprintf(stderr, "FAIL: cannot open device '%s': %s\n", spec, tw_last_error());
    exit(1);
}

static void print_device(void) {
    const tw_device_info *info = tw_device_get_info(S.dut);
    printf("device: %s: %s (%s%s%s)\n", info->spec, info->name, info->vendor,
           info->driver[0] ? ", " : "", info->driver);
    printf("reference: %s\n", S.cpu ? "the cpu backend (device \"cpu\")"
                                    : "double-precision host code (tests/reference.c); backward "
                                      "ops: accumulate semantics here, values in gradcheck");
}

/* Whether the device runs `op` in the data type under test; if not, says so (not a failure). */
static bool family_supported(const char *op) {
    if (tw_device_supports_dtype(S.dut, op, S.dtype)) return true;
    printf("%s %s %s: unsupported\n", tw_device_get_info(S.dut)->spec, op, tw_dtype_name(S.dtype));
    fflush(stdout);
    return false;
}

/* Every family, in the data type S.dtype. */
static void run_families(void) {
    if (family_supported("gemm")) gemm_families();
    if (family_supported("attention_fwd")) attention_family(false);
    if (family_supported("attention_bwd")) attention_family(true);
    if (family_supported("softmax_fwd")) softmax_family(false);
    if (family_supported("softmax_bwd")) softmax_family(true);
    if (family_supported("layernorm_fwd")) layernorm_family(false);
    if (family_supported("layernorm_bwd")) layernorm_family(true);
    if (family_supported("gelu_fwd")) gelu_family(false);
    if (family_supported("gelu_bwd")) gelu_family(true);
    if (family_supported("embedding_fwd")) embedding_family(false);
    if (family_supported("embedding_bwd")) embedding_family(true);
    if (family_supported("softmax_xent_fwd")) xent_family(false);
    if (family_supported("softmax_xent_bwd")) xent_family(true);
    if (family_supported("bias_add")) bias_family(false);
    if (family_supported("bias_bwd")) bias_family(true);
    if (family_supported("add")) add_family();
    if (family_supported("scale")) scale_family();
    if (family_supported("sum_sq")) sum_sq_family();
    if (family_supported("adamw_step")) adamw_family();
    static const char *const gathers[] = {"gather_rows", "scatter_rows", "gather_cols",
                                          "scatter_cols"};
    for (int kind = GATHER_ROWS; kind <= SCATTER_COLS; kind++)
        if (family_supported(gathers[kind])) gather_family(kind);
}

static int usage(const char *program) {
    fprintf(stderr,
            "usage: %s --device SPEC [--dtype f32|bf16|f16|all]\n"
            "  SPEC: cpu, opencl:N, vulkan:N, cuda:N; --dtype: the ops' data type (default f32;\n"
            "  all: f32, then bf16, then f16)\n",
            program);
    return 2;
}

int main(int argc, char **argv) {
    const char *spec = NULL, *dtype_name = "f32";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) dtype_name = argv[++i];
        else return usage(argv[0]);
    }
    if (!spec) return usage(argv[0]);
    tw_dtype dtypes[3] = {TW_DTYPE_F32, TW_DTYPE_BF16, TW_DTYPE_F16};
    int dtype_count = 3;
    if (strcmp(dtype_name, "all") != 0) {
        if (!tw_dtype_parse(dtype_name, &dtypes[0]) || dtypes[0] == TW_DTYPE_I32) {
            fprintf(stderr, "FAIL: --dtype '%s' is not one of f32, bf16, f16, all\n", dtype_name);
            return 2;
        }
        dtype_count = 1;
    }
    S.dut = open_device_under_test(spec);
    if (tw_device_get_info(S.dut)->backend != TW_BACKEND_CPU) {
        if (tw_device_open("cpu", &S.cpu) != TW_OK) {
            fprintf(stderr, "FAIL: cannot open the reference device cpu: %s\n", tw_last_error());
            return 1;
        }
    }
    print_device();
    double start = tw_now_seconds();
    for (int d = 0; d < dtype_count; d++) {
        S.dtype = dtypes[d];
        tw_test_rng_seed(&S.rng, 20261123); /* the same cases in every type */
        if (S.dtype != TW_DTYPE_F32)
            printf("data type %s: inputs rounded to %s; reference: the fp32 %s on those inputs; "
                   "tolerance %s x the op's factor\n",
                   tw_dtype_name(S.dtype), tw_dtype_name(S.dtype),
                   S.cpu ? "cpu backend" : "cpu backend (same device, f32)",
                   S.dtype == TW_DTYPE_BF16 ? "1e-2" : "1e-3");
        else
            printf("data type f32\n");
        run_families();
    }

    printf("%d cases in %.1f s on %s\n", S.total_cases, tw_now_seconds() - start,
           tw_device_get_info(S.dut)->spec);
    /* Leaks are caught per case (repeat runs); what remains is scratch the backend keeps. */
    printf("device bytes still held by the backend (scratch kept for reuse): %zu\n",
           tw_device_bytes_in_use(S.dut));
    if (S.cpu) tw_device_close(S.cpu);
    tw_device_close(S.dut);
    return tw_test_finish("conformance");
}
