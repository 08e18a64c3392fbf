/* GPT backward pass, the forward (gpt_forward.c) in reverse. One residual-gradient buffer dres
 * (N, C) runs down the network: each block's LayerNorm backward adds into it, the residual
 * connections pass it through unchanged. Parameter gradients are ADDED into the gradient
 * buffer; the scratch buffers that ops add into are zeroed first. */
#include "model/gpt_internal.h"
#include "twist/profile.h"

/* Every caller zeroes from the start of a region (offset 0 of its buffer). */
static tw_status zero(tw_gpt *m, size_t offset, size_t count) {
    return tw_gpt_zero_mem(gpt_act(m, offset), count);
}

/* Backward of res_out = res_in + scale * (x (N, I) @ W (I, C)) + b given dres = dL/dres_out:
 *   db (C) += colsum(dres);  dW (I, C) += scale * x^T @ dres;  dx (N, I) = scale * dres @ W^T.
 * dres itself passes on to res_in unchanged. */
static tw_status residual_projection_backward(tw_gpt *m, size_t N, int in_features, float scale,
                                              size_t x, const tw_gpt_tensor *weight,
                                              const tw_gpt_tensor *bias, size_t dx) {
    const int C = m->config.n_embd;
    const tw_mem dres = gpt_act(m, m->acts.dres);
    TW_TRY(tw_bias_bwd(m->device, (int)N, C, dres, gpt_grad(m, bias)));
    TW_TRY(tw_gpt_gemm(m->device, true, false, in_features, C, (int)N, scale, gpt_act(m, x),
                        in_features, dres, C, 1.0f, gpt_grad(m, weight), C));
    return tw_gpt_gemm(m->device, false, true, (int)N, in_features, C, scale, dres, C,
                       gpt_param(m, weight), C, 0.0f, gpt_act(m, dx), in_features);
}

/* Backward of out (N, O) = x (N, I) @ W (I, O) + b given dout:
 *   db += colsum(dout);  dW += x^T @ dout;  dx (N, I) = dout @ W^T  (into the dln scratch). */
static tw_status linear_backward(tw_gpt *m, size_t N, int in_features, int out_features,
                                 size_t x, const tw_gpt_tensor *weight,
                                 const tw_gpt_tensor *bias, size_t dout) {
    TW_TRY(tw_bias_bwd(m->device, (int)N, out_features, gpt_act(m, dout), gpt_grad(m, bias)));
    TW_TRY(tw_gpt_gemm(m->device, true, false, in_features, out_features, (int)N, 1.0f,
                        gpt_act(m, x), in_features, gpt_act(m, dout), out_features, 1.0f,
                        gpt_grad(m, weight), out_features));
    return tw_gpt_gemm(m->device, false, true, (int)N, in_features, out_features, 1.0f,
                       gpt_act(m, dout), out_features, gpt_param(m, weight), out_features, 0.0f,
                       gpt_act(m, m->acts.dln), in_features);
}

/* LayerNorm backward from the dln scratch: dres += dx; dweight, dbias += ... */
static tw_status layernorm_backward(tw_gpt *m, size_t N, size_t x, const tw_gpt_tensor *weight,
                                    const tw_gpt_tensor *bias, size_t mean, size_t rstd) {
    const int C = m->config.n_embd;
    return tw_layernorm_bwd(m->device, (int)N, C, gpt_act(m, m->acts.dln), gpt_act(m, x),
                            gpt_param(m, weight), gpt_act(m, mean), gpt_act(m, rstd),
                            gpt_act(m, m->acts.dres), gpt_grad(m, weight), gpt_grad(m, bias));
}

