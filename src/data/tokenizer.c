/* Byte-level BPE tokenizer: hash maps, the GPT-2 pre-token split, construction, encode/decode and
 * the content hash. Training is in tokenizer_train.c, tokenizer.json I/O in tokenizer_json.c. */
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "data/tokenizer_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Hash maps
 * ---------------------------------------------------------------------------------------------- */

uint64_t tw_bytes_hash(const void *data, size_t length) {
    /* FNV-1a, finished with a multiply-xorshift so the low bits (the probe index) mix well. */
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < length; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return h ? h : 1; /* 0 marks an empty slot */
}

void tw_bytes_map_init(tw_bytes_map *map) { memset(map, 0, sizeof *map); }

void tw_bytes_map_free(tw_bytes_map *map) {
    free(map->slots);
    free(map->arena);
    memset(map, 0, sizeof *map);
}

void tw_bytes_map_clear(tw_bytes_map *map) {
    if (map->slots) memset(map->slots, 0, map->capacity * sizeof *map->slots);
    map->count = 0;
    map->arena_used = 0;
}

static bool bytes_key_equal(const tw_bytes_map *map, const tw_bytes_map_slot *slot, const void *key,
                            size_t length, uint64_t hash) {
    return slot->hash == hash && slot->length == length &&
           memcmp(map->arena + slot->offset, key, length) == 0;
}

int32_t *tw_bytes_map_find(const tw_bytes_map *map, const void *key, size_t length, uint64_t hash) {
    if (map->capacity == 0) return NULL;
    size_t mask = map->capacity - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        tw_bytes_map_slot *slot = &map->slots[i];
        if (slot->hash == 0) return NULL;
        if (bytes_key_equal(map, slot, key, length, hash)) return &slot->value;
    }
}

static bool bytes_map_grow(tw_bytes_map *map) {
    size_t capacity = map->capacity ? map->capacity * 2 : 1024;
    tw_bytes_map_slot *slots = calloc(capacity, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < map->capacity; i++) {
        tw_bytes_map_slot *old = &map->slots[i];
        if (old->hash == 0) continue;
        size_t j = old->hash & (capacity - 1);
        while (slots[j].hash != 0) j = (j + 1) & (capacity - 1);
        slots[j] = *old;
    }
    free(map->slots);
    map->slots = slots;
    map->capacity = capacity;
    return true;
}

int32_t *tw_bytes_map_insert(tw_bytes_map *map, const void *key, size_t length, uint64_t hash,
                             int32_t initial, bool *inserted) {
    *inserted = false;
    if (length > UINT32_MAX) return NULL;
    if ((map->count + 1) * 2 > map->capacity && !bytes_map_grow(map)) return NULL;
    size_t mask = map->capacity - 1;
    size_t i = hash & mask;
    for (;; i = (i + 1) & mask) {
        tw_bytes_map_slot *slot = &map->slots[i];
        if (slot->hash == 0) break;
        if (bytes_key_equal(map, slot, key, length, hash)) return &slot->value;
    }
    if (map->arena_used + length > map->arena_capacity) {
        size_t capacity = map->arena_capacity ? map->arena_capacity : 4096;
        while (capacity < map->arena_used + length) capacity *= 2;
        unsigned char *arena = realloc(map->arena, capacity);
        if (!arena) return NULL;
        map->arena = arena;
        map->arena_capacity = capacity;
    }
    if (length) memcpy(map->arena + map->arena_used, key, length);
    tw_bytes_map_slot *slot = &map->slots[i];
    slot->hash = hash;
    slot->offset = map->arena_used;
    slot->length = (uint32_t)length;
    slot->value = initial;
    map->arena_used += length;
    map->count++;
    *inserted = true;
    return &slot->value;
}

static inline size_t pair_slot(uint64_t key, size_t capacity) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 31)) & (capacity - 1);
}

