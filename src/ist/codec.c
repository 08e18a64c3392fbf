/* Exchange codecs (codec.h): bfloat16 rounding, the per-link references and residuals of
 * bf16-delta, and the subnet -> full-model index a link needs for them. */
#include "ist/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ist/ist_internal.h"
#include "twist/error.h"

uint16_t dist_bf16_from_float(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (isnan(x)) return (uint16_t)((bits >> 16) | 0x0040u); /* quiet, sign kept */
    /* Round to nearest even on the 16 bits dropped: add 0x7fff plus the kept part's lowest
     * bit; a carry into the exponent rounds up to the next binade (or to inf). */
    const uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;
    return (uint16_t)(bits >> 16);
}

float dist_bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static float round_bf16(float x) { return dist_bf16_to_float(dist_bf16_from_float(x)); }

uint64_t dist_codec_bytes(tw_dist_codec codec, uint64_t floats) {
    return floats * (codec == TW_CODEC_FP32 ? 4u : 2u);
}

void dist_codec_link_free(dist_codec_link *link) {
    if (!link) return;
    free(link->ref);
    free(link->resid);
    free(link->index);
    free(link->shares);
    free(link->wire);
    free(link->grad_resid);
    memset(link, 0, sizeof *link);
}

static tw_status grow(void **buffer, size_t *capacity, size_t count, size_t size) {
    if (*capacity >= count) return TW_OK;
    void *bigger = realloc(*buffer, (count ? count : 1) * size);
    if (!bigger)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "exchange codec: out of host memory (%zu values)",
                        count);
    *buffer = bigger;
    *capacity = count;
    return TW_OK;
}

tw_status dist_codec_reserve_shares(dist_codec_link *link, size_t count) {
    TW_TRY(grow((void **)&link->shares, &link->share_capacity, count, sizeof *link->shares));
    link->share_count = count;
    return TW_OK;
}

tw_status dist_codec_reserve_wire(dist_codec_link *link, size_t values) {
    return grow((void **)&link->wire, &link->wire_capacity, values, sizeof *link->wire);
}

tw_status dist_codec_set_shares(dist_codec_link *link, const tw_ist_partition *partition,
                                int slot) {
    size_t count = 0;
    for (int l = 0; l < partition->n_layer; l++) {
        const tw_ist_layer_share *s = tw_ist_share(partition, slot, l);
        count += 2 + (size_t)s->head_count + (size_t)s->unit_count;
    }
    TW_TRY(dist_codec_reserve_shares(link, count));
    size_t at = 0;
    for (int l = 0; l < partition->n_layer; l++) {
        const tw_ist_layer_share *s = tw_ist_share(partition, slot, l);
        link->shares[at++] = s->head_count;
        for (int h = 0; h < s->head_count; h++) link->shares[at++] = s->heads[h];
        link->shares[at++] = s->unit_count;
        for (int u = 0; u < s->unit_count; u++) link->shares[at++] = s->units[u];
    }
    return TW_OK;
}

static void fill_index(void *context, size_t sub, size_t master, size_t len) {
    size_t *index = context;
    for (size_t i = 0; i < len; i++) index[sub + i] = master + i;
}

tw_status dist_codec_map(dist_codec_link *link, const tw_gpt_config *full, bool worker_end) {
    /* The share lists back into a one-worker partition (pointers into link->shares). */
    const int L = full->n_layer;
    tw_ist_layer_share layers[TW_GPT_MAX_LAYERS];
    if (L < 1 || L > TW_GPT_MAX_LAYERS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "exchange codec: %d layers", L);
    size_t at = 0;
    for (int l = 0; l < L; l++) {
        tw_ist_layer_share *s = &layers[l];
        if (at >= link->share_count) goto malformed;
        s->head_count = link->shares[at++];
        if (s->head_count < 1 || (size_t)s->head_count > link->share_count - at) goto malformed;
        s->heads = (int *)&link->shares[at];
        at += (size_t)s->head_count;
        if (at >= link->share_count) goto malformed;
        s->unit_count = link->shares[at++];
        if (s->unit_count < 1 || (size_t)s->unit_count > link->share_count - at) goto malformed;
        s->units = (int *)&link->shares[at];
        at += (size_t)s->unit_count;
    }
    if (at != link->share_count) goto malformed;
    tw_ist_partition partition = {.workers = 1, .n_layer = L, .shares = layers};
    tw_gpt_tensor *tensors = NULL;
    int tensor_count = 0;
    size_t full_count = 0;
    TW_TRY(tw_gpt_layout(full, &tensors, &tensor_count, &full_count, NULL));
    ist_subnet_map map;
    tw_status status = ist_subnet_map_init(&map, full, tensors, tensor_count, &partition, 0);
    if (status == TW_OK) {
        status = grow((void **)&link->index, &link->index_capacity, map.param_count,
                      sizeof *link->index);
        if (status == TW_OK) {
            link->sub = map.param_count;
            status = ist_subnet_map_walk(&map, fill_index, link->index);
        }
        ist_subnet_map_release(&map);
    }
    free(tensors);
    if (status != TW_OK) return status;
    if (link->full != full_count) {
        free(link->ref);
        free(link->resid);
        link->ref = calloc(3 * full_count, sizeof *link->ref);
        link->resid = worker_end ? calloc(3 * full_count, sizeof *link->resid) : NULL;
        link->full = full_count;
        if (!link->ref || (worker_end && !link->resid)) {
            link->full = 0;
            return tw_error(TW_ERR_OUT_OF_MEMORY, "exchange codec: no host memory for the "
                            "bf16-delta reference of %zu parameters", full_count);
        }
    }
    return TW_OK;
malformed:
    return tw_error(TW_ERR_INVALID_ARGUMENT, "exchange codec: malformed share lists (%zu ints "
                    "for %d layers)", link->share_count, L);
}

