/* BPE training.
 *
 * 1. Split every text into pre-token pieces and count each distinct piece ("word") in a hash map.
 * 2. Write each word as a list of token ids (initially its bytes) and count every adjacent pair,
 *    weighted by the word's frequency; each pair also keeps the list of words it occurs in.
 * 3. Repeat until the vocabulary is full: take the most frequent pair (a max-heap with lazy
 *    deletion: an entry whose count is out of date is re-pushed with the current count when popped),
 *    give a + b a token id, and rewrite only the words on that pair's list, updating the counts of
 *    the pairs they lose and gain. A step therefore costs time proportional to the words the pair
 *    occurs in, not to the corpus, which is what makes thousands of merges take seconds.
 *
 * Ties: among pairs of equal count the one with the smallest (left id, right id) wins, so training
 * is deterministic and independent of hash-map order.
 * Counting rule: inside a word the pair (a, b) is counted at every position (so "aaa" counts (a,a)
 * twice), and merging rewrites non-overlapping occurrences from left to right, as GPT-2 and
 * Hugging Face do. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "core/paths.h"
#include "data/tokenizer_impl.h"

typedef struct pair_info {
    int32_t left, right;
    int64_t count;      /* frequency-weighted occurrences in the current words */
    int64_t saved;      /* count before the current merge step (valid while touched) */
    int32_t *words;     /* words that contained the pair when it was counted (may be stale) */
    int32_t word_count, word_capacity;
    int32_t touched;    /* changed during the current merge step */
} pair_info;

typedef struct heap_entry {
    int64_t count;
    int32_t pair;
} heap_entry;

typedef struct trainer {
    /* words */
    int32_t word_count;
    int64_t *word_freq;      /* (word_count) */
    size_t *word_start;      /* (word_count) first symbol in `symbols` */
    int32_t *word_length;    /* (word_count) current number of symbols */
    int32_t *symbols;
    /* tokens (ordinary ones; the end-of-text token is appended at the end) */
    unsigned char *token_data;
    size_t token_data_used, token_data_capacity;
    size_t *token_offset; /* (token_count + 1) */
    int32_t token_count, token_capacity;
    tw_bytes_map token_ids; /* bytes -> id, so a merge that spells an existing token reuses it */
    /* merges */
    int32_t *merge_left, *merge_right, *merge_result;
    int32_t merge_count, merge_capacity;
    /* pairs */
    pair_info *pairs;
    int32_t pair_count, pair_capacity;
    tw_pair_map pair_index;
    int32_t *touched;
    int32_t touched_count, touched_capacity;
    heap_entry *heap;
    size_t heap_size, heap_capacity;
} trainer;

static void trainer_free(trainer *t) {
    free(t->word_freq);
    free(t->word_start);
    free(t->word_length);
    free(t->symbols);
    free(t->token_data);
    free(t->token_offset);
    tw_bytes_map_free(&t->token_ids);
    free(t->merge_left);
    free(t->merge_right);
    free(t->merge_result);
    for (int32_t i = 0; i < t->pair_count; i++) free(t->pairs[i].words);
    free(t->pairs);
    tw_pair_map_free(&t->pair_index);
    free(t->touched);
    free(t->heap);
}

/* Grows *array (of `item` bytes each) so it holds at least `need` items. */
static bool grow(void **array, size_t item, size_t *capacity, size_t need) {
    if (need <= *capacity) return true;
    size_t c = *capacity ? *capacity : 64;
    while (c < need) c *= 2;
    void *p = realloc(*array, c * item);
    if (!p) return false;
    *array = p;
    *capacity = c;
    return true;
}

static bool grow32(void **array, size_t item, int32_t *capacity, size_t need) {
    size_t c = (size_t)*capacity;
    if (!grow(array, item, &c, need)) return false;
    *capacity = (int32_t)(c > INT32_MAX ? INT32_MAX : c);
    return true;
}