void tw_pair_map_init(tw_pair_map *map) { memset(map, 0, sizeof *map); }

void tw_pair_map_free(tw_pair_map *map) {
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof *map);
}

int32_t tw_pair_map_get(const tw_pair_map *map, uint64_t key) {
    if (map->capacity == 0) return -1;
    for (size_t i = pair_slot(key, map->capacity);; i = (i + 1) & (map->capacity - 1)) {
        if (map->keys[i] == key) return map->values[i];
        if (map->keys[i] == TW_PAIR_EMPTY) return -1;
    }
}

static bool pair_map_grow(tw_pair_map *map) {
    size_t capacity = map->capacity ? map->capacity * 2 : 1024;
    uint64_t *keys = malloc(capacity * sizeof *keys);
    int32_t *values = malloc(capacity * sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return false;
    }
    for (size_t i = 0; i < capacity; i++) keys[i] = TW_PAIR_EMPTY;
    for (size_t i = 0; i < map->capacity; i++) {
        if (map->keys[i] == TW_PAIR_EMPTY) continue;
        size_t j = pair_slot(map->keys[i], capacity);
        while (keys[j] != TW_PAIR_EMPTY) j = (j + 1) & (capacity - 1);
        keys[j] = map->keys[i];
        values[j] = map->values[i];
    }
    free(map->keys);
    free(map->values);
    map->keys = keys;
    map->values = values;
    map->capacity = capacity;
    return true;
}

bool tw_pair_map_put(tw_pair_map *map, uint64_t key, int32_t value) {
    if ((map->count + 1) * 2 > map->capacity && !pair_map_grow(map)) return false;
    size_t i = pair_slot(key, map->capacity);
    while (map->keys[i] != TW_PAIR_EMPTY && map->keys[i] != key) i = (i + 1) & (map->capacity - 1);
    if (map->keys[i] == TW_PAIR_EMPTY) {
        map->keys[i] = key;
        map->count++;
    }
    map->values[i] = value;
    return true;
}

/* ------------------------------------------------------------------------------------------------
 * GPT-2's byte <-> unicode table. Printable Latin-1 bytes (33-126, 161-172, 174-255) stand for
 * themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) are shown as code points
 * 256, 257, ... in increasing byte order, so every token is a printable string without spaces.
 * ---------------------------------------------------------------------------------------------- */

static bool byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tw_byte_to_codepoint(unsigned char byte) {
    if (byte_is_printable(byte)) return byte;
    uint32_t n = 0;
    for (unsigned b = 0; b < byte; b++) n += !byte_is_printable(b);
    return 256 + n;
}

int tw_codepoint_to_byte(uint32_t codepoint) {
    if (codepoint < 256) return byte_is_printable(codepoint) ? (int)codepoint : -1;
    uint32_t n = 0;
    for (unsigned b = 0; b < 256; b++) {
        if (byte_is_printable(b)) continue;
        if (256 + n == codepoint) return (int)b;
        n++;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------------
 * Pre-token split (pretokenize.c; the rules are in twist/tokenizer.h)
 * ---------------------------------------------------------------------------------------------- */

size_t tw_tokenizer_piece_length(const char *text, size_t length) {
    if (length == 0) return 0;
    /* Validates only as far as the first piece needs (64 bytes, doubling), so a loop over a long
     * text costs about what one pass does. */
    tw_pretok it;
    size_t n = 0;
    if (tw_pretok_init(&it, text, length, 64) != TW_OK || tw_pretok_next(&it, &n) != TW_OK)
        n = 1; /* out of memory: a one-byte piece keeps a caller's loop going */
    tw_pretok_free(&it);
    return n;
}

/* ------------------------------------------------------------------------------------------------
 * Construction
 * ---------------------------------------------------------------------------------------------- */

static void hash_bytes(uint64_t *h, const void *data, size_t length) {
    const unsigned char *p = data;
    for (size_t i = 0; i < length; i++) *h = (*h ^ p[i]) * 0x100000001b3ull;
}

static void hash_u32(uint64_t *h, uint32_t v) {
    unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24)};
    hash_bytes(h, le, 4);
}

