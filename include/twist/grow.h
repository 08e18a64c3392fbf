/* twist: model growth, building a larger GPT from smaller trained ones.
 *
 * Every operator works on host masters (tw_ist_master of twist/ist.h: config, parameters in the
 * tw_gpt_layout order, both AdamW moments and the step) and returns a new master; the sources are
 * not changed. Tensor names, shapes and layouts are those of twist/model.h (Conv1D weights
 * (in, out); c_attn's columns are [Q | K | V], each A = heads * head_dim wide).
 *
 * What each operator preserves (the tests in tests/test_grow.c check it on every device):
 *
 *   depth    L -> k L layers. Stack (G_stack: layers 0..L-1, then 0..L-1 again, ...) or
 *            interleave (0,0,..,1,1,..). Plain copies change the function; with `identity`
 *            every added copy has zero output projections (attn.c_proj and mlp.c_proj, weight
 *            and bias), so it adds nothing to the residual and the grown model computes the
 *            source's function exactly (scales are kept, so the zero matrices still get
 *            gradients and the blocks can learn). Optimizer state: reset (zero moments, step 0).
 *
 *   combine  n models of one width C (same vocabulary, max_seq_len, head_dim, n_layer,
 *            layernorm_eps) -> one model of width C whose layer l holds the union of the
 *            sources' heads and MLP units: source i's heads and units form block i, in source
 *            order. This is IST's merge run backwards: a partition in which worker i holds
 *            block i, source i's weights as worker i's packed subnet, tw_ist_merge_*. So tensors
 *            held by one source (c_attn, c_fc and their biases, c_proj weight rows) are copied,
 *            and shared ones (wte, wpe, LayerNorms, c_proj biases) are averaged. Each block
 *            scale is 1/n and source i's own block scale is folded into its c_proj rows, so a
 *            grown block's output is the average of the sources' block outputs on the same
 *            input (exact to float rounding: n copies of one model give its logits, and sources
 *            that differ only in their output projections give the model with the averaged
 *            projections). Approximate otherwise: with shared embeddings and LayerNorms each
 *            block still averages the sources' blocks on its input, but that input (the
 *            residual stream after the earlier averaged blocks) is no source's own; averaging
 *            embeddings and LayerNorms of independently trained models changes it further.
 *            Measure the loss right after growth (twist eval). Optimizer state: reset.
 *
 *   double   C -> 2C, exact (Staged Training): every vector of width C becomes [v, v], every
 *            matrix becomes block diagonal [[W, 0], [0, W]] (heads and MLP units doubled, copy 0
 *            then copy 1 inside each of Q, K, V), head_dim and scales unchanged. The residual
 *            stream is then [x, x] at every layer, LayerNorm of [x, x] is [LN(x), LN(x)] (same
 *            mean and variance), and the final LayerNorm's weight and bias are halved so that
 *            logits = [ln_f/2, ln_f/2] . [wte, wte] equal the source's. By the symmetry of the
 *            two copies, the loss gradient of every copied parameter is half the source's
 *            gradient, except ln_f's, which equals the source's; the off-diagonal zero blocks
 *            get gradients of their own. Optimizer state is carried: exp_avg / 2 and
 *            exp_avg_sq / 4 on copied entries (ln_f: unchanged), 0 on the new off-diagonal
 *            entries, step kept. The next AdamW step of a copied entry is then the source's
 *            step with eps doubled (m/2 / (sqrt(v/4) + eps) = m / (sqrt(v) + 2 eps)), i.e.
 *            equal to it wherever sqrt(v) >> eps; ln_f (stored halved, stepped by the full
 *            amount) moves twice as far relative to its value, and the off-diagonal blocks
 *            start moving from 0: the grown model leaves the source's function from step 1.
 *            Gradient clipping by the global norm sees another norm (halved copies plus the new
 *            entries' gradients), so the step matches only while clipping does not act (the
 *            test checks one step with clipping off).
 *
 *   concat   n models of one shape (config equal in every size and scale) -> width n C, side by
 *            side: the layout of double with source i as copy i (embeddings [wte_1 .. wte_n],
 *            block-diagonal matrices, source i's heads and units as block i, ln_f / n). The
 *            residual stream is exactly [x_1, .., x_n] after the embedding and every matrix keeps
 *            the blocks apart, so if each LayerNorm normalised block by block, the logits would
 *            be exactly the average of the n sources' logits. LayerNorm normalises over all nC
 *            channels instead: block i gets (x_i - mean) / std with the concatenation's mean =
 *            average of the blocks' means and var = average of (var_i + (mean_i - mean)^2), so
 *            the result is the average only when the blocks' statistics agree (n copies of one
 *            model: exact). No bound is claimed otherwise: the tests report the measured
 *            distance to the average of the sources' logits. Optimizer state: reset.
 *
 *   widen    Net2Net / bert2BERT style: residual width C0 -> C1 >= C0, and optionally every
 *            layer's heads to H1 and MLP units to M1 (head_dim kept). Every index space grows by
 *            copying: new entry i copies entry i mod old (so copy counts differ by at most 1).
 *            What writes into a space copies (wte and wpe columns, c_proj columns and biases,
 *            LayerNorm weights and biases, c_attn columns of a copied head, c_fc columns and
 *            biases); what reads from it splits: the rows fed by the k copies of an entry are
 *            the source row / k (c_attn and c_fc rows for the residual, attn.c_proj rows for
 *            heads, mlp.c_proj rows for units, and ln_f, which the tied unembedding reads).
 *            With noise S > 0 the split rows also get a zero-sum perturbation across the copies
 *            (uniform in [-S, S] times the tensor's RMS, minus its mean over the copies), which
 *            breaks the copies' symmetry without changing any sum.
 *            Exact (logits to float rounding, with or without noise) when C0 divides C1: every
 *            LayerNorm then sees each entry equally often, so its mean and variance are the
 *            source's. Heads and MLP units may grow by any amount exactly. When C0 does not
 *            divide C1, LayerNorm normalises with count-weighted statistics: mean' =
 *            sum_j w_j x_j / C0 and E'[x^2] = sum_j w_j x_j^2 / C0 with weights w_j =
 *            count_j C0 / C1 in [floor(C1/C0) C0/C1, ceil(C1/C0) C0/C1], so |w_j - 1| < C0/C1
 *            and the statistics are off by at most that fraction of mean|x| and E[x^2]; the
 *            function is then approximate and the tests check the measured logit change against
 *            the bound they state. Optimizer state: reset.
 *
 * Operators refuse bad input with TW_ERR_INVALID_ARGUMENT and a message naming the mismatching
 * field (and the source index for combine). */
