/* setenv / unsetenv (POSIX). */
#define _POSIX_C_SOURCE 200809L

/* Every op in f16 and bf16 on a GPU backend (OpenCL, Vulkan) against the cpu backend's fp32
 * result on the same inputs rounded to that type.
 *
 *   test_gpu16 --device opencl:0     (or vulkan:0; several --device flags allowed)
 *
 * Each case lists its tensors (size, role: the op's data type, always fp32, or int32; initial
 * values) and one function that runs the op (or a forward then the backward it needs) on either
 * device. The inputs are drawn in fp32, rounded to the data type, and given to both devices: the
 * cpu in fp32, the tested device in the type. Afterwards every float tensor is compared
 * normwise, max |device - cpu| <= tol * max |cpu| with tol 2e-3 (f16) / 1.6e-2 (bf16): several
 * ulps of the type, since the device rounds its outputs (and accumulates into rounded values)
 * while the cpu keeps fp32. Ops the device does not support in a type are listed as
 * unsupported, not failed. tw_convert is checked bit-exactly against twist/dtype.h. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/dtype.h"
#include "twist/error.h"

typedef enum role { DATA, F32, I32 } role;
/* Initial values: uniform in [lo, hi) (ints: [0, hi)); DISTINCT: a permutation prefix of
 * [0, hi). */
typedef enum init_kind { UNIFORM, DISTINCT } init_kind;

typedef struct tensor_spec {
    size_t n;
    role role;
    init_kind init;
    float lo, hi;
} tensor_spec;

enum { MAX_TENSORS = 12 };

typedef tw_status (*run_fn)(tw_device *device, const tw_mem *t, tw_dtype dtype);

typedef struct op_case {
    const char *name;    /* a label for the output */
    const char *op;      /* the op whose data-type support decides (tw_device_supports_dtype) */
    const char *also_op; /* a second op the case runs (a forward before its backward), or NULL */
    int count;
    tensor_spec tensors[MAX_TENSORS];
    run_fn run;
    bool tiled; /* run with TWIST_GEMM16=tiled TWIST_ATTENTION16=tiled: the tiled kernels even
                   on CPU devices (which otherwise go through fp32, gpu16_via_f32.h) */
} op_case;

/* ------------------------------------------------------------------------------------------------
 * Shapes and the runs
 * ---------------------------------------------------------------------------------------------- */

enum { ROWS = 9, COLS = 70, VOCAB = 67, LD = 72, N = 1000 };
enum { GM = 67, GN = 70, GK = 45, GB = 2 };              /* GEMM: past one 64 x 64 tile */
enum { AB = 2, AH = 2, AT = 70, AD = 16, AC = AH * AD }; /* attention: past one row group */
enum { EB = 2, ET = 5, EC = 24, EV = 7 };                /* embedding: repeated tokens */
enum { SR = 12, SC = 10, SK = 5 };                       /* gather/scatter */

static tw_status run_gemm(tw_device *d, const tw_mem *t, tw_dtype dt, bool ta, bool tb,
                          float beta) {
    tw_gemm_args g = {.dtype = dt, .trans_a = ta, .trans_b = tb, .m = GM, .n = GN, .k = GK,
                      .batch = GB, .alpha = 0.75f, .beta = beta, .a = t[0],
                      .lda = ta ? GM : GK, .stride_a = GM * GK, .b = t[1],
                      .ldb = tb ? GK : GN, .stride_b = GK * GN, .c = t[2], .ldc = GN,
                      .stride_c = GM * GN};
    return tw_gemm(d, &g);
}
static tw_status gemm_nn(tw_device *d, const tw_mem *t, tw_dtype dt) {
    return run_gemm(d, t, dt, false, false, 0.0f);
}
static tw_status gemm_tn_beta(tw_device *d, const tw_mem *t, tw_dtype dt) {
    return run_gemm(d, t, dt, true, false, 0.5f);
}
static tw_status gemm_nt_beta(tw_device *d, const tw_mem *t, tw_dtype dt) {
    return run_gemm(d, t, dt, false, true, -1.0f);
}

