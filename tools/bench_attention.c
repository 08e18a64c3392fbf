/* `twist bench attention`: the fused causal attention ops (tw_attention_fwd/bwd) against the
 * unfused path built from tw_gemm + tw_softmax (tw_attention_unfused_fwd/bwd), on one device,
 * with the same inputs and layout.
 *
 * Reported per path and direction: median wall time (enqueue to the end of tw_device_sync) over
 * --repeat runs, the device's peak bytes during the op (tw_device_reset_peak before,
 * tw_device_peak_bytes after: every argument buffer the benchmark holds plus the op's scratch)
 * and the scratch alone (peak minus the bytes in use before the op). The fused scratch grows as
 * B*H*T, the unfused as B*H*T^2. A correctness pass first (which also warms up) prints the
 * largest difference between the two paths' outputs and gradients. With --against SPEC the
 * fused ops also run once on a second device (e.g. cpu) with the same inputs, and the largest
 * difference between the two devices' outputs and gradients is printed (and checked).
 *
 * Layouts (C = H*D):
 *   packed      the model's: one (B, T, 3C) QKV buffer, q/k/v at offsets 0, C, 2C,
 *               stride {T*3C, D, 3C}; out and dout (B, T, C), stride {T*C, D, C}
 *   contiguous  q, k, v each (B, H, T, D) back to back in one buffer, stride {H*T*D, T*D, D};
 *               out and dout (B, H, T, D) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/attention_unfused.h"

static const char *const PROG = "twist bench attention";
static const char *const LAYOUTS[] = {"packed", "contiguous", NULL};
enum { LAYOUT_PACKED = 0, LAYOUT_CONTIGUOUS = 1 };

typedef struct attention_options {
    const char *device;
    const char *against; /* a second device for the fused ops, or NULL */
    int batch, heads, seq, head_dim, layout, repeat;
    bool variants; /* --variants: also time every kernel variant of the fused ops, forced */
    const char *json;
} attention_options;

enum { MAX_VARIANTS = 8 };

/* Element counts of each buffer, overflow-checked at parse time. */
typedef struct attention_sizes {
    size_t qkv, out, lse; /* floats: q+k+v, out (= dout), lse */
    size_t args_bytes;    /* qkv + dqkv + out + dout + lse */
    size_t scores_bytes;  /* one (B, H, T, T) float matrix */
} attention_sizes;

typedef struct path_stats {
    double fwd_ms, bwd_ms;
    size_t fwd_peak, bwd_peak, fwd_scratch, bwd_scratch;
} path_stats;

typedef struct attention_run {
    tw_device *device;
    tw_buffer *qkv, *dqkv, *out, *dout, *lse;
    tw_attention_args args;
    float *host_qkv, *host_dout, *out_fused, *out_unfused, *grad_fused, *grad_unfused;
    double *times[4]; /* fused fwd, fused bwd, unfused fwd, unfused bwd */
    path_stats fused, unfused;
    double diff_out, diff_dq, diff_dk, diff_dv, max_out, max_grad;
    /* --against: the fused ops on the other device against this one's. */
    char against_spec[32];
    double against_out, against_dq, against_dk, against_dv;
    /* --variants: the device's attention_fwd variants (the same names for attention_bwd), each
     * forced on both ops, timed in the same rounds as the device's own choice ("fused"). */
    const char *variant_names[MAX_VARIANTS];
    int variant_count;
    double *variant_times[MAX_VARIANTS][2];
    double variant_ms[MAX_VARIANTS][2];
} attention_run;