/* ---- tokens ---------------------------------------------------------------------------------- */

static bool add_token(trainer *t, const unsigned char *bytes, size_t length, int32_t *id) {
    uint64_t hash = tw_bytes_hash(bytes, length);
    int32_t *found = tw_bytes_map_find(&t->token_ids, bytes, length, hash);
    if (found) {
        *id = *found;
        return true;
    }
    if (!grow((void **)&t->token_data, 1, &t->token_data_capacity, t->token_data_used + length))
        return false;
    if (!grow32((void **)&t->token_offset, sizeof(size_t), &t->token_capacity,
                (size_t)t->token_count + 2))
        return false;
    bool inserted;
    if (!tw_bytes_map_insert(&t->token_ids, bytes, length, hash, t->token_count, &inserted))
        return false;
    memcpy(t->token_data + t->token_data_used, bytes, length);
    t->token_offset[t->token_count] = t->token_data_used;
    t->token_data_used += length;
    t->token_offset[t->token_count + 1] = t->token_data_used;
    *id = t->token_count++;
    return true;
}

/* ---- pairs and the heap ---------------------------------------------------------------------- */

/* Heap order: higher count first; on equal counts the smaller (left, right). */
static bool entry_before(const trainer *t, heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    const pair_info *px = &t->pairs[x.pair], *py = &t->pairs[y.pair];
    if (px->left != py->left) return px->left < py->left;
    return px->right < py->right;
}

static bool heap_push(trainer *t, int32_t pair) {
    if (!grow((void **)&t->heap, sizeof *t->heap, &t->heap_capacity, t->heap_size + 1))
        return false;
    heap_entry e = {t->pairs[pair].count, pair};
    size_t i = t->heap_size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_before(t, e, t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = e;
    return true;
}

static heap_entry heap_pop(trainer *t) {
    heap_entry top = t->heap[0], last = t->heap[--t->heap_size];
    size_t i = 0, n = t->heap_size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && entry_before(t, t->heap[child + 1], t->heap[child])) child++;
        if (!entry_before(t, t->heap[child], last)) break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    if (n) t->heap[i] = last;
    return top;
}

/* Adds `delta` to the count of (left, right), creating the pair if needed, and (when word >= 0)
 * records that `word` contains it. Remembers the count before the step for the heap update. */
static bool adjust_pair(trainer *t, int32_t left, int32_t right, int64_t delta, int32_t word) {
    uint64_t key = tw_pair_key(left, right);
    int32_t p = tw_pair_map_get(&t->pair_index, key);
    if (p < 0) {
        if (!grow32((void **)&t->pairs, sizeof *t->pairs, &t->pair_capacity,
                    (size_t)t->pair_count + 1))
            return false;
        p = t->pair_count;
        if (!tw_pair_map_put(&t->pair_index, key, p)) return false;
        t->pair_count++;
        memset(&t->pairs[p], 0, sizeof t->pairs[p]);
        t->pairs[p].left = left;
        t->pairs[p].right = right;
    }
    pair_info *info = &t->pairs[p];
    if (!info->touched) {
        if (!grow32((void **)&t->touched, sizeof *t->touched, &t->touched_capacity,
                    (size_t)t->touched_count + 1))
            return false;
        t->touched[t->touched_count++] = p;
        info->touched = 1;
        info->saved = info->count;
    }
    info->count += delta;
    if (word >= 0 && (info->word_count == 0 || info->words[info->word_count - 1] != word)) {
        if (!grow32((void **)&info->words, sizeof *info->words, &info->word_capacity,
                    (size_t)info->word_count + 1))
            return false;
        info->words[info->word_count++] = word;
    }
    return true;
}

/* Ends a step: every pair whose count rose gets a fresh heap entry (those that fell are fixed
 * lazily when their old, too-high entry is popped). */