void dist_codec_encode(dist_codec_link *link, tw_dist_codec codec, bool worker_end,
                       const float *packed, size_t floats) {
    if (codec != TW_CODEC_BF16_DELTA) {
        for (size_t i = 0; i < floats; i++) link->wire[i] = dist_bf16_from_float(packed[i]);
        return;
    }
    const size_t S = link->sub, P = link->full;
    for (size_t k = 0; k < 3; k++) { /* params, exp_avg, exp_avg_sq */
        const float *x = packed + k * S;
        uint16_t *wire = link->wire + k * S;
        float *ref = link->ref + k * P;
        float *resid = worker_end ? link->resid + k * P : NULL;
        for (size_t i = 0; i < S; i++) {
            const size_t e = link->index[i];
            /* (S) deltas: the worker adds what it could not send last time */
            const float delta = x[i] - ref[e] + (resid ? resid[e] : 0.0f);
            const uint16_t q = dist_bf16_from_float(delta);
            const float sent = dist_bf16_to_float(q);
            if (resid) resid[e] = delta - sent;
            ref[e] += sent;
            wire[i] = q;
        }
    }
}

void dist_codec_decode(dist_codec_link *link, tw_dist_codec codec, bool worker_end,
                       float *packed, size_t floats) {
    if (codec != TW_CODEC_BF16_DELTA) {
        for (size_t i = 0; i < floats; i++) packed[i] = dist_bf16_to_float(link->wire[i]);
        return;
    }
    const size_t S = link->sub, P = link->full;
    for (size_t k = 0; k < 3; k++) {
        const uint16_t *wire = link->wire + k * S;
        float *ref = link->ref + k * P, *x = packed + k * S;
        for (size_t i = 0; i < S; i++) {
            const size_t e = link->index[i];
            const float change = dist_bf16_to_float(wire[i]);
            ref[e] += change;
            /* worker end: the value; master end: the sent value plus the worker's change */
            x[i] = worker_end ? ref[e] : x[i] + change;
        }
    }
}

tw_status dist_codec_quantize(dist_codec_link *link, tw_dist_codec codec, float *data,
                              size_t count) {
    if (codec == TW_CODEC_FP32) return TW_OK;
    if (codec == TW_CODEC_BF16) {
        for (size_t i = 0; i < count; i++) data[i] = round_bf16(data[i]);
        return TW_OK;
    }
    if (link->grad_count != count) {
        /* A new shape (or the first step): the residual starts from nothing. */
        free(link->grad_resid);
        link->grad_resid = calloc(count ? count : 1, sizeof *link->grad_resid);
        link->grad_count = link->grad_resid ? count : 0;
        if (!link->grad_resid)
            return tw_error(TW_ERR_OUT_OF_MEMORY, "exchange codec: no host memory for the "
                            "residual of %zu gradients", count);
    }
    for (size_t i = 0; i < count; i++) {
        const float want = data[i] + link->grad_resid[i];
        const float sent = round_bf16(want);
        link->grad_resid[i] = want - sent;
        data[i] = sent;
    }
    return TW_OK;
}

void dist_bf16_pack(const float *data, size_t count, uint16_t *wire) {
    for (size_t i = 0; i < count; i++) wire[i] = dist_bf16_from_float(data[i]);
}

void dist_bf16_unpack(const uint16_t *wire, size_t count, float *data) {
    for (size_t i = 0; i < count; i++) data[i] = dist_bf16_to_float(wire[i]);
}
