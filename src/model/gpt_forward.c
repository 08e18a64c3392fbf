/* GPT forward pass: every computation is a backend op on the model's device. Shapes use
 * N = B * T positions, C = n_embd, and per block A = heads * head_dim, M = mlp_hidden. */
#include <stdlib.h>

#include "model/gpt_internal.h"
#include "twist/profile.h"

/* Tokens in [0, V) and T <= max_seq_len, checked on the host before anything is enqueued. */
static tw_status check_inputs(const tw_gpt *m, const int32_t *tokens, const int32_t *targets,
                              int batch, int seq_len) {
    const tw_gpt_config *c = &m->config;
    if (!tokens) return tw_error(TW_ERR_INVALID_ARGUMENT, "model forward: tokens is NULL");
    if (batch < 1 || seq_len < 1 || seq_len > c->max_seq_len)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "model forward: batch %d and sequence length %d must be >= 1, and the "
                        "length at most the model's %d",
                        batch, seq_len, c->max_seq_len);
    const size_t N = (size_t)batch * (size_t)seq_len;
    for (size_t i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "model forward: token %d at position %zu is outside the vocabulary "
                            "of %d",
                            tokens[i], i, c->vocab_size);
        if (targets && targets[i] >= c->vocab_size)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "model forward: target %d at position %zu is outside the vocabulary "
                            "of %d",
                            targets[i], i, c->vocab_size);
    }
    return TW_OK;
}

/* out (N, C) = res_out: copy of res_in, then += scale * (x (N, I) @ W (I, C)) + bias (C).
 * The scale multiplies the matrix product only (see twist/model.h). */
static tw_status residual_projection(tw_gpt *m, size_t N, int in_features, float scale,
                                     size_t x, const tw_gpt_tensor *weight,
                                     const tw_gpt_tensor *bias, size_t res_in, size_t res_out) {
    const int C = m->config.n_embd;
    const tw_mem to = gpt_act(m, res_out), from = gpt_act(m, res_in);
    const size_t size = tw_dtype_size(to.dtype);
    TW_TRY(tw_buffer_copy(to.buffer, to.offset * size, from.buffer, from.offset * size,
                          N * C * size));
    TW_TRY(tw_gpt_gemm(m->device, false, false, (int)N, C, in_features, scale, gpt_act(m, x),
                        in_features, gpt_param(m, weight), C, 1.0f, gpt_act(m, res_out), C));
    return tw_bias_add(m->device, (int)N, C, gpt_param(m, bias), gpt_act(m, res_out));
}

/* out (N, O) = x (N, I) @ W (I, O) + b (O) */
static tw_status linear(tw_gpt *m, size_t N, int in_features, int out_features, size_t x,
                        const tw_gpt_tensor *weight, const tw_gpt_tensor *bias, size_t out) {
    TW_TRY(tw_gpt_gemm(m->device, false, false, (int)N, out_features, in_features, 1.0f,
                        gpt_act(m, x), in_features, gpt_param(m, weight), out_features, 0.0f,
                        gpt_act(m, out), out_features));
    return tw_bias_add(m->device, (int)N, out_features, gpt_param(m, bias), gpt_act(m, out));
}

/* One transformer block: residual (N, C) at res_in -> b->res3. */
static tw_status block_forward(tw_gpt *m, int l, size_t res_in) {
    const tw_gpt_config *c = &m->config;
    const tw_gpt_layer *layer = &c->layers[l];
    const gpt_block_params *p = &m->blocks[l];
    const gpt_block_acts *b = &m->acts.blocks[l];
    const size_t N = m->acts.positions;
    const int C = c->n_embd, A = layer->heads * c->head_dim, M = layer->mlp_hidden;

    /* Attention: x += attn_scale * (attention(ln_1(x)) @ W_proj) + b_proj */
    /* Profiler names: block<l>.attn.<op>, block<l>.attn.qkv_gemm, ... (twist/profile.h) */
    tw_profile_where(l, "attn", NULL);
    TW_TRY(tw_layernorm_fwd(m->device, (int)N, C, c->layernorm_eps, gpt_act(m, res_in),
                             gpt_param(m, p->ln1_w), gpt_param(m, p->ln1_b), gpt_act(m, b->ln1),
                             gpt_act(m, b->ln1_mean), gpt_act(m, b->ln1_rstd)));
    tw_profile_where(l, "attn", "qkv");
    TW_TRY(linear(m, N, C, 3 * A, b->ln1, p->qkv_w, p->qkv_b, b->qkv));
    tw_attention_args attention = tw_gpt_attention_args(m, l);
    tw_profile_where(l, "attn", NULL);
    TW_TRY(tw_attention_fwd(m->device, &attention));
    tw_profile_where(l, "attn", "proj");
    TW_TRY(residual_projection(m, N, A, layer->attn_scale, b->atty, p->attn_proj_w,
                                p->attn_proj_b, res_in, b->res2));

    /* MLP: x += mlp_scale * (gelu(ln_2(x) @ W_fc + b_fc) @ W_proj) + b_proj */
    tw_profile_where(l, "mlp", NULL);
    TW_TRY(tw_layernorm_fwd(m->device, (int)N, C, c->layernorm_eps, gpt_act(m, b->res2),
                             gpt_param(m, p->ln2_w), gpt_param(m, p->ln2_b), gpt_act(m, b->ln2),
                             gpt_act(m, b->ln2_mean), gpt_act(m, b->ln2_rstd)));
    tw_profile_where(l, "mlp", "fc");
    TW_TRY(linear(m, N, C, M, b->ln2, p->fc_w, p->fc_b, b->fch));
    tw_profile_where(l, "mlp", NULL);
    TW_TRY(tw_gelu_fwd(m->device, N * (size_t)M, gpt_act(m, b->fch), gpt_act(m, b->fch_gelu)));
    tw_profile_where(l, "mlp", "proj");
    return residual_projection(m, N, M, layer->mlp_scale, b->fch_gelu, p->mlp_proj_w,
                               p->mlp_proj_b, b->res2, b->res3);
}