static bool finish_step(trainer *t) {
    for (int32_t i = 0; i < t->touched_count; i++) {
        pair_info *info = &t->pairs[t->touched[i]];
        info->touched = 0;
        if (info->count > info->saved && !heap_push(t, t->touched[i])) return false;
    }
    t->touched_count = 0;
    return true;
}

/* ---- the steps ------------------------------------------------------------------------------- */

static tw_status oom(void) {
    return tw_error(TW_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory");
}

/* Step 1: distinct pieces and their frequencies. */
static tw_status count_words(trainer *t, const char *const *texts, const size_t *lengths,
                             int count, tw_bytes_map *words) {
    size_t freq_capacity = 0;
    for (int k = 0; k < count; k++) {
        const char *text = texts[k];
        size_t length = lengths[k];
        /* The split of encoding (pretokenize.c), so training learns merges inside exactly the
         * pieces that encoding will hand to them. */
        tw_pretok split;
        tw_status status = tw_pretok_init(&split, text, length, 0);
        for (size_t at = 0, n; status == TW_OK && (status = tw_pretok_next(&split, &n)) == TW_OK &&
                               n > 0;) {
            bool inserted;
            int32_t *w = tw_bytes_map_insert(words, text + at, n, tw_bytes_hash(text + at, n),
                                             t->word_count, &inserted);
            if (!w) {
                status = oom();
                break;
            }
            if (inserted) {
                if (t->word_count == INT32_MAX) {
                    status = tw_error(TW_ERR_INVALID_ARGUMENT,
                                      "tokenizer training: more than 2^31 distinct pieces");
                    break;
                }
                if (!grow((void **)&t->word_freq, sizeof *t->word_freq, &freq_capacity,
                          (size_t)t->word_count + 1)) {
                    status = oom();
                    break;
                }
                t->word_freq[t->word_count++] = 0;
            }
            t->word_freq[*w]++;
            at += n;
        }
        tw_pretok_free(&split);
        if (status != TW_OK) return status;
    }
    return TW_OK;
}

/* Step 2: words as symbol lists, initial pair counts, the heap. */
static tw_status init_pairs(trainer *t, const tw_bytes_map *words) {
    size_t n = (size_t)t->word_count;
    t->word_start = malloc((n ? n : 1) * sizeof *t->word_start);
    t->word_length = malloc((n ? n : 1) * sizeof *t->word_length);
    t->symbols = malloc((words->arena_used ? words->arena_used : 1) * sizeof *t->symbols);
    if (!t->word_start || !t->word_length || !t->symbols) return oom();
    /* The map's arena holds every distinct piece once; its slots say which word each is. */
    for (size_t i = 0; i < words->capacity; i++) {
        const tw_bytes_map_slot *slot = &words->slots[i];
        if (slot->hash == 0) continue;
        int32_t w = slot->value;
        t->word_start[w] = slot->offset;
        t->word_length[w] = (int32_t)slot->length;
        for (uint32_t j = 0; j < slot->length; j++)
            t->symbols[slot->offset + j] = words->arena[slot->offset + j]; /* id == byte */
    }
    for (int32_t w = 0; w < t->word_count; w++) {
        const int32_t *s = t->symbols + t->word_start[w];
        for (int32_t i = 0; i + 1 < t->word_length[w]; i++)
            if (!adjust_pair(t, s[i], s[i + 1], t->word_freq[w], w)) return oom();
    }
    if (!finish_step(t)) return oom();
    return TW_OK;
}

/* Step 3, once: rewrite every word holding (left, right) with `merged`. */
static tw_status apply_merge(trainer *t, int32_t pair, int32_t merged) {
    int32_t left = t->pairs[pair].left, right = t->pairs[pair].right;
    int32_t *list = t->pairs[pair].words; /* this list is not appended to during the step */
    int32_t list_count = t->pairs[pair].word_count;
    for (int32_t k = 0; k < list_count; k++) {
        int32_t w = list[k];
        int32_t *s = t->symbols + t->word_start[w];
        int32_t len = t->word_length[w];
        bool found = false;
        for (int32_t i = 0; i + 1 < len && !found; i++) found = s[i] == left && s[i + 1] == right;
        if (!found) continue; /* stale entry: an earlier merge already rewrote the pair here */
        int64_t freq = t->word_freq[w];
        for (int32_t i = 0; i + 1 < len; i++)
            if (!adjust_pair(t, s[i], s[i + 1], -freq, -1)) return oom();
        int32_t out = 0;
        for (int32_t i = 0; i < len;) {
            if (i + 1 < len && s[i] == left && s[i + 1] == right) {
                s[out++] = merged;
                i += 2;
            } else {
                s[out++] = s[i++];
            }
        }
        t->word_length[w] = len = out;
        for (int32_t i = 0; i + 1 < len; i++)
            if (!adjust_pair(t, s[i], s[i + 1], freq, w)) return oom();
    }
    pair_info *info = &t->pairs[pair];
    free(info->words);
    info->words = NULL;
    info->word_count = info->word_capacity = 0;
    if (!finish_step(t)) return oom();
    return TW_OK;
}

static tw_status record_merge(trainer *t, int32_t left, int32_t right, int32_t result) {
    if (!grow32((void **)&t->merge_left, sizeof(int32_t), &t->merge_capacity,
                (size_t)t->merge_count + 1))
        return oom();
    /* the three arrays share merge_capacity: grow the other two to the same size */
    void *r = realloc(t->merge_right, (size_t)t->merge_capacity * sizeof(int32_t));
    if (!r) return oom();
    t->merge_right = r;
    void *c = realloc(t->merge_result, (size_t)t->merge_capacity * sizeof(int32_t));
    if (!c) return oom();
    t->merge_result = c;
    t->merge_left[t->merge_count] = left;
    t->merge_right[t->merge_count] = right;
    t->merge_result[t->merge_count] = result;
    t->merge_count++;
    return TW_OK;
}

static tw_status train(trainer *t, const char *const *texts, const size_t *lengths, int count,
                       int vocab_size) {
    tw_bytes_map_init(&t->token_ids);
    tw_pair_map_init(&t->pair_index);
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        int32_t id;
        if (!add_token(t, &byte, 1, &id)) return oom();
    }
    tw_bytes_map words;
    tw_bytes_map_init(&words);
    tw_status status = count_words(t, texts, lengths, count, &words);
    if (status == TW_OK) status = init_pairs(t, &words);
    tw_bytes_map_free(&words);
    if (status != TW_OK) return status;

    unsigned char *joined = NULL;
    size_t joined_capacity = 0;
    /* vocab_size counts the end-of-text token, added after the loop. */
    while (t->token_count < vocab_size - 1 && t->heap_size > 0) {
        heap_entry e = heap_pop(t);
        pair_info *info = &t->pairs[e.pair];
        if (info->count != e.count) {
            /* Out of date. A lower current count needs a new entry; a higher one already has one. */
            if (info->count > 0 && info->count < e.count && !heap_push(t, e.pair)) {
                status = oom();
                break;
            }
            continue;
        }
        if (info->count <= 0) continue;
        int32_t left = info->left, right = info->right;
        size_t la = t->token_offset[left + 1] - t->token_offset[left];
        size_t lb = t->token_offset[right + 1] - t->token_offset[right];
        if (!grow((void **)&joined, 1, &joined_capacity, la + lb)) {
            status = oom();
            break;
        }
        memcpy(joined, t->token_data + t->token_offset[left], la);
        memcpy(joined + la, t->token_data + t->token_offset[right], lb);
        int32_t merged;
        if (!add_token(t, joined, la + lb, &merged)) {
            status = oom();
            break;
        }
        status = record_merge(t, left, right, merged);
        if (status == TW_OK) status = apply_merge(t, e.pair, merged);
        if (status != TW_OK) break;
    }
    free(joined);
    return status;
}

