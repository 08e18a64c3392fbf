/* Gradient checks: every backward op of the CPU backend (device "cpu") against central finite
 * differences of the double-precision reference forward ops (tests/reference.c).
 *
 * For an op y = f(x) and a random upstream gradient g:
 *   L(x) = sum_i g_i f(x)_i                 computed in double by reference.c
 *   dL/dx_j ~ (L(x + h e_j) - L(x - h e_j)) / 2h,   h = 1e-4
 * In double the truncation error is O(h^2 |f'''|) ~ 1e-8 and the rounding error ~1e-16 |L| / h
 * ~ 1e-12 |L|, so the finite difference is good to about 1e-8: any disagreement beyond that is the
 * CPU backend's float backward. It runs with gradient buffers zeroed (the accumulate semantics are
 * checked by test_conformance), and must satisfy
 *   err = max_j |grad_j - fd_j| / max_j |fd_j| <= 1e-3          (per gradient tensor)
 * except where the true gradient is much smaller than the float terms that form it (gelu's tail,
 * two-column layernorm): there the denominator is bounded below by the terms' size (see below).
 * (float arithmetic gives ~1e-6; 1e-3 leaves room for long reductions and still catches any
 * wrong term, which shows up as err ~ 1e-1 or more).
 *
 * adamw_step has no backward: it is checked directly against reference.c's adamw, step by step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "reference.h"

#define GRAD_TOL 1e-3
#define FD_STEP 1e-4

static struct {
    tw_device *cpu;
    tw_test_rng rng;
    char op[32];
    double worst;
    char worst_at[96];
    int cases;
} G;

/* ------------------------------------------------------------------------------------------ */
/* Helpers: device buffers, finite differences, comparison                                    */
/* ------------------------------------------------------------------------------------------ */

static float *random_floats(size_t n, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    tw_test_fill_uniform(&G.rng, x, n, lo, hi);
    return x;
}

static double *widen(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static tw_buffer *upload(const void *x, size_t n) {
    tw_buffer *b = NULL;
    TW_CHECK_OK(tw_buffer_alloc(G.cpu, (n ? n : 1) * 4, &b));
    if (b && n) TW_CHECK_OK(tw_buffer_upload(b, 0, x, n * 4));
    return b;
}

static tw_buffer *zeros(size_t n) {
    tw_buffer *b = NULL;
    TW_CHECK_OK(tw_buffer_alloc(G.cpu, (n ? n : 1) * 4, &b));
    if (b) TW_CHECK_OK(tw_buffer_fill_f32(b, 0, n ? n : 1, 0.0f));
    return b;
}

static float *download(const tw_buffer *b, size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    if (b && n) TW_CHECK_OK(tw_buffer_download(b, 0, x, n * 4));
    return x;
}

/* L(x) in double for the current contents of the context's inputs. */
typedef double (*loss_fn)(void *context);

/* Central differences of L with respect to each of x[0..n), perturbing x in place. */
static double *finite_diff(double *x, size_t n, loss_fn loss, void *context) {
    double *fd = calloc(n ? n : 1, sizeof *fd); /* zeroed: GCC 12 otherwise warns of a maybe-uninitialised read */
    for (size_t j = 0; j < n; j++) {
        double saved = x[j];
        x[j] = saved + FD_STEP;
        double up = loss(context);
        x[j] = saved - FD_STEP;
        double down = loss(context);
        x[j] = saved;
        fd[j] = (up - down) / (2.0 * FD_STEP);
    }
    return fd;
}

static double dot(const double *g, const double *y, size_t n) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += g[i] * y[i];
    return sum;
}

static void op_begin(const char *op) {
    snprintf(G.op, sizeof G.op, "%s", op);
    G.worst = 0.0;
    G.worst_at[0] = '\0';
    G.cases = 0;
}

static void op_end(void) {
    printf("%-14s %2d shapes  worst err %.2e (tol %.0e) at %s\n", G.op, G.cases, G.worst, GRAD_TOL,
           G.worst_at);
    fflush(stdout);
}

/* Compares the backend's gradient with the finite differences over the listed elements
 * (idx == NULL: all n). `floor` bounds the error's denominator from below where the true gradient
 * is far smaller than the float terms that produce it (see gelu and layernorm). */