/* Packed QKV (B, T, 3C) as the model passes it; out (B, T, C). */
static tw_attention_args attention_args(const tw_mem *t, tw_dtype dt) {
    tw_attention_args a = {.dtype = dt, .batch = AB, .heads = AH, .seq_len = AT, .head_dim = AD,
                           .scale = 1.0f / sqrtf((float)AD),
                           .qkv_stride = {(int64_t)AT * 3 * AC, AD, 3 * AC},
                           .out_stride = {(int64_t)AT * AC, AD, AC}};
    a.q = t[0];
    a.k = t[0];
    a.k.offset += AC;
    a.v = t[0];
    a.v.offset += 2 * AC;
    a.out = t[1];
    a.lse = t[2];
    a.dout = t[3];
    a.dq = t[4];
    a.dk = t[4];
    a.dk.offset += AC;
    a.dv = t[4];
    a.dv.offset += 2 * AC;
    return a;
}
static tw_status attention_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    tw_attention_args a = attention_args(t, dt);
    return tw_attention_fwd(d, &a);
}
static tw_status attention_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    tw_attention_args a = attention_args(t, dt);
    TW_TRY(tw_attention_fwd(d, &a));
    return tw_attention_bwd(d, &a);
}

static tw_status softmax_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    TW_TRY(tw_softmax_fwd(d, ROWS, COLS, 0, t[0], t[1]));
    return tw_softmax_fwd(d, 2 * 7, 7, 7, t[0], t[2]); /* causal, T = 7 */
}
static tw_status softmax_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    TW_TRY(tw_softmax_fwd(d, ROWS, COLS, 0, t[0], t[1]));
    return tw_softmax_bwd(d, ROWS, COLS, t[1], t[2], t[3]);
}

static tw_status layernorm_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_layernorm_fwd(d, ROWS, COLS, 1e-5f, t[0], t[1], t[2], t[3], t[4], t[5]);
}
static tw_status layernorm_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    TW_TRY(layernorm_fwd(d, t, dt));
    return tw_layernorm_bwd(d, ROWS, COLS, t[6], t[0], t[1], t[4], t[5], t[7], t[8], t[9]);
}

static tw_status gelu_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_gelu_fwd(d, N, t[0], t[1]);
}
static tw_status gelu_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_gelu_bwd(d, N, t[0], t[1], t[2]);
}

static tw_status embedding_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_embedding_fwd(d, EB, ET, EC, EV, t[0], t[1], t[2], t[3]);
}
static tw_status embedding_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_embedding_bwd(d, EB, ET, EC, EV, t[0], t[3], t[1], t[2]);
}

static tw_status xent_fwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_softmax_xent_fwd(d, ROWS, VOCAB, LD, t[0], t[1], t[2], t[3], t[4]);
}
static tw_status xent_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    TW_TRY(xent_fwd(d, t, dt));
    return tw_softmax_xent_bwd(d, ROWS, VOCAB, LD, 1.0f / ROWS, t[0], t[1], t[3], t[5]);
}

static tw_status bias_add(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_bias_add(d, ROWS, COLS, t[0], t[1]);
}
static tw_status bias_bwd(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_bias_bwd(d, ROWS, COLS, t[0], t[1]);
}
static tw_status add(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_add(d, N, t[0], t[1], t[2]);
}
static tw_status scale(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_scale(d, N, -1.5f, t[0], t[1]);
}
static tw_status sum_sq(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_sum_sq(d, N, t[0], t[1]);
}
static tw_status adamw(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    tw_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .grad_scale = 0.5f, .step = 3};
    return tw_adamw_step(d, N, &a, t[0], t[1], t[2], t[3]);
}
static tw_status gather_rows(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_gather_rows(d, SR, SC, SK, t[0], t[1], t[2]);
}
static tw_status scatter_rows(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_scatter_rows(d, SR, SC, SK, t[0], t[1], t[2], true);
}
static tw_status gather_cols(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_gather_cols(d, SR, SC, SK, t[0], t[1], t[2]);
}
static tw_status scatter_cols(tw_device *d, const tw_mem *t, tw_dtype dt) {
    (void)dt;
    return tw_scatter_cols(d, SR, SC, SK, t[0], t[1], t[2], false);
}