static bool sizes_of(const attention_options *o, attention_sizes *z) {
    size_t bht, bhtd, bhtt, bytes, sum;
    if (__builtin_mul_overflow((size_t)o->batch, (size_t)o->heads, &bht) ||
        __builtin_mul_overflow(bht, (size_t)o->seq, &bht) ||
        __builtin_mul_overflow(bht, (size_t)o->head_dim, &bhtd) ||
        __builtin_mul_overflow(bht, (size_t)o->seq, &bhtt) ||
        __builtin_mul_overflow(bhtd, (size_t)3, &z->qkv) ||
        __builtin_mul_overflow(bhtt, sizeof(float), &z->scores_bytes))
        return false;
    z->out = bhtd;
    z->lse = bht;
    /* qkv and dqkv, out and dout, lse */
    if (__builtin_mul_overflow(z->qkv + z->out, (size_t)2, &sum) ||
        __builtin_add_overflow(sum, z->lse, &sum) ||
        __builtin_mul_overflow(sum, sizeof(float), &bytes))
        return false;
    z->args_bytes = bytes;
    return true;
}

/* The unfused backward holds three (B, H, T, T) matrices besides the arguments. */
static int check_memory(const attention_options *o, const tw_device_info *info,
                        const attention_sizes *z) {
    double need = (double)z->args_bytes + 3.0 * (double)z->scores_bytes;
    /* Host copies: inputs, and both paths' outputs and gradients. On cpu they share memory. */
    if (info->backend == TW_BACKEND_CPU) need += 3.0 * (double)(z->qkv + z->out) * sizeof(float);
    char need_text[32], have_text[32];
    if (info->memory_bytes && need > (double)info->memory_bytes)
        return cli_runtime_error(
            PROG,
            "--batch %d --heads %d --seq %d --head-dim %d needs %s on %s (the unfused path "
            "holds three (B, H, T, T) matrices), which has %s; lower --seq or --batch",
            o->batch, o->heads, o->seq, o->head_dim, cli_format_bytes(need, need_text, 32),
            info->spec, cli_format_bytes((double)info->memory_bytes, have_text, 32));
    return CLI_EXIT_OK;
}

/* Strides and offsets for the chosen layout (see the file comment). */
static void layout_args(const attention_options *o, attention_run *r) {
    const int64_t B = o->batch, H = o->heads, T = o->seq, D = o->head_dim, C = H * D;
    tw_attention_args *a = &r->args;
    memset(a, 0, sizeof *a);
    a->dtype = TW_DTYPE_F32;
    a->batch = o->batch;
    a->heads = o->heads;
    a->seq_len = o->seq;
    a->head_dim = o->head_dim;
    a->scale = 1.0f / sqrtf((float)o->head_dim);
    size_t k_off, v_off;
    if (o->layout == LAYOUT_PACKED) {
        a->qkv_stride = (tw_bhtd_stride){T * 3 * C, D, 3 * C};
        a->out_stride = (tw_bhtd_stride){T * C, D, C};
        k_off = (size_t)C;
        v_off = 2 * (size_t)C;
    } else {
        a->qkv_stride = (tw_bhtd_stride){H * T * D, T * D, D};
        a->out_stride = a->qkv_stride;
        k_off = (size_t)(B * H * T * D);
        v_off = 2 * k_off;
    }
    a->q = tw_at(r->qkv, 0);
    a->k = tw_at(r->qkv, k_off);
    a->v = tw_at(r->qkv, v_off);
    a->dq = tw_at(r->dqkv, 0);
    a->dk = tw_at(r->dqkv, k_off);
    a->dv = tw_at(r->dqkv, v_off);
    a->out = tw_at(r->out, 0);
    a->dout = tw_at(r->dout, 0);
    a->lse = tw_at(r->lse, 0);
}

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