static void compare_floor(const char *shape, const char *name, const float *got, const double *fd,
                          const size_t *idx, size_t n, double floor) {
    double err = 0.0, scale = 0.0;
    size_t worst = 0;
    for (size_t e = 0; e < n; e++) {
        size_t i = idx ? idx[e] : e;
        scale = fmax(scale, fabs(fd[i]));
        double d = fabs((double)got[i] - fd[i]);
        if (!(d <= err)) err = d, worst = i; /* NaN counts as the worst */
    }
    /* A gradient that is zero everywhere (a masked column, an ignored row) must be ~0. */
    double rel = err / fmax(scale, fmax(floor, 1e-6));
    if (isnan(err)) rel = INFINITY;
    if (rel >= G.worst) {
        G.worst = rel;
        snprintf(G.worst_at, sizeof G.worst_at, "%s %s", shape, name);
    }
    TW_CHECK(rel <= GRAD_TOL, "%s %s %s: err %.3g (element %zu: backend %.9g, finite diff %.9g)",
             G.op, shape, name, rel, worst, (double)got[worst], fd[worst]);
}

static void compare(const char *shape, const char *name, const float *got, const double *fd,
                    const size_t *idx, size_t n) {
    compare_floor(shape, name, got, fd, idx, n, 0.0);
}

static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct attention_context {
    int B, H, T, D;
    float scale;
    tw_bhtd_stride qkv_stride, out_stride;
    size_t q, k, v, qkv_n, out_n;
    double *qkv, *g, *out, *lse;
} attention_context;

static double attention_loss(void *context) {
    attention_context *a = context;
    ref_attention_fwd(a->B, a->H, a->T, a->D, a->scale, a->qkv_stride, a->out_stride,
                      a->qkv + a->q, a->qkv + a->k, a->qkv + a->v, a->out, a->lse);
    return dot(a->g, a->out, a->out_n);
}

/* Indices of the (B, H, T, D) elements of one of q, k, v. */
static size_t *bhtd_indices(const attention_context *a, size_t offset, size_t *n) {
    size_t *idx = malloc((size_t)a->B * a->H * a->T * a->D * sizeof *idx), count = 0;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->H; h++)
            for (int t = 0; t < a->T; t++)
                for (int d = 0; d < a->D; d++)
                    idx[count++] = offset + (size_t)(b * a->qkv_stride.b + h * a->qkv_stride.h +
                                                     t * a->qkv_stride.t + d);
    *n = count;
    return idx;
}

/* The backend: forward for O and lse, then backward into zeroed dq, dk, dv. */
static float *attention_backend_grad(const attention_context *a, const float *qkv,
                                     const float *g) {
    tw_buffer *bqkv = upload(qkv, a->qkv_n), *bout = zeros(a->out_n);
    tw_buffer *blse = zeros((size_t)a->B * a->H * a->T), *bdout = upload(g, a->out_n);
    tw_buffer *bd = zeros(a->qkv_n);
    tw_attention_args args = {.dtype = TW_DTYPE_F32, .batch = a->B, .heads = a->H,
                              .seq_len = a->T, .head_dim = a->D, .scale = a->scale,
                              .qkv_stride = a->qkv_stride, .out_stride = a->out_stride,
                              .q = tw_at(bqkv, a->q), .k = tw_at(bqkv, a->k),
                              .v = tw_at(bqkv, a->v), .out = tw_at(bout, 0),
                              .lse = tw_at(blse, 0), .dout = tw_at(bdout, 0),
                              .dq = tw_at(bd, a->q), .dk = tw_at(bd, a->k), .dv = tw_at(bd, a->v)};
    TW_CHECK_OK(tw_attention_fwd(G.cpu, &args));
    TW_CHECK_OK(tw_attention_bwd(G.cpu, &args));
    float *grad = download(bd, a->qkv_n);
    tw_buffer_free(bqkv), tw_buffer_free(bout), tw_buffer_free(blse), tw_buffer_free(bdout);
    tw_buffer_free(bd);
    return grad;
}