tw_status tw_tokenizer_train_texts(const char *const *texts, const size_t *lengths, int count,
                                   int vocab_size, tw_tokenizer **out) {
    if (out) *out = NULL;
    if (!out || count < 0 || (count > 0 && (!texts || !lengths)))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tokenizer training: NULL argument");
    if (vocab_size < TW_TOKENIZER_MIN_VOCAB || vocab_size > TW_TOKENIZER_MAX_VOCAB)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tokenizer training: vocabulary size %d must lie in %d..%d (256 bytes, "
                        "the merges and " TW_TOKENIZER_EOT_TEXT ")",
                        vocab_size, TW_TOKENIZER_MIN_VOCAB, TW_TOKENIZER_MAX_VOCAB);
    for (int k = 0; k < count; k++)
        if (!texts[k] && lengths[k])
            return tw_error(TW_ERR_INVALID_ARGUMENT, "tokenizer training: text %d is NULL", k);
    trainer t;
    memset(&t, 0, sizeof t);
    tw_status status = train(&t, texts, lengths, count, vocab_size);
    if (status == TW_OK) {
        /* Append the end-of-text token (special, so no bytes-map entry: text never produces it). */
        static const char eot[] = TW_TOKENIZER_EOT_TEXT;
        size_t eot_len = sizeof eot - 1;
        int32_t v = t.token_count + 1;
        unsigned char *special = calloc((size_t)v, 1);
        if (!special ||
            !grow((void **)&t.token_data, 1, &t.token_data_capacity, t.token_data_used + eot_len) ||
            !grow32((void **)&t.token_offset, sizeof(size_t), &t.token_capacity, (size_t)v + 1)) {
            free(special);
            trainer_free(&t);
            return oom();
        }
        memcpy(t.token_data + t.token_data_used, eot, eot_len);
        t.token_offset[v] = t.token_data_used + eot_len;
        special[v - 1] = 1;
        tw_tokenizer_spec spec = {
            .vocab_size = v,
            .token_data = t.token_data,
            .token_offset = t.token_offset,
            .special = special,
            .eot_id = v - 1,
            .merge_count = t.merge_count,
            .merge_left = t.merge_left,
            .merge_right = t.merge_right,
            .merge_result = t.merge_result,
        };
        status = tw_tokenizer_build(&spec, "tokenizer training", out);
        free(special);
    }
    trainer_free(&t);
    return status;
}