static int prepare(const attention_options *o, const attention_sizes *z, attention_run *r) {
    tw_status status = tw_device_open(o->device, &r->device);
    if (status != TW_OK) return cli_library_error(PROG, status);
    int rc = check_memory(o, tw_device_get_info(r->device), z);
    if (rc != CLI_EXIT_OK) return rc;
    size_t qkv = z->qkv * sizeof(float), out = z->out * sizeof(float);
    r->host_qkv = malloc(qkv);
    r->host_dout = malloc(out);
    r->out_fused = malloc(out);
    r->out_unfused = malloc(out);
    r->grad_fused = malloc(qkv);
    r->grad_unfused = malloc(qkv);
    for (int i = 0; i < 4; i++) r->times[i] = calloc((size_t)o->repeat, sizeof(double));
    if (!r->host_qkv || !r->host_dout || !r->out_fused || !r->out_unfused || !r->grad_fused ||
        !r->grad_unfused || !r->times[0] || !r->times[1] || !r->times[2] || !r->times[3])
        return cli_runtime_error(PROG, "out of host memory");
    fill_inputs(r->host_qkv, z->qkv, 11);
    fill_inputs(r->host_dout, z->out, 12);
    if ((status = tw_buffer_alloc(r->device, qkv, &r->qkv)) != TW_OK ||
        (status = tw_buffer_alloc(r->device, qkv, &r->dqkv)) != TW_OK ||
        (status = tw_buffer_alloc(r->device, out, &r->out)) != TW_OK ||
        (status = tw_buffer_alloc(r->device, out, &r->dout)) != TW_OK ||
        (status = tw_buffer_alloc(r->device, z->lse * sizeof(float), &r->lse)) != TW_OK ||
        (status = tw_buffer_upload(r->qkv, 0, r->host_qkv, qkv)) != TW_OK ||
        (status = tw_buffer_upload(r->dout, 0, r->host_dout, out)) != TW_OK)
        return cli_library_error(PROG, status);
    layout_args(o, r);
    return CLI_EXIT_OK;
}

static void cleanup(attention_run *r) {
    tw_buffer_free(r->qkv);
    tw_buffer_free(r->dqkv);
    tw_buffer_free(r->out);
    tw_buffer_free(r->dout);
    tw_buffer_free(r->lse);
    tw_device_close(r->device);
    free(r->host_qkv);
    free(r->host_dout);
    free(r->out_fused);
    free(r->out_unfused);
    free(r->grad_fused);
    free(r->grad_unfused);
    for (int i = 0; i < 4; i++) free(r->times[i]);
    for (int v = 0; v < MAX_VARIANTS; v++) free(r->variant_times[v][0]), free(r->variant_times[v][1]);
}

typedef tw_status (*attention_op)(tw_device *device, const tw_attention_args *args);

/* Runs one op, timed and with its peak bytes; a backward op starts from zero gradients. */
static int timed_op(attention_run *r, attention_op op, bool backward, double *ms, size_t *peak,
                    size_t *scratch) {
    tw_status status = TW_OK;
    if (backward) status = tw_buffer_fill_f32(r->dqkv, 0, tw_buffer_size(r->dqkv) / 4, 0.0f);
    if (status == TW_OK) status = tw_device_sync(r->device);
    if (status != TW_OK) return cli_library_error(PROG, status);
    tw_device_reset_peak(r->device);
    size_t before = tw_device_bytes_in_use(r->device);
    double start = cli_now_ms();
    status = op(r->device, &r->args);
    if (status == TW_OK) status = tw_device_sync(r->device);
    *ms = cli_now_ms() - start;
    if (status != TW_OK) return cli_library_error(PROG, status);
    size_t high = tw_device_peak_bytes(r->device);
    if (high > *peak) *peak = high;
    if (high - before > *scratch) *scratch = high - before;
    return CLI_EXIT_OK;
}

/* Largest |x - y| over one (B, H, T, D) tensor at `offset` with `stride`, and largest |y|. */
static double max_diff(const attention_options *o, const float *x, const float *y, size_t offset,
                       tw_bhtd_stride s, double *max_abs) {
    double worst = 0.0;
    for (int b = 0; b < o->batch; b++)
        for (int h = 0; h < o->heads; h++)
            for (int t = 0; t < o->seq; t++) {
                size_t base = offset + (size_t)b * (size_t)s.b + (size_t)h * (size_t)s.h +
                              (size_t)t * (size_t)s.t;
                for (int d = 0; d < o->head_dim; d++) {
                    double diff = fabs((double)x[base + d] - (double)y[base + d]);
                    if (!(diff <= worst)) worst = diff; /* NaN sticks */
                    if (fabs((double)y[base + d]) > *max_abs) *max_abs = fabs((double)y[base + d]);
                }
            }
    return worst;
}

