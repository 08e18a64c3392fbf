/* Corpora: loading and splitting into documents, the train/validation split, and the tokenised
 * cache ("<corpus>.<tokenizer-hash>.twtok") behind tw_dataset_load(). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "twist/error.h"
#include "core/paths.h"
#include "data/data_impl.h"
#include "twist/data.h"

uint64_t tw_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ------------------------------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------------------------------- */

void tw_corpus_free(tw_corpus *corpus) {
    if (!corpus) return;
    free(corpus->path);
    free(corpus->text);
    free(corpus->doc_offset);
    free(corpus->doc_length);
    free(corpus);
}

static bool line_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* Finds the documents of corpus->text: runs of non-blank lines. */
static tw_status find_documents(tw_corpus *c) {
    size_t capacity = 64;
    c->doc_offset = malloc(capacity * sizeof(size_t));
    c->doc_length = malloc(capacity * sizeof(size_t));
    if (!c->doc_offset || !c->doc_length)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory splitting documents", c->path);
    const char *t = c->text;
    size_t n = c->text_bytes, pos = 0;
    bool in_doc = false;
    size_t doc_start = 0, doc_end = 0;
    while (pos <= n) {
        /* One line [pos, end); past the last line, an empty "line" at n closes the last
         * document. */
        const char *nl = pos < n ? memchr(t + pos, '\n', n - pos) : NULL;
        size_t end = nl ? (size_t)(nl - t) : n;
        bool blank = line_is_blank(t + pos, end - pos);
        if (!blank) {
            if (!in_doc) doc_start = pos;
            in_doc = true;
            doc_end = end;
        }
        if ((blank || end == n) && in_doc) {
            if (c->doc_count == capacity) {
                capacity *= 2;
                size_t *o = realloc(c->doc_offset, capacity * sizeof(size_t));
                if (o) c->doc_offset = o;
                size_t *l = realloc(c->doc_length, capacity * sizeof(size_t));
                if (l) c->doc_length = l;
                if (!o || !l)
                    return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory splitting documents",
                                    c->path);
            }
            /* Trailing spaces of the last line are text; a trailing \r (lone) is dropped. */
            while (doc_end > doc_start && t[doc_end - 1] == '\r') doc_end--;
            c->doc_offset[c->doc_count] = doc_start;
            c->doc_length[c->doc_count] = doc_end - doc_start;
            c->doc_count++;
            in_doc = false;
        }
        pos = end + 1;
    }
    if (c->doc_count == 0)
        return tw_error(TW_ERR_FORMAT, "%s: corpus holds no text (only whitespace)", c->path);
    return TW_OK;
}

tw_status tw_corpus_from_memory(const char *name, const char *text, size_t length,
                                tw_corpus **corpus) {
    if (!corpus) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_corpus_from_memory: corpus is NULL");
    *corpus = NULL;
    if (!name) name = "(memory)";
    if (!text && length > 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: text is NULL", name);
    if (length == 0) return tw_error(TW_ERR_FORMAT, "%s: corpus is empty", name);
    const char *nul = memchr(text, '\0', length);
    if (nul)
        return tw_error(TW_ERR_FORMAT,
                        "%s: contains a NUL byte at offset %zu (not a text file?)", name,
                        (size_t)(nul - text));
    tw_corpus *c = calloc(1, sizeof *c);
    if (!c) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    c->path = malloc(strlen(name) + 1);
    c->text = malloc(length + 1);
    if (!c->path || !c->text) {
        tw_corpus_free(c);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory (%zu bytes)", name, length);
    }
    strcpy(c->path, name);
    c->file_bytes = length;
    c->content_hash = tw_fnv1a64(TW_FNV1A_INIT, text, length);
    /* \r\n -> \n; other bytes unchanged. */
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] == '\r' && i + 1 < length && text[i + 1] == '\n') continue;
        c->text[out++] = text[i];
    }
    c->text[out] = '\0';
    c->text_bytes = out;
    tw_status st = find_documents(c);
    if (st != TW_OK) {
        tw_corpus_free(c);
        return st;
    }
    *corpus = c;
    return TW_OK;
}

tw_status tw_corpus_load(const char *path, tw_corpus **corpus) {
    if (!path || !corpus)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_corpus_load: path or corpus is NULL");
    *corpus = NULL;
    char *data;
    size_t length;
    tw_status st = tw_read_file(path, &data, &length);
    if (st != TW_OK) return st;
    st = tw_corpus_from_memory(path, data, length, corpus);
    free(data);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Split
 * ---------------------------------------------------------------------------------------------- */

static uint64_t doc_hash(uint64_t seed, size_t index) {
    return tw_splitmix64(seed ^ tw_splitmix64((uint64_t)index));
}

tw_status tw_corpus_split(const tw_corpus *corpus, double val_fraction, uint64_t seed,
                          uint8_t *is_val, size_t *val_docs) {
    if (!corpus || !is_val)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_corpus_split: corpus or is_val is NULL");
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: validation fraction %g must lie in [0, 1)", corpus->path,
                        val_fraction);
    /* Threshold on the top 53 bits of the hash, so the comparison is exact in double. */
    uint64_t threshold = (uint64_t)(val_fraction * 9007199254740992.0);
    size_t n = corpus->doc_count, nval = 0;
    size_t lo = 0, hi = 0;
    uint64_t lo_h = UINT64_MAX, hi_h = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = doc_hash(seed, i) >> 11;
        is_val[i] = h < threshold;
        nval += is_val[i];
        if (!is_val[i] && h <= lo_h) lo_h = h, lo = i;
        if (is_val[i] && h >= hi_h) hi_h = h, hi = i;
    }
    if (val_fraction > 0.0 && n >= 2) {
        if (nval == 0) is_val[lo] = 1, nval = 1;
        else if (nval == n) is_val[hi] = 0, nval--;
    }
    if (val_docs) *val_docs = nval;
    return TW_OK;
}