tw_status tw_tokenizer_train(const char *const *paths, int path_count, int vocab_size,
                             tw_tokenizer **out) {
    if (out) *out = NULL;
    if (!out || !paths || path_count <= 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tokenizer training: no corpus files given");
    if (vocab_size < TW_TOKENIZER_MIN_VOCAB || vocab_size > TW_TOKENIZER_MAX_VOCAB)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tokenizer training: vocabulary size %d must lie in %d..%d (256 bytes, "
                        "the merges and " TW_TOKENIZER_EOT_TEXT ")",
                        vocab_size, TW_TOKENIZER_MIN_VOCAB, TW_TOKENIZER_MAX_VOCAB);
    char **texts = calloc((size_t)path_count, sizeof *texts);
    size_t *lengths = calloc((size_t)path_count, sizeof *lengths);
    tw_status status = TW_OK;
    if (!texts || !lengths) status = oom();
    for (int k = 0; k < path_count && status == TW_OK; k++) {
        if (!paths[k])
            status = tw_error(TW_ERR_INVALID_ARGUMENT, "tokenizer training: path %d is NULL", k);
        else
            status = tw_read_file(paths[k], &texts[k], &lengths[k]);
    }
    if (status == TW_OK)
        status = tw_tokenizer_train_texts((const char *const *)texts, lengths, path_count,
                                          vocab_size, out);
    for (int k = 0; texts && k < path_count; k++) free(texts[k]);
    free(texts);
    free(lengths);
    return status;
}