static void attention_check(int B, int H, int T, int D, bool packed) {
    attention_context a = {.B = B, .H = H, .T = T, .D = D, .scale = 1.0f / sqrtf((float)D)};
    int64_t C = (int64_t)H * D;
    if (packed) { /* the model's (B, T, 3C) QKV and (B, T, C) output */
        a.qkv_stride = (tw_bhtd_stride){T * 3 * C, D, 3 * C};
        a.out_stride = (tw_bhtd_stride){T * C, D, C};
        a.q = 0, a.k = (size_t)C, a.v = 2 * (size_t)C, a.qkv_n = (size_t)B * T * 3 * C;
    } else { /* (B, H, T, D) each, back to back */
        a.qkv_stride = a.out_stride = (tw_bhtd_stride){(int64_t)H * T * D, (int64_t)T * D, D};
        size_t n = (size_t)B * H * T * D;
        a.q = 0, a.k = n, a.v = 2 * n, a.qkv_n = 3 * n;
    }
    a.out_n = (size_t)B * T * C;
    float *qkv = random_floats(a.qkv_n, -1.5f, 1.5f), *g = random_floats(a.out_n, -1.0f, 1.0f);
    float *got = attention_backend_grad(&a, qkv, g);
    a.qkv = widen(qkv, a.qkv_n), a.g = widen(g, a.out_n);
    a.out = calloc(a.out_n, sizeof *a.out), a.lse = calloc((size_t)B * H * T, sizeof *a.lse);
    double *fd = finite_diff(a.qkv, a.qkv_n, attention_loss, &a);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d H=%d T=%d D=%d %s", B, H, T, D,
             packed ? "packed" : "contiguous");
    const char *names[3] = {"dq", "dk", "dv"};
    size_t offsets[3] = {a.q, a.k, a.v};
    for (int j = 0; j < 3; j++) {
        size_t n, *idx = bhtd_indices(&a, offsets[j], &n);
        compare(shape, names[j], got, fd, idx, n);
        free(idx);
    }
    G.cases++;
    free(qkv), free(g), free(got), free(a.qkv), free(a.g), free(a.out), free(a.lse), free(fd);
}

static void attention_checks(void) {
    static const int shapes[][4] = {{1, 1, 1, 1}, {1, 1, 3, 2}, {1, 2, 5, 3}, {2, 2, 7, 4},
                                    {1, 1, 9, 5}, {2, 1, 6, 8}, {1, 3, 4, 1}, {1, 2, 17, 7}};
    op_begin("attention");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        attention_check(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], s % 2 == 0);
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct rows_context {
    int rows, cols, causal_t;
    double *x, *g, *y, *w, *b, *mean, *rstd;
} rows_context;

static double softmax_loss(void *context) {
    rows_context *r = context;
    ref_softmax_fwd(r->rows, r->cols, r->causal_t, r->x, r->y);
    return dot(r->g, r->y, (size_t)r->rows * r->cols);
}

static void softmax_check(int rows, int cols, int causal_t) {
    size_t n = (size_t)rows * cols;
    float *x = random_floats(n, -3.0f, 3.0f), *g = random_floats(n, -1.0f, 1.0f);
    tw_buffer *bx = upload(x, n), *by = zeros(n), *bg = upload(g, n), *bdx = zeros(n);
    TW_CHECK_OK(tw_softmax_fwd(G.cpu, rows, cols, causal_t, tw_at(bx, 0), tw_at(by, 0)));
    TW_CHECK_OK(tw_softmax_bwd(G.cpu, rows, cols, tw_at(by, 0), tw_at(bg, 0), tw_at(bdx, 0)));
    float *got = download(bdx, n);
    rows_context r = {.rows = rows, .cols = cols, .causal_t = causal_t, .x = widen(x, n),
                      .g = widen(g, n), .y = calloc(n, sizeof(double))};
    double *fd = finite_diff(r.x, n, softmax_loss, &r);
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%d%s", rows, cols, causal_t ? " causal" : "");
    compare(shape, "dx", got, fd, NULL, n);
    G.cases++;
    tw_buffer_free(bx), tw_buffer_free(by), tw_buffer_free(bg), tw_buffer_free(bdx);
    free(x), free(g), free(got), free(r.x), free(r.g), free(r.y), free(fd);
}