/* Fused then unfused, once, on the same inputs: outputs and gradients compared on the host. */
static int correctness(const attention_options *o, const attention_sizes *z, attention_run *r) {
    const attention_op ops[4] = {tw_attention_fwd, tw_attention_bwd, tw_attention_unfused_fwd,
                                 tw_attention_unfused_bwd};
    float *outs[2] = {r->out_fused, r->out_unfused}, *grads[2] = {r->grad_fused, r->grad_unfused};
    for (int path = 0; path < 2; path++) {
        double ms;
        size_t peak = 0, scratch = 0;
        int rc = timed_op(r, ops[2 * path], false, &ms, &peak, &scratch);
        tw_status status = rc == CLI_EXIT_OK ? tw_buffer_download(r->out, 0, outs[path],
                                                                  z->out * sizeof(float))
                                             : TW_OK;
        if (rc == CLI_EXIT_OK && status == TW_OK)
            rc = timed_op(r, ops[2 * path + 1], true, &ms, &peak, &scratch);
        if (rc == CLI_EXIT_OK && status == TW_OK)
            status = tw_buffer_download(r->dqkv, 0, grads[path], z->qkv * sizeof(float));
        if (status != TW_OK) return cli_library_error(PROG, status);
        if (rc != CLI_EXIT_OK) return rc;
    }
    const tw_attention_args *a = &r->args;
    r->diff_out = max_diff(o, r->out_fused, r->out_unfused, 0, a->out_stride, &r->max_out);
    r->diff_dq = max_diff(o, r->grad_fused, r->grad_unfused, a->dq.offset, a->qkv_stride, &r->max_grad);
    r->diff_dk = max_diff(o, r->grad_fused, r->grad_unfused, a->dk.offset, a->qkv_stride, &r->max_grad);
    r->diff_dv = max_diff(o, r->grad_fused, r->grad_unfused, a->dv.offset, a->qkv_stride, &r->max_grad);
    return CLI_EXIT_OK;
}

/* The fused ops once on --against's device, same inputs and layout; its out and gradients are
 * compared with this device's fused ones (r->out_fused, r->grad_fused). */
static int against(const attention_options *o, const attention_sizes *z, attention_run *r) {
    attention_run other;
    memset(&other, 0, sizeof other);
    size_t qkv = z->qkv * sizeof(float), out = z->out * sizeof(float);
    float *host_out = malloc(out), *host_grad = malloc(qkv);
    if (!host_out || !host_grad) {
        free(host_out);
        free(host_grad);
        return cli_runtime_error(PROG, "out of host memory for --against's results");
    }
    tw_status status = tw_device_open(o->against, &other.device);
    if (status == TW_OK) {
        snprintf(r->against_spec, sizeof r->against_spec, "%s",
                 tw_device_get_info(other.device)->spec);
        if ((status = tw_buffer_alloc(other.device, qkv, &other.qkv)) == TW_OK &&
            (status = tw_buffer_alloc(other.device, qkv, &other.dqkv)) == TW_OK &&
            (status = tw_buffer_alloc(other.device, out, &other.out)) == TW_OK &&
            (status = tw_buffer_alloc(other.device, out, &other.dout)) == TW_OK &&
            (status = tw_buffer_alloc(other.device, z->lse * sizeof(float), &other.lse)) == TW_OK &&
            (status = tw_buffer_upload(other.qkv, 0, r->host_qkv, qkv)) == TW_OK &&
            (status = tw_buffer_upload(other.dout, 0, r->host_dout, out)) == TW_OK) {
            layout_args(o, &other);
            status = tw_attention_fwd(other.device, &other.args);
        }
    }
    if (status == TW_OK) status = tw_buffer_download(other.out, 0, host_out, out);
    if (status == TW_OK) status = tw_buffer_fill_f32(other.dqkv, 0, z->qkv, 0.0f);
    if (status == TW_OK) status = tw_attention_bwd(other.device, &other.args);
    if (status == TW_OK) status = tw_buffer_download(other.dqkv, 0, host_grad, qkv);
    int rc = status == TW_OK ? CLI_EXIT_OK : cli_library_error(PROG, status);
    if (rc == CLI_EXIT_OK) {
        const tw_attention_args *a = &r->args;
        double ignored = 0.0;
        r->against_out = max_diff(o, r->out_fused, host_out, 0, a->out_stride, &ignored);
        r->against_dq = max_diff(o, r->grad_fused, host_grad, a->dq.offset, a->qkv_stride, &ignored);
        r->against_dk = max_diff(o, r->grad_fused, host_grad, a->dk.offset, a->qkv_stride, &ignored);
        r->against_dv = max_diff(o, r->grad_fused, host_grad, a->dv.offset, a->qkv_stride, &ignored);
    }
    free(host_out);
    free(host_grad);
    tw_buffer_free(other.qkv);
    tw_buffer_free(other.dqkv);
    tw_buffer_free(other.out);
    tw_buffer_free(other.dout);
    tw_buffer_free(other.lse);
    tw_device_close(other.device);
    return rc;
}