#ifndef TWIST_GROW_H
#define TWIST_GROW_H

#include <stdbool.h>
#include <stdint.h>

#include "twist/ist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tw_grow_depth_mode {
    TW_GROW_STACK = 0,     /* copy c of layer j at c * L + j (G_stack) */
    TW_GROW_INTERLEAVE = 1 /* copy c of layer j at j * k + c */
} tw_grow_depth_mode;

typedef struct tw_grow_depth_options {
    int copies;              /* k >= 1; k * L <= TW_GPT_MAX_LAYERS */
    tw_grow_depth_mode mode;
    bool identity;           /* zero the output projections of every added copy (exact) */
} tw_grow_depth_options;

tw_status tw_grow_depth(const tw_ist_master *source, const tw_grow_depth_options *options,
                        tw_ist_master **out);

/* n >= 1 sources (see the top of this file). */
tw_status tw_grow_combine(const tw_ist_master *const *sources, int n, tw_ist_master **out);

/* n >= 1 sources of one shape, width n C (see the top of this file). */
tw_status tw_grow_concat(const tw_ist_master *const *sources, int n, tw_ist_master **out);

/* C -> 2C, exact; carries the optimizer state (see the top of this file). */
tw_status tw_grow_double(const tw_ist_master *source, tw_ist_master **out);

typedef struct tw_grow_widen_options {
    int n_embd;       /* C1 >= the source's C0 */
    int heads;        /* every layer's heads H1 (>= each layer's own); 0 keeps them */
    int mlp_hidden;   /* every layer's MLP units M1 (>= each layer's own); 0 keeps them */
    double noise;     /* S in [0, 1]: symmetry-breaking noise on the split rows (0: none) */
    uint64_t seed;    /* of the noise */
} tw_grow_widen_options;

tw_status tw_grow_widen(const tw_ist_master *source, const tw_grow_widen_options *options,
                        tw_ist_master **out);

#ifdef __cplusplus
}
#endif

#endif
