/* The GPT model's private state, shared by gpt.c (lifetime, parameters, activations),
 * gpt_forward.c and gpt_backward.c.
 *
 * Activations for N = B * T token positions are laid out in one virtual space of elements (the
 * size_t offsets below; each tensor's element is of its own dtype: the model's data type, fp32
 * for the statistics, int32 for tokens), but every tensor of that layout lives in its own device
 * buffer (a region): gpt_act() maps a virtual offset to (buffer, offset). One buffer for all of
 * them would be ~235 MB at the tiny preset with B = 16, beyond what some devices let one shader
 * binding cover (lavapipe: 128 MiB); per tensor, the largest is the logits (N, V). */
#ifndef TWIST_MODEL_GPT_INTERNAL_H
#define TWIST_MODEL_GPT_INTERNAL_H

#include "twist/error.h"
#include "twist/model.h"

/* The parameter tensors of one block (pointers into tw_gpt.tensors). */
typedef struct gpt_block_params {
    const tw_gpt_tensor *ln1_w, *ln1_b, *qkv_w, *qkv_b, *attn_proj_w, *attn_proj_b;
    const tw_gpt_tensor *ln2_w, *ln2_b, *fc_w, *fc_b, *mlp_proj_w, *mlp_proj_b;
} gpt_block_params;

/* Saved activations of one block, for N positions; A = heads * D, M = mlp_hidden. */
typedef struct gpt_block_acts {
    size_t ln1, ln1_mean, ln1_rstd; /* (N, C), (N), (N) */
    size_t qkv;                     /* (N, 3A): q | k | v per position */
    size_t atty;                    /* (N, A) attention output, heads side by side */
    size_t lse;                     /* (B, H, T) attention row log-sum-exp */
    size_t res2;                    /* (N, C) residual after the attention block */
    size_t ln2, ln2_mean, ln2_rstd; /* (N, C), (N), (N) */
    size_t fch, fch_gelu;           /* (N, M) MLP pre- and post-activation */
    size_t res3;                    /* (N, C) residual after the MLP: the block's output */
} gpt_block_acts;

/* One activation tensor's device buffer and its place in the virtual layout. */
typedef struct gpt_act_region {
    size_t begin, count; /* virtual elements [begin, begin + count) */
    const char *name;    /* for messages: "qkv", "logits", ... */
    int layer;           /* its block, or -1 */
    tw_dtype dtype;      /* the model's data type; F32 for statistics, I32 for tokens */
    tw_buffer *buffer;   /* >= count elements; may be larger, kept from an earlier (B, T) */
} gpt_act_region;

typedef struct gpt_acts {
    size_t positions; /* N the regions were laid out for */
    size_t tokens, targets;            /* (N) int32 */
    size_t encoded;                    /* (N, C) embeddings: the first block's input */
    gpt_block_acts blocks[TW_GPT_MAX_LAYERS];
    size_t lnf, lnf_mean, lnf_rstd;    /* (N, C), (N), (N) */
    size_t logits;                     /* (N, V) */
    size_t losses, xent_lse, correct;  /* (N) each */
    /* Backward scratch, reused by every block. */
    size_t dres;        /* (N, C) gradient of the residual stream */
    size_t dln;         /* (N, C) gradient of a LayerNorm output */
    size_t dqkv;        /* (N, 3 A_max) */
    size_t datty;       /* (N, A_max) */
    size_t dfch, dfch_gelu; /* (N, M_max) */
    size_t dlogits;     /* (N, V) */
    size_t total;       /* virtual elements */
} gpt_acts;

struct tw_gpt {
    tw_gpt_config config;
    tw_device *device;
    tw_gpt_tensor *tensors;
    int tensor_count;
    size_t param_count, decay_count;
    gpt_block_params blocks[TW_GPT_MAX_LAYERS];
    const tw_gpt_tensor *wte, *wpe, *lnf_w, *lnf_b;
    /* params: the fp32 master weights (what AdamW updates, checkpoints save and IST
     * exchanges). With a data type other than fp32 (tw_gpt_set_dtype), `work` is the working
     * copy in that type that the passes read, refreshed from params by tw_convert at the next
     * forward after anyone took params (work_stale), and grads are in that type too; in fp32,
     * work is params. */
    tw_dtype dtype;
    tw_buffer *params, *grads, *work;
    bool work_stale;

    gpt_acts acts;
    gpt_act_region *regions; /* region_count, by increasing begin; NULL until the first forward */
    int region_count;

    /* The last forward pass. */
    int batch, seq_len;
    bool has_targets;
    long target_count;     /* targets >= 0 */
    int32_t *host_targets; /* (N) copy, for the metrics */
    size_t host_capacity;
};

/* A parameter as the passes read it: the working copy, in the model's data type. */
static inline tw_mem gpt_param(tw_gpt *m, const tw_gpt_tensor *t) {
    return tw_at_typed(m->work, t->offset, m->dtype);
}
static inline tw_mem gpt_grad(tw_gpt *m, const tw_gpt_tensor *t) {
    return tw_at_typed(m->grads, t->offset, m->dtype);
}
/* The activation element at virtual offset `offset` (inside one tensor's region), typed as
 * its region. */
tw_mem tw_gpt_act(const tw_gpt *m, size_t offset);
static inline tw_mem gpt_act(tw_gpt *m, size_t offset) { return tw_gpt_act(m, offset); }

/* Zeroes `count` elements of a tensor whose offset is even (16-bit types are zeroed as pairs:
 * an odd count also zeroes the element after, which every caller's region has as padding or
 * scratch; buffers are allocated in whole 4-byte words). */
tw_status tw_gpt_zero_mem(tw_mem at, size_t count);

/* Brings the working copy up to date with the fp32 master weights (no-op in fp32). */
tw_status tw_gpt_sync_work(tw_gpt *m);

/* Makes the activation buffers fit (batch, seq_len); the lse layout depends on both. */
tw_status tw_gpt_prepare_acts(tw_gpt *m, int batch, int seq_len);

/* C (m, n) = alpha op(A) op(B) + beta C, single matrix, row-major with the given leading
 * dimensions (twist/backend.h's tw_gemm). */
/* The op's data type is A's. */
tw_status tw_gpt_gemm(tw_device *device, bool trans_a, bool trans_b, int m, int n, int k,
                      float alpha, tw_mem a, int lda, tw_mem b, int ldb, float beta, tw_mem c,
                      int ldc);

/* Rows of (N, V) logits per call of the cross-entropy ops: all N in fp32; in 16-bit types an
 * eighth of them at a time, so that a backend widening its 16-bit tensors into fp32 scratch
 * (the cpu backend) holds (N / 8, V) of it rather than logits and their gradient whole (2 N V
 * floats, the largest term of a bf16 step's peak memory otherwise). The rows are independent:
 * the results are the same. */
static inline size_t gpt_xent_rows(const tw_gpt *m, size_t N) {
    return m->dtype == TW_DTYPE_F32 ? N : (N + 7) / 8;
}

/* Attention arguments for block l over the current (B, T), reading q/k/v from `qkv`. */
tw_attention_args tw_gpt_attention_args(tw_gpt *m, int l);


#endif