static void softmax_checks(void) {
    static const int shapes[][3] = {{1, 1, 0}, {2, 3, 0}, {3, 7, 0}, {4, 4, 4},
                                    {6, 3, 3}, {5, 17, 0}, {1, 64, 0}};
    op_begin("softmax");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        softmax_check(shapes[s][0], shapes[s][1], shapes[s][2]);
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* LayerNorm                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static double layernorm_loss(void *context) {
    rows_context *r = context;
    ref_layernorm_fwd(r->rows, r->cols, 1e-5, r->x, r->w, r->b, r->y, r->mean, r->rstd);
    return dot(r->g, r->y, (size_t)r->rows * r->cols);
}

static void layernorm_check(int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float *x = random_floats(n, -1.0f, 1.0f), *g = random_floats(n, -1.0f, 1.0f);
    for (int i = 0; i < rows; i++) { /* rows around their own means */
        float shift = tw_test_rng_uniform(&G.rng, -2.0f, 2.0f);
        for (int c = 0; c < cols; c++) x[(size_t)i * cols + c] += shift;
    }
    float *w = random_floats((size_t)cols, 0.5f, 1.5f), *b = random_floats((size_t)cols, -0.5f, 0.5f);
    tw_buffer *bx = upload(x, n), *bw = upload(w, (size_t)cols), *bb = upload(b, (size_t)cols);
    tw_buffer *bout = zeros(n), *bmean = zeros((size_t)rows), *brstd = zeros((size_t)rows);
    tw_buffer *bg = upload(g, n), *bdx = zeros(n), *bdw = zeros((size_t)cols), *bdb = zeros((size_t)cols);
    TW_CHECK_OK(tw_layernorm_fwd(G.cpu, rows, cols, 1e-5f, tw_at(bx, 0), tw_at(bw, 0), tw_at(bb, 0),
                                 tw_at(bout, 0), tw_at(bmean, 0), tw_at(brstd, 0)));
    TW_CHECK_OK(tw_layernorm_bwd(G.cpu, rows, cols, tw_at(bg, 0), tw_at(bx, 0), tw_at(bw, 0),
                                 tw_at(bmean, 0), tw_at(brstd, 0), tw_at(bdx, 0), tw_at(bdw, 0),
                                 tw_at(bdb, 0)));
    float *dx = download(bdx, n), *dw = download(bdw, (size_t)cols), *db = download(bdb, (size_t)cols);
    rows_context r = {rows, cols, 0, widen(x, n), widen(g, n), calloc(n, sizeof(double)),
                      widen(w, (size_t)cols), widen(b, (size_t)cols),
                      calloc((size_t)rows, sizeof(double)), calloc((size_t)rows, sizeof(double))};
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%d", rows, cols);
    double *fd = finite_diff(r.x, n, layernorm_loss, &r);
    /* dx is a difference of terms of size rstd |g| |w|; with two columns it nearly cancels
     * (the true dx ~ eps-sized), so its float error is measured against those terms. */
    float *rstd = download(brstd, (size_t)rows);
    double terms = max_abs(rstd, (size_t)rows) * max_abs(g, n) * max_abs(w, (size_t)cols);
    compare_floor(shape, "dx", dx, fd, NULL, n, 1e-2 * terms);
    free(rstd);
    free(fd);
    fd = finite_diff(r.w, (size_t)cols, layernorm_loss, &r);
    compare(shape, "dweight", dw, fd, NULL, (size_t)cols);
    free(fd);
    fd = finite_diff(r.b, (size_t)cols, layernorm_loss, &r);
    compare(shape, "dbias", db, fd, NULL, (size_t)cols);
    free(fd);
    G.cases++;
    tw_buffer *buffers[] = {bx, bw, bb, bout, bmean, brstd, bg, bdx, bdw, bdb};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) tw_buffer_free(buffers[i]);
    free(x), free(g), free(w), free(b), free(dx), free(dw), free(db);
    free(r.x), free(r.g), free(r.y), free(r.w), free(r.b), free(r.mean), free(r.rstd);
}

