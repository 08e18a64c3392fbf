/* GPT model lifetime: parameters, initialisation, activation memory, metrics. The passes
 * themselves are in gpt_forward.c and gpt_backward.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt_internal.h"
#include "twist/dtype.h"

/* ------------------------------------------------------------------------------------------ */
/* Creation                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static const tw_gpt_tensor *find_block_tensor(tw_gpt *m, int layer, const char *suffix) {
    char name[TW_GPT_NAME_MAX];
    snprintf(name, sizeof name, "transformer.h.%d.%s", layer, suffix);
    return tw_gpt_find_tensor(m, name);
}

/* Resolves the named tensors of every block once, so the passes need no lookups. */
static void index_tensors(tw_gpt *m) {
    m->wte = tw_gpt_find_tensor(m, "transformer.wte.weight");
    m->wpe = tw_gpt_find_tensor(m, "transformer.wpe.weight");
    m->lnf_w = tw_gpt_find_tensor(m, "transformer.ln_f.weight");
    m->lnf_b = tw_gpt_find_tensor(m, "transformer.ln_f.bias");
    for (int l = 0; l < m->config.n_layer; l++) {
        gpt_block_params *p = &m->blocks[l];
        p->ln1_w = find_block_tensor(m, l, "ln_1.weight");
        p->ln1_b = find_block_tensor(m, l, "ln_1.bias");
        p->qkv_w = find_block_tensor(m, l, "attn.c_attn.weight");
        p->qkv_b = find_block_tensor(m, l, "attn.c_attn.bias");
        p->attn_proj_w = find_block_tensor(m, l, "attn.c_proj.weight");
        p->attn_proj_b = find_block_tensor(m, l, "attn.c_proj.bias");
        p->ln2_w = find_block_tensor(m, l, "ln_2.weight");
        p->ln2_b = find_block_tensor(m, l, "ln_2.bias");
        p->fc_w = find_block_tensor(m, l, "mlp.c_fc.weight");
        p->fc_b = find_block_tensor(m, l, "mlp.c_fc.bias");
        p->mlp_proj_w = find_block_tensor(m, l, "mlp.c_proj.weight");
        p->mlp_proj_b = find_block_tensor(m, l, "mlp.c_proj.bias");
    }
}

static void free_regions(gpt_act_region *regions, int count);