/* Block l backward: on entry dres = dL/d(res3), on exit dres = dL/d(res_in). */
static tw_status block_backward(tw_gpt *m, int l, size_t res_in) {
    const tw_gpt_config *c = &m->config;
    const tw_gpt_layer *layer = &c->layers[l];
    const gpt_block_params *p = &m->blocks[l];
    const gpt_block_acts *b = &m->acts.blocks[l];
    const gpt_acts *a = &m->acts;
    const size_t N = a->positions;
    const int C = c->n_embd, A = layer->heads * c->head_dim, M = layer->mlp_hidden;

    /* MLP (profiler names as in the forward: block<l>.mlp.proj_gemm, ...) */
    tw_profile_where(l, "mlp", "proj");
    TW_TRY(residual_projection_backward(m, N, M, layer->mlp_scale, b->fch_gelu, p->mlp_proj_w,
                                         p->mlp_proj_b, a->dfch_gelu));
    TW_TRY(zero(m, a->dfch, N * (size_t)M));
    tw_profile_where(l, "mlp", NULL);
    TW_TRY(tw_gelu_bwd(m->device, N * (size_t)M, gpt_act(m, b->fch), gpt_act(m, a->dfch_gelu),
                        gpt_act(m, a->dfch)));
    tw_profile_where(l, "mlp", "fc");
    TW_TRY(linear_backward(m, N, C, M, b->ln2, p->fc_w, p->fc_b, a->dfch));
    tw_profile_where(l, "mlp", NULL);
    TW_TRY(layernorm_backward(m, N, b->res2, p->ln2_w, p->ln2_b, b->ln2_mean, b->ln2_rstd));

    /* Attention */
    tw_profile_where(l, "attn", "proj");
    TW_TRY(residual_projection_backward(m, N, A, layer->attn_scale, b->atty, p->attn_proj_w,
                                         p->attn_proj_b, a->datty));
    TW_TRY(zero(m, a->dqkv, N * 3 * (size_t)A));
    tw_attention_args attention = tw_gpt_attention_args(m, l);
    attention.dout = gpt_act(m, a->datty);
    attention.dq = gpt_act(m, a->dqkv);
    attention.dk = gpt_act(m, a->dqkv + (size_t)A);
    attention.dv = gpt_act(m, a->dqkv + 2 * (size_t)A);
    tw_profile_where(l, "attn", NULL);
    TW_TRY(tw_attention_bwd(m->device, &attention));
    tw_profile_where(l, "attn", "qkv");
    TW_TRY(linear_backward(m, N, C, 3 * A, b->ln1, p->qkv_w, p->qkv_b, a->dqkv));
    tw_profile_where(l, "attn", NULL);
    return layernorm_backward(m, N, res_in, p->ln1_w, p->ln1_b, b->ln1_mean, b->ln1_rstd);
}

/* Loss -> logits -> ln_f: leaves dres = dL/d(last block output). */
static tw_status head_backward(tw_gpt *m, float loss_scale, size_t res_last) {
    const tw_gpt_config *c = &m->config;
    const gpt_acts *a = &m->acts;
    const size_t N = a->positions;
    const int C = c->n_embd, V = c->vocab_size;
    /* Mean over the counted targets, times the caller's scale (1 / micro-batches). */
    const float grad_scale = loss_scale / (float)m->target_count;
    tw_profile_where(-1, "lm_head", NULL);
    TW_TRY(zero(m, a->dlogits, N * (size_t)V));
    const size_t chunk = gpt_xent_rows(m, N);
    for (size_t row = 0; row < N; row += chunk) {
        const size_t rows = N - row < chunk ? N - row : chunk;
        TW_TRY(tw_softmax_xent_bwd(m->device, (int)rows, V, V, grad_scale,
                                    gpt_act(m, a->logits + row * (size_t)V),
                                    gpt_act(m, a->targets + row), gpt_act(m, a->xent_lse + row),
                                    gpt_act(m, a->dlogits + row * (size_t)V)));
    }
    /* logits = lnf @ wte^T:  dwte (V, C) += dlogits^T @ lnf;  dlnf (N, C) = dlogits @ wte */
    TW_TRY(tw_gpt_gemm(m->device, true, false, V, C, (int)N, 1.0f, gpt_act(m, a->dlogits), V,
                        gpt_act(m, a->lnf), C, 1.0f, gpt_grad(m, m->wte), C));
    TW_TRY(tw_gpt_gemm(m->device, false, false, (int)N, C, V, 1.0f, gpt_act(m, a->dlogits), V,
                        gpt_param(m, m->wte), C, 0.0f, gpt_act(m, a->dln), C));
    TW_TRY(zero(m, a->dres, N * (size_t)C));
    return layernorm_backward(m, N, res_last, m->lnf_w, m->lnf_b, a->lnf_mean, a->lnf_rstd);
}

tw_status tw_gpt_backward(tw_gpt *m, float loss_scale) {
    if (!m) return tw_error(TW_ERR_INVALID_ARGUMENT, "model backward: model is NULL");
    if (!m->regions || !m->has_targets)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "model backward: needs a forward pass with targets first");
    if (m->target_count == 0) return TW_OK; /* every target ignored: the loss has no gradient */
    const tw_gpt_config *c = &m->config;
    const gpt_acts *a = &m->acts;
    const int L = c->n_layer;
    TW_TRY(head_backward(m, loss_scale, a->blocks[L - 1].res3));
    for (int l = L - 1; l >= 0; l--)
        TW_TRY(block_backward(m, l, l > 0 ? a->blocks[l - 1].res3 : a->encoded));
    tw_profile_where(-1, "embed", NULL);
    tw_status status = tw_embedding_bwd(m->device, m->batch, m->seq_len, c->n_embd, c->vocab_size,
                                        gpt_act(m, a->tokens), gpt_act(m, a->dres),
                                        gpt_grad(m, m->wte), gpt_grad(m, m->wpe));
    tw_profile_clear();
    return status;
}
