/* Internals shared by tokenizer.c (construction, encode/decode, hash), tokenizer_train.c (BPE
 * training) and tokenizer_json.c (Hugging Face tokenizer.json save/load). */
#ifndef TWIST_DATA_TOKENIZER_IMPL_H
#define TWIST_DATA_TOKENIZER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/tokenizer.h"

/* ------------------------------------------------------------------------------------------------
 * Hash maps (open addressing, linear probing, power-of-two capacity, load factor <= 1/2).
 * ---------------------------------------------------------------------------------------------- */

/* Byte string -> int32 value. Keys are copied into the map's own arena. */
typedef struct tw_bytes_map_slot {
    uint64_t hash; /* 0 marks an empty slot (real hashes are forced non-zero) */
    size_t offset; /* key bytes at arena + offset */
    uint32_t length;
    int32_t value;
} tw_bytes_map_slot;

typedef struct tw_bytes_map {
    tw_bytes_map_slot *slots;
    size_t capacity; /* power of two */
    size_t count;
    unsigned char *arena;
    size_t arena_used, arena_capacity;
} tw_bytes_map;

uint64_t tw_bytes_hash(const void *data, size_t length);
void tw_bytes_map_init(tw_bytes_map *map);
void tw_bytes_map_free(tw_bytes_map *map);
void tw_bytes_map_clear(tw_bytes_map *map);
/* Finds `key`; returns a pointer to its value or NULL. `hash` is tw_bytes_hash(key, length). */
int32_t *tw_bytes_map_find(const tw_bytes_map *map, const void *key, size_t length, uint64_t hash);
/* Finds or inserts `key` (with value `initial` when new). Returns a pointer to the value (valid
 * until the next insertion) or NULL when out of memory; *inserted tells whether it was new. */
int32_t *tw_bytes_map_insert(tw_bytes_map *map, const void *key, size_t length, uint64_t hash,
                             int32_t initial, bool *inserted);

/* Pair of token ids (packed as left << 32 | right) -> int32 value. */
typedef struct tw_pair_map {
    uint64_t *keys; /* TW_PAIR_EMPTY marks an empty slot */
    int32_t *values;
    size_t capacity, count;
} tw_pair_map;

#define TW_PAIR_EMPTY UINT64_MAX

static inline uint64_t tw_pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

void tw_pair_map_init(tw_pair_map *map);
void tw_pair_map_free(tw_pair_map *map);
/* Returns the value of `key`, or -1 when absent. */
int32_t tw_pair_map_get(const tw_pair_map *map, uint64_t key);
/* Inserts or overwrites. Returns false when out of memory. */
bool tw_pair_map_put(tw_pair_map *map, uint64_t key, int32_t value);

/* ------------------------------------------------------------------------------------------------
 * The tokenizer.
 * ---------------------------------------------------------------------------------------------- */

struct tw_tokenizer {
    int32_t vocab_size;
    int32_t eot_id;
    /* Token id -> bytes: token i is token_data[token_offset[i] .. token_offset[i + 1]). */
    unsigned char *token_data;
    size_t *token_offset; /* (vocab_size + 1) */
    unsigned char *special; /* (vocab_size) 1 for added/special tokens, never produced by encode */
    int32_t byte_id[256];   /* byte value -> id of its single-byte token */

    /* Merges in rank order: merge r turns (merge_left[r], merge_right[r]) into merge_result[r]. */
    int32_t merge_count;
    int32_t *merge_left, *merge_right, *merge_result;
    tw_pair_map merge_rank; /* (left, right) -> rank */

    uint64_t hash;

    /* Encode cache: piece bytes -> index into cache_start/cache_length (ids in cache_ids). Guarded by
     * `lock`, as are the scratch arrays the per-piece BPE uses. */
    pthread_mutex_t lock;
    tw_bytes_map cache;
    int32_t *cache_ids;
    size_t cache_ids_used, cache_ids_capacity;
    size_t *cache_start;
    uint32_t *cache_length;
    size_t cache_entries_capacity;
    void *scratch;
    size_t scratch_bytes;
};

/* Description of a tokenizer, handed to tw_tokenizer_build() by training and loading. */
typedef struct tw_tokenizer_spec {
    int32_t vocab_size;
    const unsigned char *token_data; /* token i: token_data[token_offset[i] .. token_offset[i+1]) */
    const size_t *token_offset;      /* (vocab_size + 1) */
    const unsigned char *special;    /* (vocab_size) */
    int32_t eot_id;
    int32_t merge_count;
    const int32_t *merge_left, *merge_right, *merge_result; /* (merge_count) */
} tw_tokenizer_spec;

/* Copies `spec` into a new tokenizer. It must already be valid (single-byte tokens present, merge
 * results equal to the concatenation of their parts); `source` names the origin in messages. */
tw_status tw_tokenizer_build(const tw_tokenizer_spec *spec, const char *source, tw_tokenizer **out);

/* GPT-2's byte <-> unicode table: byte b is shown as code point tw_byte_to_codepoint(b). */
uint32_t tw_byte_to_codepoint(unsigned char byte);
/* Inverse: the byte whose code point is `codepoint`, or -1 when it is not in the table. */
int tw_codepoint_to_byte(uint32_t codepoint);

/* ------------------------------------------------------------------------------------------------
 * Pre-tokenisation (pretokenize.c): GPT-2's regular expression with Unicode classes (PCRE2), the
 * split described in twist/tokenizer.h. Usage:
 *     tw_pretok it;  TW_TRY(tw_pretok_init(&it, text, length, 0));
 *     for (size_t n; (status = tw_pretok_next(&it, &n)) == TW_OK && n > 0;) ...piece of n bytes...
 *     tw_pretok_free(&it);
 * ---------------------------------------------------------------------------------------------- */

typedef struct tw_pretok {
    const unsigned char *text;
    size_t length;
    size_t at;         /* start of the next piece */
    size_t valid_end;  /* text[at .. valid_end) is valid UTF-8 (when valid_end >= at) */
    bool invalid_next; /* an invalid sequence starts at valid_end (else: validated that far) */
    size_t scan_chunk; /* bytes validated at a time, doubling (0: the whole text at once) */
    void *match_data;  /* pcre2_match_data */
    unsigned char *window; /* slow path near invalid bytes: copy with U+FFFD, (window_capacity) */
    size_t window_capacity;
} tw_pretok;

/* Starts splitting text[0..length). scan_chunk 0 validates the whole text up front (for a loop
 * over all pieces); a small value validates only as far as the first pieces need. Errors:
 * TW_ERR_OUT_OF_MEMORY, TW_ERR_BACKEND (PCRE2 refused the pattern). Call tw_pretok_free even then. */
tw_status tw_pretok_init(tw_pretok *it, const char *text, size_t length, size_t scan_chunk);
/* The next piece's length in *piece (0 at the end of the text). */
tw_status tw_pretok_next(tw_pretok *it, size_t *piece);
void tw_pretok_free(tw_pretok *it);

#endif