static uint64_t content_hash(const tw_tokenizer *tok) {
    uint64_t h = 0xcbf29ce484222325ull;
    hash_bytes(&h, "twist-bpe-1", 11);
    hash_u32(&h, (uint32_t)tok->vocab_size);
    hash_u32(&h, (uint32_t)tok->eot_id);
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        size_t len = tok->token_offset[i + 1] - tok->token_offset[i];
        hash_u32(&h, (uint32_t)len);
        hash_bytes(&h, tok->token_data + tok->token_offset[i], len);
        hash_bytes(&h, &tok->special[i], 1);
    }
    hash_u32(&h, (uint32_t)tok->merge_count);
    for (int32_t r = 0; r < tok->merge_count; r++) {
        hash_u32(&h, (uint32_t)tok->merge_left[r]);
        hash_u32(&h, (uint32_t)tok->merge_right[r]);
        hash_u32(&h, (uint32_t)tok->merge_result[r]);
    }
    return h;
}

void tw_tokenizer_free(tw_tokenizer *tok) {
    if (!tok) return;
    pthread_mutex_destroy(&tok->lock);
    free(tok->token_data);
    free(tok->token_offset);
    free(tok->special);
    free(tok->merge_left);
    free(tok->merge_right);
    free(tok->merge_result);
    tw_pair_map_free(&tok->merge_rank);
    tw_bytes_map_free(&tok->cache);
    free(tok->cache_ids);
    free(tok->cache_start);
    free(tok->cache_length);
    free(tok->scratch);
    free(tok);
}

static tw_status out_of_memory(tw_tokenizer *tok, const char *source) {
    tw_tokenizer_free(tok);
    return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory building the tokenizer", source);
}