#define T_DATA(n, lo, hi) {(n), DATA, UNIFORM, (lo), (hi)}
#define T_F32(n, lo, hi) {(n), F32, UNIFORM, (lo), (hi)}
#define T_INT(n, hi) {(n), I32, UNIFORM, 0, (hi)}
#define T_IDX(n, hi) {(n), I32, DISTINCT, 0, (hi)}

static const op_case cases[] = {
    {"gemm NN", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_DATA(GB * GM * GN, -1, 1)},
     gemm_nn, false},
    {"gemm TN beta, C f32", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_F32(GB * GM * GN, -1, 1)},
     gemm_tn_beta, false},
    {"gemm NT beta", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_DATA(GB * GM * GN, -1, 1)},
     gemm_nt_beta, false},
    {"gemm NN tiled", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_DATA(GB * GM * GN, -1, 1)},
     gemm_nn, true},
    {"gemm TN beta, C f32 tiled", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_F32(GB * GM * GN, -1, 1)},
     gemm_tn_beta, true},
    {"gemm NT beta tiled", "gemm", NULL, 3,
     {T_DATA(GB * GM * GK, -1, 1), T_DATA(GB * GK * GN, -1, 1), T_DATA(GB * GM * GN, -1, 1)},
     gemm_nt_beta, true},
    {"attention_fwd", "attention_fwd", NULL, 5,
     {T_DATA(AB * AT * 3 * AC, -2, 2), T_DATA(AB * AT * AC, 0, 0), T_F32(AB * AH * AT, 0, 0),
      T_DATA(AB * AT * AC, -1, 1), T_DATA(AB * AT * 3 * AC, -1, 1)},
     attention_fwd, false},
    {"attention_bwd", "attention_bwd", "attention_fwd", 5,
     {T_DATA(AB * AT * 3 * AC, -2, 2), T_DATA(AB * AT * AC, 0, 0), T_F32(AB * AH * AT, 0, 0),
      T_DATA(AB * AT * AC, -1, 1), T_DATA(AB * AT * 3 * AC, -1, 1)},
     attention_bwd, false},
    {"attention_fwd tiled", "attention_fwd", NULL, 5,
     {T_DATA(AB * AT * 3 * AC, -2, 2), T_DATA(AB * AT * AC, 0, 0), T_F32(AB * AH * AT, 0, 0),
      T_DATA(AB * AT * AC, -1, 1), T_DATA(AB * AT * 3 * AC, -1, 1)},
     attention_fwd, true},
    {"attention_bwd tiled", "attention_bwd", "attention_fwd", 5,
     {T_DATA(AB * AT * 3 * AC, -2, 2), T_DATA(AB * AT * AC, 0, 0), T_F32(AB * AH * AT, 0, 0),
      T_DATA(AB * AT * AC, -1, 1), T_DATA(AB * AT * 3 * AC, -1, 1)},
     attention_bwd, true},
    {"softmax_fwd", "softmax_fwd", NULL, 3,
     {T_DATA(ROWS * COLS, -4, 4), T_DATA(ROWS * COLS, 0, 0), T_DATA(14 * 7, 0, 0)},
     softmax_fwd, false},
    {"softmax_bwd", "softmax_bwd", "softmax_fwd", 4,
     {T_DATA(ROWS * COLS, -4, 4), T_DATA(ROWS * COLS, 0, 0), T_DATA(ROWS * COLS, -1, 1),
      T_DATA(ROWS * COLS, -1, 1)},
     softmax_bwd, false},
    {"layernorm_fwd", "layernorm_fwd", NULL, 6,
     {T_DATA(ROWS * COLS, -2, 3), T_DATA(COLS, 0.5f, 1.5f), T_DATA(COLS, -0.5f, 0.5f),
      T_DATA(ROWS * COLS, 0, 0), T_F32(ROWS, 0, 0), T_F32(ROWS, 0, 0)},
     layernorm_fwd, false},
    {"layernorm_bwd", "layernorm_bwd", "layernorm_fwd", 10,
     {T_DATA(ROWS * COLS, -2, 3), T_DATA(COLS, 0.5f, 1.5f), T_DATA(COLS, -0.5f, 0.5f),
      T_DATA(ROWS * COLS, 0, 0), T_F32(ROWS, 0, 0), T_F32(ROWS, 0, 0),
      T_DATA(ROWS * COLS, -1, 1), T_DATA(ROWS * COLS, -1, 1), T_DATA(COLS, -1, 1),
      T_DATA(COLS, -1, 1)},
     layernorm_bwd, false},
    {"gelu_fwd", "gelu_fwd", NULL, 2, {T_DATA(N, -4, 4), T_DATA(N, 0, 0)}, gelu_fwd, false},
    {"gelu_bwd", "gelu_bwd", NULL, 3, {T_DATA(N, -4, 4), T_DATA(N, -1, 1), T_DATA(N, -1, 1)},
     gelu_bwd, false},
    {"embedding_fwd", "embedding_fwd", NULL, 4,
     {T_INT(EB * ET, EV), T_DATA(EV * EC, -1, 1), T_DATA(ET * EC, -1, 1),
      T_DATA(EB * ET * EC, 0, 0)},
     embedding_fwd, false},
    {"embedding_bwd", "embedding_bwd", NULL, 4,
     {T_INT(EB * ET, EV), T_DATA(EV * EC, -1, 1), T_DATA(ET * EC, -1, 1),
      T_DATA(EB * ET * EC, -1, 1)},
     embedding_bwd, false},
    {"softmax_xent_fwd", "softmax_xent_fwd", NULL, 5,
     {T_DATA(ROWS * LD, -3, 3), T_INT(ROWS, VOCAB), T_F32(ROWS, 0, 0), T_F32(ROWS, 0, 0),
      T_F32(ROWS, 0, 0)},
     xent_fwd, false},
    {"softmax_xent_bwd", "softmax_xent_bwd", "softmax_xent_fwd", 6,
     {T_DATA(ROWS * LD, -3, 3), T_INT(ROWS, VOCAB), T_F32(ROWS, 0, 0), T_F32(ROWS, 0, 0),
      T_F32(ROWS, 0, 0), T_DATA(ROWS * LD, -0.1f, 0.1f)},
     xent_bwd, false},
    {"bias_add", "bias_add", NULL, 2, {T_DATA(COLS, -1, 1), T_DATA(ROWS * COLS, -1, 1)},
     bias_add, false},
    {"bias_bwd", "bias_bwd", NULL, 2, {T_DATA(ROWS * COLS, -1, 1), T_DATA(COLS, -1, 1)},
     bias_bwd, false},
    {"add", "add", NULL, 3, {T_DATA(N, -1, 1), T_DATA(N, -1, 1), T_DATA(N, 0, 0)}, add, false},
    {"scale", "scale", NULL, 2, {T_DATA(N, -1, 1), T_DATA(N, 0, 0)}, scale, false},
    {"sum_sq", "sum_sq", NULL, 2, {T_DATA(N, -1, 1), T_F32(1, 0, 0)}, sum_sq, false},
    {"adamw_step", "adamw_step", NULL, 4,
     {T_F32(N, -1, 1), T_DATA(N, -1, 1), T_F32(N, -0.1f, 0.1f), T_F32(N, 0.001f, 0.01f)},
     adamw, false},
    {"gather_rows", "gather_rows", NULL, 3,
     {T_IDX(SK, SR), T_DATA(SR * SC, -1, 1), T_DATA(SK * SC, 0, 0)}, gather_rows, false},
    {"scatter_rows", "scatter_rows", NULL, 3,
     {T_IDX(SK, SR), T_DATA(SK * SC, -1, 1), T_DATA(SR * SC, -1, 1)}, scatter_rows, false},
    {"gather_cols", "gather_cols", NULL, 3,
     {T_IDX(SK, SC), T_DATA(SR * SC, -1, 1), T_DATA(SR * SK, 0, 0)}, gather_cols, false},
    {"scatter_cols", "scatter_cols", NULL, 3,
     {T_IDX(SK, SC), T_DATA(SR * SK, -1, 1), T_DATA(SR * SC, -1, 1)}, scatter_cols, false},
};