/* --variants: the device's variants and room for their times. */
static int variants_prepare(const attention_options *o, attention_run *r) {
    r->variant_count = tw_device_kernel_variants(r->device, "attention_fwd", r->variant_names,
                                                 MAX_VARIANTS);
    if (r->variant_count > MAX_VARIANTS) r->variant_count = MAX_VARIANTS;
    for (int v = 0; v < r->variant_count; v++)
        for (int k = 0; k < 2; k++) {
            r->variant_times[v][k] = calloc((size_t)o->repeat, sizeof(double));
            if (!r->variant_times[v][k]) return cli_runtime_error(PROG, "out of host memory");
        }
    return CLI_EXIT_OK;
}

/* One round of every variant forced on both ops (fwd, then bwd on its out and lse), then the
 * device's own choice again. */
static int variants_round(attention_run *r, int round) {
    for (int v = 0; v < r->variant_count; v++) {
        size_t peak = 0, scratch = 0;
        tw_status status = tw_device_force_kernel_variant(r->device, "attention_fwd",
                                                          r->variant_names[v]);
        if (status == TW_OK)
            status = tw_device_force_kernel_variant(r->device, "attention_bwd",
                                                    r->variant_names[v]);
        if (status != TW_OK) return cli_library_error(PROG, status);
        int rc = timed_op(r, tw_attention_fwd, false, &r->variant_times[v][0][round], &peak,
                          &scratch);
        if (rc == CLI_EXIT_OK)
            rc = timed_op(r, tw_attention_bwd, true, &r->variant_times[v][1][round], &peak,
                          &scratch);
        if (rc != CLI_EXIT_OK) return rc;
    }
    tw_status status = tw_device_force_kernel_variant(r->device, "attention_fwd", NULL);
    if (status == TW_OK) status = tw_device_force_kernel_variant(r->device, "attention_bwd", NULL);
    return status == TW_OK ? CLI_EXIT_OK : cli_library_error(PROG, status);
}

/* R rounds of fused fwd, fused bwd, unfused fwd, unfused bwd (and with --variants every
 * variant's fwd and bwd), interleaved so machine noise falls on all alike. The fused backward
 * reads the fused forward's out and lse. */