/* ln_f, logits (N, V) = ln_f(x) @ wte^T, and with targets the per-position cross-entropy. */
static tw_status head_forward(tw_gpt *m, size_t res_last) {
    const tw_gpt_config *c = &m->config;
    const gpt_acts *a = &m->acts;
    const size_t N = a->positions;
    const int C = c->n_embd, V = c->vocab_size;
    tw_profile_where(-1, "lm_head", NULL);
    TW_TRY(tw_layernorm_fwd(m->device, (int)N, C, c->layernorm_eps, gpt_act(m, res_last),
                             gpt_param(m, m->lnf_w), gpt_param(m, m->lnf_b), gpt_act(m, a->lnf),
                             gpt_act(m, a->lnf_mean), gpt_act(m, a->lnf_rstd)));
    TW_TRY(tw_gpt_gemm(m->device, false, true, (int)N, V, C, 1.0f, gpt_act(m, a->lnf), C,
                        gpt_param(m, m->wte), C, 0.0f, gpt_act(m, a->logits), V));
    if (!m->has_targets) return TW_OK;
    const size_t chunk = gpt_xent_rows(m, N);
    for (size_t row = 0; row < N; row += chunk) {
        const size_t rows = N - row < chunk ? N - row : chunk;
        TW_TRY(tw_softmax_xent_fwd(m->device, (int)rows, V, V,
                                   gpt_act(m, a->logits + row * (size_t)V),
                                   gpt_act(m, a->targets + row), gpt_act(m, a->losses + row),
                                   gpt_act(m, a->xent_lse + row), gpt_act(m, a->correct + row)));
    }
    return TW_OK;
}

/* Copies the tokens (and targets) to the device and to the host-side record of this pass. */
static tw_status load_inputs(tw_gpt *m, const int32_t *tokens, const int32_t *targets) {
    const size_t N = m->acts.positions;
    const tw_mem device_tokens = gpt_act(m, m->acts.tokens);
    const size_t size = sizeof *tokens;
    TW_TRY(tw_buffer_upload(device_tokens.buffer, device_tokens.offset * size, tokens, N * size));
    m->has_targets = targets != NULL;
    m->target_count = 0;
    if (!targets) return TW_OK;
    for (size_t i = 0; i < N; i++) {
        m->host_targets[i] = targets[i];
        if (targets[i] >= 0) m->target_count++;
    }
    const tw_mem device_targets = gpt_act(m, m->acts.targets);
    return tw_buffer_upload(device_targets.buffer, device_targets.offset * size, targets,
                            N * size);
}

tw_status tw_gpt_forward(tw_gpt *m, const int32_t *tokens, const int32_t *targets, int batch,
                         int seq_len) {
    if (!m) return tw_error(TW_ERR_INVALID_ARGUMENT, "model forward: model is NULL");
    TW_TRY(check_inputs(m, tokens, targets, batch, seq_len));
    TW_TRY(tw_gpt_prepare_acts(m, batch, seq_len));
    TW_TRY(tw_gpt_sync_work(m)); /* the working copy from the master weights, where they moved */
    TW_TRY(load_inputs(m, tokens, targets));
    const tw_gpt_config *c = &m->config;
    const gpt_acts *a = &m->acts;
    tw_profile_where(-1, "embed", NULL);
    TW_TRY(tw_embedding_fwd(m->device, batch, seq_len, c->n_embd, c->vocab_size,
                             gpt_act(m, a->tokens), gpt_param(m, m->wte), gpt_param(m, m->wpe),
                             gpt_act(m, a->encoded)));
    size_t residual = a->encoded;
    for (int l = 0; l < c->n_layer; l++) {
        TW_TRY(block_forward(m, l, residual));
        residual = a->blocks[l].res3;
    }
    tw_status status = head_forward(m, residual);
    tw_profile_clear();
    return status;
}