static void layernorm_checks(void) {
    static const int shapes[][2] = {{1, 1}, {1, 2}, {2, 3}, {3, 8}, {4, 17}, {2, 64}, {7, 5}};
    op_begin("layernorm");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        layernorm_check(shapes[s][0], shapes[s][1]);
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* GELU                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static double gelu_loss(void *context) {
    rows_context *r = context;
    ref_gelu_fwd((size_t)r->cols, r->x, r->y);
    return dot(r->g, r->y, (size_t)r->cols);
}

static void gelu_checks(void) {
    static const int sizes[] = {1, 3, 17, 100, 257};
    op_begin("gelu");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = (size_t)sizes[s];
        float *x = random_floats(n, -5.0f, 5.0f), *g = random_floats(n, -1.0f, 1.0f);
        tw_buffer *bx = upload(x, n), *bg = upload(g, n), *bdx = zeros(n);
        TW_CHECK_OK(tw_gelu_bwd(G.cpu, n, tw_at(bx, 0), tw_at(bg, 0), tw_at(bdx, 0)));
        float *got = download(bdx, n);
        rows_context r = {.rows = 1, .cols = (int)n, .x = widen(x, n), .g = widen(g, n),
                          .y = calloc(n, sizeof(double))};
        double *fd = finite_diff(r.x, n, gelu_loss, &r);
        char shape[32];
        snprintf(shape, sizeof shape, "n=%zu", n);
        /* tanh-form GELU in fp32: gelu'(x) has an absolute error ~1e-7 |x| in the negative tail
         * (1 - t^2 with t ~ -1), so errors are measured against |g| (gelu' is O(1)). */
        compare_floor(shape, "dx", got, fd, NULL, n, 0.1 * max_abs(g, n));
        G.cases++;
        tw_buffer_free(bx), tw_buffer_free(bg), tw_buffer_free(bdx);
        free(x), free(g), free(got), free(r.x), free(r.g), free(r.y), free(fd);
    }
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Embedding                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct embedding_context {
    int B, T, C;
    const int32_t *tokens;
    double *wte, *wpe, *g, *out;
} embedding_context;

static double embedding_loss(void *context) {
    embedding_context *e = context;
    ref_embedding_fwd(e->B, e->T, e->C, e->tokens, e->wte, e->wpe, e->out);
    return dot(e->g, e->out, (size_t)e->B * e->T * e->C);
}

static void embedding_check(int B, int T, int C, int V) {
    size_t bt = (size_t)B * T, out_n = bt * C, wte_n = (size_t)V * C;
    size_t wpe_n = (size_t)(T + 2) * C; /* more positions than T: the extra rows get no gradient */
    int32_t *tokens = malloc(bt * sizeof *tokens);
    for (size_t i = 0; i < bt; i++) tokens[i] = tw_test_rng_int(&G.rng, V); /* V small: repeats */
    float *wte = random_floats(wte_n, -1, 1), *wpe = random_floats(wpe_n, -1, 1);
    float *g = random_floats(out_n, -1, 1);
    tw_buffer *btok = upload(tokens, bt), *bg = upload(g, out_n);
    tw_buffer *bdwte = zeros(wte_n), *bdwpe = zeros(wpe_n);
    TW_CHECK_OK(tw_embedding_bwd(G.cpu, B, T, C, V, tw_at(btok, 0), tw_at(bg, 0), tw_at(bdwte, 0),
                                 tw_at(bdwpe, 0)));
    float *dwte = download(bdwte, wte_n), *dwpe = download(bdwpe, wpe_n);
    embedding_context e = {B, T, C, tokens, widen(wte, wte_n), widen(wpe, wpe_n),
                           widen(g, out_n), calloc(out_n, sizeof(double))};
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d C=%d V=%d", B, T, C, V);
    double *fd = finite_diff(e.wte, wte_n, embedding_loss, &e);
    compare(shape, "dwte", dwte, fd, NULL, wte_n);
    free(fd);
    fd = finite_diff(e.wpe, wpe_n, embedding_loss, &e);
    compare(shape, "dwpe", dwpe, fd, NULL, wpe_n);
    free(fd);
    G.cases++;
    tw_buffer_free(btok), tw_buffer_free(bg), tw_buffer_free(bdwte), tw_buffer_free(bdwpe);
    free(tokens), free(wte), free(wpe), free(g), free(dwte), free(dwpe);
    free(e.wte), free(e.wpe), free(e.g), free(e.out);
}

static void embedding_checks(void) {
    static const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 4, 2}, {3, 5, 3, 4}, {2, 7, 5, 3},
                                    {4, 4, 2, 17}};
    op_begin("embedding");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        embedding_check(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax cross-entropy                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct xent_context {
    int rows, vocab, ld;
    double grad_scale;
    const int32_t *targets;
    double *logits, *losses, *lse, *correct;
} xent_context;

/* L = grad_scale * sum of the rows' losses (ignored rows contribute 0). */
static double xent_loss(void *context) {
    xent_context *x = context;
    ref_softmax_xent_fwd(x->rows, x->vocab, x->ld, x->logits, x->targets, x->losses, x->lse,
                         x->correct);
    double sum = 0.0;
    for (int r = 0; r < x->rows; r++) sum += x->losses[r];
    return x->grad_scale * sum;
}

static void xent_check(int rows, int vocab, int ld, float grad_scale) {
    size_t n = (size_t)rows * ld, nr = (size_t)rows;
    float *logits = random_floats(n, -3, 3);
    int32_t *targets = malloc(nr * sizeof *targets);
    for (int r = 0; r < rows; r++) /* every third row ignored */
        targets[r] = r % 3 == 2 ? -1 : tw_test_rng_int(&G.rng, vocab);
    tw_buffer *bl = upload(logits, n), *bt = upload(targets, nr), *bloss = zeros(nr);
    tw_buffer *blse = zeros(nr), *bcor = zeros(nr), *bd = zeros(n);
    TW_CHECK_OK(tw_softmax_xent_fwd(G.cpu, rows, vocab, ld, tw_at(bl, 0), tw_at(bt, 0),
                                    tw_at(bloss, 0), tw_at(blse, 0), tw_at(bcor, 0)));
    TW_CHECK_OK(tw_softmax_xent_bwd(G.cpu, rows, vocab, ld, grad_scale, tw_at(bl, 0), tw_at(bt, 0),
                                    tw_at(blse, 0), tw_at(bd, 0)));
    float *got = download(bd, n);
    xent_context x = {rows, vocab, ld, grad_scale, targets, widen(logits, n),
                      calloc(nr, sizeof(double)), calloc(nr, sizeof(double)),
                      calloc(nr, sizeof(double))};
    double *fd = finite_diff(x.logits, n, xent_loss, &x); /* padding columns: 0 */
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%d ld=%d grad_scale=%g", rows, vocab, ld, grad_scale);
    compare(shape, "dlogits", got, fd, NULL, n);
    G.cases++;
    tw_buffer *buffers[] = {bl, bt, bloss, blse, bcor, bd};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) tw_buffer_free(buffers[i]);
    free(logits), free(targets), free(got), free(fd);
    free(x.logits), free(x.losses), free(x.lse), free(x.correct);
}