static int measure(const attention_options *o, attention_run *r) {
    path_stats *f = &r->fused, *u = &r->unfused;
    if (o->variants) {
        int rc = variants_prepare(o, r);
        /* An untimed round first: a variant's first call builds its kernels. */
        if (rc == CLI_EXIT_OK && r->variant_count > 0) rc = variants_round(r, 0);
        if (rc != CLI_EXIT_OK) return rc;
    }
    for (int i = 0; i < o->repeat; i++) {
        if (o->variants && r->variant_count > 0) {
            int rc = variants_round(r, i);
            if (rc != CLI_EXIT_OK) return rc;
        }
        int rc = timed_op(r, tw_attention_fwd, false, &r->times[0][i], &f->fwd_peak, &f->fwd_scratch);
        if (rc == CLI_EXIT_OK)
            rc = timed_op(r, tw_attention_bwd, true, &r->times[1][i], &f->bwd_peak, &f->bwd_scratch);
        if (rc == CLI_EXIT_OK)
            rc = timed_op(r, tw_attention_unfused_fwd, false, &r->times[2][i], &u->fwd_peak,
                          &u->fwd_scratch);
        if (rc == CLI_EXIT_OK)
            rc = timed_op(r, tw_attention_unfused_bwd, true, &r->times[3][i], &u->bwd_peak,
                          &u->bwd_scratch);
        if (rc != CLI_EXIT_OK) return rc;
    }
    f->fwd_ms = cli_median(r->times[0], o->repeat);
    f->bwd_ms = cli_median(r->times[1], o->repeat);
    u->fwd_ms = cli_median(r->times[2], o->repeat);
    u->bwd_ms = cli_median(r->times[3], o->repeat);
    for (int v = 0; v < r->variant_count; v++)
        for (int k = 0; k < 2; k++)
            r->variant_ms[v][k] = cli_median(r->variant_times[v][k], o->repeat);
    return CLI_EXIT_OK;
}

static void print_path_text(const char *name, const path_stats *p) {
    char fp[32], bp[32], fs[32], bs[32];
    printf("  %-8s %10.3f %12.3f   %12s %12s   %12s %12s\n", name, p->fwd_ms, p->bwd_ms,
           cli_format_bytes((double)p->fwd_peak, fp, 32), cli_format_bytes((double)p->bwd_peak, bp, 32),
           cli_format_bytes((double)p->fwd_scratch, fs, 32),
           cli_format_bytes((double)p->bwd_scratch, bs, 32));
}

static void print_text(const attention_options *o, const attention_sizes *z,
                       const attention_run *r) {
    const tw_device_info *info = tw_device_get_info(r->device);
    char args_text[32];
    printf("attention on %s (%s): B=%d H=%d T=%d D=%d layout=%s, median of %d run(s)\n",
           info->spec, info->name, o->batch, o->heads, o->seq, o->head_dim, LAYOUTS[o->layout],
           o->repeat);
    printf("  %-8s %10s %12s   %12s %12s   %12s %12s\n", "path", "fwd ms", "bwd ms", "fwd peak",
           "bwd peak", "fwd scratch", "bwd scratch");
    print_path_text("fused", &r->fused);
    print_path_text("unfused", &r->unfused);
    printf("  fused speedup: fwd %.2fx, bwd %.2fx\n", r->unfused.fwd_ms / r->fused.fwd_ms,
           r->unfused.bwd_ms / r->fused.bwd_ms);
    if (o->variants && r->variant_count == 0)
        printf("  variants: the device has a single fused attention kernel\n");
    for (int v = 0; v < r->variant_count; v++)
        printf("  variant %-8s fwd %10.3f ms  bwd %12.3f ms   (fused, the device's choice: "
               "%.2fx / %.2fx of it)\n",
               r->variant_names[v], r->variant_ms[v][0], r->variant_ms[v][1],
               r->variant_ms[v][0] / r->fused.fwd_ms, r->variant_ms[v][1] / r->fused.bwd_ms);
    printf("  peak = all benchmark buffers on the device (%s: q, k, v, out, lse, dout, dq, dk, dv)"
           " + the op's scratch\n",
           cli_format_bytes((double)z->args_bytes, args_text, 32));
    printf("  max |fused - unfused|: out %.3g (max |out| %.3g), dq %.3g, dk %.3g, dv %.3g "
           "(max |grad| %.3g)\n",
           r->diff_out, r->max_out, r->diff_dq, r->diff_dk, r->diff_dv, r->max_grad);
    if (o->against)
        printf("  max |fused on %s - fused on %s|: out %.3g, dq %.3g, dk %.3g, dv %.3g\n",
               info->spec, r->against_spec, r->against_out, r->against_dq, r->against_dk,
               r->against_dv);
}