/* ------------------------------------------------------------------------------------------------
 * The harness
 * ---------------------------------------------------------------------------------------------- */

static float round_to(tw_dtype dt, float x) {
    if (dt == TW_DTYPE_F16) return tw_f16_to_f32(tw_f32_to_f16(x));
    if (dt == TW_DTYPE_BF16) return tw_bf16_to_f32(tw_f32_to_bf16(x));
    return x;
}

/* Tensor `spec` of a case whose data type is dt: the type it has on the tested device. */
static tw_dtype tensor_type(const tensor_spec *spec, tw_dtype dt) {
    return spec->role == DATA ? dt : spec->role == I32 ? TW_DTYPE_I32 : TW_DTYPE_F32;
}

static void fill(tw_test_rng *rng, const tensor_spec *spec, tw_dtype dt, float *f, int32_t *i) {
    if (spec->role == I32) {
        int range = (int)spec->hi;
        int *perm = malloc(sizeof(int) * (size_t)range);
        for (int k = 0; k < range; k++) perm[k] = k;
        for (int k = range - 1; k > 0; k--) {
            int j = tw_test_rng_int(rng, k + 1), tmp = perm[k];
            perm[k] = perm[j];
            perm[j] = tmp;
        }
        for (size_t k = 0; k < spec->n; k++)
            i[k] = spec->init == DISTINCT ? perm[k] : tw_test_rng_int(rng, range);
        free(perm);
        return;
    }
    for (size_t k = 0; k < spec->n; k++) {
        float x = spec->lo == spec->hi ? spec->lo : tw_test_rng_uniform(rng, spec->lo, spec->hi);
        f[k] = spec->role == DATA ? round_to(dt, x) : x;
    }
}