tw_status tw_gpt_create(tw_device *device, const tw_gpt_config *config, tw_gpt **out) {
    if (!device || !config || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_gpt_create: NULL argument");
    *out = NULL;
    tw_gpt *m = calloc(1, sizeof *m);
    if (!m) return tw_error(TW_ERR_OUT_OF_MEMORY, "model: out of host memory");
    m->config = *config;
    m->device = device;
    m->dtype = TW_DTYPE_F32;
    tw_status status = tw_gpt_layout(config, &m->tensors, &m->tensor_count, &m->param_count,
                                     &m->decay_count);
    const size_t bytes = m->param_count * tw_dtype_size(TW_DTYPE_F32);
    if (status == TW_OK) status = tw_buffer_alloc(device, bytes, &m->params);
    if (status == TW_OK) status = tw_buffer_alloc(device, bytes, &m->grads);
    m->work = m->params;
    if (status != TW_OK) {
        tw_gpt_destroy(m);
        return status;
    }
    index_tensors(m);
    *out = m;
    return TW_OK;
}

void tw_gpt_destroy(tw_gpt *m) {
    if (!m) return;
    if (m->work != m->params) tw_buffer_free(m->work);
    tw_buffer_free(m->params);
    tw_buffer_free(m->grads);
    free_regions(m->regions, m->region_count);
    free(m->tensors);
    free(m->host_targets);
    free(m);
}

const tw_gpt_config *tw_gpt_get_config(const tw_gpt *m) { return &m->config; }
tw_device *tw_gpt_device(const tw_gpt *m) { return m->device; }
size_t tw_gpt_param_count(const tw_gpt *m) { return m->param_count; }
size_t tw_gpt_decay_count(const tw_gpt *m) { return m->decay_count; }
int tw_gpt_tensor_count(const tw_gpt *m) { return m->tensor_count; }
/* The caller may write the master weights through this: the working copy is refreshed before the
 * next forward pass. */
tw_buffer *tw_gpt_params(tw_gpt *m) {
    m->work_stale = true;
    return m->params;
}
tw_buffer *tw_gpt_grads(tw_gpt *m) { return m->grads; }

const tw_gpt_tensor *tw_gpt_tensor_at(const tw_gpt *m, int index) {
    return index >= 0 && index < m->tensor_count ? &m->tensors[index] : NULL;
}

const tw_gpt_tensor *tw_gpt_find_tensor(const tw_gpt *m, const char *name) {
    for (int i = 0; i < m->tensor_count; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Initialisation                                                                             */
/* ------------------------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Standard normal by Box-Muller from two uniforms in (0, 1]. */
static double normal(uint64_t *state) {
    double u1 = ((double)(splitmix64(state) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(splitmix64(state) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static bool ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), k = strlen(suffix);
    return n >= k && strcmp(text + n - k, suffix) == 0;
}

/* GPT-2's initial standard deviation for a tensor; 0 means constant (see fill value). */
static double init_std(const tw_gpt *m, const tw_gpt_tensor *t, float *constant) {
    *constant = 0.0f;
    if (ends_with(t->name, "ln_1.weight") || ends_with(t->name, "ln_2.weight") ||
        ends_with(t->name, "ln_f.weight")) {
        *constant = 1.0f;
        return 0.0;
    }
    if (t->ndim == 1) return 0.0; /* biases */
    if (strcmp(t->name, "transformer.wpe.weight") == 0) return 0.01;
    if (ends_with(t->name, "c_proj.weight")) return 0.02 / sqrt(2.0 * m->config.n_layer);
    return 0.02;
}

tw_status tw_gpt_init_params(tw_gpt *m, uint64_t seed) {
    float *host = malloc(m->param_count * sizeof *host);
    if (!host) return tw_error(TW_ERR_OUT_OF_MEMORY, "model init: out of host memory");
    for (int i = 0; i < m->tensor_count; i++) {
        const tw_gpt_tensor *t = &m->tensors[i];
        /* One stream per tensor, so a tensor's values do not depend on the layout before it. */
        uint64_t state = seed ^ (0xA0761D6478BD642Full * (uint64_t)(i + 1));
        float constant;
        double std = init_std(m, t, &constant);
        for (size_t j = 0; j < t->count; j++)
            host[t->offset + j] = std > 0.0 ? (float)(std * normal(&state)) : constant;
    }
    tw_status status = tw_buffer_upload(m->params, 0, host, m->param_count * sizeof *host);
    m->work_stale = true;
    free(host);
    return status;
}

tw_status tw_gpt_zero_mem(tw_mem at, size_t count) {
    const size_t size = tw_dtype_size(at.dtype);
    if (size == 4) return tw_buffer_fill_f32(at.buffer, at.offset, count, 0.0f);
    if (at.offset % 2 != 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "model: zeroing %s at an odd offset %zu",
                        tw_dtype_name(at.dtype), at.offset);
    /* 0.0f is all-zero bits, as are bf16 and f16 zeros: two elements per float. */
    return tw_buffer_fill_f32(at.buffer, at.offset / 2, (count + 1) / 2, 0.0f);
}

tw_status tw_gpt_zero_grad(tw_gpt *m) {
    return tw_gpt_zero_mem(tw_at_typed(m->grads, 0, m->dtype), m->param_count);
}

/* ------------------------------------------------------------------------------------------ */
/* Data type                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Every op a training step runs, with the data type it runs in (AdamW's op type is its grad's). */
static const char *const k_model_ops[] = {
    "embedding_fwd", "layernorm_fwd", "gemm",          "bias_add",          "attention_fwd",
    "gelu_fwd",      "softmax_xent_fwd", "softmax_xent_bwd", "bias_bwd",     "layernorm_bwd",
    "gelu_bwd",      "attention_bwd", "embedding_bwd", "sum_sq",            "adamw_step"};

tw_status tw_gpt_check_dtype(tw_device *device, tw_dtype dtype) {
    if (!device) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_gpt_check_dtype: device is NULL");
    if (dtype != TW_DTYPE_F32 && dtype != TW_DTYPE_BF16 && dtype != TW_DTYPE_F16)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "model: %s is not a training precision (fp32, bf16 or fp16)",
                        tw_dtype_name(dtype));
    if (dtype == TW_DTYPE_F32) return TW_OK;
    const tw_device_info *info = tw_device_get_info(device);
    for (size_t i = 0; i < sizeof k_model_ops / sizeof *k_model_ops; i++)
        if (!tw_device_supports_dtype(device, k_model_ops[i], dtype))
            return tw_error(TW_ERR_UNSUPPORTED,
                            "precision %s is not available on %s (%s): its %s backend does not "
                            "run %s in %s; use --precision fp32 there",
                            tw_dtype_name(dtype), info->spec, info->name,
                            tw_backend_name(info->backend), k_model_ops[i], tw_dtype_name(dtype));
    /* The working copy is written by a conversion from the fp32 master weights. */
    tw_buffer *src = NULL, *dst = NULL;
    tw_status status = tw_buffer_alloc(device, 4, &src);
    if (status == TW_OK) status = tw_buffer_alloc(device, 4, &dst);
    if (status == TW_OK) status = tw_buffer_fill_f32(src, 0, 1, 1.0f);
    if (status == TW_OK) {
        status = tw_convert(device, 1, tw_at(src, 0), tw_at_typed(dst, 0, dtype));
        if (status == TW_ERR_UNSUPPORTED)
            status = tw_error(TW_ERR_UNSUPPORTED,
                              "precision %s is not available on %s (%s): its %s backend cannot "
                              "convert f32 to %s (the working copy of the weights); use "
                              "--precision fp32 there",
                              tw_dtype_name(dtype), info->spec, info->name,
                              tw_backend_name(info->backend), tw_dtype_name(dtype));
    }
    tw_buffer_free(src);
    tw_buffer_free(dst);
    return status;
}

tw_status tw_gpt_set_dtype(tw_gpt *m, tw_dtype dtype) {
    if (!m) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_gpt_set_dtype: model is NULL");
    if (dtype == m->dtype) return TW_OK;
    TW_TRY(tw_gpt_check_dtype(m->device, dtype));
    /* New gradients (and working copy) first, so a failure leaves the model as it was. */
    const size_t P = m->param_count;
    /* Whole 4-byte words: 16-bit buffers are zeroed as pairs (tw_gpt_zero_mem). */
    const size_t bytes = (P * tw_dtype_size(dtype) + 3) / 4 * 4;
    tw_buffer *grads = NULL, *work = NULL;
    tw_status status = tw_buffer_alloc(m->device, bytes, &grads);
    if (status == TW_OK && dtype != TW_DTYPE_F32)
        status = tw_buffer_alloc(m->device, bytes, &work);
    if (status != TW_OK) {
        tw_buffer_free(grads);
        return status;
    }
    tw_buffer_free(m->grads);
    if (m->work != m->params) tw_buffer_free(m->work);
    m->grads = grads;
    m->work = work ? work : m->params;
    m->dtype = dtype;
    m->work_stale = true;
    /* Activations change type: the next forward lays them out again. */
    free_regions(m->regions, m->region_count);
    m->regions = NULL;
    m->region_count = 0;
    m->batch = m->seq_len = 0;
    return TW_OK;
}

tw_dtype tw_gpt_dtype(const tw_gpt *m) { return m->dtype; }

tw_status tw_gpt_sync_work(tw_gpt *m) {
    if (m->work == m->params || !m->work_stale) return TW_OK;
    TW_TRY(tw_convert(m->device, m->param_count, tw_at(m->params, 0),
                      tw_at_typed(m->work, 0, m->dtype)));
    m->work_stale = false;
    return TW_OK;
}

/* Host (P) fp32 <-> the gradient buffer in the model's type. */
tw_status tw_gpt_grads_download(tw_gpt *m, float *out) {
    const size_t P = m->param_count;
    if (m->dtype == TW_DTYPE_F32) return tw_buffer_download(m->grads, 0, out, P * sizeof *out);
    uint16_t *half = malloc((P ? P : 1) * sizeof *half);
    if (!half) return tw_error(TW_ERR_OUT_OF_MEMORY, "model gradients: out of host memory");
    tw_status status = tw_buffer_download(m->grads, 0, half, P * sizeof *half);
    for (size_t i = 0; status == TW_OK && i < P; i++)
        out[i] = m->dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(half[i]) : tw_f16_to_f32(half[i]);
    free(half);
    return status;
}

tw_status tw_gpt_grads_upload(tw_gpt *m, const float *grads) {
    const size_t P = m->param_count;
    if (m->dtype == TW_DTYPE_F32) return tw_buffer_upload(m->grads, 0, grads, P * sizeof *grads);
    uint16_t *half = malloc((P ? P : 1) * sizeof *half);
    if (!half) return tw_error(TW_ERR_OUT_OF_MEMORY, "model gradients: out of host memory");
    for (size_t i = 0; i < P; i++)
        half[i] = m->dtype == TW_DTYPE_BF16 ? tw_f32_to_bf16(grads[i]) : tw_f32_to_f16(grads[i]);
    tw_status status = tw_buffer_upload(m->grads, 0, half, P * sizeof *half);
    free(half);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Activations                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Regions of a layout: 3 inputs, 13 per block, 14 for the head and the backward scratch. */
static int region_capacity(const tw_gpt_config *c) { return 3 + 13 * c->n_layer + 14; }

typedef struct act_layout {
    tw_dtype dtype;          /* the model's data type: activations and their gradients */
    size_t cursor;           /* next virtual element */
    gpt_act_region *regions; /* region_capacity() entries */
    int count;
} act_layout;

/* The next `count` virtual elements, as a region of their own holding `dtype`. */
static size_t take_typed(act_layout *lay, size_t count, const char *name, int layer,
                         tw_dtype dtype) {
    size_t offset = lay->cursor;
    lay->regions[lay->count++] = (gpt_act_region){.begin = offset, .count = count, .name = name,
                                                  .layer = layer, .dtype = dtype};
    lay->cursor += count;
    return offset;
}

/* A tensor in the model's data type. */
static size_t take(act_layout *lay, size_t count, const char *name, int layer) {
    return take_typed(lay, count, name, layer, lay->dtype);
}

/* Statistics are fp32 whatever the data type (twist/backend.h, "Data types"). */
static size_t take_f32(act_layout *lay, size_t count, const char *name, int layer) {
    return take_typed(lay, count, name, layer, TW_DTYPE_F32);
}

/* Lays out every activation and scratch tensor for N = batch * seq_len positions. */
static void layout_acts(const tw_gpt_config *c, size_t N, int batch, int seq_len, gpt_acts *a,
                        act_layout *lay) {
    const size_t C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    size_t max_attn = 0, max_mlp = 0;
    memset(a, 0, sizeof *a);
    a->positions = N;
    a->tokens = take_typed(lay, N, "tokens", -1, TW_DTYPE_I32);
    a->targets = take_typed(lay, N, "targets", -1, TW_DTYPE_I32);
    a->encoded = take(lay, N * C, "embeddings", -1);
    for (int l = 0; l < c->n_layer; l++) {
        const size_t H = (size_t)c->layers[l].heads, A = H * (size_t)c->head_dim;
        const size_t M = (size_t)c->layers[l].mlp_hidden;
        gpt_block_acts *b = &a->blocks[l];
        b->ln1 = take(lay, N * C, "ln_1", l);
        b->ln1_mean = take_f32(lay, N, "ln_1 mean", l);
        b->ln1_rstd = take_f32(lay, N, "ln_1 rstd", l);
        b->qkv = take(lay, N * 3 * A, "qkv", l);
        b->atty = take(lay, N * A, "attention output", l);
        b->lse = take_f32(lay, (size_t)batch * H * (size_t)seq_len, "attention lse", l);
        b->res2 = take(lay, N * C, "attention residual", l);
        b->ln2 = take(lay, N * C, "ln_2", l);
        b->ln2_mean = take_f32(lay, N, "ln_2 mean", l);
        b->ln2_rstd = take_f32(lay, N, "ln_2 rstd", l);
        b->fch = take(lay, N * M, "mlp hidden", l);
        b->fch_gelu = take(lay, N * M, "mlp gelu", l);
        b->res3 = take(lay, N * C, "block output", l);
        if (A > max_attn) max_attn = A;
        if (M > max_mlp) max_mlp = M;
    }
    a->lnf = take(lay, N * C, "ln_f", -1);
    a->lnf_mean = take_f32(lay, N, "ln_f mean", -1);
    a->lnf_rstd = take_f32(lay, N, "ln_f rstd", -1);
    a->logits = take(lay, N * V, "logits", -1);
    a->losses = take_f32(lay, N, "losses", -1);
    a->xent_lse = take_f32(lay, N, "cross-entropy lse", -1);
    a->correct = take_f32(lay, N, "correct", -1);
    a->dres = take(lay, N * C, "residual gradient", -1);
    a->dln = take(lay, N * C, "layernorm gradient", -1);
    a->dqkv = take(lay, N * 3 * max_attn, "qkv gradient", -1);
    a->datty = take(lay, N * max_attn, "attention output gradient", -1);
    a->dfch = take(lay, N * max_mlp, "mlp hidden gradient", -1);
    a->dfch_gelu = take(lay, N * max_mlp, "mlp gelu gradient", -1);
    a->dlogits = take(lay, N * V, "logits gradient", -1);
    a->total = lay->cursor;
}

static void free_regions(gpt_act_region *regions, int count) {
    for (int i = 0; i < count; i++) tw_buffer_free(regions[i].buffer);
    free(regions);
}

/* The region's buffer: the old one where it is large enough, else a new one. A failure names
 * the tensor, its size and the device's own reason (e.g. a per-binding limit). */
static tw_status region_buffer(tw_gpt *m, gpt_act_region *r, gpt_act_region *old, int batch,
                               int seq_len) {
    /* Whole 4-byte words: 16-bit tensors are zeroed as pairs (tw_gpt_zero_mem). */
    size_t bytes = ((r->count > 0 ? r->count : 1) * tw_dtype_size(r->dtype) + 3) / 4 * 4;
    if (old->buffer && tw_buffer_size(old->buffer) >= bytes) {
        r->buffer = old->buffer;
        old->buffer = NULL;
        return TW_OK;
    }
    tw_status status = tw_buffer_alloc(m->device, bytes, &r->buffer);
    if (status == TW_OK) return TW_OK;
    char reason[512];
    snprintf(reason, sizeof reason, "%s", tw_last_error());
    char where[32] = "";
    if (r->layer >= 0) snprintf(where, sizeof where, " of block %d", r->layer);
    return tw_error(status,
                    "model activations for batch %d x sequence %d on %s: the %s tensor%s needs "
                    "%zu bytes in one buffer, which the device refused: %s",
                    batch, seq_len, tw_device_get_info(m->device)->spec, r->name, where, bytes,
                    reason);
}

tw_status tw_gpt_prepare_acts(tw_gpt *m, int batch, int seq_len) {
    const size_t N = (size_t)batch * (size_t)seq_len;
    if (m->regions && m->batch == batch && m->seq_len == seq_len) return TW_OK;
    const int capacity = region_capacity(&m->config);
    act_layout lay = {.dtype = m->dtype,
                      .regions = calloc((size_t)capacity, sizeof *lay.regions)};
    if (!lay.regions) return tw_error(TW_ERR_OUT_OF_MEMORY, "model: out of host memory");
    gpt_acts acts;
    layout_acts(&m->config, N, batch, seq_len, &acts, &lay);
    /* The region list depends on the config alone, so region i keeps its buffer when it is
     * large enough. The old regions go in any case: a failure leaves no activations. */
    tw_status status = TW_OK;
    for (int i = 0; i < lay.count && status == TW_OK; i++) {
        gpt_act_region none = {0};
        gpt_act_region *old = m->regions && i < m->region_count ? &m->regions[i] : &none;
        status = region_buffer(m, &lay.regions[i], old, batch, seq_len);
    }
    free_regions(m->regions, m->regions ? m->region_count : 0);
    m->regions = NULL;
    m->region_count = 0;
    if (status != TW_OK) {
        free_regions(lay.regions, lay.count);
        return status;
    }
    if (N > m->host_capacity) {
        int32_t *targets = realloc(m->host_targets, N * sizeof *targets);
        if (!targets) {
            free_regions(lay.regions, lay.count);
            return tw_error(TW_ERR_OUT_OF_MEMORY, "model: out of host memory");
        }
        m->host_targets = targets;
        m->host_capacity = N;
    }
    m->regions = lay.regions;
    m->region_count = lay.count;
    m->acts = acts;
    m->batch = batch;
    m->seq_len = seq_len;
    return TW_OK;
}

tw_mem tw_gpt_act(const tw_gpt *m, size_t offset) {
    /* The last region that begins at or before offset (regions are sorted by begin). */
    int lo = 0, hi = m->region_count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (m->regions[mid].begin <= offset) lo = mid;
        else hi = mid - 1;
    }
    const gpt_act_region *r = &m->regions[lo];
    return tw_at_typed(r->buffer, offset - r->begin, r->dtype);
}

size_t tw_gpt_activation_bytes(const tw_gpt *m) {
    size_t bytes = 0;
    for (int i = 0; i < m->region_count; i++) bytes += tw_buffer_size(m->regions[i].buffer);
    return bytes;
}

/* ------------------------------------------------------------------------------------------ */
/* Shared helpers of the passes                                                               */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_gpt_gemm(tw_device *device, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, tw_mem a, int lda, tw_mem b, int ldb, float beta, tw_mem c,
                      int ldc) {
    tw_gemm_args args = {.dtype = a.dtype, .trans_a = trans_a, .trans_b = trans_b,
                         .m = m, .n = n, .k = k, .batch = 1, .alpha = alpha, .beta = beta,
                         .a = a, .lda = lda, .b = b, .ldb = ldb, .c = c, .ldc = ldc};
    return tw_gemm(device, &args);
}

tw_attention_args tw_gpt_attention_args(tw_gpt *m, int l) {
    const int H = m->config.layers[l].heads, D = m->config.head_dim, A = H * D, T = m->seq_len;
    const gpt_block_acts *b = &m->acts.blocks[l];
    tw_attention_args args = {
        .dtype = m->dtype, .batch = m->batch, .heads = H, .seq_len = T, .head_dim = D,
        .scale = 1.0f / sqrtf((float)D),
        /* q, k, v interleaved per position in (B, T, 3A); heads D apart inside each. */
        .qkv_stride = {(int64_t)T * 3 * A, D, 3 * A},
        .out_stride = {(int64_t)T * A, D, A},
        .q = gpt_act(m, b->qkv), .k = gpt_act(m, b->qkv + (size_t)A),
        .v = gpt_act(m, b->qkv + 2 * (size_t)A), .out = gpt_act(m, b->atty),
        .lse = gpt_act(m, b->lse)};
    return args;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading results                                                                            */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_gpt_metrics_read(tw_gpt *m, tw_gpt_metrics *out) {
    if (!m || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_gpt_metrics_read: NULL argument");
    if (!m->has_targets)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "model metrics: the last forward had no targets");
    const size_t N = (size_t)m->batch * (size_t)m->seq_len;
    float *host = malloc(2 * N * sizeof *host);
    if (!host) return tw_error(TW_ERR_OUT_OF_MEMORY, "model metrics: out of host memory");
    tw_mem losses = gpt_act(m, m->acts.losses), hits = gpt_act(m, m->acts.correct);
    /* losses and correct are fp32 whatever the model's type */
    tw_status status =
        tw_buffer_download(losses.buffer, losses.offset * sizeof *host, host, N * sizeof *host);
    if (status == TW_OK)
        status = tw_buffer_download(hits.buffer, hits.offset * sizeof *host, host + N,
                                    N * sizeof *host);
    if (status == TW_OK) {
        double loss = 0.0, correct = 0.0;
        for (size_t i = 0; i < N; i++) {
            if (m->host_targets[i] < 0) continue;
            loss += host[i];
            correct += host[N + i];
        }
        long count = m->target_count;
        out->tokens = count;
        out->loss = count ? loss / (double)count : 0.0;
        out->accuracy = count ? correct / (double)count : 0.0;
    }
    free(host);
    return status;
}

tw_status tw_gpt_logits_read(tw_gpt *m, int b, int t, float *out) {
    if (!m || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_gpt_logits_read: NULL argument");
    if (!m->regions || b < 0 || b >= m->batch || t < 0 || t >= m->seq_len)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "model logits: position (%d, %d) outside the last forward pass (%d, %d)", b,
                        t, m->batch, m->seq_len);
    const size_t V = (size_t)m->config.vocab_size;
    const size_t row = (size_t)b * (size_t)m->seq_len + (size_t)t;
    tw_mem logits = gpt_act(m, m->acts.logits + row * V);
    const size_t size = tw_dtype_size(logits.dtype);
    if (logits.dtype == TW_DTYPE_F32)
        return tw_buffer_download(logits.buffer, logits.offset * size, out, V * size);
    uint16_t *half = malloc(V * sizeof *half);
    if (!half) return tw_error(TW_ERR_OUT_OF_MEMORY, "model logits: out of host memory");
    tw_status status = tw_buffer_download(logits.buffer, logits.offset * size, half, V * size);
    for (size_t i = 0; status == TW_OK && i < V; i++)
        out[i] = logits.dtype == TW_DTYPE_BF16 ? tw_bf16_to_f32(half[i]) : tw_f16_to_f32(half[i]);
    free(half);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Default precision                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The compute capability as major * 10 + minor from the CUDA backend's driver line
 * ("..., sm_90"); 0 when it is not there. */
static int cuda_capability(const tw_device_info *info) {
    const char *sm = strstr(info->driver, "sm_");
    return sm ? atoi(sm + 3) : 0;
}

tw_dtype tw_gpt_default_dtype(tw_device *device, const char **why) {
    const char *reason = "";
    tw_dtype dtype = TW_DTYPE_F32;
    const tw_device_info *info = device ? tw_device_get_info(device) : NULL;
    if (!info) {
        reason = "no device";
    } else if (info->backend != TW_BACKEND_CUDA) {
        /* The rule is kept to the one path known fast for every model: bf16 tensor cores.
         * Elsewhere it depends on the device (the cpu backend's bf16 GEMM uses AVX512-BF16
         * where the CPU has it and widens to fp32 where not; PoCL and lavapipe widen), so
         * bf16 there is asked for, after `twist bench step --precision bf16` says it pays. */
        reason = "bf16 is the default on CUDA compute capability 8.0+ only; ask for it with "
                 "--precision bf16";
    } else if (cuda_capability(info) < 80) {
        reason = "compute capability below 8.0: no bf16 tensor cores";
    } else if (tw_gpt_check_dtype(device, TW_DTYPE_BF16) != TW_OK) {
        reason = "the CUDA backend does not run every model op in bf16";
    } else {
        reason = "bf16 tensor cores (compute capability 8.0 or later)";
        dtype = TW_DTYPE_BF16;
    }
    if (why) *why = reason;
    return dtype;
}