tw_status tw_tokenizer_build(const tw_tokenizer_spec *spec, const char *source, tw_tokenizer **out) {
    *out = NULL;
    int32_t v = spec->vocab_size;
    if (v < TW_TOKENIZER_MIN_VOCAB || v > TW_TOKENIZER_MAX_VOCAB)
        return tw_error(TW_ERR_FORMAT, "%s: vocabulary of %d tokens (expected %d to %d)", source, v,
                        TW_TOKENIZER_MIN_VOCAB, TW_TOKENIZER_MAX_VOCAB);
    if (spec->merge_count < 0)
        return tw_error(TW_ERR_FORMAT, "%s: negative merge count", source);
    tw_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory", source);
    if (pthread_mutex_init(&tok->lock, NULL) != 0) {
        free(tok);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: cannot create a mutex", source);
    }
    tw_pair_map_init(&tok->merge_rank);
    tw_bytes_map_init(&tok->cache);
    tok->vocab_size = v;
    tok->eot_id = spec->eot_id;
    size_t data_bytes = spec->token_offset[v];
    size_t merges = (size_t)spec->merge_count;
    tok->token_data = malloc(data_bytes ? data_bytes : 1);
    tok->token_offset = malloc(((size_t)v + 1) * sizeof *tok->token_offset);
    tok->special = malloc((size_t)v);
    tok->merge_left = malloc((merges ? merges : 1) * sizeof(int32_t));
    tok->merge_right = malloc((merges ? merges : 1) * sizeof(int32_t));
    tok->merge_result = malloc((merges ? merges : 1) * sizeof(int32_t));
    if (!tok->token_data || !tok->token_offset || !tok->special || !tok->merge_left ||
        !tok->merge_right || !tok->merge_result)
        return out_of_memory(tok, source);
    memcpy(tok->token_data, spec->token_data, data_bytes);
    memcpy(tok->token_offset, spec->token_offset, ((size_t)v + 1) * sizeof *tok->token_offset);
    memcpy(tok->special, spec->special, (size_t)v);
    tok->merge_count = spec->merge_count;
    if (merges) {
        memcpy(tok->merge_left, spec->merge_left, merges * sizeof(int32_t));
        memcpy(tok->merge_right, spec->merge_right, merges * sizeof(int32_t));
        memcpy(tok->merge_result, spec->merge_result, merges * sizeof(int32_t));
    }

    /* Tokens: offsets monotone, ordinary tokens non-empty and distinct, the end-of-text token
     * special and spelled "<|endoftext|>". */
    if (tok->eot_id < 0 || tok->eot_id >= v || !tok->special[tok->eot_id]) {
        tw_tokenizer_free(tok);
        return tw_error(TW_ERR_FORMAT, "%s: no special token " TW_TOKENIZER_EOT_TEXT, source);
    }
    for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
    tw_bytes_map seen;
    tw_bytes_map_init(&seen);
    for (int32_t i = 0; i < v; i++) {
        size_t start = tok->token_offset[i], end = tok->token_offset[i + 1];
        if (end < start || end > data_bytes || (end == start && !tok->special[i])) {
            tw_bytes_map_free(&seen);
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT, "%s: token %d is empty", source, i);
        }
        if (tok->special[i]) continue;
        const unsigned char *bytes = tok->token_data + start;
        bool inserted;
        int32_t *other =
            tw_bytes_map_insert(&seen, bytes, end - start, tw_bytes_hash(bytes, end - start), i,
                                &inserted);
        if (!other) {
            tw_bytes_map_free(&seen);
            return out_of_memory(tok, source);
        }
        if (!inserted) {
            int32_t first = *other;
            tw_bytes_map_free(&seen);
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT, "%s: tokens %d and %d have the same bytes", source,
                            first, i);
        }
        if (end - start == 1) tok->byte_id[bytes[0]] = i;
    }
    tw_bytes_map_free(&seen);
    size_t eot_len = tok->token_offset[tok->eot_id + 1] - tok->token_offset[tok->eot_id];
    if (eot_len != strlen(TW_TOKENIZER_EOT_TEXT) ||
        memcmp(tok->token_data + tok->token_offset[tok->eot_id], TW_TOKENIZER_EOT_TEXT, eot_len)) {
        int32_t eot = tok->eot_id;
        tw_tokenizer_free(tok);
        return tw_error(TW_ERR_FORMAT, "%s: token %d is special but not " TW_TOKENIZER_EOT_TEXT,
                        source, eot);
    }
    for (int b = 0; b < 256; b++) {
        if (tok->byte_id[b] < 0) {
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT,
                            "%s: vocabulary lacks the single-byte token for byte 0x%02x, so not "
                            "every text could be encoded",
                            source, b);
        }
    }

    /* Merges: ordinary ids, result bytes == left bytes + right bytes, each pair once. */
    for (int32_t r = 0; r < tok->merge_count; r++) {
        int32_t a = tok->merge_left[r], b = tok->merge_right[r], c = tok->merge_result[r];
        if (a < 0 || a >= v || b < 0 || b >= v || c < 0 || c >= v || tok->special[a] ||
            tok->special[b] || tok->special[c]) {
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT, "%s: merge %d uses an id out of range or a special "
                            "token (%d + %d -> %d)", source, r, a, b, c);
        }
        size_t la = tok->token_offset[a + 1] - tok->token_offset[a];
        size_t lb = tok->token_offset[b + 1] - tok->token_offset[b];
        size_t lc = tok->token_offset[c + 1] - tok->token_offset[c];
        const unsigned char *pc = tok->token_data + tok->token_offset[c];
        if (lc != la + lb || memcmp(pc, tok->token_data + tok->token_offset[a], la) ||
            memcmp(pc + la, tok->token_data + tok->token_offset[b], lb)) {
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT, "%s: merge %d (%d + %d) does not spell token %d",
                            source, r, a, b, c);
        }
        uint64_t key = tw_pair_key(a, b);
        if (tw_pair_map_get(&tok->merge_rank, key) >= 0) {
            tw_tokenizer_free(tok);
            return tw_error(TW_ERR_FORMAT, "%s: merge %d repeats an earlier merge (%d + %d)",
                            source, r, a, b);
        }
        if (!tw_pair_map_put(&tok->merge_rank, key, r)) return out_of_memory(tok, source);
    }
    tok->hash = content_hash(tok);
    *out = tok;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Accessors
 * ---------------------------------------------------------------------------------------------- */