/* Host values (fp32 or int32) to the device's representation in type `t`. */
static void *encode(const float *f, const int32_t *i, size_t n, tw_dtype t) {
    void *out = malloc(n * tw_dtype_size(t));
    for (size_t k = 0; k < n; k++) {
        if (t == TW_DTYPE_I32) ((int32_t *)out)[k] = i[k];
        else if (t == TW_DTYPE_F32) ((float *)out)[k] = f[k];
        else if (t == TW_DTYPE_F16) ((uint16_t *)out)[k] = tw_f32_to_f16(f[k]);
        else ((uint16_t *)out)[k] = tw_f32_to_bf16(f[k]);
    }
    return out;
}

static float decode(const void *data, size_t k, tw_dtype t) {
    if (t == TW_DTYPE_F16) return tw_f16_to_f32(((const uint16_t *)data)[k]);
    if (t == TW_DTYPE_BF16) return tw_bf16_to_f32(((const uint16_t *)data)[k]);
    return ((const float *)data)[k];
}

/* Uploads the case's tensors in the types `dt` gives them, runs, downloads as fp32 into out. */
static tw_status run_on(tw_device *device, const op_case *c, tw_dtype dt, float *const *f,
                        int32_t *const *ints, float **out) {
    tw_buffer *buffers[MAX_TENSORS] = {0};
    tw_mem mems[MAX_TENSORS];
    tw_status status = TW_OK;
    for (int k = 0; k < c->count && status == TW_OK; k++) {
        const tensor_spec *spec = &c->tensors[k];
        tw_dtype t = tensor_type(spec, dt);
        size_t bytes = spec->n * tw_dtype_size(t);
        status = tw_buffer_alloc(device, bytes, &buffers[k]);
        if (status != TW_OK) break;
        void *data = encode(f[k], ints[k], spec->n, t);
        status = tw_buffer_upload(buffers[k], 0, data, bytes);
        free(data);
        mems[k] = tw_at_typed(buffers[k], 0, t);
    }
    if (status == TW_OK) status = c->run(device, mems, dt);
    if (status == TW_OK) status = tw_device_sync(device);
    for (int k = 0; k < c->count && status == TW_OK; k++) {
        const tensor_spec *spec = &c->tensors[k];
        if (spec->role == I32) continue;
        tw_dtype t = tensor_type(spec, dt);
        void *data = malloc(spec->n * tw_dtype_size(t));
        status = tw_buffer_download(buffers[k], 0, data, spec->n * tw_dtype_size(t));
        for (size_t e = 0; e < spec->n; e++) out[k][e] = decode(data, e, t);
        free(data);
    }
    for (int k = 0; k < c->count; k++) tw_buffer_free(buffers[k]);
    return status;
}