static void xent_checks(void) {
    op_begin("softmax_xent");
    xent_check(1, 1, 1, 1.0f);
    xent_check(2, 3, 4, 1.0f);
    xent_check(4, 5, 5, 0.25f);
    xent_check(6, 7, 9, -0.7f);
    xent_check(3, 17, 17, 1.0f / 3.0f);
    xent_check(8, 33, 40, 2.0f);
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* Bias                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static double bias_loss(void *context) {
    rows_context *r = context;
    size_t n = (size_t)r->rows * r->cols;
    memset(r->y, 0, n * sizeof *r->y); /* out = 0 + bias: the bias is all that varies */
    ref_bias_add(r->rows, r->cols, r->b, r->y);
    return dot(r->g, r->y, n);
}

static void bias_checks(void) {
    static const int shapes[][2] = {{1, 1}, {3, 5}, {17, 4}, {8, 33}, {100, 3}};
    op_begin("bias");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *g = random_floats(n, -1, 1), *b = random_floats((size_t)cols, -1, 1);
        tw_buffer *bg = upload(g, n), *bdb = zeros((size_t)cols);
        TW_CHECK_OK(tw_bias_bwd(G.cpu, rows, cols, tw_at(bg, 0), tw_at(bdb, 0)));
        float *got = download(bdb, (size_t)cols);
        rows_context r = {.rows = rows, .cols = cols, .g = widen(g, n),
                          .y = calloc(n, sizeof(double)), .b = widen(b, (size_t)cols)};
        double *fd = finite_diff(r.b, (size_t)cols, bias_loss, &r);
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", rows, cols);
        compare(shape, "dbias", got, fd, NULL, (size_t)cols);
        G.cases++;
        tw_buffer_free(bg), tw_buffer_free(bdb);
        free(g), free(b), free(got), free(r.g), free(r.y), free(r.b), free(fd);
    }
    op_end();
}