int tw_tokenizer_vocab_size(const tw_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

int32_t tw_tokenizer_eot_id(const tw_tokenizer *tok) { return tok ? tok->eot_id : -1; }

int tw_tokenizer_merge_count(const tw_tokenizer *tok) { return tok ? tok->merge_count : 0; }

tw_status tw_tokenizer_merge(const tw_tokenizer *tok, int rank, int32_t *left, int32_t *right,
                             int32_t *result) {
    if (!tok || rank < 0 || rank >= tok->merge_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "merge rank %d out of range (%d merges)", rank,
                        tok ? tok->merge_count : 0);
    if (left) *left = tok->merge_left[rank];
    if (right) *right = tok->merge_right[rank];
    if (result) *result = tok->merge_result[rank];
    return TW_OK;
}

const unsigned char *tw_tokenizer_token_bytes(const tw_tokenizer *tok, int32_t id, size_t *length) {
    if (!tok || id < 0 || id >= tok->vocab_size) {
        if (length) *length = 0;
        return NULL;
    }
    if (length) *length = tok->token_offset[id + 1] - tok->token_offset[id];
    return tok->token_data + tok->token_offset[id];
}

uint64_t tw_tokenizer_hash(const tw_tokenizer *tok) { return tok ? tok->hash : 0; }

/* ------------------------------------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------------------------------- */

/* Pieces up to this many bytes are cached (almost all of them in text); longer ones (long runs of
 * spaces, binary data) are encoded afresh. The cache is emptied when it grows past the limits. */
#define CACHE_MAX_PIECE 256
#define CACHE_MAX_ENTRIES (1u << 18) /* hash slots: at most 2^19 x 24 bytes */
#define CACHE_MAX_IDS (4u << 20)

typedef struct candidate {
    int32_t rank; /* merge rank: lower merges first */
    int32_t pos;  /* position of the left symbol: leftmost first among equal ranks */
} candidate;

static inline bool candidate_before(candidate x, candidate y) {
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(candidate *heap, size_t *size, candidate c) {
    size_t i = (*size)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(c, heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static candidate heap_pop(candidate *heap, size_t *size) {
    candidate top = heap[0], last = heap[--*size];
    size_t i = 0, n = *size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && candidate_before(heap[child + 1], heap[child])) child++;
        if (!candidate_before(heap[child], last)) break;
        heap[i] = heap[child];
        i = child;
    }
    if (n) heap[i] = last;
    return top;
}

/* BPE on one piece of n >= 1 bytes, writing its ids to `out` (room for n) and returning their
 * count. Symbols form a linked list; a min-heap holds candidate merges ordered by (rank, position),
 * so the lowest-ranked pair merges first and equal pairs merge left to right, as in GPT-2 and in
 * training; stale candidates are skipped when popped. O(n log n), so long pieces stay cheap.
 * Needs the scratch area (caller holds the lock). */
static size_t bpe_piece(tw_tokenizer *tok, const unsigned char *s, size_t n, int32_t *out) {
    if (n == 1) {
        out[0] = tok->byte_id[s[0]];
        return 1;
    }
    int32_t *id = (int32_t *)tok->scratch;      /* (n) */
    int32_t *next = id + n;                      /* (n) -1 at the end */
    int32_t *prev = next + n;                    /* (n) -1 at the start */
    candidate *heap = (candidate *)(prev + n);   /* (3n): n-1 initial + 2 per merge */
    size_t heap_size = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = tok->byte_id[s[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t rank = tw_pair_map_get(&tok->merge_rank, tw_pair_key(id[i], id[i + 1]));
        if (rank >= 0) heap_push(heap, &heap_size, (candidate){rank, (int32_t)i});
    }
    while (heap_size) {
        candidate c = heap_pop(heap, &heap_size);
        int32_t i = c.pos, j = next[i];
        /* Stale: the left symbol was absorbed (id -1), or the pair changed since the push. */
        if (id[i] < 0 || j < 0 || id[i] != tok->merge_left[c.rank] ||
            id[j] != tok->merge_right[c.rank])
            continue;
        id[i] = tok->merge_result[c.rank];
        id[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (prev[i] >= 0) {
            int32_t rank = tw_pair_map_get(&tok->merge_rank, tw_pair_key(id[prev[i]], id[i]));
            if (rank >= 0) heap_push(heap, &heap_size, (candidate){rank, prev[i]});
        }
        if (next[i] >= 0) {
            int32_t rank = tw_pair_map_get(&tok->merge_rank, tw_pair_key(id[i], id[next[i]]));
            if (rank >= 0) heap_push(heap, &heap_size, (candidate){rank, i});
        }
    }
    size_t count = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) out[count++] = id[i];
    return count;
}

static bool ensure_scratch(tw_tokenizer *tok, size_t n) {
    size_t need = n * (3 * sizeof(int32_t) + 3 * sizeof(candidate));
    if (need <= tok->scratch_bytes) return true;
    size_t bytes = tok->scratch_bytes ? tok->scratch_bytes : 4096;
    while (bytes < need) bytes *= 2;
    void *p = realloc(tok->scratch, bytes);
    if (!p) return false;
    tok->scratch = p;
    tok->scratch_bytes = bytes;
    return true;
}

static void cache_reset(tw_tokenizer *tok) {
    tw_bytes_map_clear(&tok->cache);
    tok->cache_ids_used = 0;
}

/* Adds a piece's ids to the cache (best effort: a failed allocation just leaves it uncached). */
static void cache_add(tw_tokenizer *tok, const unsigned char *s, size_t n, uint64_t hash,
                      const int32_t *ids, size_t count) {
    if (tok->cache.count >= CACHE_MAX_ENTRIES || tok->cache_ids_used + count > CACHE_MAX_IDS)
        cache_reset(tok);
    size_t entry = tok->cache.count;
    if (entry >= tok->cache_entries_capacity) {
        size_t capacity = tok->cache_entries_capacity ? tok->cache_entries_capacity * 2 : 1024;
        size_t *start = realloc(tok->cache_start, capacity * sizeof *start);
        if (!start) return;
        tok->cache_start = start;
        uint32_t *length = realloc(tok->cache_length, capacity * sizeof *length);
        if (!length) return;
        tok->cache_length = length;
        tok->cache_entries_capacity = capacity;
    }
    if (tok->cache_ids_used + count > tok->cache_ids_capacity) {
        size_t capacity = tok->cache_ids_capacity ? tok->cache_ids_capacity : 4096;
        while (capacity < tok->cache_ids_used + count) capacity *= 2;
        int32_t *p = realloc(tok->cache_ids, capacity * sizeof *p);
        if (!p) return;
        tok->cache_ids = p;
        tok->cache_ids_capacity = capacity;
    }
    bool inserted;
    if (!tw_bytes_map_insert(&tok->cache, s, n, hash, (int32_t)entry, &inserted) || !inserted)
        return;
    memcpy(tok->cache_ids + tok->cache_ids_used, ids, count * sizeof *ids);
    tok->cache_start[entry] = tok->cache_ids_used;
    tok->cache_length[entry] = (uint32_t)count;
    tok->cache_ids_used += count;
}

tw_status tw_tokenizer_encode(const tw_tokenizer *ctok, const char *text, size_t length,
                              int32_t **ids, size_t *count) {
    if (ids) *ids = NULL;
    if (count) *count = 0;
    if (!ctok || !ids || !count || (!text && length))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_encode: NULL argument");
    /* The tokenizer is logically const; only the mutex-guarded cache and scratch change. */
    tw_tokenizer *tok = (tw_tokenizer *)ctok;
    /* Every piece gives at most one id per byte, so `length` ids always suffice. */
    int32_t *out = malloc((length ? length : 1) * sizeof *out);
    if (!out) return tw_error(TW_ERR_OUT_OF_MEMORY, "tw_tokenizer_encode: out of memory for "
                              "%zu bytes of text", length);
    const unsigned char *s = (const unsigned char *)text;
    size_t produced = 0;
    tw_pretok split;
    tw_status status = tw_pretok_init(&split, text, length, 0);
    if (status != TW_OK) {
        tw_pretok_free(&split);
        free(out);
        return status;
    }
    pthread_mutex_lock(&tok->lock);
    for (size_t at = 0, n; (status = tw_pretok_next(&split, &n)) == TW_OK && n > 0;) {
        const unsigned char *piece = s + at;
        at += n;
        if (n == 1) {
            out[produced++] = tok->byte_id[piece[0]];
            continue;
        }
        uint64_t hash = 0;
        if (n <= CACHE_MAX_PIECE) {
            hash = tw_bytes_hash(piece, n);
            int32_t *entry = tw_bytes_map_find(&tok->cache, piece, n, hash);
            if (entry) {
                size_t k = tok->cache_length[*entry];
                memcpy(out + produced, tok->cache_ids + tok->cache_start[*entry], k * sizeof *out);
                produced += k;
                continue;
            }
        }
        if (n > INT32_MAX) { /* positions in bpe_piece are int32 */
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_encode: a single piece of "
                              "%zu bytes (a run of letters or spaces) is too long", n);
            break;
        }
        if (!ensure_scratch(tok, n)) {
            status = tw_error(TW_ERR_OUT_OF_MEMORY, "tw_tokenizer_encode: out of memory for a "
                              "piece of %zu bytes", n);
            break;
        }
        size_t k = bpe_piece(tok, piece, n, out + produced);
        if (n <= CACHE_MAX_PIECE) cache_add(tok, piece, n, hash, out + produced, k);
        produced += k;
    }
    pthread_mutex_unlock(&tok->lock);
    tw_pretok_free(&split);
    if (status != TW_OK) {
        free(out);
        return status;
    }
    /* Give back the unused tail (ids are usually about a quarter of the bytes). */
    int32_t *shrunk = realloc(out, (produced ? produced : 1) * sizeof *out);
    *ids = shrunk ? shrunk : out;
    *count = produced;
    return TW_OK;
}

tw_status tw_tokenizer_decode(const tw_tokenizer *tok, const int32_t *ids, size_t count,
                              char **text, size_t *length) {
    if (text) *text = NULL;
    if (length) *length = 0;
    if (!tok || !text || !length || (!ids && count))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "tw_tokenizer_decode: ids[%zu] = %d is outside the vocabulary (0..%d)",
                            i, ids[i], tok->vocab_size - 1);
        total += tok->token_offset[ids[i] + 1] - tok->token_offset[ids[i]];
    }
    char *buffer = malloc(total + 1);
    if (!buffer)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "tw_tokenizer_decode: out of memory for %zu bytes",
                        total);
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = tok->token_offset[ids[i] + 1] - tok->token_offset[ids[i]];
        memcpy(buffer + at, tok->token_data + tok->token_offset[ids[i]], n);
        at += n;
    }
    buffer[total] = '\0';
    *text = buffer;
    *length = total;
    return TW_OK;
}