static bool supported(tw_device *device, const op_case *c, tw_dtype dt) {
    return tw_device_supports_dtype(device, c->op, dt) &&
           (!c->also_op || tw_device_supports_dtype(device, c->also_op, dt));
}

/* Runs one case on the device in dt and on the cpu in fp32; returns the worst normwise error
 * over its float tensors, or -1 when it did not run. */
static double check_case(tw_device *device, tw_device *cpu, const op_case *c, tw_dtype dt,
                         uint64_t seed) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, seed);
    float *f[MAX_TENSORS] = {0}, *got[MAX_TENSORS] = {0}, *ref[MAX_TENSORS] = {0};
    int32_t *ints[MAX_TENSORS] = {0};
    for (int k = 0; k < c->count; k++) {
        size_t n = c->tensors[k].n;
        f[k] = calloc(n, sizeof(float));
        ints[k] = calloc(n, sizeof(int32_t));
        got[k] = calloc(n, sizeof(float));
        ref[k] = calloc(n, sizeof(float));
        fill(&rng, &c->tensors[k], dt, f[k], ints[k]);
    }
    double worst = -1.0;
    tw_status s = run_on(cpu, c, TW_DTYPE_F32, f, ints, ref);
    TW_CHECK(s == TW_OK, "%s: cpu fp32 run failed: %s", c->name, tw_last_error());
    if (s == TW_OK) {
        if (c->tiled) {
            setenv("TWIST_GEMM16", "tiled", 1);
            setenv("TWIST_ATTENTION16", "tiled", 1);
        }
        s = run_on(device, c, dt, f, ints, got);
        if (c->tiled) {
            unsetenv("TWIST_GEMM16");
            unsetenv("TWIST_ATTENTION16");
        }
        TW_CHECK(s == TW_OK, "%s %s: %s", c->name, tw_dtype_name(dt), tw_last_error());
    }
    if (s == TW_OK) {
        worst = 0.0;
        for (int k = 0; k < c->count; k++) {
            if (c->tensors[k].role == I32) continue;
            double max_ref = 0.0, max_diff = 0.0;
            for (size_t e = 0; e < c->tensors[k].n; e++) {
                double diff = fabs((double)got[k][e] - ref[k][e]);
                if (!(diff == diff)) diff = INFINITY; /* NaN */
                if (diff > max_diff) max_diff = diff;
                if (fabs(ref[k][e]) > max_ref) max_ref = fabs(ref[k][e]);
            }
            double err = max_diff / (max_ref > 1e-30 ? max_ref : 1e-30);
            if (err > worst) worst = err;
        }
    }
    for (int k = 0; k < c->count; k++) {
        free(f[k]);
        free(ints[k]);
        free(got[k]);
        free(ref[k]);
    }
    return worst;
}

/* tw_convert over values that exercise rounding, overflow, subnormals and NaN, bit for bit
 * against twist/dtype.h; every ordered pair of float types. */