/* ------------------------------------------------------------------------------------------ */
/* AdamW: the CPU backend against reference.c over consecutive steps                          */
/* ------------------------------------------------------------------------------------------ */

/* max |got - want| / max |want|. */
static double relative_error(const float *got, const double *want, size_t n) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= err)) err = d;
    }
    return err / fmax(scale, 1e-30);
}

static void adamw_check(size_t n, tw_adamw_args args, int steps) {
    float *param = random_floats(n, -1, 1);
    double *p = widen(param, n), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    tw_buffer *bp = upload(param, n), *bgrad = zeros(n), *bm = zeros(n), *bv = zeros(n);
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        float *grad = random_floats(n, -0.1f, 0.1f);
        double *gd = widen(grad, n);
        TW_CHECK_OK(tw_buffer_upload(bgrad, 0, grad, n * 4));
        args.step = s + 1;
        TW_CHECK_OK(tw_adamw_step(G.cpu, n, &args, tw_at(bp, 0), tw_at(bgrad, 0), tw_at(bm, 0),
                                  tw_at(bv, 0)));
        ref_adamw_step(n, &args, p, gd, m, v);
        float *gp = download(bp, n), *gm = download(bm, n), *gv = download(bv, n);
        worst = fmax(worst, fmax(relative_error(gp, p, n),
                                 fmax(relative_error(gm, m, n), relative_error(gv, v, n))));
        /* Track the reference's own trajectory from the backend's state, so float rounding
         * does not compound over steps. */
        for (size_t i = 0; i < n; i++) p[i] = gp[i], m[i] = gm[i], v[i] = gv[i];
        free(grad), free(gd), free(gp), free(gm), free(gv);
    }
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu lr=%g wd=%g grad_scale=%g steps=%d", n, args.lr,
             args.weight_decay, args.grad_scale, steps);
    if (worst >= G.worst) {
        G.worst = worst;
        snprintf(G.worst_at, sizeof G.worst_at, "%s", shape);
    }
    TW_CHECK(worst <= 1e-5, "adamw %s: err %.3g against reference.c", shape, worst);
    G.cases++;
    tw_buffer_free(bp), tw_buffer_free(bgrad), tw_buffer_free(bm), tw_buffer_free(bv);
    free(param), free(p), free(m), free(v);
}

static void adamw_checks(void) {
    op_begin("adamw_step");
    adamw_check(1, (tw_adamw_args){1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1}, 5);
    adamw_check(17, (tw_adamw_args){1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1}, 10);
    adamw_check(1000, (tw_adamw_args){3e-3f, 0.8f, 0.99f, 1e-6f, 0.01f, 0.5f, 1}, 7);
    adamw_check(4097, (tw_adamw_args){1e-1f, 0.0f, 0.0f, 1e-8f, 0.1f, 0.25f, 1}, 3);
    printf("%-14s %2d shapes  worst err %.2e (tol 1e-05) at %s\n", G.op, G.cases, G.worst,
           G.worst_at);
}

int main(void) {
    tw_status status = tw_device_open("cpu", &G.cpu);
    if (status != TW_OK) {
        fprintf(stderr, "FAIL: cannot open cpu: %s\n", tw_last_error());
        return 1;
    }
    tw_test_rng_seed(&G.rng, 7);
    printf("gradient checks on %s against double-precision finite differences (h = %g)\n",
           tw_device_get_info(G.cpu)->name, FD_STEP);
    attention_checks();
    softmax_checks();
    layernorm_checks();
    gelu_checks();
    embedding_checks();
    xent_checks();
    bias_checks();
    adamw_checks();
    TW_CHECK(tw_device_bytes_in_use(G.cpu) == 0, "%zu bytes left allocated",
             tw_device_bytes_in_use(G.cpu));
    tw_device_close(G.cpu);
    return tw_test_finish("gradcheck");
}