static void record_path(cJSON *record, const char *name, const path_stats *p) {
    cJSON *path = record ? cJSON_AddObjectToObject(record, name) : NULL;
    tw_record_number(path, "fwd_ms", p->fwd_ms);
    tw_record_number(path, "bwd_ms", p->bwd_ms);
    tw_record_number(path, "fwd_peak_bytes", (double)p->fwd_peak);
    tw_record_number(path, "bwd_peak_bytes", (double)p->bwd_peak);
    tw_record_number(path, "fwd_scratch_bytes", (double)p->fwd_scratch);
    tw_record_number(path, "bwd_scratch_bytes", (double)p->bwd_scratch);
}

static void write_record(output *out, const attention_options *o, const attention_sizes *z,
                         const attention_run *r) {
    const tw_device_info *info = tw_device_get_info(r->device);
    cJSON *j = output_new(out, "bench");
    tw_record_string(j, "device", info->spec);
    tw_record_string(j, "device_name", info->name);
    tw_record_int(j, "batch", o->batch);
    tw_record_int(j, "heads", o->heads);
    tw_record_int(j, "seq_len", o->seq);
    tw_record_int(j, "head_dim", o->head_dim);
    tw_record_string(j, "layout", LAYOUTS[o->layout]);
    tw_record_int(j, "repeat", o->repeat);
    tw_record_number(j, "argument_bytes", (double)z->args_bytes);
    record_path(j, "fused", &r->fused);
    record_path(j, "unfused", &r->unfused);
    cJSON *diff = j ? cJSON_AddObjectToObject(j, "max_abs_diff") : NULL;
    tw_record_number(diff, "out", r->diff_out);
    tw_record_number(diff, "dq", r->diff_dq);
    tw_record_number(diff, "dk", r->diff_dk);
    tw_record_number(diff, "dv", r->diff_dv);
    if (j && r->variant_count > 0) {
        cJSON *variants = cJSON_AddObjectToObject(j, "variants");
        for (int v = 0; v < r->variant_count; v++) {
            cJSON *one = variants ? cJSON_AddObjectToObject(variants, r->variant_names[v]) : NULL;
            tw_record_number(one, "fwd_ms", r->variant_ms[v][0]);
            tw_record_number(one, "bwd_ms", r->variant_ms[v][1]);
        }
    }
    if (j && o->against) {
        cJSON *against = cJSON_AddObjectToObject(j, "against");
        tw_record_string(against, "device", r->against_spec);
        tw_record_number(against, "out", r->against_out);
        tw_record_number(against, "dq", r->against_dq);
        tw_record_number(against, "dk", r->against_dk);
        tw_record_number(against, "dv", r->against_dv);
    }
    output_record(out, j);
}

/* fp32 paths that sum in different orders agree to a few ulps of the largest magnitude. */
static int check_agreement(const attention_options *o, const attention_run *r) {
    double out_tol = 1e-3 * (1.0 + r->max_out), grad_tol = 1e-3 * (1.0 + r->max_grad);
    if (o->against && !(r->against_out <= out_tol && r->against_dq <= grad_tol &&
                        r->against_dk <= grad_tol && r->against_dv <= grad_tol))
        return cli_runtime_error(PROG, "fused attention on %s and on %s disagree beyond %.2g "
                                       "(out) / %.2g (gradients): see the max |fused on ...| line",
                                 o->device, r->against_spec, out_tol, grad_tol);
    if (r->diff_out <= out_tol && r->diff_dq <= grad_tol && r->diff_dk <= grad_tol &&
        r->diff_dv <= grad_tol)
        return CLI_EXIT_OK;
    return cli_runtime_error(PROG, "fused and unfused attention disagree beyond %.2g (out) / "
                                   "%.2g (gradients): see the max |fused - unfused| line",
                             out_tol, grad_tol);
}