static void check_convert(tw_device *device) {
    enum { COUNT = 64 };
    float values[COUNT];
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 99);
    const float special[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 3e-8f,
                             6.1e-5f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, NAN,
                             INFINITY, -INFINITY, 3.0e38f, 1.00390625f};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int k = 0; k < COUNT; k++)
        values[k] = k < ns ? special[k] : tw_test_rng_uniform(&rng, -100.0f, 100.0f);
    const tw_dtype types[3] = {TW_DTYPE_F32, TW_DTYPE_F16, TW_DTYPE_BF16};
    for (int a = 0; a < 3; a++) {
        for (int b = 0; b < 3; b++) {
            tw_dtype from = types[a], to = types[b];
            if (from == to) continue;
            if ((from == TW_DTYPE_F16 || to == TW_DTYPE_F16) &&
                !tw_device_supports_dtype(device, "add", TW_DTYPE_F16))
                continue;
            tw_buffer *src = NULL, *dst = NULL;
            TW_CHECK_OK(tw_buffer_alloc(device, COUNT * 4, &src));
            TW_CHECK_OK(tw_buffer_alloc(device, COUNT * 4, &dst));
            if (!src || !dst) {
                tw_buffer_free(src);
                tw_buffer_free(dst);
                continue;
            }
            float exact[COUNT];
            for (int k = 0; k < COUNT; k++) exact[k] = round_to(from, values[k]);
            void *in = encode(exact, NULL, COUNT, from);
            TW_CHECK_OK(tw_buffer_upload(src, 0, in, COUNT * tw_dtype_size(from)));
            free(in);
            tw_status s = tw_convert(device, COUNT, tw_at_typed(src, 0, from),
                                     tw_at_typed(dst, 0, to));
            TW_CHECK(s == TW_OK, "convert %s -> %s: %s", tw_dtype_name(from), tw_dtype_name(to),
                     tw_last_error());
            unsigned char out[COUNT * 4];
            if (s == TW_OK) TW_CHECK_OK(tw_buffer_download(dst, 0, out, COUNT * tw_dtype_size(to)));
            int wrong = 0;
            for (int k = 0; s == TW_OK && k < COUNT; k++) {
                float want = round_to(to, exact[k]), have = decode(out, (size_t)k, to);
                bool same = (isnan(want) && isnan(have)) ||
                            tw_f32_bits(want) == tw_f32_bits(have);
                if (!same && wrong++ < 3)
                    TW_CHECK(false, "convert %s -> %s of %g: got %g, expected %g",
                             tw_dtype_name(from), tw_dtype_name(to), (double)exact[k],
                             (double)have, (double)want);
            }
            tw_buffer_free(src);
            tw_buffer_free(dst);
        }
    }
}

static int run_device(const char *spec, tw_device *cpu) {
    tw_device *device = NULL;
    if (tw_device_open(spec, &device) != TW_OK) {
        printf("%s: not available (%s)\n", spec, tw_last_error());
        return 0;
    }
    const tw_dtype types[2] = {TW_DTYPE_F16, TW_DTYPE_BF16};
    const double tolerance[2] = {2e-3, 1.6e-2};
    int n = (int)(sizeof cases / sizeof cases[0]);
    printf("%s (%s):\n", spec, tw_device_get_info(device)->name);
    for (int ti = 0; ti < 2; ti++) {
        tw_dtype dt = types[ti];
        int unsupported = 0;
        for (int i = 0; i < n; i++) {
            const op_case *c = &cases[i];
            if (!supported(device, c, dt)) {
                printf("  %-5s %-22s unsupported\n", tw_dtype_name(dt), c->name);
                unsupported++;
                continue;
            }
            double err = check_case(device, cpu, c, dt, 1000 + (uint64_t)i);
            if (err < 0) continue;
            printf("  %-5s %-22s max error %.2e (tolerance %.1e)\n", tw_dtype_name(dt), c->name,
                   err, tolerance[ti]);
            TW_CHECK(err <= tolerance[ti], "%s %s %s: error %.3e > %.1e", spec, c->name,
                     tw_dtype_name(dt), err, tolerance[ti]);
        }
        printf("  %s: %d of %d cases supported\n", tw_dtype_name(dt), n - unsupported, n);
    }
    check_convert(device);
    tw_device_close(device);
    return 1;
}

int main(int argc, char **argv) {
    tw_device *cpu = NULL;
    TW_CHECK_OK(tw_device_open("cpu", &cpu));
    if (!cpu) return tw_test_finish("gpu16");
    int ran = 0, asked = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--device") == 0) {
            asked++;
            ran += run_device(argv[++i], cpu);
        }
    }
    if (asked == 0) {
        ran += run_device("opencl:0", cpu);
        ran += run_device("vulkan:0", cpu);
    }
    tw_device_close(cpu);
    if (ran == 0) tw_test_skip("none of the devices asked for is available");
    return tw_test_finish("gpu16");
}
