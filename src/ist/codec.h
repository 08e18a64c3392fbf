/* Exchange codecs of distributed runs (--codec): what goes on the wire between the master and
 * a worker, for IST and the data parallel / local SGD baselines alike.
 *
 *   fp32        the float32 values as they are (4 bytes each)
 *   bf16        every float sent is rounded to bfloat16, round to nearest even (2 bytes each)
 *   bf16-delta  the bfloat16 of the difference between the value and the last value both ends
 *               know (2 bytes each), with error feedback so the rounding errors do not pile up
 *
 * What is encoded: the packed subnets [params | exp_avg | exp_avg_sq] of every round, both
 * ways (the master's send and the workers' return), and in data parallel mode the gradients a
 * worker sends and the mean it gets back at every step.
 *
 * bf16-delta on the packed subnets. Each link (the master and one worker) keeps, on both ends,
 * a reference: for every element of the FULL model [params | exp_avg | exp_avg_sq] (3 x P floats,
 * master layout), the last value exchanged over this link (0 before the first). A send of
 * element e carries q = bf16(x_e - ref_e (+ residual)), and both ends then set ref_e += q, in the
 * same float arithmetic, so they stay identical.
 *   master -> worker: the master's residual is implicit: x_e - ref_e after the send is exactly
 *     what the worker has not got yet, and is sent with the next delta of e on this link. The
 *     master applies a worker's returned change to the exact x_e it sent (not to ref_e), so the
 *     send's rounding never enters the master's weights.
 *   worker -> master: the worker's trained value is gone after the round (the next round starts
 *     from what the master sends), so its rounding residual r_e is kept by the worker and added
 *     to its next delta of e: it sends bf16((x_e - ref_e) + r_e) and keeps the new remainder.
 * The reference is in the full model's layout because IST deals different heads and units every
 * round: a worker learns which (the round's share lists, sent with the job and counted on the
 * wire as 4 bytes an index) and maps its subnet onto the full layout. This costs host memory on
 * both ends: the master 3 x P floats per worker, a worker 6 x P floats (reference, residuals).
 *
 * bf16-delta on data parallel gradients: gradients change completely from step to step, so the
 * "last known value" is no help; they are sent as bf16 with error feedback instead (each worker
 * keeps the rounding residual of its gradients and adds it to the next step's; the averaging
 * leader does the same for the mean it sends back). */
#ifndef TWIST_IST_CODEC_H
#define TWIST_IST_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/ist.h"
#include "twist/ist_run.h"

/* bfloat16: the top 16 bits of a float32, rounded to nearest, ties to even; NaN stays a
 * (quiet) NaN, infinities and values that round past the largest finite bf16 become inf. */
uint16_t dist_bf16_from_float(float x);
float dist_bf16_to_float(uint16_t h);

/* Bytes on the wire of `floats` values under the codec. */
uint64_t dist_codec_bytes(tw_dist_codec codec, uint64_t floats);

/* One end of the link between the master and one worker. Zero-initialise; dist_codec_link_free
 * releases it. */
typedef struct dist_codec_link {
    size_t full;       /* parameters of the full model, 0 until the first bf16-delta mapping */
    float *ref;        /* (3 * full) bf16-delta: the values both ends know, [params | m | v] */
    float *resid;      /* (3 * full) worker end: residuals of what it sent */
    size_t sub;        /* parameters of this round's subnet */
    size_t *index;     /* (sub) full-model index of each subnet parameter */
    size_t index_capacity;
    int32_t *shares;   /* this round's share lists: per layer head count, heads, unit count, units */
    size_t share_count, share_capacity;
    uint16_t *wire;    /* the encoded packed subnet (3 * sub values) */
    size_t wire_capacity;
    float *grad_resid; /* data parallel: the residual of the gradients (or mean) sent */
    size_t grad_count;
} dist_codec_link;

void dist_codec_link_free(dist_codec_link *link);

/* Master end: this round's share lists of partition slot `slot` into link->shares. */
tw_status dist_codec_set_shares(dist_codec_link *link, const tw_ist_partition *partition,
                                int slot);
/* Makes room for `count` share ints (a receiving worker end), setting share_count. */
tw_status dist_codec_reserve_shares(dist_codec_link *link, size_t count);
/* Either end: the subnet -> full-model index of link->shares against the full model config;
 * allocates the reference (and, at a worker end, the residuals) on first use. */
tw_status dist_codec_map(dist_codec_link *link, const tw_gpt_config *full, bool worker_end);
/* Makes link->wire hold `values` values. */
tw_status dist_codec_reserve_wire(dist_codec_link *link, size_t values);

/* packed (3 * sub floats: [params | m | v] of the subnet) -> link->wire. bf16-delta: after
 * dist_codec_map, and updates the reference (and, worker end, the residuals). */
void dist_codec_encode(dist_codec_link *link, tw_dist_codec codec, bool worker_end,
                       const float *packed, size_t floats);
/* link->wire -> packed: what the receiver now holds. bf16-delta at the master's end (the
 * worker's return): packed holds the exact values the master sent this round, and the decoded
 * change is added to them, so the rounding of the send never reaches the master's weights (it
 * stays owed on the link: x - ref, sent with the next delta). */
void dist_codec_decode(dist_codec_link *link, tw_dist_codec codec, bool worker_end,
                       float *packed, size_t floats);

/* Data parallel: data (count floats) becomes what the receiver decodes: bf16 of it (bf16), or
 * of it plus the residual kept in link->grad_resid, which keeps the new remainder
 * (bf16-delta). fp32: nothing. */
tw_status dist_codec_quantize(dist_codec_link *link, tw_dist_codec codec, float *data,
                              size_t count);

/* bf16 encoding of count floats that are already bf16 values (after dist_codec_quantize), and
 * back: what MPI sends of them. */
void dist_bf16_pack(const float *data, size_t count, uint16_t *wire);
void dist_bf16_unpack(const uint16_t *wire, size_t count, float *data);

#endif