static int run_attention(const attention_options *o, output *out) {
    attention_sizes z;
    if (!sizes_of(o, &z))
        return args_usage_error(PROG, "--batch %d --heads %d --seq %d --head-dim %d: sizes overflow",
                                o->batch, o->heads, o->seq, o->head_dim);
    /* Softmax rows (B*H*T) and the model's C = H*D are ints in the backend interface. */
    if ((double)o->batch * o->heads * o->seq > 2147483647.0 ||
        3.0 * o->heads * (double)o->head_dim > 2147483647.0)
        return args_usage_error(PROG, "--batch * --heads * --seq and 3 * --heads * --head-dim "
                                      "must stay below 2^31");
    attention_run r;
    memset(&r, 0, sizeof r);
    int rc = prepare(o, &z, &r);
    if (rc == CLI_EXIT_OK) rc = correctness(o, &z, &r);
    if (rc == CLI_EXIT_OK && o->against) rc = against(o, &z, &r);
    if (rc == CLI_EXIT_OK) rc = measure(o, &r);
    if (rc == CLI_EXIT_OK) {
        if (out->text) print_text(o, &z, &r);
        if (out->sink) write_record(out, o, &z, &r);
        rc = check_agreement(o, &r);
    }
    cleanup(&r);
    return rc;
}

int cmd_bench_attention(int argc, char **argv) {
    attention_options o = {.layout = LAYOUT_PACKED, .repeat = 5};
    const long long INT_LIMIT = 2147483647;
    arg_spec specs[] = {
        {.name = "--device", .kind = ARG_STRING, .dest = &o.device, .metavar = "SPEC",
         .help = "device to run on: cpu, opencl:N, ... (see 'twist devices')", .required = true},
        {.name = "--batch", .kind = ARG_INT, .dest = &o.batch, .metavar = "B",
         .help = "batch size", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--heads", .kind = ARG_INT, .dest = &o.heads, .metavar = "H",
         .help = "attention heads", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--seq", .kind = ARG_INT, .dest = &o.seq, .metavar = "T",
         .help = "sequence length", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--head-dim", .kind = ARG_INT, .dest = &o.head_dim, .metavar = "D",
         .help = "channels per head", .required = true, .min = 1, .max = INT_LIMIT},
        {.name = "--layout", .kind = ARG_CHOICE, .dest = &o.layout, .metavar = "packed|contiguous",
         .help = "packed (B, T, 3C) QKV as the model keeps it (default), or (B, H, T, D) each",
         .choices = LAYOUTS},
        {.name = "--repeat", .kind = ARG_INT, .dest = &o.repeat, .metavar = "R",
         .help = "timed rounds after the checking pass; medians reported (default 5)", .min = 1,
         .max = 10000},
        {.name = "--against", .kind = ARG_STRING, .dest = &o.against, .metavar = "SPEC",
         .help = "also run the fused ops once on SPEC (e.g. cpu) with the same inputs and "
                 "check that both devices agree"},
        {.name = "--variants", .kind = ARG_FLAG, .dest = &o.variants,
         .help = "also time each kernel variant of the fused ops (forced in turn) in the same "
                 "rounds"},
        output_json_spec(&o.json, "a record (JSON) on stdout instead of the text, or appended "
                                  "to FILE"),
    };
    args_command command = {
        .name = PROG,
        .synopsis = "twist bench attention --device SPEC --batch B --heads H --seq T --head-dim D\n"
                    "                             [--layout packed|contiguous] [--repeat R] "
                    "[--against SPEC] [--variants] [--json[=FILE]]",
        .summary = "Times fused causal attention (forward and backward) against the unfused path\n"
                   "(GEMM + softmax, materialising the (B, H, T, T) scores) on one device, with\n"
                   "their peak device memory, and prints the largest difference between the two.",
        .specs = specs,
        .count = (int)(sizeof specs / sizeof specs[0]),
    };
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    output out;
    int rc = output_open(&out, PROG, "bench attention", o.json);
    if (rc == CLI_EXIT_OK) rc = run_attention(&o, &out);
    return output_close(&out, rc);
}
